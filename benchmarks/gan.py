"""Wasserstein GAN: ember's ``GANLearner.wgan`` against fastai's, on the same digits, model sizes and schedule.

Both libraries train a DCGAN generator (noise of 100 -> 1x32x32, ``n_features=64``) against a DCGAN critic
(1x32x32 -> a score, ``n_features=64``), each built by its own ``basic_generator`` / ``basic_critic``, with its
own ``GANLearner.wgan`` and that method's defaults: 5 critic batches per generator batch
(``FixedGANSwitcher(n_crit=5, n_gen=1)``), the critic's weights clipped to [-0.01, 0.01], RMSprop without
momentum; ``fit(epochs, 2e-4)`` on the CPU. The data: MNIST-5k from ``ember.data.builtin.mnist_5k()``, every
training image (``training/<digit>/*.png``, 4,000) resized to 32 px and normalized to [-1, 1], batches of 64,
and a validation set a tenth that size from ``testing/`` (the same files on both sides).

* ``ember``: ``DataBlock(blocks=(ImageBlock(mode="L"),), item_tfms=Resize(32),
  batch_tfms=Normalize.from_stats([0.5], [0.5]))`` and ``GANLearner.wgan(dls, basic_generator(32, 1),
  basic_critic(32, 1))``.
* ``fastai``: the DataBlock of fastai's WGAN example, ``(TransformBlock, ImageBlock(cls=PILImageBW))`` with
  ``get_x=generate_noise``, ``Resize(32)``, ``Normalize.from_stats(0.5, 0.5)``, and ``GANLearner.wgan(dls,
  basic_generator(32, 1), basic_critic(32, 1, act_cls=LeakyReLU(0.2)), opt_func=partial(RMSProp, mom=0.))``.
  The leaky ReLU is what fastai's own GAN lesson passes (its ``basic_critic`` defaults to ReLU; ember's is
  leaky); RMSprop is ember's WGAN default (fastai's ``GANLearner`` defaults to Adam).

Every run fits one untimed warm-up epoch, then `--epochs` timed ones (training and validation); the libraries
take turns in a rotating order, `--runs` times, with the same torch thread count. After each run, a quality
proxy: 256 images generated from the same fixed noise (generator in eval mode), decoded to [0, 1] and compared
with the real training images: the mean absolute difference between the mean generated image and the mean real
image, and the difference in the share of pixels above 0.5. Lower is closer; the table also gives the first
figure for the untrained generator.

What still differs per batch, each library doing it its own way: fastai draws the noise per item in its
dataset (``generate_noise``), ember per batch; fastai clips the critic's weights before every training batch,
ember after each critic step; fastai's losses have the opposite sign (its critic scores generated images high);
fastai's validation leaves its trainer in generator mode, so its epochs after the first start with one extra
generator batch (ember resumes the 5:1 count); fastai's last critic convolution has a bias (one parameter
more). The loaders keep each library's defaults: ember caches the decoded images when it builds them (no
workers), fastai decodes every epoch in ``min(16, cpus)`` worker processes (``--fastai-workers`` sets them).
On a small CPU the two models cost the same per batch, so the loaders make most of any difference in seconds
per epoch; ``--fastai-workers 0`` keeps fastai's decoding off the cores the model runs on.

Judged figure: ember/fastai seconds per epoch (no goal; lower is better).

    .venv/bin/python benchmarks/gan.py --quick         # smoke test; fastai's row says "not installed"
    .bench-venv/bin/python benchmarks/gan.py --quick   # smoke test with fastai (make bench-env)
    .bench-venv/bin/python benchmarks/gan.py           # 4,000 images, 1 + 2 epochs x 3 runs
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    ContenderStatus,
    EpochTimes,
    Stopwatch,
    env_report,
    fastai_skip_reason,
    fmt_ratio,
    fmt_seconds,
    median,
    print_env,
    print_table,
    rotations,
    set_threads,
)
from PIL import Image
from torch import nn

CONTENDERS = ("ember", "fastai")
N_QUALITY = 256  # images generated for the quality proxy


# --- the data ----------------------------------------------------------------------------------------


@dataclass
class Digits:
    """The image files both libraries read (training first, then validation) and the real images' figures."""

    path: Path
    items: list[Path]
    n_train: int
    real_mean: torch.Tensor  # (1, size, size): the mean real training image, in [0, 1]
    real_bright: float  # share of the real training pixels above 0.5

    @property
    def n_valid(self) -> int:
        return len(self.items) - self.n_train


def given_items(items: list[Path], source: Any) -> list[Path]:
    """``get_items`` for both DataBlocks: the prepared list, whatever the source."""
    return list(items)


def split_at(n_train: int, items: Any) -> tuple[list[int], list[int]]:
    """The splitter for both DataBlocks: the first `n_train` items train, the rest validate."""
    return list(range(n_train)), list(range(n_train, len(items)))


def load_digits(args: argparse.Namespace) -> Digits:
    """The training images of `args.digits` (at most `args.images`, drawn with a fixed seed), a validation
    set of ``valid_pct`` times as many drawn from ``testing/``, and the real images' statistics at `args.size`."""
    from ember.data.builtin import mnist_5k

    path = mnist_5k()
    rng = random.Random(args.seed)

    def files(split: str) -> list[Path]:
        return sorted(p for d in args.digits for p in (path / split / str(d)).glob("*.png"))

    train, test = files("training"), files("testing")
    if args.images and args.images < len(train):
        train = sorted(rng.sample(train, args.images))
    n_valid = min(len(test), max(1, round(len(train) * args.valid_pct))) if args.valid_pct > 0 else 0
    valid = sorted(rng.sample(test, n_valid))
    # The reference: the real training images as both pipelines see them (resized bilinearly), in [0, 1].
    real = np.stack(
        [np.asarray(Image.open(p).convert("L").resize((args.size, args.size), Image.BILINEAR)) for p in train]
    )
    real_t = torch.from_numpy(real).float().div_(255).unsqueeze(1)  # (N, 1, size, size)
    return Digits(path, train + valid, len(train), real_t.mean(0), float((real_t > 0.5).float().mean()))


def quality(fake: torch.Tensor, data: Digits) -> tuple[float, float]:
    """(mean-image gap, bright-share gap) of generated images ``(N, 1, size, size)`` in [0, 1]."""
    mean_gap = float((fake.mean(0) - data.real_mean).abs().mean())
    bright_gap = abs(float((fake > 0.5).float().mean()) - data.real_bright)
    return mean_gap, bright_gap


def fixed_noise(args: argparse.Namespace) -> torch.Tensor:
    """The noise every generator draws its quality images from: ``(N_QUALITY, noise)``, seeded."""
    return torch.randn(N_QUALITY, args.noise, generator=torch.Generator().manual_seed(args.seed + 1000))


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# --- the contenders ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """One library's figures from one run."""

    build_s: float  # building the loaders
    epoch_times: list[float]  # wall seconds per epoch, the warm-up epoch first
    cpu_times: list[float]  # this process's CPU seconds over the same spans
    gen_params: int
    crit_params: int
    before: tuple[float, float]  # quality proxy of the untrained generator
    after: tuple[float, float]  # and after training
    workers: int | str = 0  # loader worker processes


def run_ember(data: Digits, args: argparse.Namespace, seed: int) -> RunResult:
    from ember.data.block import DataBlock
    from ember.learner.callback import Callback
    from ember.vision.augment import Normalize, Resize
    from ember.vision.core import ImageBlock
    from ember.vision.gan import GANLearner, basic_critic, basic_generator

    watch = Stopwatch()
    dblock = DataBlock(
        blocks=(ImageBlock(mode="L"),),
        get_items=functools.partial(given_items, data.items),
        splitter=functools.partial(split_at, data.n_train),
        item_tfms=Resize(args.size),
        batch_tfms=Normalize.from_stats([0.5], [0.5]),
    )
    dls = dblock.dataloaders(data.path, bs=args.bs, device="cpu")
    build_s = watch.lap()
    torch.manual_seed(seed)
    generator = basic_generator(args.size, 1, in_sz=args.noise, n_features=args.features)
    critic = basic_critic(args.size, 1, n_features=args.features)
    learn = GANLearner.wgan(dls, generator, critic)
    learn.silent = True
    noise = fixed_noise(args)
    before = quality(learn.generate(noise=noise), data)
    timer = EpochTimes(torch.device("cpu"))
    learn.fit(1 + args.epochs, args.lr, cbs=[timer.callback(Callback)])
    after = quality(learn.generate(noise=noise), data)
    workers = dls.train.dl.num_workers  # the torch DataLoader under ember's device loader
    return RunResult(
        build_s, timer.times, timer.cpu_times, n_params(generator), n_params(critic), before, after, workers
    )


def _fastai_generate(generator: nn.Module, noise: torch.Tensor) -> torch.Tensor:
    """fastai's generator on `noise` in eval mode, decoded from [-1, 1] to [0, 1] (Normalize(0.5, 0.5) undone)."""
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            out = generator(noise)
    finally:
        generator.train(was_training)
    return (out.float().as_subclass(torch.Tensor) * 0.5 + 0.5).clamp(0, 1).cpu()


def run_fastai(data: Digits, args: argparse.Namespace, seed: int) -> RunResult:
    from fastai.optimizer import RMSProp
    from fastai.vision.all import Callback as FastaiCallback
    from fastai.vision.all import DataBlock, ImageBlock, Normalize, PILImageBW, Resize, TransformBlock
    from fastai.vision.gan import GANLearner, basic_critic, basic_generator, generate_noise

    watch = Stopwatch()
    dblock = DataBlock(
        blocks=(TransformBlock, ImageBlock(cls=PILImageBW)),
        get_x=functools.partial(generate_noise, size=args.noise),
        get_items=functools.partial(given_items, data.items),
        splitter=functools.partial(split_at, data.n_train),
        item_tfms=Resize(args.size),
        batch_tfms=Normalize.from_stats(0.5, 0.5, cuda=False),
    )
    kwargs = {} if args.fastai_workers is None else {"num_workers": args.fastai_workers}
    random.seed(seed)  # fastai's loaders shuffle with a generator seeded from Python's
    dls = dblock.dataloaders(data.path, bs=args.bs, device=torch.device("cpu"), **kwargs)
    build_s = watch.lap()
    torch.manual_seed(seed)
    generator = basic_generator(args.size, 1, in_sz=args.noise, n_features=args.features)
    critic = basic_critic(args.size, 1, n_features=args.features, act_cls=functools.partial(nn.LeakyReLU, 0.2))
    learn = GANLearner.wgan(dls, generator, critic, opt_func=functools.partial(RMSProp, mom=0.0))
    noise = fixed_noise(args)
    before = quality(_fastai_generate(generator, noise), data)
    timer = EpochTimes(torch.device("cpu"))
    with learn.no_bar(), learn.no_logging(), warnings.catch_warnings():
        # fastai's GANTrainer keeps attributes named like the Learner's (generator, critic, gen_mode): harmless
        warnings.filterwarnings("ignore", message="You are shadowing an attribute")
        learn.fit(1 + args.epochs, args.lr, cbs=[timer.callback(FastaiCallback)])
    after = quality(_fastai_generate(generator, noise), data)
    workers = dls.train.fake_l.num_workers  # the process count (`.num_workers` is per-worker bookkeeping)
    return RunResult(
        build_s, timer.times, timer.cpu_times, n_params(generator), n_params(critic), before, after, workers
    )


RUNNERS = {"ember": run_ember, "fastai": run_fastai}


# --- the harness -------------------------------------------------------------------------------------


@dataclass
class Tally(ContenderStatus):
    """Every figure one library produced, or why it did not run."""

    results: list[RunResult] = field(default_factory=list)

    def per_run(self, fn: Any) -> float:
        return median(fn(r) for r in self.results) if self.ok and self.results else float("nan")

    @property
    def s_per_epoch(self) -> float:
        """Median over runs of each run's median timed epoch (the warm-up epoch left out)."""
        return self.per_run(lambda r: median(r.epoch_times[1:]))

    @property
    def cpu_s_per_epoch(self) -> float:
        return self.per_run(lambda r: median(r.cpu_times[1:]))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=None, help="timed runs of each library (default 3; --quick: 1)")
    p.add_argument("--epochs", type=int, default=None, help="timed epochs per run, after a warm-up one (default 2)")
    p.add_argument("--quick", action="store_true", help="a smoke test: 256 images, 1 + 1 epochs, 1 run")
    p.add_argument("--no-fastai", action="store_true", help="leave fastai out even when it is installed")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: all CPUs)")
    p.add_argument("--digits", default="0123456789", help="which digits to train on, e.g. 3 or 0,1 (default all)")
    p.add_argument("--images", type=int, default=0, help="at most this many training images (default: all)")
    p.add_argument("--valid-pct", type=float, default=0.1, help="validation images from testing/, per training one")
    p.add_argument(
        "--fastai-workers", type=int, default=None, help="fastai's loader workers (default: fastai's own default)"
    )
    p.add_argument("--size", type=int, default=32, help="image side in pixels")
    p.add_argument("--noise", type=int, default=100, help="length of the noise vectors")
    p.add_argument("--features", type=int, default=64, help="n_features of the generator and the critic")
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    args.digits = sorted({int(c) for c in args.digits if c.isdigit()})
    if not args.digits:
        p.error("--digits names no digit")
    if args.quick:
        args.images = args.images or 256
    args.runs = args.runs or (1 if args.quick else 3)
    args.epochs = args.epochs or (1 if args.quick else 2)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = set_threads(args.threads)
    data = load_digits(args)
    tallies = {name: Tally(name) for name in CONTENDERS}
    tallies["fastai"].skipped = fastai_skip_reason(args.no_fastai)
    active = [name for name, t in tallies.items() if t.ok]

    print("== environment")
    print_env(env_report("cpu"))
    digits = "".join(map(str, args.digits))
    print(
        f"{'data':>13}: mnist_5k digits {digits}: {data.n_train} training images, {data.n_valid} validation "
        f"(testing/), {args.size} px, bs={args.bs}"
    )
    print(
        f"{'training':>13}: wgan defaults (5 critic : 1 generator, clip 0.01, RMSprop mom 0), "
        f"fit({1 + args.epochs}, {args.lr}): 1 warm-up + {args.epochs} timed epochs, {args.runs} run(s)"
    )
    for t in tallies.values():
        if t.skipped:
            print(f"{t.name:>13}: {t.skipped}")

    for r, order in enumerate(rotations(active, args.runs)):
        for name in order:
            tally = tallies[name]
            if not tally.ok:
                continue
            print(f"\n== run {r + 1}/{args.runs}: {name}", flush=True)
            set_threads(threads)  # a library may have changed it; both get the same count
            res = tally.guarded(functools.partial(RUNNERS[name], data, args, args.seed + r))
            if res is not None:
                tally.results.append(res)
                epochs = ", ".join(f"{t:.2f}" for t in res.epoch_times)
                print(
                    f"build {res.build_s:.2f} s, epochs {epochs} s (first: warm-up), "
                    f"gap {res.after[0]:.4f} / {res.after[1]:.4f}",
                    flush=True,
                )

    report(tallies, data, args)
    return 1 if any(t.failed for t in tallies.values()) else 0


def report(tallies: dict[str, Tally], data: Digits, args: argparse.Namespace) -> None:
    rows, notes = [], []
    for t in tallies.values():
        if not t.ok or not t.results:
            rows.append([t.name, *["–"] * 9, t.short])
            notes.append(f"{t.name}: {t.failed or t.skipped}")
            continue
        first = t.results[0]
        rows.append(
            [
                t.name,
                f"{first.gen_params:,}",
                f"{first.crit_params:,}",
                fmt_seconds(t.per_run(lambda r: r.build_s)),
                fmt_seconds(t.per_run(lambda r: r.epoch_times[0])),
                fmt_seconds(t.s_per_epoch),
                fmt_seconds(t.cpu_s_per_epoch),
                f"{t.per_run(lambda r: r.before[0]):.4f}",
                f"{t.per_run(lambda r: r.after[0]):.4f}",
                f"{t.per_run(lambda r: r.after[1]):.4f}",
                f"{first.workers} workers",
            ]
        )
    print()
    title = (
        f"WGAN on mnist_5k ({data.n_train} images, {args.size} px, bs {args.bs}; 1 + {args.epochs} epochs x "
        f"{args.runs} runs; medians)"
    )
    columns = [
        "library",
        "G params",
        "C params",
        "build s",
        "warm-up s",
        "s/epoch",
        "cpu s/epoch",
        "mean gap untrained",
        "mean gap",
        "bright gap",
        "note",
    ]
    print_table(title, columns, rows)
    for note in notes:
        print(note)
    ember, fastai = tallies["ember"], tallies["fastai"]
    if ember.ok and fastai.ok and ember.results and fastai.results:
        e, f = ember.results[0], fastai.results[0]
        for what, a, b in (("generator", e.gen_params, f.gen_params), ("critic", e.crit_params, f.crit_params)):
            if a != b:
                print(f"parameters: the {what}s differ by {b - a:+,} (fastai's minus ember's)")
    print(
        f"mean gap: |mean generated image - mean real image| averaged over pixels ({N_QUALITY} images from fixed "
        "noise; untrained: before fit); bright gap: |share of generated pixels > 0.5 - real share "
        f"({data.real_bright:.4f})|; lower is closer"
    )
    print("cpu s/epoch: this process only (fastai's loader worker processes are not counted)")
    print(f"ember/fastai cpu s/epoch: {fmt_ratio(ember.cpu_s_per_epoch, fastai.cpu_s_per_epoch)}")
    print(f"judged: ember/fastai s/epoch = {fmt_ratio(ember.s_per_epoch, fastai.s_per_epoch)} (lower is better)")


if __name__ == "__main__":
    sys.exit(main())
