"""A Wasserstein GAN that learns to draw handwritten digits from noise, on ember's built-in digits (offline).

    python examples/wgan_digits.py                   # all 4,000 training digits, 20 epochs
    python examples/wgan_digits.py --digits 3 --epochs 30

Writes ``wgan_output/samples_<epoch>.png`` (a grid of generated digits) every few epochs and, at the end, the
generator as ``wgan_output/digits.ember`` (``ember.load_learner(...).generate(16)`` draws from it). See docs/gan.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ember.data.builtin import mnist_5k
from ember.vision import (
    DataBlock,
    GANLearner,
    ImageBlock,
    Normalize,
    RandomSplitter,
    Resize,
    basic_critic,
    basic_generator,
    get_image_files,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--digits", default="0123456789", help="which digits to learn, e.g. 3 or 17")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--out", default="wgan_output")
    parser.add_argument("--every", type=int, default=5, help="write a grid of samples every N epochs")
    args = parser.parse_args()

    path = mnist_5k() / "training"
    wanted = set(args.digits)
    dblock = DataBlock(
        blocks=(ImageBlock(mode="L"),),  # images only: the generator's input is noise
        get_items=lambda p: [f for f in get_image_files(p) if f.parent.name in wanted],
        splitter=RandomSplitter(valid_pct=0.05, seed=0),
        item_tfms=Resize(32),
        batch_tfms=Normalize.from_stats([0.5], [0.5]),  # [-1, 1], the range of the generator's tanh
    )
    dls = dblock.dataloaders(path, bs=args.bs)
    torch.manual_seed(0)
    generator = basic_generator(32, n_channels=1, in_sz=100, n_features=64)
    critic = basic_critic(32, n_channels=1, n_features=64)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    learn = GANLearner.wgan(dls, generator, critic, path=out, model_dir=".")
    print(f"{len(dls.train_ds)} digits, {sum(p.numel() for p in learn.model.parameters()):,} parameters")
    noise = torch.randn(16, generator.noise_sz, generator=torch.Generator().manual_seed(0))  # the same each time
    start = time.perf_counter()
    done = 0
    while done < args.epochs:
        n = min(args.every, args.epochs - done)
        learn.fit(n, args.lr)
        done += n
        learn.show_results(max_n=16, fname=out / f"samples_{done:03d}.png")
        print(f"epoch {done}: {time.perf_counter() - start:.0f} s, samples in {out / f'samples_{done:03d}.png'}")
    learn.export("digits.ember")
    images = learn.generate(noise=noise)
    print(f"generated {tuple(images.shape)} images in [0, 1]; the generator is in {out / 'digits.ember'}")


if __name__ == "__main__":
    main()
