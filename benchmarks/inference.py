"""Inference: ember's predict, predict_batch and get_preds against fastai's, then export size and load time.

Both libraries hold the demo model, ``mnist_resnet(width=2)`` (the lesson-7 residual CNN with twice the
channels: 1-channel 28x28 digits to 10 logits), in a Learner over a DataBlock of the ``mnist_5k`` folder
(grey images, parent folders as labels, ``training``/``testing`` as the split, ``Normalize()`` with statistics
from a batch). ember builds the model with its factory; fastai with its own ``ConvLayer`` and ``res_block``,
the same layers in the same order. Each trains ``--epochs`` (default 1) so that the predictions mean
something; the speed of inference does not depend on it.

The contenders predict the same ``--n`` PNG files (default: the 1,000 of ``testing/``), from paths:

* ember ``learn.predict(path)`` in a loop, ``learn.predict_batch(paths, bs=64)``,
  ``learn.get_preds(dl=learn.dls.test_dl(paths))``, and ``predict_batch`` of the learner that
  ``ember.load_learner`` rebuilt from ``learn.export("x.ember")``;
* fastai ``learn.predict(path)`` in a loop, ``learn.get_preds(dl=learn.dls.test_dl(paths))``, and the same
  ``get_preds`` of the learner fastai's ``load_learner`` unpickled from ``learn.export("x.pkl")``.

They run in one process in a rotating order, ``--runs`` times, after an untimed warm-up; each figure is a
median. Then the two export files' sizes and ``load_learner`` times: in fresh processes (the clock runs inside
the child, after the library's import; the child's wall time minus an import-only child's is shown too) and
in this process (repeated loads once everything is imported).

Judged: ember ``predict_batch`` images/s at least 5x fastai's ``predict`` loop, and ember's ``load_learner``
time (fresh process, after import) at most fastai's.

    python benchmarks/inference.py --quick                 # smoke test: 64 images, 1 run, no training
    .bench-venv/bin/python benchmarks/inference.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from _common import (
    Stopwatch,
    env_report,
    fmt_ratio,
    fmt_seconds,
    median,
    package_version,
    print_env,
    print_table,
    rotations,
    set_threads,
)

GOAL_BATCH = 5.0  # ember predict_batch images/s over fastai's predict loop: at least this
GOAL_LOAD = 1.0  # ember load_learner seconds over fastai's: at most this
WIDTH = 2
LR = 1e-2
TRAIN_BS = 128  # the demo's batch size


# --- the data --------------------------------------------------------------------------------------


def image_files(n: int) -> tuple[Path, list[Path]]:
    """The dataset folder and `n` PNGs of its ``testing/`` folder (repeated in turn when `n` exceeds them)."""
    from ember.data.builtin import mnist_5k

    root = Path(mnist_5k())
    files = sorted((root / "testing").glob("*/*.png"))
    if not files:
        raise SystemExit(f"No PNGs under {root / 'testing'}")
    return root, [files[i % len(files)] for i in range(n)]


# --- building the two learners ---------------------------------------------------------------------


def build_ember(root: Path, epochs: int, seed: int) -> Any:
    """The demo's DataBlock and model in a VisionLearner, trained `epochs` one-cycle epochs (quietly)."""
    from ember.core.seed import set_seed
    from ember.data.block import CategoryBlock, DataBlock
    from ember.data.items import GrandparentSplitter, get_image_files, parent_label
    from ember.losses import LabelSmoothingCrossEntropyFlat
    from ember.metrics import accuracy
    from ember.vision.augment import Normalize, rand_pad
    from ember.vision.core import ImageBlock
    from ember.vision.learner import VisionLearner
    from ember.vision.models.mnist import mnist_resnet

    set_seed(seed)
    dblock = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(train_name="training", valid_name="testing"),
        get_y=parent_label,
        item_tfms=rand_pad(2, 28),  # training only: not applied at inference
        batch_tfms=[Normalize()],
    )
    dls = dblock.dataloaders(root, bs=TRAIN_BS, device="cpu")
    kwargs = {"n_out": len(dls.vocab), "width": WIDTH}
    learn = VisionLearner(dls, mnist_resnet(**kwargs), loss_func=LabelSmoothingCrossEntropyFlat(), metrics=accuracy)
    learn.model_recipe = {"factory": "mnist_resnet", "kwargs": kwargs}  # what export records, as the demo does
    learn.silent = True
    if epochs:
        learn.fit_one_cycle(epochs, LR)
    else:
        dls.one_batch()  # Normalize() takes its statistics from the first training batch
    return learn


def build_fastai(root: Path, epochs: int, seed: int) -> Any:
    """The same model and data in fastai, trained `epochs` one-cycle epochs; progress bar removed afterwards."""
    from fastai.layers import MergeLayer, NormType, SequentialEx
    from fastai.vision.all import (
        CategoryBlock,
        ConvLayer,
        DataBlock,
        Flatten,
        GrandparentSplitter,
        ImageBlock,
        LabelSmoothingCrossEntropyFlat,
        Learner,
        Normalize,
        PILImageBW,
        ProgressCallback,
        accuracy,
        get_image_files,
        parent_label,
        set_seed,
    )
    from torch import nn

    def res_block(nf: int) -> nn.Module:
        # fastai 2 has no res_block; this is ember's: conv+BN+ReLU twice (the second BN starts at 0), plus the input.
        return SequentialEx(
            ConvLayer(nf, nf, norm_type=NormType.Batch),
            ConvLayer(nf, nf, norm_type=NormType.BatchZero),
            MergeLayer(dense=False),
        )

    set_seed(seed)
    dblock = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter("training", "testing"),
        get_y=parent_label,
        batch_tfms=Normalize(),
    )
    dls = dblock.dataloaders(root, bs=TRAIN_BS, device="cpu")
    a, b, c = 8 * WIDTH, 16 * WIDTH, 32 * WIDTH
    model = nn.Sequential(  # mnist_resnet(width=2) written with fastai's layers
        ConvLayer(1, a, stride=2),  # (B, a, 14, 14)
        res_block(a),
        ConvLayer(a, b, stride=2),  # (B, b, 7, 7)
        res_block(b),
        ConvLayer(b, c, stride=2),  # (B, c, 4, 4)
        res_block(c),
        ConvLayer(c, b, stride=2),  # (B, b, 2, 2)
        res_block(b),
        ConvLayer(b, len(dls.vocab), stride=2, act_cls=None),  # (B, 10, 1, 1)
        Flatten(),  # (B, 10)
    )
    learn = Learner(dls, model, loss_func=LabelSmoothingCrossEntropyFlat(), metrics=accuracy)
    if epochs:
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(epochs, LR)
    # ember shows no bar at inference; fastai's would print one per predict call and only slow it down.
    learn.remove_cb(ProgressCallback)
    return learn


def fastai_load(path: Path) -> Any:
    """fastai's load_learner, its pickle warning silenced."""
    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_learner(path)


# --- the contenders --------------------------------------------------------------------------------

Predictor = Callable[[list[Path]], torch.Tensor]  # paths -> (N,) predicted class indices


@dataclass
class Contender:
    """One way to predict, its figures over the runs, and what its predictions say."""

    name: str
    library: str
    fn: Predictor | None = None
    vocab: Sequence[str] = ()
    skipped: str | None = None
    failed: str | None = None
    times: list[float] = field(default_factory=list)
    cpu_times: list[float] = field(default_factory=list)
    preds: torch.Tensor | None = None

    @property
    def ok(self) -> bool:
        return self.fn is not None and self.failed is None

    def images_per_s(self, n: int) -> float:
        return n / median(self.times) if self.times else float("nan")


def ember_contenders(learn: Any, loaded: Any) -> list[Contender]:
    vocab = [str(v) for v in learn.dls.vocab]

    def predict_loop(paths: list[Path]) -> torch.Tensor:
        return torch.stack([torch.as_tensor(learn.predict(p)[1]) for p in paths])

    def predict_batch(paths: list[Path]) -> torch.Tensor:
        return torch.as_tensor(learn.predict_batch(paths, bs=64)[1])

    def get_preds(paths: list[Path]) -> torch.Tensor:
        return learn.get_preds(dl=learn.dls.test_dl(paths))[0].argmax(1)

    def loaded_batch(paths: list[Path]) -> torch.Tensor:
        return torch.as_tensor(loaded.predict_batch(paths, bs=64)[1])

    return [
        Contender("ember predict (loop)", "ember", predict_loop, vocab),
        Contender("ember predict_batch(bs=64)", "ember", predict_batch, vocab),
        Contender("ember get_preds(test_dl)", "ember", get_preds, vocab),
        Contender("ember loaded predict_batch", "ember", loaded_batch, [str(v) for v in loaded.dls.vocab]),
    ]


def fastai_contenders(learn: Any, loaded: Any) -> list[Contender]:
    vocab = [str(v) for v in learn.dls.vocab]

    def predict_loop(paths: list[Path]) -> torch.Tensor:
        return torch.stack([torch.as_tensor(learn.predict(p)[1]) for p in paths])

    def get_preds(paths: list[Path]) -> torch.Tensor:
        return learn.get_preds(dl=learn.dls.test_dl(paths))[0].argmax(1)

    def loaded_get_preds(paths: list[Path]) -> torch.Tensor:
        return loaded.get_preds(dl=loaded.dls.test_dl(paths))[0].argmax(1)

    return [
        Contender("fastai predict (loop)", "fastai", predict_loop, vocab),
        Contender("fastai get_preds(test_dl)", "fastai", get_preds, vocab),
        Contender("fastai loaded get_preds", "fastai", loaded_get_preds, [str(v) for v in loaded.dls.vocab]),
    ]


def run_one(c: Contender, paths: list[Path], threads: int, timed: bool = True) -> None:
    """Predict `paths` once with `c`; a failure marks it failed (the others still count)."""
    assert c.fn is not None
    set_threads(threads)  # a library may have changed it; every contender gets the same count
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sw = Stopwatch()
            preds = c.fn(paths)
            wall = sw.lap()
    except Exception as e:
        traceback.print_exc()
        c.failed = f"{type(e).__name__}: {e}"
        return
    if timed:
        c.times.append(wall)
        c.cpu_times.extend(sw.cpu_laps)
        c.preds = preds


def accuracy_of(c: Contender, paths: list[Path]) -> float:
    """Share of `paths` whose predicted label is the parent folder's name."""
    if c.preds is None or len(c.preds) != len(paths):
        return float("nan")
    hits = sum(c.vocab[int(i)] == p.parent.name for i, p in zip(c.preds, paths))
    return hits / len(paths)


# --- export size and load time ---------------------------------------------------------------------

_CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
exec(sys.argv[1])
t1 = time.perf_counter()
exec(sys.argv[2])
t2 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1]))
"""

IMPORTS = {"ember": "import ember.vision\nfrom ember import load_learner", "fastai": "from fastai.vision.all import *"}


@dataclass
class LoadFigures:
    """Export size and load times of one library."""

    library: str
    size: int = 0
    import_s: list[float] = field(default_factory=list)  # in the child
    load_s: list[float] = field(default_factory=list)  # in the child, after the import (judged)
    wall_s: list[float] = field(default_factory=list)  # whole child: interpreter, import and load
    base_wall_s: list[float] = field(default_factory=list)  # whole child: interpreter and import only
    warm_s: list[float] = field(default_factory=list)  # in this process, everything already imported
    error: str | None = None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its bytecode
    return env


def run_child(import_stmt: str, load_stmt: str) -> tuple[float, list[float]]:
    """Wall seconds of a fresh interpreter running the import then the load, and its own [import, load] seconds."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, import_stmt, load_stmt],
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError((proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def measure_loads(fig: LoadFigures, path: Path, loader: Callable[[Path], Any], repeat: int) -> None:
    """Fresh-process loads (one untimed first, then `repeat`, alternating with import-only children) and
    `repeat` in-process loads."""
    fig.size = path.stat().st_size
    load_stmt = f"learn = load_learner({str(path)!r})"
    try:
        for i in range(repeat + 1):
            wall, (imp, load) = run_child(IMPORTS[fig.library], load_stmt)
            base_wall, _ = run_child(IMPORTS[fig.library], "pass")
            if i == 0:
                continue  # warms the disk cache
            fig.wall_s.append(wall)
            fig.import_s.append(imp)
            fig.load_s.append(load)
            fig.base_wall_s.append(base_wall)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loader(path)  # first in-process load: lazy imports, untimed
            for _ in range(repeat):
                t0 = time.perf_counter()
                loader(path)
                fig.warm_s.append(time.perf_counter() - t0)
    except Exception as e:
        traceback.print_exc()
        fig.error = f"{type(e).__name__}: {e}"


# --- the script ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=None, help="images to predict (default 1000; --quick: 64)")
    p.add_argument("--runs", type=int, default=None, help="timed runs of every contender (default 3; --quick: 1)")
    p.add_argument("--load-runs", type=int, default=None, help="timed loads of each file (default 5; --quick: 2)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs before predicting (default 1; --quick: 0)")
    p.add_argument("--quick", action="store_true", help="a smoke test: 64 images, 1 run, no training")
    p.add_argument("--no-fastai", action="store_true", help="leave fastai out even when it is installed")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: all CPUs)")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    args.n = args.n or (64 if args.quick else 1000)
    args.runs = args.runs or (1 if args.quick else 3)
    args.load_runs = args.load_runs or (2 if args.quick else 5)
    if args.epochs is None:
        args.epochs = 0 if args.quick else 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    root, paths = image_files(args.n)
    fastai_note = None
    if args.no_fastai:
        fastai_note = "skipped (--no-fastai)"
    elif package_version("fastai") is None:
        fastai_note = "not installed (make bench-env)"

    print("== environment")
    print_env(env_report("cpu"))
    print(f"{'data':>13}: {args.n} PNGs of {root / 'testing'}")
    print(f"{'model':>13}: mnist_resnet(width={WIDTH}), trained {args.epochs} epoch(s) at bs={TRAIN_BS}")
    print(f"{'runs':>13}: {args.runs} timed run(s) per contender, {args.load_runs} load(s) per file")
    if fastai_note:
        print(f"{'fastai':>13}: {fastai_note}")

    tmp = Path(tempfile.mkdtemp(prefix="ember_inference_"))
    contenders: list[Contender] = []
    loads: list[LoadFigures] = []
    sink = io.StringIO()

    print("\n== building and exporting: ember", flush=True)
    learn = build_ember(root, args.epochs, args.seed)
    ember_file = learn.export(tmp / "x.ember", verbose=False)
    import ember

    loaded = ember.load_learner(ember_file)
    contenders += ember_contenders(learn, loaded)
    loads.append(LoadFigures("ember"))

    fastai_file = None
    if fastai_note is None:
        print("== building and exporting: fastai", flush=True)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                flearn = build_fastai(root, args.epochs, args.seed)
                fastai_file = tmp / "x.pkl"
                flearn.export(fastai_file)
                floaded = fastai_load(fastai_file)
            contenders += fastai_contenders(flearn, floaded)
            loads.append(LoadFigures("fastai"))
        except Exception as e:
            traceback.print_exc()
            fastai_note = f"failed: {type(e).__name__}: {e}"

    # Warm-up: each contender once on a few images, untimed (first-call costs: kernels, lazy imports, workers).
    print("== warm-up", flush=True)
    for c in contenders:
        run_one(c, paths[:16], threads, timed=False)

    for r, order in enumerate(rotations(contenders, args.runs)):
        print(f"== run {r + 1}/{args.runs}", flush=True)
        for c in order:
            if c.ok:
                run_one(c, paths, threads)

    print("== export size and load time", flush=True)
    files = {"ember": (ember_file, ember.load_learner), "fastai": (fastai_file, fastai_load)}
    for fig in loads:
        path, loader = files[fig.library]
        measure_loads(fig, path, loader, args.load_runs)

    report(contenders, loads, args, fastai_note, paths)
    return 1 if any(c.failed for c in contenders) or any(f.error for f in loads) else 0


def report(
    contenders: list[Contender],
    loads: list[LoadFigures],
    args: argparse.Namespace,
    fastai_note: str | None,
    paths: list[Path],
) -> None:
    n = args.n
    rows = []
    for c in contenders:
        if not c.ok:
            rows.append([c.name, "–", "–", "–", "–", "failed"])
            continue
        s = median(c.times)
        rows.append(
            [
                c.name,
                f"{c.images_per_s(n):.0f}",
                fmt_seconds(s),
                fmt_seconds(median(c.cpu_times)),
                f"{accuracy_of(c, paths):.4f}",
                "",
            ]
        )
    if fastai_note:
        rows.append(["fastai", "–", "–", "–", "–", fastai_note])
    print()
    title = f"Inference on {n} PNGs (medians of {args.runs} run(s); threads={torch.get_num_threads()})"
    print_table(title, ["contender", "images/s", "s", "cpu s", "accuracy", "note"], rows)
    for c in contenders:
        if c.failed:
            print(f"{c.name}: {c.failed}")

    by_name = {c.name: c for c in contenders}

    def ips(name: str) -> float:
        c = by_name.get(name)
        return c.images_per_s(n) if c is not None and c.ok else float("nan")

    batch, floop = ips("ember predict_batch(bs=64)"), ips("fastai predict (loop)")
    verdict = "–"
    if batch == batch and floop == floop:
        verdict = "goal met" if batch / floop >= GOAL_BATCH else "goal not met"
    judged = fmt_ratio(batch, floop)
    print(f"ember predict_batch / fastai predict loop (images/s): {judged}   goal >= {GOAL_BATCH}: {verdict}")
    for a, b in (
        ("ember predict_batch(bs=64)", "ember predict (loop)"),
        ("ember predict (loop)", "fastai predict (loop)"),
        ("ember get_preds(test_dl)", "fastai get_preds(test_dl)"),
        ("ember predict_batch(bs=64)", "fastai get_preds(test_dl)"),
        ("ember loaded predict_batch", "fastai loaded get_preds"),
    ):
        print(f"{a} / {b} (images/s): {fmt_ratio(ips(a), ips(b))}")

    rows = []
    for f in loads:
        if f.error:
            rows.append([f.library, "–", "–", "–", "–", "–", f.error])
            continue
        wall_diff = [w - b for w, b in zip(f.wall_s, f.base_wall_s)]
        rows.append(
            [
                f.library,
                f"{f.size / 1e3:.1f}",
                fmt_seconds(median(f.load_s)),
                fmt_seconds(median(wall_diff)),
                fmt_seconds(median(f.import_s)),
                fmt_seconds(median(f.wall_s)),
                fmt_seconds(median(f.warm_s), 4),
            ]
        )
    print()
    print_table(
        f"Export and load_learner (medians of {args.load_runs})",
        [
            "library",
            "file KB",
            "load s (fresh, after import)",
            "load s (wall − import-only wall)",
            "import s",
            "process wall s",
            "load s (in-process, warm)",
        ],
        rows,
    )
    figs = {f.library: f for f in loads if not f.error}
    if "ember" in figs and "fastai" in figs:
        e, fa = figs["ember"], figs["fastai"]
        ratio = median(e.load_s) / median(fa.load_s)
        verdict = "goal met" if ratio <= GOAL_LOAD else "goal not met"
        print(f"ember / fastai load s (fresh process, after import): {ratio:.3f}   goal <= {GOAL_LOAD}: {verdict}")
        print(f"ember / fastai load s (in-process, warm):             {fmt_ratio(median(e.warm_s), median(fa.warm_s))}")
        print(f"ember / fastai file size:                             {fmt_ratio(e.size, fa.size)}")


if __name__ == "__main__":
    sys.exit(main())
