from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ember.data import builtin
from ember.data.builtin import mnist_5k, mnist_5k_arrays


@pytest.fixture(scope="module")
def mnist_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """EMBER_HOME for the whole module, so the 5,000 files are written once for the read-only checks."""
    home = tmp_path_factory.mktemp("ember_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def mnist_path(mnist_home: Path) -> Path:
    return mnist_5k()


def count(folder: Path) -> dict[int, int]:
    return {int(d.name): len(list(d.glob("*.png"))) for d in sorted(folder.iterdir())}


def test_arrays_shapes_split_and_content() -> None:
    images, labels, is_train = mnist_5k_arrays()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    assert is_train.shape == (5000,) and is_train.dtype == bool
    assert is_train.sum() == 4000
    for digit in range(10):
        assert (labels == digit).sum() == 500
        assert (is_train & (labels == digit)).sum() == 400
    assert images.max() == 255 and images.min() == 0
    # Real handwriting: ink covers roughly a fifth of the pixels and the borders are blank.
    ink = (images > 127).mean()
    assert 0.05 < ink < 0.35
    assert images[:, 0, :].max() < 64
    # The split is fixed: two calls agree exactly.
    assert np.array_equal(mnist_5k_arrays()[2], is_train)


def test_folder_structure_and_counts(mnist_path: Path, mnist_home: Path) -> None:
    assert mnist_path == mnist_home / "data" / "mnist_5k"
    assert sorted(p.name for p in mnist_path.iterdir() if not p.name.startswith(".")) == ["testing", "training"]
    train, test = count(mnist_path / "training"), count(mnist_path / "testing")
    assert sorted(train) == sorted(test) == list(range(10))
    assert sum(train.values()) == 4000
    assert sum(test.values()) == 1000
    for digit in range(10):
        share = test[digit] / (train[digit] + test[digit])
        assert abs(share - 0.2) <= 0.01
    names = {p.name for p in mnist_path.rglob("*.png")}
    assert len(names) == 5000  # every file name is unique across splits and digits


def test_images_match_the_arrays(mnist_path: Path) -> None:
    images, labels, is_train = mnist_5k_arrays()
    for i in (0, 1234, 2500, 4999):
        split = "training" if is_train[i] else "testing"
        file = mnist_path / split / str(labels[i]) / f"{i}.png"
        with Image.open(file) as im:
            assert im.mode == "L" and im.size == (28, 28)
            pixels = np.asarray(im)
        assert pixels.any()
        assert np.array_equal(pixels, images[i])


def test_second_call_is_fast_and_rewrites_nothing(mnist_path: Path) -> None:
    sample = sorted((mnist_path / "training" / "3").glob("*.png"))[:5]
    before = [p.stat().st_mtime_ns for p in sample]
    start = time.perf_counter()
    assert mnist_5k() == mnist_path
    assert time.perf_counter() - start < 0.1
    assert [p.stat().st_mtime_ns for p in sample] == before


def test_interrupted_materialization_is_redone(mnist_path: Path) -> None:
    # Simulate a run cut short: the marker (written last) is missing, a file is gone and a stray one was left.
    (mnist_path / builtin._MARKER).unlink()
    victim = next((mnist_path / "testing" / "7").glob("*.png"))
    victim.unlink()
    stray = mnist_path / "training" / "7" / "stray.png"
    stray.write_bytes(b"half")
    assert mnist_5k() == mnist_path
    assert (mnist_path / builtin._MARKER).is_file()
    assert victim.is_file()
    assert not stray.exists()
    assert sum(count(mnist_path / "testing").values()) == 1000


def test_materialize_leaves_other_files_of_a_custom_folder_alone(tmp_path: Path) -> None:
    calls = []

    def write(folder: Path) -> list[str]:
        builtin._clear(folder, ["part"])
        calls.append(folder)
        (folder / "part").mkdir()
        (folder / "part" / "x.txt").write_text(str(len(calls)))
        return ["part"]

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("user data")
    assert builtin._materialize("toy", write, folder) == folder
    assert builtin._materialize("toy", write, folder) == folder
    assert len(calls) == 1
    (folder / builtin._MARKER).unlink()
    builtin._materialize("toy", write, folder)
    assert len(calls) == 2
    assert (folder / "part" / "x.txt").read_text() == "2"
    assert (folder / "keep.txt").read_text() == "user data"


def test_default_folder_follows_ember_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBER_HOME", str(tmp_path))
    assert builtin._data_dir("penguins") == tmp_path / "data" / "penguins"
