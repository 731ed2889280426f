"""Tests for ember.data.block: the generic blocks and DataBlock (datasets, dataloaders, summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from ember.core.errors import ConfigError, DataError
from ember.core.recipe import dump, load
from ember.data.block import CategoryBlock, DataBlock, MultiCategoryBlock, RegressionBlock, TransformBlock
from ember.data.items import ColReader, ColSplitter, GrandparentSplitter, IndexSplitter, get_files, parent_label
from ember.data.transform import Transform
from ember.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat


def read_numbers(path: Path) -> torch.Tensor:
    return torch.tensor([float(v) for v in Path(path).read_text().split()])  # (3,)


def NumberBlock() -> TransformBlock:  # noqa: N802 - used like a block class
    return TransformBlock(kind="numbers", encode=read_numbers)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """train/{a,b}/k.txt and valid/{a,b}/k.txt, 4 files per class; class b holds larger numbers."""
    for split in ("train", "valid"):
        for label, base in (("a", 0), ("b", 10)):
            (tmp_path / split / label).mkdir(parents=True)
            for k in range(4):
                (tmp_path / split / label / f"{k}.txt").write_text(f"{base + k} {base + k + 1} {base + k + 2}")
    return tmp_path


def txt_files(path: Path) -> list[Path]:
    return get_files(path, extensions=".txt")


# -------------------------------------------------------------------------------------------- blocks
def test_category_block_vocab_encode_decode() -> None:
    block = CategoryBlock()
    block.setup(["dog", "cat", "dog", 3])
    assert block.vocab == ["3", "cat", "dog"]  # sorted by text for mixed types; labels kept as text
    x = block.encode("dog")
    assert x.dtype == torch.long and x.shape == () and int(x) == 2
    assert block.decode(x) == "dog" and block.encode(3).item() == 0
    assert block.n_out == 3 and isinstance(block.loss_func, CrossEntropyLossFlat)
    unsorted = CategoryBlock(sort=False)
    unsorted.setup(["z", "a", "z"])
    assert unsorted.vocab == ["z", "a"]
    ints = CategoryBlock()
    ints.setup([10, 2, 1])
    assert ints.vocab == ["1", "2", "10"]  # numeric order, not text order


def test_category_block_unknown_label_and_add_na() -> None:
    block = CategoryBlock()
    block.setup(["a", "b"])
    with pytest.raises(DataError, match="'c' is not in the vocabulary.*splitter that keeps every class"):
        block.encode("c")
    na = CategoryBlock(add_na=True)
    na.setup(["a", "b"])
    assert na.vocab == ["#na#", "a", "b"] and int(na.encode("c")) == 0 and int(na.encode(None)) == 0
    given = CategoryBlock(vocab=["x", "y"])
    given.setup(["a"])  # a given vocab is kept
    assert given.vocab == ["x", "y"]


def test_multicategory_round_trip() -> None:
    block = MultiCategoryBlock(label_delim=";")
    block.setup(["cat;dog", "bird", ["dog"], ""])
    assert block.vocab == ["bird", "cat", "dog"]
    x = block.encode("dog;cat")
    assert x.dtype == torch.float32 and x.tolist() == [0.0, 1.0, 1.0]
    assert block.decode(x) == ["cat", "dog"]
    assert block.encode("").tolist() == [0.0, 0.0, 0.0]
    assert block.n_out == 3 and isinstance(block.loss_func, BCEWithLogitsLossFlat)
    with pytest.raises(DataError, match="'fish'"):
        block.encode(["fish"])
    enc = MultiCategoryBlock(encoded=True)
    enc.setup([[1, 0, 1, 0]])
    assert enc.vocab == ["0", "1", "2", "3"]
    assert enc.decode(enc.encode([0, 1, 1, 0])) == ["1", "2"]


def test_regression_block_scalar_and_vector() -> None:
    block = RegressionBlock()
    block.setup([1.5, 2.0])
    x = block.encode("2.5")
    assert x.shape == () and x.dtype == torch.float32 and block.decode(x) == 2.5
    assert block.n_out == 1 and isinstance(block.loss_func, MSELossFlat)
    vec = RegressionBlock()
    vec.setup([[1, 2], [3, 4]])
    assert vec.n_out == 2 and vec.decode(vec.encode([0.5, 1])) == [0.5, 1.0]
    with pytest.raises(DataError, match="2 value"):
        vec.encode([1, 2, 3])
    with pytest.raises(DataError, match="a number"):
        block.encode("abc")


@pytest.mark.parametrize(
    "block",
    [
        CategoryBlock(vocab=["a", "b"], add_na=True),
        MultiCategoryBlock(vocab=["x", "y"], label_delim=","),
        RegressionBlock(n_out=3),
        TransformBlock(kind="numbers", n_out=2),
    ],
)
def test_block_recipe_round_trip(block: TransformBlock) -> None:
    entry = json.loads(json.dumps(dump(block)))
    again = load(entry)
    assert type(again) is type(block) and again.to_recipe() == block.to_recipe()
    assert again.kind == block.kind and again.n_out == block.n_out
    if isinstance(block, CategoryBlock):
        assert again.vocab == ["#na#", "a", "b"] and int(again.encode("b")) == 2
    if isinstance(block, MultiCategoryBlock):
        assert again.encode("y,x").tolist() == [1.0, 1.0]


def test_transform_block_collate_error_names_shapes() -> None:
    block = TransformBlock(kind="image")
    with pytest.raises(DataError, match=r"shapes differ.*\(2,\).*\(3,\)"):
        block.collate([torch.zeros(2), torch.zeros(3)])


# ----------------------------------------------------------------------------------------- DataBlock
def test_datablock_defaults_and_validation() -> None:
    db = DataBlock([TransformBlock, CategoryBlock])
    assert db.n_inp == 1 and db.kinds == ("any", "category")
    assert DataBlock([TransformBlock, TransformBlock, CategoryBlock]).n_inp == 2
    with pytest.raises(ConfigError, match="get_y"):
        DataBlock([TransformBlock, CategoryBlock], get_y=[parent_label, parent_label])
    with pytest.raises(ConfigError, match="n_inp"):
        DataBlock([TransformBlock, CategoryBlock], n_inp=3)
    with pytest.raises(ConfigError, match="blocks"):
        DataBlock(CategoryBlock)


def test_datablock_merges_block_and_user_tfms() -> None:
    class Scale(Transform):
        def __init__(self, k: float = 2.0) -> None:
            self.k = k

    class Other(Transform):
        pass

    default, mine = Scale(2.0), Scale(3.0)
    block = TransformBlock(kind="numbers", item_tfms=[default, Other()])
    db = DataBlock([block, CategoryBlock], item_tfms=[mine])
    assert [type(t).__name__ for t in db.item_tfms] == ["Other", "Scale"] and db.item_tfms[1] is mine


def test_datablock_dataloaders_from_folder(folder: Path) -> None:
    db = DataBlock(
        [NumberBlock(), CategoryBlock], get_items=txt_files, splitter=GrandparentSplitter(), get_y=parent_label
    )
    dls = db.dataloaders(folder, bs=3, device="cpu")
    assert dls.vocab == ["a", "b"] and dls.c == 2 and dls.n_inp == 1
    assert dls.kinds == ("numbers", "category") and isinstance(dls.loss_func, CrossEntropyLossFlat)
    assert len(dls.train_ds) == 8 and len(dls.valid_ds) == 8
    assert len(dls.train) == 2 and len(dls.valid) == 3  # drop_last on training only
    xb, yb = dls.one_batch()
    assert xb.shape == (3, 3) and xb.dtype == torch.float32 and yb.shape == (3,) and yb.dtype == torch.long
    # Labels agree with the data: class b holds numbers >= 10.
    assert torch.equal(yb, (xb[:, 0] >= 10).long())


def test_datablock_from_dataframe(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "tags": ["a b", "b", "a", "b", "a b", "a"],
            "y": [1, 2, 3, 4, 5, 6],
            "is_valid": [0, 0, 0, 0, 1, 1],
        }
    )
    db = DataBlock(
        [RegressionBlock, MultiCategoryBlock, RegressionBlock],
        n_inp=1,
        get_x=ColReader("x"),
        get_y=[ColReader("tags", label_delim=" "), ColReader("y")],
        splitter=ColSplitter(),
    )
    dsets = db.datasets(df)
    assert len(dsets.train) == 4 and len(dsets.valid) == 2
    assert dsets.valid.items["x"].tolist() == [0.5, 0.6]
    x, tags, y = dsets.valid[0]
    assert float(x) == pytest.approx(0.5) and tags.tolist() == [1.0, 1.0] and float(y) == 5.0
    assert dsets.valid.decode(dsets.valid[1]) == (pytest.approx(0.6), ["a"], 6.0)
    dls = db.dataloaders(df, bs=2, device="cpu")
    assert dls.loss_func is None  # two targets: the user chooses the loss
    xb, tb, yb = dls.one_batch()
    assert xb.shape == (2,) and tb.shape == (2, 2) and yb.shape == (2,)


def test_datablock_unseen_validation_label_is_reported(folder: Path) -> None:
    (folder / "valid" / "c").mkdir()
    (folder / "valid" / "c" / "0.txt").write_text("1 2 3")
    db = DataBlock(
        [NumberBlock(), CategoryBlock], get_items=txt_files, splitter=GrandparentSplitter(), get_y=parent_label
    )
    with pytest.raises(DataError, match=r"valid/c/0.txt.*validation set.*'c' is not in the vocabulary"):
        db.datasets(folder)


def test_summary_good_pipeline(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = DataBlock(
        [NumberBlock(), CategoryBlock], get_items=txt_files, splitter=GrandparentSplitter(), get_y=parent_label
    )
    db.summary(folder, bs=2)
    out = capsys.readouterr().out
    assert "16 items" in out and "8 training, 8 validation" in out
    assert "get_y (parent_label) -> str: 'a'" in out
    assert "vocab (2): ['a', 'b']" in out
    assert "Tensor shape=(3,) dtype=float32 values=[0.0, 1.0, 2.0]" in out
    assert "collate 2 training samples -> (Tensor shape=(2, 3)" in out
    assert "Every step worked." in out and "FAILED" not in out


def test_summary_broken_get_y(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def bad_label(path: Path) -> str:
        return path.stem.split("_")[1]

    db = DataBlock([NumberBlock(), CategoryBlock], get_items=txt_files, splitter=GrandparentSplitter(), get_y=bad_label)
    db.summary(folder)  # returns normally
    out = capsys.readouterr().out
    assert "FAILED at step 'get_y (bad_label) for block 1' on item 0" in out
    assert "train/a/0.txt" in out and "IndexError: list index out of range" in out
    assert "Every step worked." not in out


def test_summary_broken_collate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = DataBlock(
        [TransformBlock(kind="vec", encode=lambda n: torch.zeros(n)), CategoryBlock],
        get_y=lambda n: "even" if n % 2 == 0 else "odd",
        splitter=IndexSplitter([0]),
    )
    db.summary([1, 2, 3, 4], bs=3)
    out = capsys.readouterr().out
    assert "FAILED at step 'collate 3 samples'" in out and "shapes differ" in out


def test_datablock_no_items(tmp_path: Path) -> None:
    db = DataBlock([NumberBlock(), CategoryBlock], get_items=txt_files, get_y=parent_label)
    with pytest.raises(DataError, match="found no items"):
        db.datasets(tmp_path)
    with pytest.raises(ConfigError, match="get_items"):
        DataBlock([NumberBlock(), CategoryBlock]).datasets(tmp_path)


class _Stats(Transform):
    """A batch transform that learns (like Normalize()) from the first training batch it sees."""

    def __init__(self) -> None:
        self.seen = None

    def encode_numbers(self, x: torch.Tensor) -> torch.Tensor:
        if self.seen is None:
            self.seen = float(x.mean())
        return x


def test_each_dataloaders_call_has_its_own_blocks_and_batch_tfms(
    folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    for split in ("train", "valid"):
        for label in ("a", "c"):
            (other / split / label).mkdir(parents=True)
            (other / split / label / "0.txt").write_text("5 6 7")
    stats = _Stats()
    db = DataBlock(
        [NumberBlock(), CategoryBlock],
        get_items=txt_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
        batch_tfms=[stats],
    )
    dls1 = db.dataloaders(folder, bs=2, device="cpu")
    dsets1 = db.datasets(folder)
    db.summary(other, bs=2)
    dls2 = db.dataloaders(other, bs=2, device="cpu")
    assert dls2.vocab == ["a", "c"]
    assert dls1.vocab == ["a", "b"] and dsets1.vocab == ["a", "b"]  # not relearned from the other folder
    assert dls1.valid.decode_batch(dls1.valid.one_batch())[0][1] == "a"
    tf1 = next(t for t in dls1.train.batch_tfms if isinstance(t, _Stats))
    tf2 = next(t for t in dls2.train.batch_tfms if isinstance(t, _Stats))
    assert tf1 is not tf2 and stats.seen is None  # the summary and each loaders learn on their own copy
    assert next(t for t in dls1.valid.batch_tfms if isinstance(t, _Stats)) is tf1  # shared within one loaders


def test_category_messages_name_the_real_cause() -> None:
    learned = CategoryBlock()
    learned.setup(["a", "b"])
    with pytest.raises(DataError, match="label is missing") as err:
        learned.encode(float("nan"))
    assert "splitter" not in str(err.value)
    given = CategoryBlock(vocab=["a", "b"])
    with pytest.raises(DataError, match=r"not in the vocabulary given \(vocab=") as err:
        given.encode("c")
    assert "learned from the training labels" not in str(err.value)
