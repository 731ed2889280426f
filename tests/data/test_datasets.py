"""Tests for ember.data.datasets: encoding, splits, caching and error reporting."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
import torch

import ember.data.datasets as datasets_module
from ember.core.errors import DataError
from ember.data.block import CategoryBlock, DataBlock, TransformBlock
from ember.data.datasets import Datasets
from ember.data.items import GrandparentSplitter, get_files, parent_label
from ember.data.transform import Transform


class CountingBlock(TransformBlock):
    """Reads three numbers from a text file and counts how often each file is read."""

    kind = "numbers"

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def encode(self, value: Path) -> torch.Tensor:
        with self._lock:
            self.calls[str(value)] += 1
        text = Path(value).read_text()
        try:
            return torch.tensor([float(v) for v in text.split()])  # (3,)
        except ValueError as e:
            raise DataError(f"{value} is not a file of numbers") from e


class Double(Transform):
    deterministic = True

    def __init__(self) -> None:
        self.calls = 0

    def encode_numbers(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * 2


class AddNoise(Transform):
    split_idx = 0  # training only
    order = 5

    def __init__(self) -> None:
        self.calls = 0

    def encode_numbers(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x + 1000


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for split in ("train", "valid"):
        for label in ("a", "b"):
            (tmp_path / split / label).mkdir(parents=True)
            for k in range(5):
                (tmp_path / split / label / f"{k}.txt").write_text(f"{k} {k + 1} {k + 2}")
    return tmp_path


def make(folder: Path, cache: bool | None, item_tfms: list | None = None) -> tuple[Datasets, CountingBlock]:
    block = CountingBlock()
    files = get_files(folder, ".txt")
    ds = Datasets(
        files,
        [block, CategoryBlock()],
        getters=[None, parent_label],
        item_tfms=item_tfms,
        splits=GrandparentSplitter()(files),
        cache=cache,
    )
    return ds, block


def test_samples_splits_and_decode(folder: Path) -> None:
    ds, _ = make(folder, cache=False)
    assert len(ds.train) == 10 and len(ds.valid) == 10 and len(ds) == 20
    x, y = ds.valid[6]
    assert x.tolist() == [1.0, 2.0, 3.0] and int(y) == 1
    assert ds.valid.decode((x, y)) == (x, "b")
    assert ds.vocab == ["a", "b"] and ds.kinds == ("numbers", "category")
    assert [p.parent.name for p in ds.train.items][:6] == ["a"] * 5 + ["b"]


def test_each_item_encoded_once_across_epochs_when_cached(folder: Path) -> None:
    double = Double()
    db = DataBlock(
        [CountingBlock(), CategoryBlock],
        get_items=lambda p: get_files(p, ".txt"),
        splitter=GrandparentSplitter(),
        get_y=parent_label,
        item_tfms=[double],
    )
    block = db.blocks[0]
    dls = db.dataloaders(folder, bs=4, device="cpu", cache=True)
    assert dls.train.dl.num_workers == 0  # fully cached: no worker processes
    seen = 0
    for _ in range(3):
        for dl in (dls.train, dls.valid):
            for xb, _yb in dl:
                seen += len(xb)
                assert xb.max() <= 2 * 6  # doubled once, never twice
    assert seen == 3 * (8 + 10)
    assert len(block.calls) == 20 and set(block.calls.values()) == {1}
    assert double.calls == 20  # the deterministic transform is cached too


def test_no_cache_encodes_on_every_access(folder: Path) -> None:
    ds, block = make(folder, cache=False)
    for _ in range(3):
        for i in range(len(ds.train)):
            ds.train[i]
    assert sum(block.calls.values()) == 30 and set(block.calls.values()) == {3}
    assert not ds.cache and not ds.train.is_cached


def test_random_transforms_run_after_the_cache(folder: Path) -> None:
    double, noise = Double(), AddNoise()
    ds, block = make(folder, cache=True, item_tfms=[noise, double])
    assert ds.cached_tfms == [double] and ds.random_tfms == [noise]
    for _ in range(2):
        x, _ = ds.train[0]
        assert x.tolist() == [1000.0, 1002.0, 1004.0]
        xv, _ = ds.valid[0]
        assert xv.tolist() == [0.0, 2.0, 4.0]  # training-only transform skipped
    assert noise.calls == 2 and double.calls <= 4 + 2
    assert ds._cache[ds.splits[0][0]][0].tolist() == [0.0, 2.0, 4.0]  # the cache is never modified


def test_cache_none_decides_by_estimated_size(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds, _ = make(folder, cache=None)
    assert ds.cache is True
    monkeypatch.setattr(datasets_module, "cache_budget", lambda: 100)  # 20 items x >140 bytes do not fit
    ds, block = make(folder, cache=None)
    assert ds.cache is False and ds._cache is None
    assert sum(block.calls.values()) == 4  # only the items read to estimate the size


def test_cache_budget_is_positive() -> None:
    budget = datasets_module.cache_budget()
    assert 0 < budget <= 8 * 1024**3


def test_fill_cache_with_threads(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in range(5, 40):
        (folder / "train" / "a" / f"{k}.txt").write_text(f"{k} 0 0")
    ds, block = make(folder, cache=True)
    ds.fill_cache(n_workers=4)
    assert ds.train.is_cached and ds.valid.is_cached
    assert set(block.calls.values()) == {1} and len(block.calls) == len(ds)
    ds.fill_cache()
    assert set(block.calls.values()) == {1}


def test_corrupt_item_names_file_and_index(folder: Path) -> None:
    bad = folder / "train" / "b" / "3.txt"
    bad.write_text("not numbers")
    ds, _ = make(folder, cache=False)
    i = ds.splits[0].index(ds.items_all.index(bad))
    with pytest.raises(DataError, match=r"could not encode item \d+ \(.*train/b/3.txt\).*not a file of numbers"):
        ds.train[i]
    ds_cached, _ = make(folder, cache=True)
    with pytest.raises(DataError, match="train/b/3.txt"):
        ds_cached.fill_cache(n_workers=2)


def test_getter_failure_names_item(folder: Path) -> None:
    files = get_files(folder, ".txt")
    with pytest.raises(DataError, match=r"with boom on item 0 \(.*0.txt\): ZeroDivisionError"):

        def boom(p: Path) -> str:
            return str(1 / 0)

        Datasets(files, [CountingBlock(), CategoryBlock()], getters=[None, boom], cache=False)


def test_new_items_for_inference(folder: Path) -> None:
    ds, _ = make(folder, cache=False, item_tfms=[Double(), AddNoise()])
    files = get_files(folder / "valid", ".txt")[:3]
    test = ds.new(files)
    assert len(test) == 3 and test.split == 1 and len(test.blocks) == 1
    (x,) = test[0]
    assert x.tolist() == [0.0, 2.0, 4.0]  # deterministic tfm applied, training-only one not
    labelled = ds.new(files, with_labels=True)
    assert int(labelled[2][1]) == 0 and labelled.blocks[1].vocab == ["a", "b"]


def test_collate_uses_blocks(folder: Path) -> None:
    ds, _ = make(folder, cache=False)
    xb, yb = ds.collate([ds.train[0], ds.train[9]])
    assert xb.shape == (2, 3) and yb.tolist() == [0, 1]


def test_items_outside_both_splits_are_never_read(folder: Path) -> None:
    (folder / "test").mkdir()
    (folder / "test" / "broken.txt").write_text("not numbers")  # unlabelled, undecodable, in neither split
    known = {p: p.parent.name for p in get_files(folder, ".txt") if p.parent.parent.name in ("train", "valid")}
    block = CountingBlock()
    files = get_files(folder, ".txt")
    ds = Datasets(
        files,
        [block, CategoryBlock()],
        getters=[None, lambda p: known[p]],  # a KeyError for the test item
        splits=GrandparentSplitter()(files),
        cache=None,  # the size estimate must not decode it either
    )
    assert len(ds) == 20 and len(ds.train) == 10 and len(ds.valid) == 10
    assert all(p.parent.parent.name != "test" for p in ds.items)
    assert not any("broken" in name for name in block.calls)
    ds.fill_cache()
    assert ds.valid.decode(ds.valid[9])[1] == "b"
