"""Training-loop overhead: ember's Learner against a hand-written PyTorch loop and against fastai.

All contenders train the same small residual CNN (the lesson-7 MNIST model: five stride-2
conv+BN+ReLU layers, 1→8→16→32→16→10 channels, with a two-conv residual block after each of the
first four) from the same initial weights, on the same preloaded tensors, with AdamW and a one-cycle
schedule over the same number of epochs, validating (loss and accuracy) after every epoch. The
contenders run in one process, in a rotating order, `--runs` times; each figure is a median.

Judged figure: ``ember/plain`` seconds per epoch (goal: at most 1.03).

    python benchmarks/overhead.py                 # main venv: fastai's row says "not installed"
    .bench-venv/bin/python benchmarks/overhead.py # with fastai (make bench-env)
    python benchmarks/overhead.py --quick         # a smoke test on a tiny subset
"""

from __future__ import annotations

import argparse
import copy
import functools
import random
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from _common import (
    ContenderStatus,
    EpochTimes,
    Stopwatch,
    adamw_one_cycle,
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
    valid_accuracy,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

GOAL_RATIO = 1.03
CONTENDERS = ("plain", "ember", "fastai")


# --- the model -------------------------------------------------------------------------------------


def conv_bn_relu(ni: int, nf: int, stride: int = 1) -> list[nn.Module]:
    """A 3x3 convolution (no bias: the BatchNorm that follows has one), BatchNorm and ReLU."""
    return [nn.Conv2d(ni, nf, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU()]


class Residual(nn.Module):
    """``x + body(x)`` where the body is two shape-preserving conv+BN+ReLU layers."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*conv_bn_relu(nf, nf), *conv_bn_relu(nf, nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, nf, H, W) -> (B, nf, H, W)
        return x + self.body(x)


def make_model() -> nn.Sequential:
    """The residual MNIST CNN: (B, 1, 28, 28) images -> (B, 10) logits."""
    layers: list[nn.Module] = []
    for ni, nf in ((1, 8), (8, 16), (16, 32), (32, 16)):  # 28 -> 14 -> 7 -> 4 -> 2 pixels
        layers += [*conv_bn_relu(ni, nf, stride=2), Residual(nf)]
    layers += [*conv_bn_relu(16, 10, stride=2), nn.Flatten()]  # (B, 10, 1, 1) -> (B, 10)
    return nn.Sequential(*layers)


# --- the data --------------------------------------------------------------------------------------


@dataclass
class Data:
    """Preloaded, normalized tensors and the loader settings every contender shares."""

    x_train: torch.Tensor  # (N, 1, 28, 28) float32
    y_train: torch.Tensor  # (N,) int64
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    bs: int
    seed: int
    device: torch.device
    source: str

    def subset(self, n_train: int, n_valid: int) -> Data:
        """`n_train` training and `n_valid` validation samples drawn at random (seeded), same settings.

        Drawn rather than sliced: the built-in sets are stored sorted by label.
        """
        g = torch.Generator().manual_seed(self.seed)
        t = torch.randperm(len(self.y_train), generator=g)[:n_train]
        v = torch.randperm(len(self.y_valid), generator=g)[:n_valid]
        return Data(
            self.x_train[t],
            self.y_train[t],
            self.x_valid[v],
            self.y_valid[v],
            self.bs,
            self.seed,
            self.device,
            self.source,
        )

    def torch_loaders(self) -> tuple[DataLoader, DataLoader]:
        """Torch DataLoaders: shuffled training batches from a freshly seeded generator, so every
        contender that uses them sees the same batches in the same order."""
        gen = torch.Generator().manual_seed(self.seed)
        train = DataLoader(TensorDataset(self.x_train, self.y_train), batch_size=self.bs, shuffle=True, generator=gen)
        valid = DataLoader(TensorDataset(self.x_valid, self.y_valid), batch_size=self.bs * 2, shuffle=False)
        return train, valid


def load_data(bs: int, seed: int, device: torch.device) -> Data:
    """MNIST-5k from ember's built-in datasets, or random tensors of the same shape when it is missing."""
    try:
        from ember.data.builtin import mnist_5k_arrays

        images, labels, is_train = mnist_5k_arrays()
        images = torch.as_tensor(images)  # (5000, 28, 28) uint8
        labels = torch.as_tensor(labels).long()
        is_train = torch.as_tensor(is_train).bool()
        source = "ember.data.builtin.mnist_5k_arrays()"
    except ImportError as e:
        warnings.warn(
            f"ember.data.builtin.mnist_5k_arrays is not available ({e}); using random tensors of the same shape. "
            "Timings stay meaningful; accuracies do not.",
            stacklevel=2,
        )
        g = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (5000, 28, 28), dtype=torch.uint8, generator=g)
        labels = torch.randint(0, 10, (5000,), generator=g)
        is_train = torch.arange(5000) < 4000
        source = "random tensors (MNIST-5k missing)"
    x = images.float().div_(255).unsqueeze(1)  # (N, 1, 28, 28)
    mean, std = x[is_train].mean(), x[is_train].std()
    x = (x - mean) / std
    return Data(x[is_train], labels[is_train], x[~is_train], labels[~is_train], bs, seed, device, source)


# --- the contenders --------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One contender's figures from one training run."""

    epoch_times: list[float]  # wall seconds, training + validation, one per epoch
    cpu_epoch_times: list[float]  # CPU seconds of this process over the same spans
    fit_time: float  # seconds for the whole call, set-up included
    accuracy: float  # final validation accuracy


Runner = Callable[[nn.Module, Data, int, float], RunResult]

#: Which AdamW kernel the plain loop uses: torch's default (what `AdamW(params)` picks: a per-tensor
#: loop on the CPU), or the foreach/fused implementation asked for by name (ember asks for fused).
PLAIN_OPT = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def run_plain(model: nn.Module, data: Data, epochs: int, lr_max: float, opt_impl: str = "default") -> RunResult:
    """An idiomatic hand-written loop: AdamW + OneCycleLR, no host sync per batch.

    Args:
        opt_impl: a key of :data:`PLAIN_OPT`.
    """
    fit_watch = Stopwatch()
    model.to(data.device)
    train_dl, valid_dl = data.torch_loaders()
    opt, sched = adamw_one_cycle(model, lr_max, epochs * len(train_dl), **PLAIN_OPT[opt_impl])
    epoch_times, cpu_epoch_times, accuracy = fit_plain(model, train_dl, valid_dl, opt, sched, epochs, data.device)
    return RunResult(epoch_times, cpu_epoch_times, fit_watch.total(), accuracy)


def _fit_learner(learn: Any, callback: type, data: Data, epochs: int, lr_max: float, fit_watch: Stopwatch) -> RunResult:
    """``fit_one_cycle`` with an epoch timer (`callback`: the Learner's Callback class), then a validation pass."""
    timer = EpochTimes(data.device)
    learn.fit_one_cycle(epochs, lr_max, cbs=[timer.callback(callback)])
    fit_time = fit_watch.total()
    return RunResult(timer.times, timer.cpu_times, fit_time, valid_accuracy(learn))


def make_ember_runner() -> Runner:
    """The ember contender; raises ImportError while ember's Learner is not there."""
    from ember.data import DataLoaders
    from ember.learner import Learner
    from ember.learner.callback import Callback
    from ember.metrics import accuracy

    def run_ember(model: nn.Module, data: Data, epochs: int, lr_max: float) -> RunResult:
        fit_watch = Stopwatch()
        train_dl, valid_dl = data.torch_loaders()
        dls = DataLoaders(train_dl, valid_dl, device=data.device)
        learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
        return _fit_learner(learn, Callback, data, epochs, lr_max, fit_watch)

    return run_ember


def make_fastai_runner(loader: str) -> Runner:
    """The fastai contender; raises ImportError when fastai is not installed.

    Args:
        loader: ``"fastai"`` builds fastai's own loaders (``TfmdDL`` over the same TensorDatasets,
            no workers, no dropped last batch: what a fastai user gets from ``DataLoaders.from_dsets``,
            with the settings made equal to the others); ``"torch"`` hands fastai the very torch
            DataLoaders the other contenders use (same batches, same order), which isolates the
            cost of fastai's Learner from that of its data pipeline.
    """
    # The import a fastai user writes; it also adds fit_one_cycle and the progress bar to Learner.
    from fastai.vision.all import Callback as FastaiCallback
    from fastai.vision.all import DataLoaders as FastaiDataLoaders
    from fastai.vision.all import Learner as FastaiLearner
    from fastai.vision.all import TfmdDL
    from fastai.vision.all import accuracy as fastai_accuracy

    def build_dls(data: Data) -> Any:
        if loader == "torch":
            if data.device.type != "cpu":
                raise ValueError("--fastai-data torch works on the CPU only (fastai moves no torch-loader batch)")
            return FastaiDataLoaders(*data.torch_loaders())
        # fastai's loaders shuffle with their own Python RNG, seeded here for repeatable runs.
        random.seed(data.seed)
        train = TfmdDL(
            TensorDataset(data.x_train, data.y_train), bs=data.bs, shuffle=True, drop_last=False, num_workers=0
        )
        valid = TfmdDL(TensorDataset(data.x_valid, data.y_valid), bs=data.bs * 2, shuffle=False, num_workers=0)
        return FastaiDataLoaders(train, valid, device=data.device)

    def run_fastai(model: nn.Module, data: Data, epochs: int, lr_max: float) -> RunResult:
        fit_watch = Stopwatch()
        dls = build_dls(data)
        learn = FastaiLearner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=fastai_accuracy)
        return _fit_learner(learn, FastaiCallback, data, epochs, lr_max, fit_watch)

    return run_fastai


# --- the harness -----------------------------------------------------------------------------------


@dataclass
class Tally(ContenderStatus):
    """Every figure one contender produced, or why it did not run."""

    runner: Runner | None = None
    epoch_times: list[float] = field(default_factory=list)
    cpu_epoch_times: list[float] = field(default_factory=list)
    first_epochs: list[float] = field(default_factory=list)
    fit_times: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)

    def add(self, r: RunResult) -> None:
        self.epoch_times += r.epoch_times
        self.cpu_epoch_times += r.cpu_epoch_times
        self.first_epochs.append(r.epoch_times[0] if r.epoch_times else float("nan"))
        self.fit_times.append(r.fit_time)
        self.accuracies.append(r.accuracy)

    @property
    def s_per_epoch(self) -> float:
        return median(self.epoch_times)

    @property
    def cpu_s_per_epoch(self) -> float:
        return median(self.cpu_epoch_times)


def build_tallies(args: argparse.Namespace) -> dict[str, Tally]:
    tallies = {name: Tally(name) for name in CONTENDERS}
    tallies["plain"].runner = functools.partial(run_plain, opt_impl=args.plain_opt)
    try:
        tallies["ember"].runner = make_ember_runner()
    except ImportError as e:
        tallies["ember"].skipped = f"ember's Learner is not available yet ({e})"
    tallies["fastai"].skipped = fastai_skip_reason(args.no_fastai)
    if tallies["fastai"].skipped is None:
        tallies["fastai"].runner = make_fastai_runner(args.fastai_data)
    return tallies


def run_one(tally: Tally, init: dict[str, torch.Tensor], data: Data, epochs: int, lr: float, threads: int) -> None:
    """Train one contender once from the shared initial weights; a failure marks it failed."""
    runner = tally.runner
    assert runner is not None
    set_threads(threads)  # a library may have changed it; every contender gets the same count
    torch.manual_seed(data.seed)
    model = make_model()
    model.load_state_dict(copy.deepcopy(init))
    result = tally.guarded(lambda: runner(model, data, epochs, lr))
    if result is not None:
        tally.add(result)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=None, help="timed runs of every contender (default 3; --quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per run (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="a smoke test on a tiny subset (640 train, 256 valid)")
    p.add_argument("--no-fastai", action="store_true", help="leave fastai out even when it is installed")
    p.add_argument(
        "--fastai-data",
        choices=("fastai", "torch"),
        default="fastai",
        help="fastai's own TfmdDL loaders (default) or the same torch DataLoaders as the others",
    )
    p.add_argument(
        "--plain-opt",
        choices=tuple(PLAIN_OPT),
        default="default",
        help="AdamW kernel of the plain loop: torch's default (idiomatic), foreach, or fused (as ember uses)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: all CPUs)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2, help="lr_max of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.epochs = args.epochs or (1 if args.quick else 3)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    device = torch.device(args.device)
    data = load_data(args.bs, args.seed, device)
    if args.quick:
        data = data.subset(640, 256)
    tallies = build_tallies(args)
    active = [name for name, t in tallies.items() if t.runner is not None]

    print("== environment")
    print_env(env_report(args.device))
    print(f"{'data':>13}: {data.source}; {len(data.y_train)} train, {len(data.y_valid)} valid, bs={data.bs}")
    print(f"{'schedule':>13}: fit_one_cycle({args.epochs}, {args.lr}), {args.runs} run(s), contenders: {active}")
    print(f"{'plain AdamW':>13}: {args.plain_opt} implementation (--plain-opt)")
    for t in tallies.values():
        if t.skipped:
            print(f"{t.name:>13}: {t.skipped}")

    torch.manual_seed(args.seed)
    init = copy.deepcopy(make_model().state_dict())

    # Warm-up: one short epoch each, untimed (first-call costs: allocator, kernels, lazy imports).
    warm = data.subset(8 * data.bs, 2 * data.bs)
    for name in active:
        print(f"\n== warm-up: {name}")
        run_one(tallies[name], init, warm, 1, args.lr, threads)

    for r, order in enumerate(rotations(active, args.runs)):
        for name in order:
            if not tallies[name].ok:
                continue
            print(f"\n== run {r + 1}/{args.runs}: {name}")
            run_one(tallies[name], init, data, args.epochs, args.lr, threads)

    report(tallies, args)
    return 1 if any(t.failed for t in tallies.values()) else 0


def report(tallies: dict[str, Tally], args: argparse.Namespace) -> None:
    rows, notes = [], []
    for t in tallies.values():
        if not t.ok:
            rows.append([t.name, "–", "–", "–", "–", "–", t.short])
            notes.append(f"{t.name}: {t.failed or t.skipped}")
            continue
        rows.append(
            [
                t.name,
                fmt_seconds(t.s_per_epoch),
                fmt_seconds(t.cpu_s_per_epoch),
                fmt_seconds(median(t.first_epochs)),
                fmt_seconds(median(t.fit_times)),
                f"{median(t.accuracies):.4f}",
                "",
            ]
        )
    print()
    title = f"Training-loop overhead ({args.epochs} epochs x {args.runs} runs; medians)"
    columns = ["contender", "s/epoch", "cpu s/epoch", "first epoch s", "fit s", "valid accuracy", "note"]
    print_table(title, columns, rows)
    for note in notes:
        print(note)

    def figure(name: str, attr: str) -> float:
        return getattr(tallies[name], attr) if tallies[name].ok else float("nan")

    for attr, what in (("s_per_epoch", "s/epoch    "), ("cpu_s_per_epoch", "cpu s/epoch")):
        plain, ember, fastai = (figure(n, attr) for n in CONTENDERS)
        verdict = goal_verdict(ember, plain, GOAL_RATIO) if attr == "s_per_epoch" else ""
        print(f"ember/plain  {what}: {fmt_ratio(ember, plain)}{verdict}")
        print(f"fastai/plain {what}: {fmt_ratio(fastai, plain)}")
        print(f"ember/fastai {what}: {fmt_ratio(ember, fastai)}")


if __name__ == "__main__":
    sys.exit(main())
