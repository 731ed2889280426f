"""Tests for ember.data.items: finding files, splitters and labellers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from ember.core.errors import ConfigError, DataError
from ember.core.seed import set_seed
from ember.data.items import (
    ColReader,
    ColSplitter,
    FuncSplitter,
    GrandparentSplitter,
    IndexSplitter,
    RandomSplitter,
    RegexLabeller,
    TrainTestSplitter,
    get_files,
    get_image_files,
    parent_label,
    using_attr,
)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in [
        "train/cat/1.PNG",
        "train/cat/2.jpg",
        "train/dog/3.png",
        "valid/cat/4.png",
        "valid/dog/5.jpeg",
        "valid/dog/notes.txt",
        ".hidden/6.png",
        "top.png",
    ]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def test_get_files_filters_sorts_and_skips_hidden(tree: Path) -> None:
    files = get_files(tree, extensions=[".png", "jpg"])
    rel = [p.relative_to(tree).as_posix() for p in files]
    assert rel == ["top.png", "train/cat/1.PNG", "train/cat/2.jpg", "train/dog/3.png", "valid/cat/4.png"]
    assert len(get_files(tree)) == 7  # every non-hidden file, .txt included
    assert [p.name for p in get_files(tree, ".png", recurse=False)] == ["top.png"]


def test_get_image_files_and_folders(tree: Path) -> None:
    assert len(get_image_files(tree)) == 6
    names = [p.name for p in get_image_files(tree, folders=["valid"])]
    assert names == ["4.png", "5.jpeg"]
    with pytest.raises(DataError, match="folders"):
        get_image_files(tree, folders="test")
    with pytest.raises(DataError, match="existing folder"):
        get_files(tree / "missing")


def test_random_splitter_sizes_and_seed() -> None:
    items = list(range(50))
    train, valid = RandomSplitter(valid_pct=0.2, seed=1)(items)
    assert len(valid) == 10 and len(train) == 40
    assert sorted(train + valid) == items
    assert RandomSplitter(0.2, seed=1)(items) == (train, valid)
    assert RandomSplitter(0.2, seed=2)(items) != (train, valid)
    set_seed(3)
    a = RandomSplitter(0.2)(items)
    set_seed(3)
    assert RandomSplitter(0.2)(items) == a
    with pytest.raises(ConfigError):
        RandomSplitter(valid_pct=1.5)
    with pytest.raises(DataError, match="empty validation"):
        RandomSplitter(0.1)([1, 2])


def test_grandparent_splitter(tree: Path) -> None:
    files = get_image_files(tree)
    train, valid = GrandparentSplitter()(files)
    assert [files[i].name for i in train] == ["1.PNG", "2.jpg", "3.png"]
    assert [files[i].name for i in valid] == ["4.png", "5.jpeg"]
    with pytest.raises(DataError, match="Grandparent folders found.*train"):
        GrandparentSplitter("training", "testing")(files)


def test_func_index_splitters() -> None:
    items = list(range(10))
    assert FuncSplitter(lambda x: x % 5 == 0)(items) == ([1, 2, 3, 4, 6, 7, 8, 9], [0, 5])
    assert IndexSplitter([8, 2])(items) == ([0, 1, 3, 4, 5, 6, 7, 9], [2, 8])
    with pytest.raises(DataError, match="indices"):
        IndexSplitter([12])(items)
    with pytest.raises(DataError, match="empty training"):
        FuncSplitter(lambda x: True)(items)


def test_col_splitter() -> None:
    df = pd.DataFrame({"x": range(5), "is_valid": [False, True, False, True, False]})
    assert ColSplitter()(df) == ([0, 2, 4], [1, 3])
    df_text = pd.DataFrame({"x": range(3), "v": ["True", "False", "false"]})
    assert ColSplitter("v")(df_text) == ([1, 2], [0])
    with pytest.raises(DataError, match="is_valid"):
        ColSplitter()(df_text)


def test_train_test_splitter_stratified() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    train, valid = TrainTestSplitter(test_size=0.2, random_state=0, stratify=labels)(labels)
    assert len(valid) == 20 and len(train) == 80
    counts = Counter(labels[i] for i in valid)
    assert counts == {"a": 10, "b": 6, "c": 4}
    assert TrainTestSplitter(0.2, random_state=0, stratify=labels)(labels) == (train, valid)
    # A rare class keeps at least one training item.
    rare = ["a"] * 10 + ["b"]
    train, valid = TrainTestSplitter(test_size=0.5, random_state=0, stratify=rare)(rare)
    assert 10 in train
    # Without shuffling the last items are the test set; an int is a count.
    assert TrainTestSplitter(test_size=3, shuffle=False)(list(range(10))) == (list(range(7)), [7, 8, 9])


def test_labellers(tree: Path) -> None:
    path = tree / "train" / "cat" / "great_pyrenees_12.jpg"
    assert parent_label(path) == "cat"
    assert RegexLabeller(r"/([a-z_]+)_\d+\.jpg$")(path) == "great_pyrenees"
    assert using_attr(RegexLabeller(r"^([a-z_]+)_\d+", match=True), "name")(path) == "great_pyrenees"
    with pytest.raises(DataError, match="does not match"):
        RegexLabeller(r"^dog")(path)


def test_col_reader_rows_and_frames() -> None:
    df = pd.DataFrame({"name": ["a", "b"], "tags": ["x y", "y"], "v": [1.5, 2.0]})
    row = df.iloc[0]
    assert ColReader("name", pref="img/", suff=".png")(row) == "img/a.png"
    assert ColReader("name", pref=Path("root"))(row) == Path("root/a")
    assert ColReader("tags", label_delim=" ")(row) == ["x", "y"]
    assert ColReader(["name", "v"])(row) == ["a", 1.5]
    assert ColReader(2)(row) == 1.5
    assert ColReader("tags", label_delim=" ").read_frame(df) == [["x", "y"], ["y"]]
    assert ColReader(["name", "v"]).read_frame(df) == [["a", 1.5], ["b", 2.0]]
    with pytest.raises(DataError, match="name"):
        ColReader("label")(row)


def test_random_splitter_uses_torch_rng() -> None:
    torch.manual_seed(0)
    a = RandomSplitter(0.5)(list(range(20)))
    b = RandomSplitter(0.5)(list(range(20)))
    assert a != b  # draws advance torch's generator


def test_end_mask_file_and_random_subset_splitters(tmp_path):
    import numpy as np

    from ember.data.items import EndSplitter, FileSplitter, MaskSplitter, RandomSubsetSplitter

    items = list(range(10))
    assert EndSplitter(0.3)(items) == ([0, 1, 2, 3, 4, 5, 6], [7, 8, 9])
    assert EndSplitter(0.3, valid_last=False)(items) == ([3, 4, 5, 6, 7, 8, 9], [0, 1, 2])
    with pytest.raises(ConfigError, match="valid_pct"):
        EndSplitter(1.0)

    assert MaskSplitter(np.arange(10) % 4 == 0)(items) == ([1, 2, 3, 5, 6, 7, 9], [0, 4, 8])
    with pytest.raises(DataError, match="len\\(mask\\)"):
        MaskSplitter([True, False])(items)
    with pytest.raises(ConfigError, match="boolean"):
        MaskSplitter([0, 1, 0])  # positions are IndexSplitter's job

    files = [tmp_path / "imgs" / f"{i}.jpg" for i in range(5)]
    (tmp_path / "valid.txt").write_text("1.jpg\n\n3.jpg\nnot_there.jpg\n")
    assert FileSplitter(tmp_path / "valid.txt")(files) == ([0, 2, 4], [1, 3])
    (tmp_path / "other.txt").write_text("x.jpg\n")
    with pytest.raises(DataError, match="None of the items"):
        FileSplitter(tmp_path / "other.txt")(files)
    with pytest.raises(DataError, match="cannot read"):
        FileSplitter(tmp_path / "missing.txt")
    # Items that are not paths (numbers, the rows of a DataFrame) are refused, pointing to the splitters for them.
    with pytest.raises(DataError, match=r"file paths.*`items\[0\]=1` \(int\).*ColSplitter"):
        FileSplitter(tmp_path / "valid.txt")([1, 2, 3])
    with pytest.raises(DataError, match="DataFrame.*FuncSplitter"):
        FileSplitter(tmp_path / "valid.txt")(pd.DataFrame({"fname": ["1.jpg", "2.jpg"]}))

    many = list(range(100))
    train, valid = RandomSubsetSplitter(0.3, 0.1, seed=1)(many)
    assert len(train) == 30 and len(valid) == 10 and not set(train) & set(valid)
    assert RandomSubsetSplitter(0.3, 0.1, seed=1)(many) == (train, valid)  # the seed fixes it
    with pytest.raises(ConfigError, match="<= 1"):
        RandomSubsetSplitter(0.8, 0.3)
