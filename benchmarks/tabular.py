"""Tabular: ember's preprocessing and training against a hand-written PyTorch loop and against fastai.

Data: a synthetic table (``--rows``, default 300,000; the issue also asks for 1,000,000) with 8 categorical
and 8 continuous columns, a binary target from a known rule plus noise, and a few missing values. Every
contender preprocesses it (categories to codes from the training rows, missing values filled with the
training median plus indicator columns, normalization), then trains the same model (embeddings, batch-normed
continuous inputs, hidden layers [200, 100]) with AdamW and one-cycle at batch size 1024 for ``--epochs``,
validating after every epoch. A second part trains ember and fastai on ``penguins()`` with the same split.
The contenders run in one process in a rotating order, `--runs` times; each figure is a median.

Judged figures: ``ember/plain`` fit seconds (goal: at most 1.05) and ``ember/fastai`` preprocessing seconds
(goal: at most 0.5); accuracy no worse than fastai's.

    python benchmarks/tabular.py                          # main venv: fastai's row says "not installed"
    .bench-venv/bin/python benchmarks/tabular.py --rows 1000000
    python benchmarks/tabular.py --quick                  # a smoke test on a small table
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from _common import (
    Stopwatch,
    adamw_one_cycle,
    env_report,
    fmt_ratio,
    fmt_seconds,
    judged,
    median,
    print_env,
    print_table,
    run_rotating,
    set_threads,
)
from torch import nn

GOAL_FIT, GOAL_PREP = 1.05, 0.5
CONTENDERS = ("plain", "ember", "fastai")
CATS = [f"c{i}" for i in range(8)]
CONTS = [f"x{i}" for i in range(8)]


def make_table(n: int, seed: int = 0) -> pd.DataFrame:
    """8 categorical columns (3 to 300 levels), 8 continuous ones, and ``y`` from a known rule plus noise."""
    rng = np.random.default_rng(seed)
    cards = [3, 5, 7, 12, 20, 50, 100, 300]
    df = pd.DataFrame({c: rng.integers(0, k, n) for c, k in zip(CATS, cards)})
    for c in CATS[:4]:
        df[c] = np.array([f"{c}_{v}" for v in range(cards[CATS.index(c)])], dtype=object)[df[c].to_numpy()]
    xs = rng.normal(0, 1, (n, 8))
    for i, c in enumerate(CONTS):
        df[c] = xs[:, i] * (i + 1) + 10 * i
    effects = [rng.normal(0, 1, k) for k in cards]
    score = sum(effects[j][pd.factorize(df[c], sort=True)[0]] for j, c in enumerate(CATS[:3]))
    score = score + xs[:, 0] - 0.5 * xs[:, 1] + xs[:, 2] * xs[:, 3] + rng.normal(0, 0.5, n)
    df["y"] = np.where(score > np.median(score), "yes", "no")
    # A few missing values: 1% of two continuous columns and of one categorical column.
    for c in ("x1", "x5", "c2"):
        df.loc[rng.random(n) < 0.01, c] = np.nan if c.startswith("x") else None
    return df


# --- plain PyTorch ---------------------------------------------------------------------------------


class PlainTabular(nn.Module):
    """The plain contender's model: the architecture of ember's and fastai's TabularModel, written out."""

    def __init__(self, emb_szs: list[tuple[int, int]], n_cont: int, out: int, layers: list[int]) -> None:
        super().__init__()
        self.embeds = nn.ModuleList([nn.Embedding(n, w) for n, w in emb_szs])
        for e in self.embeds:  # the small truncated-normal start ember and fastai use
            nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)
        self.bn_cont = nn.BatchNorm1d(n_cont)
        sizes = [sum(w for _, w in emb_szs) + n_cont, *layers]
        blocks: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [nn.Linear(a, b, bias=False), nn.ReLU(inplace=True), nn.BatchNorm1d(b)]
        self.layers = nn.Sequential(*blocks, nn.Linear(sizes[-1], out))

    def forward(self, x_cat: torch.Tensor, x_cont: torch.Tensor) -> torch.Tensor:
        emb = torch.cat([e(x_cat[:, i]) for i, e in enumerate(self.embeds)], dim=1)
        return self.layers(torch.cat([emb, self.bn_cont(x_cont)], dim=1))


def _emb_sz(n: int) -> int:
    return min(600, round(1.6 * n**0.56))


def run_plain(df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    """pandas preprocessing by hand, then shuffled index slices of tensors, AdamW + OneCycleLR."""
    watch = Stopwatch()
    is_valid = np.zeros(len(df), dtype=bool)
    is_valid[valid_idx] = True
    train = ~is_valid
    cat_cols, codes = [], []
    conts = []
    for c in CONTS:
        v = df[c].to_numpy(np.float64)
        na = np.isnan(v)
        if na[train].any():
            cat_cols.append(na.astype(np.int64) + 1)
        v = np.where(na, np.nanmedian(v[train]), v)
        conts.append(((v - v[train].mean()) / v[train].std()).astype(np.float32))
    for c in CATS:
        vocab = pd.Index(pd.unique(df[c][train].dropna()))
        codes.append(vocab.get_indexer(df[c]).astype(np.int64) + 1)
    all_codes = codes + cat_cols
    x_cat = torch.from_numpy(np.stack(all_codes, axis=1))
    x_cont = torch.from_numpy(np.stack(conts, axis=1))
    y = torch.from_numpy((df["y"].to_numpy() == "yes").astype(np.int64))
    tr, va = torch.from_numpy(train), torch.from_numpy(is_valid)
    ct, xt, yt, cv, xv, yv = x_cat[tr], x_cont[tr], y[tr], x_cat[va], x_cont[va], y[va]
    emb_szs = [(int(c.max()) + 1, _emb_sz(int(c.max()) + 1)) for c in all_codes]
    model = PlainTabular(emb_szs, len(CONTS), 2, [200, 100])
    prep = watch.lap()
    cpu0 = time.process_time()
    bs, n = args.bs, len(yt)
    steps = n // bs
    opt, sched = adamw_one_cycle(model, args.lr, args.epochs * steps, fused=True)
    acc = float("nan")
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(n)
        for s in range(steps):
            idx = perm[s * bs : (s + 1) * bs]
            loss = F.cross_entropy(model(ct[idx], xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        correct = torch.zeros((), dtype=torch.long)
        with torch.no_grad():
            for s in range(0, len(yv), 2 * bs):
                out = model(cv[s : s + 2 * bs], xv[s : s + 2 * bs])
                correct += (out.argmax(1) == yv[s : s + 2 * bs]).sum()
        acc = correct.item() / len(yv)
    return {"prep": prep, "fit": watch.lap(), "cpu": time.process_time() - cpu0, "acc": acc}


def run_ember(df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace, y: str = "y") -> dict[str, float]:
    from ember.metrics import accuracy
    from ember.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner

    cats, conts = (CATS, CONTS) if y == "y" else PENGUIN_COLS
    watch = Stopwatch()
    dls = TabularDataLoaders.from_df(
        df, y_names=y, cat_names=cats, cont_names=conts, procs=[Categorify, FillMissing, Normalize],
        valid_idx=valid_idx, bs=args.bs, device="cpu",
    )  # fmt: skip
    learn = tabular_learner(dls, layers=[200, 100], metrics=accuracy)
    prep = watch.lap()
    cpu0 = time.process_time()
    with learn.no_bar():
        learn.fit_one_cycle(args.epochs, args.lr)
    fit = watch.lap()
    return {"prep": prep, "fit": fit, "cpu": time.process_time() - cpu0, "acc": learn.recorder.last_validation[-1]}


def run_fastai(df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace, y: str = "y") -> dict[str, float]:
    from fastai.metrics import accuracy
    from fastai.tabular.all import Categorify, FillMissing, Normalize, TabularDataLoaders, tabular_learner

    cats, conts = (CATS, CONTS) if y == "y" else PENGUIN_COLS
    watch = Stopwatch()
    dls = TabularDataLoaders.from_df(
        df, y_names=y, cat_names=list(cats), cont_names=list(conts), procs=[Categorify, FillMissing, Normalize],
        valid_idx=list(valid_idx), bs=args.bs, device="cpu",
    )  # fmt: skip
    learn = tabular_learner(dls, layers=[200, 100], metrics=accuracy)
    prep = watch.lap()
    cpu0 = time.process_time()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, args.lr)
    fit = watch.lap()
    acc = float(learn.recorder.values[-1][-1])
    return {"prep": prep, "fit": fit, "cpu": time.process_time() - cpu0, "acc": acc}


PENGUIN_COLS = (["island", "sex"], ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"])


def _run_all(
    runners: dict[str, Callable], df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace, label: str
) -> dict[str, list[dict[str, float]]]:
    """Every contender `args.runs` times in a rotating order; a missing one's list holds ``{"missing": why}``."""

    def line(r: int, name: str, res: dict[str, float]) -> str:
        return (
            f"{label} run {r + 1}: {name:6s} prep {res['prep']:6.2f} s  fit {res['fit']:7.2f} s "
            f"(cpu {res['cpu']:7.2f} s)  accuracy {res['acc']:.4f}"
        )

    timed = {name: functools.partial(fn, df, valid_idx, args) for name, fn in runners.items()}
    results, missing = run_rotating(timed, args.runs, args.seed, line)
    for name, why in missing.items():
        results[name] = [{"missing": why}]  # type: ignore[dict-item]
    return results


def _med(results: list[dict], key: str) -> float:
    return median(r[key] for r in results if key in r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bs", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all CPUs)")
    parser.add_argument("--no-penguins", action="store_true", help="skip the penguins accuracy part")
    parser.add_argument("--quick", action="store_true", help="a small table and one run, to check the script runs")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.runs = 20_000, 1
    threads = set_threads(args.threads)
    print_env({**env_report("cpu"), "torch threads (set)": str(threads)})
    df = make_table(args.rows, seed=0)
    valid_idx = np.random.default_rng(args.seed).permutation(len(df))[: len(df) // 5]
    runners = {"plain": run_plain, "ember": run_ember, "fastai": run_fastai}
    # One untimed pass of each on a small table: one-time costs (imports torch does on the first optimizer)
    # must not land on whichever contender runs first.
    small = make_table(5000, seed=1)
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    for fn in runners.values():
        with contextlib.suppress(Exception), contextlib.redirect_stderr(io.StringIO()):
            fn(small, np.arange(1000), warm)
    res = _run_all(runners, df, valid_idx, args, "table")
    plain, fa = res["plain"], res["fastai"]
    rows = []
    for name in CONTENDERS:
        r = res[name]
        if "missing" in r[0]:
            rows.append([name, r[0]["missing"], *["–"] * 7])
            continue
        n_train = len(df) - len(valid_idx)
        fit, prep, cpu = _med(r, "fit"), _med(r, "prep"), _med(r, "cpu")
        rows.append(
            [name, fmt_seconds(prep, 2), fmt_ratio(prep, _med(fa, "prep")), fmt_seconds(fit, 2),
             fmt_ratio(fit, _med(plain, "fit")), fmt_ratio(fit, _med(fa, "fit")),
             fmt_ratio(cpu, _med(plain, "cpu")), f"{n_train * args.epochs / fit:,.0f}", f"{_med(r, 'acc'):.4f}"]
        )  # fmt: skip
    print_table(
        f"tabular: {len(df):,} rows (8 cat + 8 cont), [200, 100], bs {args.bs}, {args.epochs} epoch(s) one-cycle "
        f"(median of {args.runs})",
        [
            "contender",
            "prep s",
            "prep / fastai",
            "fit s",
            "fit / plain",
            "fit / fastai",
            "cpu / plain",
            "rows/s",
            "acc",
        ],
        rows,
    )
    print(judged("ember/plain fit time", _med(res["ember"], "fit") / _med(plain, "fit"), GOAL_FIT))
    print(f"        ember/plain fit CPU time = {_med(res['ember'], 'cpu') / _med(plain, 'cpu'):.3f}")
    if "missing" not in fa[0]:
        prep_ratio = _med(res["ember"], "prep") / _med(fa, "prep")
        print(judged("ember/fastai preprocessing time", prep_ratio, GOAL_PREP))

    if args.no_penguins:
        return
    from ember.data.builtin import penguins

    pdf = penguins()
    p_valid = np.random.default_rng(args.seed).permutation(len(pdf))[: len(pdf) // 5]
    p_args = argparse.Namespace(**{**vars(args), "bs": 32, "epochs": 5, "lr": 1e-2})

    def ember_p(d: pd.DataFrame, v: np.ndarray, a: argparse.Namespace) -> dict[str, float]:
        return run_ember(d, v, a, y="species")

    def fastai_p(d: pd.DataFrame, v: np.ndarray, a: argparse.Namespace) -> dict[str, float]:
        return run_fastai(d, v, a, y="species")

    pres = _run_all({"ember": ember_p, "fastai": fastai_p}, pdf, p_valid, p_args, "penguins")
    rows = [
        [k, r[0]["missing"] if "missing" in r[0] else f"{_med(r, 'acc'):.4f}"] for k, r in pres.items()
    ]  # fmt: skip
    print_table("penguins: 5 epochs one-cycle, bs 32, same 20% validation rows", ["contender", "accuracy"], rows)


if __name__ == "__main__":
    main()
