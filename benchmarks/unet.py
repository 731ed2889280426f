"""U-Net: ember's DynamicUnet against fastai's on the same encoder, data and training loop.

Both decoders are built on the same encoder (an ember ``create_body`` of ``--arch``, from scratch), trained on the
built-in ``shapes_segmentation`` data (four codes) with ember's ``Learner`` and ``fit_one_cycle``, so only the
U-Net itself differs. Prints foreground accuracy, ``DiceMulti`` and seconds per run for each seed, and the median
ratios ember/fastai.

    .bench-venv/bin/python benchmarks/unet.py                 # with fastai (make bench-env)
    .bench-venv/bin/python benchmarks/unet.py --quick         # a smoke test
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _common import env_report, fmt_ratio, median, print_env, print_table, set_threads

from ember.data.builtin import shapes_segmentation
from ember.data.items import get_image_files
from ember.learner import Learner
from ember.metrics import DiceMulti, foreground_acc
from ember.vision.data import SegmentationDataLoaders
from ember.vision.learner import create_body
from ember.vision.models.unet import DynamicUnet


def build_model(name: str, arch: str, n_out: int, size: int) -> torch.nn.Module:
    body = create_body(arch, n_in=3, pretrained=False)
    if name == "ember":
        return DynamicUnet(body, n_out, (size, size))
    from fastai.vision.models.unet import DynamicUnet as FastaiUnet

    return FastaiUnet(body, n_out, (size, size))


def run(name: str, seed: int, path: Path, args: argparse.Namespace) -> list[Any]:
    codes = (path / "codes.txt").read_text().split()
    dls = SegmentationDataLoaders.from_label_func(
        path, get_image_files(path / "images"), lambda p: path / "labels" / f"{p.stem}.png",
        codes=codes, bs=args.bs, seed=0, device=args.device,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = build_model(name, args.arch, len(codes), args.size)
    learn = Learner(dls, model, metrics=[foreground_acc, DiceMulti()])
    learn.silent = True
    t0 = time.perf_counter()
    learn.fit_one_cycle(args.epochs, args.lr)
    seconds = time.perf_counter() - t0
    _, fg, dice = learn.validate()
    return [name, seed, sum(p.numel() for p in model.parameters()), fg, dice, seconds]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="xresnet18", help="encoder (an ember, torchvision or timm name)")
    p.add_argument("--images", type=int, default=120)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--bs", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: all CPUs)")
    p.add_argument("--quick", action="store_true", help="xresnet_tiny, 24 images of 32 px, 1 epoch, 1 seed")
    args = p.parse_args()
    if args.quick:
        args.arch, args.images, args.size, args.epochs, args.seeds, args.bs = "xresnet_tiny", 24, 32, 1, 1, 4
    set_threads(args.threads)
    print_env(env_report(args.device))
    with tempfile.TemporaryDirectory() as tmp:
        path = shapes_segmentation(n_images=args.images, size=args.size, path=Path(tmp) / "shapes")
        rows = []
        for seed in range(args.seeds):
            for name in ("ember", "fastai") if seed % 2 == 0 else ("fastai", "ember"):  # neither always first
                try:
                    rows.append(run(name, seed, path, args))
                except ImportError as e:
                    rows.append([name, seed, "–", "–", "–", f"unavailable: {e}"[:40]])
    table = [[n, s, f"{k:,}" if isinstance(k, int) else k] + [f"{v:.3f}" if isinstance(v, float) else v for v in r]
             for n, s, k, *r in rows]  # fmt: skip
    title = f"U-Net on shapes_segmentation ({args.images} images, {args.size} px, {args.arch}, {args.epochs} epochs)"
    print_table(title, ["u-net", "seed", "params", "foreground acc", "DiceMulti", "s"], table)

    def med(name: str, i: int) -> float:
        vals = [r[i] for r in rows if r[0] == name and isinstance(r[i], float)]
        return median(vals) if vals else float("nan")

    for label, i in (("foreground acc", 3), ("DiceMulti", 4), ("seconds", 5)):
        print(f"ember/fastai {label:<15}: {fmt_ratio(med('ember', i), med('fastai', i))}")


if __name__ == "__main__":
    main()
