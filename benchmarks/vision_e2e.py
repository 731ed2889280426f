"""Vision end to end: the demo's PNG folder and model trained by ember, by fastai and by plain PyTorch + torchvision.

Every contender reads MNIST-5k from ``ember.data.builtin.mnist_5k()`` (a folder of 28x28 grey PNGs:
``training/<digit>/*.png``, 4,000 images, and ``testing/<digit>/*.png``, 1,000), pads each training
image by 2 pixels with zeros and crops 28x28 at a random place (validation: the centre, i.e. the image
itself), normalizes with statistics taken from a batch, and trains the demo's network
(``mnist_resnet(width=2)``, the same initial weights for all) with AdamW and a one-cycle schedule
(``lr_max=1e-2``, batches of 128) for `--epochs` epochs, validating after each.

* ``ember``: ``DataBlock(ImageBlock(mode="L"), CategoryBlock, ...).dataloaders(path, bs=128)`` and
  ``Learner(...).fit_one_cycle``, with ember's defaults (decoded images are cached in memory when the
  loaders are built; no worker processes once cached).
* ``fastai``: the same ``DataBlock`` written with fastai's classes and ``fastai.learner.Learner``, with
  fastai's defaults (worker processes: ``min(16, cpus)``).
* ``torch``: ``torchvision.datasets.ImageFolder`` with per-item transforms, a ``DataLoader`` with
  `--torch-workers` persistent workers, and a hand-written loop with ``torch.optim.AdamW(fused=True)``
  and ``OneCycleLR``.

A second part times the image pipeline alone (decode, item transforms, collate, move to the device,
batch transforms; no model): images per second over one pass of each training loader.

Judged figures: ember's steady seconds per epoch over fastai's (goal <= 0.5, with accuracy no worse)
and ember's steady pipeline throughput over fastai's (goal >= 2).

    python benchmarks/vision_e2e.py --quick                 # smoke test on a tenth of the images
    .bench-venv/bin/python benchmarks/vision_e2e.py   # the full benchmark
"""

from __future__ import annotations

import argparse
import copy
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    ContenderStatus,
    EpochTimes,
    Stopwatch,
    adamw_one_cycle,
    cpu_count,
    env_report,
    fastai_skip_reason,
    fit_plain,
    fmt_ratio,
    fmt_seconds,
    goal_verdict,
    median,
    print_env,
    print_table,
    rotations,
    set_threads,
    sync,
    valid_accuracy,
)
from torch import nn

EPOCH_GOAL = 0.5  # ember's steady s/epoch over fastai's, at most
PIPE_GOAL = 2.0  # ember's steady images/s over fastai's, at least
ACC_TOL = 0.005  # "accuracy no worse": ember's median at most half a point below fastai's (1,000 images: 5 digits)
CONTENDERS = ("ember", "fastai", "torch")
PAD, SIZE = 2, 28


# --- settings shared by every contender ------------------------------------------------------------


@dataclass
class Config:
    """What every contender gets: the folder, the subset, the batch size, the schedule and the device."""

    path: Path
    every: int  # keep every `every`-th image file (1: all)
    bs: int
    lr: float
    epochs: int
    seed: int
    device: torch.device
    torch_workers: int


class EveryNth:
    """``get_items``: the image files under a folder, every `n`-th one (sorted, so each split keeps every class).

    A module-level class (not a lambda) so that it pickles for worker processes.
    """

    def __init__(self, n: int, get_files: Callable[[Path], Iterable[Path]]) -> None:
        self.n, self.get_files = n, get_files

    def __call__(self, path: Path) -> list[Path]:
        files = sorted(self.get_files(path))
        return files[:: self.n]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (each library draws from some of them)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model() -> nn.Module:
    """The demo's network: ember's ``mnist_resnet(width=2)``, a plain ``nn.Sequential`` of torch modules."""
    from ember.vision.models.mnist import mnist_resnet

    return mnist_resnet(n_out=10, width=2)


@dataclass
class RunResult:
    """One training run: seconds to build the loaders, each epoch's seconds, and the final accuracy."""

    build: float  # building the loaders from the folder (ember: includes decoding every image into its cache)
    epochs: list[float]  # wall seconds per epoch, training + validation
    accuracy: float


def fit_learner(learn: Any, callback: type, cfg: Config, build: float) -> RunResult:
    """``fit_one_cycle`` with an epoch timer (`callback`: the Learner's Callback class), then a validation pass."""
    timer = EpochTimes(cfg.device)
    learn.fit_one_cycle(cfg.epochs, cfg.lr, cbs=[timer.callback(callback)])
    return RunResult(build, timer.times, valid_accuracy(learn))


# --- ember -----------------------------------------------------------------------------------------


def ember_dataloaders(cfg: Config, **kwargs: Any) -> Any:
    """The demo's DataLoaders (``kwargs`` go to ``DataBlock.dataloaders``, e.g. ``cache=False``)."""
    return ember_datablock(cfg).dataloaders(cfg.path, bs=cfg.bs, device=cfg.device, **kwargs)


def ember_datablock(cfg: Config) -> Any:
    """``DataBlock(ImageBlock(mode="L"), CategoryBlock, ...)`` exactly as the demo writes it."""
    from ember.data.block import CategoryBlock, DataBlock
    from ember.data.items import GrandparentSplitter, get_image_files, parent_label
    from ember.vision.augment import Normalize, rand_pad
    from ember.vision.core import ImageBlock

    return DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=EveryNth(cfg.every, get_image_files),
        splitter=GrandparentSplitter(train_name="training", valid_name="testing"),
        get_y=parent_label,
        item_tfms=rand_pad(PAD, SIZE),
        batch_tfms=[Normalize()],
    )


def run_ember(model: nn.Module, cfg: Config) -> RunResult:
    from ember.learner import Learner
    from ember.learner.callback import Callback
    from ember.metrics import accuracy

    watch = Stopwatch()
    dls = ember_dataloaders(cfg)
    build = watch.lap()
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    return fit_learner(learn, Callback, cfg, build)


# --- fastai ----------------------------------------------------------------------------------------


def fastai_dataloaders(cfg: Config) -> Any:
    """The same DataBlock written with fastai's classes, with fastai's default loader settings."""
    from fastai.vision.all import (
        CategoryBlock,
        CropPad,
        DataBlock,
        GrandparentSplitter,
        ImageBlock,
        Normalize,
        PadMode,
        PILImageBW,
        RandomCrop,
        get_image_files,
        parent_label,
    )

    dblock = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
        get_items=EveryNth(cfg.every, get_image_files),
        splitter=GrandparentSplitter(train_name="training", valid_name="testing"),
        get_y=parent_label,
        # pad by 2 with zeros, then a random 28x28 crop in training (the centre, i.e. no change, in validation)
        item_tfms=[CropPad(SIZE + 2 * PAD, pad_mode=PadMode.Zeros), RandomCrop(SIZE)],
        batch_tfms=[Normalize()],  # statistics from one training batch, at set-up
    )
    return dblock.dataloaders(cfg.path, bs=cfg.bs, device=cfg.device)


def fastai_default_workers() -> int | str:
    """What fastai's DataLoader picks for ``num_workers`` when it is not given (for the report)."""
    try:
        from fastai.data.core import TfmdDL  # what DataBlock.dataloaders builds

        # `.num_workers` of a fastai loader is per-worker bookkeeping; the process count is on `fake_l`.
        return TfmdDL(list(range(4)), bs=2).fake_l.num_workers
    except Exception as e:  # only for the report: never fail on it
        return f"unknown ({type(e).__name__})"


def run_fastai(model: nn.Module, cfg: Config) -> RunResult:
    from fastai.vision.all import Callback as FastaiCallback
    from fastai.vision.all import Learner as FastaiLearner
    from fastai.vision.all import accuracy as fastai_accuracy

    watch = Stopwatch()
    dls = fastai_dataloaders(cfg)
    build = watch.lap()
    learn = FastaiLearner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=fastai_accuracy)
    return fit_learner(learn, FastaiCallback, cfg, build)


# --- plain PyTorch + torchvision -------------------------------------------------------------------


def torch_loaders(cfg: Config) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    """ImageFolder datasets with per-item transforms, the statistics from one batch, and DataLoaders."""
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    base = [transforms.Grayscale(num_output_channels=1)]
    plain = transforms.Compose([*base, transforms.ToTensor()])
    stats_ds = datasets.ImageFolder(cfg.path / "training", transform=plain)
    train_idx = list(range(0, len(stats_ds), cfg.every))
    # Normalization statistics from one batch of training images (as ember's and fastai's Normalize()).
    g = torch.Generator().manual_seed(cfg.seed)
    first = torch.randperm(len(train_idx), generator=g)[: cfg.bs].tolist()
    xb = torch.stack([stats_ds[train_idx[i]][0] for i in first])  # (bs, 1, 28, 28)
    mean, std = xb.mean().item(), xb.std().item()
    norm = transforms.Normalize([mean], [std])
    train_tfm = transforms.Compose(
        [*base, transforms.RandomCrop(SIZE, padding=PAD, fill=0), transforms.ToTensor(), norm]
    )
    valid_tfm = transforms.Compose([*base, transforms.ToTensor(), norm])
    train_ds = datasets.ImageFolder(cfg.path / "training", transform=train_tfm)
    valid_ds = datasets.ImageFolder(cfg.path / "testing", transform=valid_tfm)
    if cfg.every > 1:
        train_ds = Subset(train_ds, train_idx)
        valid_ds = Subset(valid_ds, list(range(0, len(valid_ds), cfg.every)))
    nw = cfg.torch_workers
    common: dict[str, Any] = {"num_workers": nw, "pin_memory": cfg.device.type == "cuda"}
    if nw > 0:
        common["persistent_workers"] = True
    train_dl = DataLoader(
        train_ds,
        batch_size=cfg.bs,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed),
        **common,
    )
    valid_dl = DataLoader(valid_ds, batch_size=cfg.bs, shuffle=False, **common)
    return train_dl, valid_dl


def run_torch(model: nn.Module, cfg: Config) -> RunResult:
    """An idiomatic loop: AdamW (fused) + OneCycleLR, losses summed as tensors, one host sync per epoch."""
    watch = Stopwatch()
    train_dl, valid_dl = torch_loaders(cfg)
    build = watch.lap()
    model.to(cfg.device)
    total_steps = cfg.epochs * len(train_dl)
    try:
        opt, sched = adamw_one_cycle(model, cfg.lr, total_steps, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt, sched = adamw_one_cycle(model, cfg.lr, total_steps, foreach=True)
    times, _, acc = fit_plain(model, train_dl, valid_dl, opt, sched, cfg.epochs, cfg.device)
    return RunResult(build, times, acc)


# --- the image pipeline alone ----------------------------------------------------------------------


def _count(batches: Iterator[Any], device: torch.device) -> int:
    """Consume one pass of a loader; returns the number of images delivered."""
    n = 0
    for batch in batches:
        n += int(batch[0].shape[0])
    sync(device)
    return n


def pipe_ember(cfg: Config) -> dict[str, float]:
    """ember: a cold first pass (decode into the cache + one pass) and a steady pass from the cache;
    also a pass with the cache turned off (decoding every epoch, with ember's default workers)."""
    from ember.data.loaders import DataLoaders

    out: dict[str, float] = {}
    # Cold: what the first epoch needs, from nothing: encode the training images into the cache (ember's
    # thread pool, as DataBlock.dataloaders does), build the loaders, one pass.
    dblock = ember_datablock(cfg)
    t0 = time.perf_counter()
    dsets = dblock.datasets(cfg.path)
    dsets.fill_cache(idxs=dsets.splits[0], progress=False)
    dls = DataLoaders.from_dsets(dsets, bs=cfg.bs, device=cfg.device, batch_tfms=dblock.batch_tfms)
    n = _count(iter(dls.train), cfg.device)
    out["first"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = _count(iter(dls.train), cfg.device)
    out["steady"] = n / (time.perf_counter() - t0)
    # No cache: every pass decodes (num_workers=None: ember's default for an uncached dataset).
    dls = ember_dataloaders(cfg, cache=False)
    t0 = time.perf_counter()
    n = _count(iter(dls.train), cfg.device)
    out["nocache_first"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = _count(iter(dls.train), cfg.device)
    out["nocache_steady"] = n / (time.perf_counter() - t0)
    return out


def pipe_fastai(cfg: Config) -> dict[str, float]:
    dls = fastai_dataloaders(cfg)
    out = {}
    for key in ("first", "steady"):
        t0 = time.perf_counter()
        n = _count(iter(dls.train), cfg.device)
        out[key] = n / (time.perf_counter() - t0)
    return out


def pipe_torch(cfg: Config) -> dict[str, float]:
    train_dl, _ = torch_loaders(cfg)
    out = {}
    for key in ("first", "steady"):  # the first pass also starts the (persistent) workers
        t0 = time.perf_counter()
        n = _count(((xb.to(cfg.device, non_blocking=True), yb) for xb, yb in train_dl), cfg.device)
        out[key] = n / (time.perf_counter() - t0)
    return out


# --- the harness -----------------------------------------------------------------------------------

TRAINERS: dict[str, Callable[[nn.Module, Config], RunResult]] = {
    "ember": run_ember,
    "fastai": run_fastai,
    "torch": run_torch,
}
PIPES: dict[str, Callable[[Config], dict[str, float]]] = {
    "ember": pipe_ember,
    "fastai": pipe_fastai,
    "torch": pipe_torch,
}


@dataclass
class Tally(ContenderStatus):
    """Every figure one contender produced, or why it did not run."""

    builds: list[float] = field(default_factory=list)
    first_epochs: list[float] = field(default_factory=list)
    steady_epochs: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    pipes: dict[str, list[float]] = field(default_factory=dict)

    def add(self, r: RunResult) -> None:
        self.builds.append(r.build)
        self.first_epochs.append(r.epochs[0] if r.epochs else float("nan"))
        self.steady_epochs += r.epochs[1:]
        self.accuracies.append(r.accuracy)

    @property
    def steady(self) -> float:
        # With a single epoch there is no steady one: fall back on the first.
        return median(self.steady_epochs) if self.steady_epochs else median(self.first_epochs)

    def pipe(self, key: str) -> float:
        return median(self.pipes.get(key, []))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=None, help="timed runs of every contender (default 3; --quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 3; --quick: 2)")
    p.add_argument("--quick", action="store_true", help="a smoke test on every 10th image (400 train, 100 valid)")
    p.add_argument("--no-fastai", action="store_true", help="leave fastai out even when it is installed")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: all CPUs)")
    p.add_argument(
        "--torch-workers", type=int, default=None, help="DataLoader workers of the torch contender (default: CPUs)"
    )
    p.add_argument("--no-pipeline", action="store_true", help="skip the pipeline-throughput part")
    p.add_argument("--no-train", action="store_true", help="skip the training part")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--bs", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2, help="lr_max of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.epochs = args.epochs or (2 if args.quick else 3)
    if args.torch_workers is None:
        args.torch_workers = cpu_count()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    from ember.data.builtin import mnist_5k

    cfg = Config(
        path=Path(mnist_5k()),
        every=10 if args.quick else 1,
        bs=args.bs,
        lr=args.lr,
        epochs=args.epochs,
        seed=args.seed,
        device=torch.device(args.device),
        torch_workers=args.torch_workers,
    )
    tallies = {name: Tally(name) for name in CONTENDERS}
    tallies["fastai"].skipped = fastai_skip_reason(args.no_fastai)
    active = [n for n, t in tallies.items() if t.ok]

    n_train = len(EveryNth(cfg.every, lambda p: sorted(p.rglob("*.png")))(cfg.path / "training"))
    n_valid = len(EveryNth(cfg.every, lambda p: sorted(p.rglob("*.png")))(cfg.path / "testing"))
    print("== environment")
    print_env(env_report(args.device))
    print(f"{'data':>13}: {cfg.path} (PNG folder); {n_train} train, {n_valid} valid, bs={cfg.bs}")
    print(f"{'model':>13}: mnist_resnet(width=2), {sum(p.numel() for p in make_model().parameters()):,} parameters")
    print(f"{'schedule':>13}: fit_one_cycle({cfg.epochs}, {cfg.lr}), {args.runs} run(s), contenders: {active}")
    workers = fastai_default_workers() if tallies["fastai"].ok else "–"
    print(f"{'workers':>13}: ember default (0 once cached), fastai default ({workers}), torch {cfg.torch_workers}")
    for t in tallies.values():
        if t.skipped:
            print(f"{t.name:>13}: {t.skipped}")

    seed_everything(args.seed)
    init = copy.deepcopy(make_model().state_dict())

    if not args.no_train:
        # Warm-up: one short epoch each on a subset, untimed (lazy imports, allocator, first kernels).
        warm = copy.copy(cfg)
        warm.every, warm.epochs = max(cfg.every, 20), 1
        for name in active:
            print(f"\n== warm-up: {name}", flush=True)
            tallies[name].guarded(lambda name=name: train_once(name, init, warm, threads))
        for r, order in enumerate(rotations(active, args.runs)):
            for name in order:
                if tallies[name].ok:
                    print(f"\n== training run {r + 1}/{args.runs}: {name}", flush=True)
                    res = tallies[name].guarded(lambda name=name: train_once(name, init, cfg, threads))
                    if res is not None:
                        tallies[name].add(res)

    if not args.no_pipeline:
        for r, order in enumerate(rotations(active, args.runs)):
            for name in order:
                if tallies[name].ok:
                    print(f"== pipeline run {r + 1}/{args.runs}: {name}", flush=True)
                    set_threads(threads)
                    seed_everything(args.seed)
                    res = tallies[name].guarded(lambda name=name: PIPES[name](cfg))
                    for key, v in (res or {}).items():
                        tallies[name].pipes.setdefault(key, []).append(v)

    report(tallies, args)
    return 1 if any(t.failed for t in tallies.values()) else 0


def train_once(name: str, init: dict[str, torch.Tensor], cfg: Config, threads: int) -> RunResult:
    """One training run of one contender from the shared initial weights."""
    set_threads(threads)  # a library may have changed it; every contender gets the same count
    seed_everything(cfg.seed)
    model = make_model()
    model.load_state_dict(copy.deepcopy(init))
    return TRAINERS[name](model, cfg)


def report(tallies: dict[str, Tally], args: argparse.Namespace) -> None:
    notes = [f"{t.name}: {t.failed or t.skipped}" for t in tallies.values() if not t.ok]
    if not args.no_train:
        rows = []
        for t in tallies.values():
            if not t.ok:
                rows.append([t.name, "–", "–", "–", "–", "–", t.short])
                continue
            rows.append(
                [
                    t.name,
                    fmt_seconds(median(t.builds)),
                    fmt_seconds(median(t.first_epochs)),
                    fmt_seconds(t.steady),
                    fmt_seconds(median(t.builds) + median(t.first_epochs)),
                    f"{median(t.accuracies):.4f}",
                    "",
                ]
            )
        print()
        title = f"Vision end to end: MNIST-5k PNGs, mnist_resnet(width=2) ({args.epochs} epochs x {args.runs} runs)"
        cols = ["contender", "build dls s", "first epoch s", "steady s/epoch", "build+first s", "valid acc", "note"]
        print_table(title, cols, rows)

    if not args.no_pipeline:
        rows = []
        for t in tallies.values():
            if not t.ok:
                rows.append([t.name, "–", "–", t.short])
                continue
            if t.name == "ember":
                rows.append(["ember (cache)", f"{t.pipe('first'):.0f}", f"{t.pipe('steady'):.0f}", "first: cold cache"])
                rows.append(
                    [
                        "ember (cache=False)",
                        f"{t.pipe('nocache_first'):.0f}",
                        f"{t.pipe('nocache_steady'):.0f}",
                        "decodes every pass",
                    ]
                )
            else:
                rows.append([t.name, f"{t.pipe('first'):.0f}", f"{t.pipe('steady'):.0f}", ""])
        print()
        print_table(
            f"Image pipeline alone: images/s over one training pass ({args.runs} runs; medians)",
            ["pipeline", "first pass img/s", "steady img/s", "note"],
            rows,
        )
    for note in notes:
        print(note)

    em, fa = tallies["ember"], tallies["fastai"]
    nan = float("nan")
    if not args.no_train:
        e, f = (em.steady if em.ok else nan), (fa.steady if fa.ok else nan)
        acc_ok = median(em.accuracies) >= median(fa.accuracies) - ACC_TOL
        verdict = goal_verdict(e, f, EPOCH_GOAL, condition=f" with accuracy no worse (-{ACC_TOL})", also=acc_ok)
        print(f"ember/fastai steady s/epoch: {fmt_ratio(e, f)}{verdict}")
        e1, f1 = (median(em.first_epochs) if em.ok else nan), (median(fa.first_epochs) if fa.ok else nan)
        print(f"ember/fastai first epoch s : {fmt_ratio(e1, f1)}")
        eb = median(em.builds) + e1 if em.ok else nan
        fb = median(fa.builds) + f1 if fa.ok else nan
        print(f"ember/fastai build+first s : {fmt_ratio(eb, fb)}")
        t = tallies["torch"]
        print(f"ember/torch  steady s/epoch: {fmt_ratio(e, t.steady if t.ok else nan)}")
        acc = {n: f"{median(x.accuracies):.4f}" if x.ok else "–" for n, x in tallies.items()}
        print(f"valid accuracy: ember {acc['ember']}, fastai {acc['fastai']}, torch {acc['torch']}")
    if not args.no_pipeline:
        e, f = (em.pipe("steady") if em.ok else nan), (fa.pipe("steady") if fa.ok else nan)
        verdict = goal_verdict(e, f, PIPE_GOAL, at_least=True)
        print(f"ember/fastai steady img/s  : {fmt_ratio(e, f)}{verdict}")
        e1, f1 = (em.pipe("first") if em.ok else nan), (fa.pipe("first") if fa.ok else nan)
        print(f"ember/fastai first pass img/s (ember from a cold cache): {fmt_ratio(e1, f1)}")
        t = tallies["torch"]
        print(f"ember/torch  steady img/s  : {fmt_ratio(e, t.pipe('steady') if t.ok else nan)}")


if __name__ == "__main__":
    sys.exit(main())
