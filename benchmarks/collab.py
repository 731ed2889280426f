"""Collaborative filtering: ember's collab learner against a hand-written PyTorch loop and against fastai.

Data: ``synthetic_ratings()`` at MovieLens-100k size (943 users, 1,682 items, about 100,000 ratings from
known latent factors, noise variance 0.25). Every contender uses the same 80/20 split, the dot-product
model with biases (50 factors, ``y_range=(0.5, 5.5)``), batch size 64, AdamW with decoupled weight decay
0.1 and five epochs of one-cycle at ``lr_max=5e-3``, validating after every epoch. The contenders run in
one process in a rotating order, `--runs` times; each figure is a median.

Judged figures: ``ember/plain`` fit seconds (goal: at most 1.1) and ember's validation MSE (no worse than fastai's).

    python benchmarks/collab.py                  # main venv: fastai's row says "not installed"
    .bench-venv/bin/python benchmarks/collab.py  # with fastai
    python benchmarks/collab.py --quick          # a smoke test on a small table
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

GOAL_RATIO = 1.1
CONTENDERS = ("plain", "ember", "fastai")
FIGURES = ("prep", "fit", "cpu", "mse")  # what a run returns: prep and fit seconds, fit CPU seconds, valid MSE


class DotBias(nn.Module):
    """The plain contender's model: ``sigmoid_range(u·i + b_u + b_i)``, embeddings ~ N(0, 0.01) truncated."""

    def __init__(self, n_users: int, n_items: int, n_factors: int, y_range: tuple[float, float]) -> None:
        super().__init__()
        self.u, self.i = nn.Embedding(n_users, n_factors), nn.Embedding(n_items, n_factors)
        self.ub, self.ib = nn.Embedding(n_users, 1), nn.Embedding(n_items, 1)
        for e in (self.u, self.i, self.ub, self.ib):
            nn.init.trunc_normal_(e.weight, std=0.01, a=-0.02, b=0.02)
        self.low, self.high = y_range

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 2) -> (B,)
        u, i = x[:, 0], x[:, 1]
        r = (self.u(u) * self.i(i)).sum(1) + self.ub(u).squeeze(1) + self.ib(i).squeeze(1)
        return torch.sigmoid(r) * (self.high - self.low) + self.low


def run_plain(df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    """Encode with pandas, then an idiomatic loop: shuffled index slices of tensors, AdamW + OneCycleLR."""
    watch = Stopwatch()
    users, uvocab = pd.factorize(df["user"], sort=True)
    items, ivocab = pd.factorize(df["item"], sort=True)
    x = torch.from_numpy(np.stack([users + 1, items + 1], axis=1).astype(np.int64))  # 0 kept for unknowns
    y = torch.from_numpy(df["rating"].to_numpy(np.float32))
    is_valid = np.zeros(len(df), dtype=bool)
    is_valid[valid_idx] = True
    xt, yt = x[torch.from_numpy(~is_valid)], y[torch.from_numpy(~is_valid)]
    xv, yv = x[torch.from_numpy(is_valid)], y[torch.from_numpy(is_valid)]
    model = DotBias(len(uvocab) + 1, len(ivocab) + 1, args.factors, (0.5, 5.5))
    prep = watch.lap()
    cpu0 = time.process_time()
    bs, n = args.bs, len(xt)
    steps = n // bs
    opt, sched = adamw_one_cycle(model, args.lr, args.epochs * steps, weight_decay=args.wd, fused=True)
    mse = float("nan")
    for _ in range(args.epochs):
        model.train()
        perm = torch.randperm(n)
        for s in range(steps):
            idx = perm[s * bs : (s + 1) * bs]
            loss = F.mse_loss(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        total = torch.zeros(())
        with torch.no_grad():
            for s in range(0, len(xv), 2 * bs):
                total += F.mse_loss(model(xv[s : s + 2 * bs]), yv[s : s + 2 * bs], reduction="sum")
        mse = total.item() / len(xv)
    return {"prep": prep, "fit": watch.lap(), "cpu": time.process_time() - cpu0, "mse": mse}


def run_ember(df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    from ember.collab import CollabDataLoaders, collab_learner

    watch = Stopwatch()
    dls = CollabDataLoaders.from_df(df, valid_pct=args.valid_pct, seed=args.seed, bs=args.bs, device="cpu")
    assert np.array_equal(np.sort(valid_idx), np.sort(_ember_valid_idx(len(df), args)))
    learn = collab_learner(dls, n_factors=args.factors, y_range=(0.5, 5.5))
    prep = watch.lap()
    cpu0 = time.process_time()
    with learn.no_bar():
        learn.fit_one_cycle(args.epochs, args.lr, wd=args.wd)
    fit = watch.lap()
    mse = float(learn.recorder.last_validation[0])
    return {"prep": prep, "fit": fit, "cpu": time.process_time() - cpu0, "mse": mse}


def run_fastai(df: pd.DataFrame, valid_idx: np.ndarray, args: argparse.Namespace) -> dict[str, float]:
    from fastai.collab import TabularCollab
    from fastai.collab import collab_learner as fa_collab_learner
    from fastai.data.block import TransformBlock
    from fastai.data.transforms import IndexSplitter
    from fastai.tabular.core import Categorify as FaCategorify

    watch = Stopwatch()
    splits = IndexSplitter(list(valid_idx))(range(len(df)))  # the same validation rows as the others
    to = TabularCollab(
        df, [FaCategorify], cat_names=["user", "item"], y_names=["rating"], y_block=TransformBlock(), splits=splits
    )
    dls = to.dataloaders(bs=args.bs)
    learn = fa_collab_learner(dls, n_factors=args.factors, y_range=(0.5, 5.5))
    prep = watch.lap()
    cpu0 = time.process_time()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, args.lr, wd=args.wd)
    fit = watch.lap()
    mse = float(learn.recorder.values[-1][1])
    return {"prep": prep, "fit": fit, "cpu": time.process_time() - cpu0, "mse": mse}


def _ember_valid_idx(n: int, args: argparse.Namespace) -> np.ndarray:
    from ember.tabular.data import random_split_idx

    return random_split_idx(n, args.valid_pct, args.seed)[1]


def _run_line(r: int, name: str, res: dict[str, float]) -> str:
    """The line printed after each timed run."""
    return (
        f"run {r + 1}: {name:6s} prep {res['prep']:6.2f} s  fit {res['fit']:7.2f} s (cpu {res['cpu']:7.2f} s)  "
        f"valid MSE {res['mse']:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--wd", type=float, default=0.1)
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--valid-pct", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all CPUs)")
    parser.add_argument("--quick", action="store_true", help="a small table and one epoch, to check the script runs")
    args = parser.parse_args()
    threads = set_threads(args.threads)
    from ember.data.builtin import synthetic_ratings

    df = synthetic_ratings(200, 150, density=0.3, seed=0) if args.quick else synthetic_ratings(seed=0)
    if args.quick:
        args.epochs, args.runs = 1, 1
    valid_idx = _ember_valid_idx(len(df), args)
    print_env({**env_report("cpu"), "torch threads (set)": str(threads)})
    print(f"data: synthetic_ratings(), {len(df):,} ratings, noise variance {df.attrs['noise_var']:.3f} (the floor)")
    runners: dict[str, Callable] = {"plain": run_plain, "ember": run_ember, "fastai": run_fastai}
    # One untimed pass of each on a small table first: one-time costs (imports torch does on the first
    # optimizer, allocator warm-up) must not land on whichever contender happens to run first.
    small = synthetic_ratings(100, 80, density=0.3, seed=1)
    warm = argparse.Namespace(**{**vars(args), "epochs": 1})
    small_valid = _ember_valid_idx(len(small), warm)
    for name in CONTENDERS:
        with contextlib.suppress(Exception), contextlib.redirect_stderr(io.StringIO()):
            runners[name](small, small_valid, warm)
    timed = {name: functools.partial(runners[name], df, valid_idx, args) for name in CONTENDERS}
    results, missing = run_rotating(timed, args.runs, args.seed, _run_line)
    # Each figure's values, per contender.
    preps, times, cpus, mses = ({k: [res[key] for res in v] for k, v in results.items()} for key in FIGURES)
    rows = []
    for name in CONTENDERS:
        if name in missing:
            rows.append([name, missing[name], *["–"] * 6])
            continue
        t = median(times[name])
        vs_fastai = fmt_ratio(t, median(times["fastai"])) if times["fastai"] else "–"
        prep = fmt_seconds(median(preps[name]), 2)
        cpu = median(cpus[name])
        rows.append(
            [
                name,
                prep,
                fmt_seconds(t, 2),
                fmt_ratio(t, median(times["plain"])),
                vs_fastai,
                fmt_seconds(cpu, 2),
                fmt_ratio(cpu, median(cpus["plain"])),
                f"{median(mses[name]):.4f}",
            ]
        )
    print_table(
        f"collab: {len(df):,} ratings, {args.factors} factors, bs {args.bs}, {args.epochs} epochs one-cycle, "
        f"wd {args.wd} (median of {args.runs})",
        ["contender", "prep s", "fit s", "/ plain", "/ fastai", "fit cpu s", "cpu / plain", "valid MSE"],
        rows,
    )
    ratio = median(times["ember"]) / median(times["plain"]) if times["ember"] and times["plain"] else float("nan")
    print(judged("ember/plain fit time", ratio, GOAL_RATIO))
    if cpus["ember"] and cpus["plain"]:
        # CPU seconds of this process: the steadier figure when other work shares the machine.
        print(f"        ember/plain fit CPU time = {median(cpus['ember']) / median(cpus['plain']):.3f}")
    if times["fastai"] and mses["ember"]:
        print(f"judged: ember MSE {median(mses['ember']):.4f} vs fastai {median(mses['fastai']):.4f}")


if __name__ == "__main__":
    main()
