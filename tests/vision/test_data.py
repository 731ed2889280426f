"""ImageDataLoaders factories on tiny image folders made in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from ember.core.errors import DataError
from ember.data.block import MultiCategoryBlock
from ember.vision.augment import Normalize, Resize
from ember.vision.data import ImageDataLoaders

KW = {"bs": 4, "device": "cpu", "num_workers": 0}


def _save(path, value: int, size=(10, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    """train/{cat,dog}/ (5 each) and valid/{cat,dog}/ (2 each); cats dark, dogs bright; varied sizes."""
    for split, n in (("train", 5), ("valid", 2)):
        for label, value in (("cat", 30), ("dog", 220)):
            for i in range(n):
                _save(tmp_path / split / label / f"{label}_{split}_{i}.png", value, size=(10 + i, 12))
    return tmp_path


def test_from_folder_vocab_sizes_and_split(folder):
    dls = ImageDataLoaders.from_folder(folder, item_tfms=Resize(8), **KW)
    assert dls.vocab == ["cat", "dog"] and dls.c == 2
    assert len(dls.train_ds) == 10 and len(dls.valid_ds) == 4
    xb, yb = dls.valid.one_batch()
    assert xb.shape == (4, 3, 8, 8) and xb.dtype == torch.float32
    # labels follow the folders: cats are dark, dogs bright
    assert torch.equal(yb, (xb.mean((1, 2, 3)) > 0.5).long())


def test_from_folder_random_split_and_vocab(folder):
    dls = ImageDataLoaders.from_folder(folder, valid_pct=0.25, seed=0, vocab=["dog", "cat"], item_tfms=Resize(8), **KW)
    assert dls.vocab == ["dog", "cat"]
    assert len(dls.train_ds) + len(dls.valid_ds) == 14 and len(dls.valid_ds) in (3, 4)


def test_from_folder_missing_subfolder(folder):
    with pytest.raises(DataError, match="valid_pct"):
        ImageDataLoaders.from_folder(folder, valid="validation", **KW)
    with pytest.raises(DataError, match="no such folder"):
        ImageDataLoaders.from_folder(folder / "nothing", **KW)


def test_from_name_func_and_re(folder):
    fnames = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    dls = ImageDataLoaders.from_name_func(
        folder, fnames, lambda name: name.split("_")[0].upper(), valid_pct=0.5, seed=1, item_tfms=Resize(8), **KW
    )
    assert dls.vocab == ["CAT", "DOG"]
    assert len(dls.train_ds) == 7 and len(dls.valid_ds) == 7
    dls = ImageDataLoaders.from_name_re(folder, fnames, r"^([a-z]+)_", item_tfms=Resize(8), **KW)
    assert dls.vocab == ["cat", "dog"]
    dls = ImageDataLoaders.from_path_re(folder, fnames, r"(train|valid)/", item_tfms=Resize(8), **KW)
    assert dls.vocab == ["train", "valid"]


def test_from_df_and_csv(folder):
    rows = [
        (f"{split}/{lab}/{lab}_{split}_{i}", lab, split == "valid")
        for split, n in (("train", 5), ("valid", 2))
        for lab in ("cat", "dog")
        for i in range(n)
    ]
    df = pd.DataFrame(rows, columns=["name", "label", "is_valid"])
    dls = ImageDataLoaders.from_df(
        df, path=folder, fn_col="name", suff=".png", label_col="label", valid_col="is_valid", item_tfms=Resize(8), **KW
    )
    assert dls.vocab == ["cat", "dog"] and len(dls.valid_ds) == 4
    df.to_csv(folder / "labels.csv", index=False)
    dls = ImageDataLoaders.from_csv(
        folder,
        fn_col=0,
        label_col=1,
        suff=".png",
        valid_col="is_valid",
        item_tfms=Resize(8),
        batch_tfms=[Normalize()],
        **KW,
    )
    assert dls.vocab == ["cat", "dog"]
    xb, _ = dls.one_batch()
    assert abs(float(xb.mean())) < 1e-4  # Normalize() took its stats from this first batch
    with pytest.raises(DataError, match="no file"):
        ImageDataLoaders.from_csv(folder, csv_fname="missing.csv", **KW)


def test_from_df_multi_label(folder):
    names = [f"train/cat/cat_train_{i}.png" for i in range(5)] + [f"train/dog/dog_train_{i}.png" for i in range(5)]
    labels = ["cat small"] * 3 + ["cat"] * 2 + ["dog big"] * 5
    df = pd.DataFrame({"fname": names, "labels": labels})
    dls = ImageDataLoaders.from_df(df, path=folder, label_delim=" ", valid_pct=0.2, seed=0, item_tfms=Resize(8), **KW)
    block = dls.blocks[1]
    assert isinstance(block, MultiCategoryBlock) and block.vocab == ["big", "cat", "dog", "small"]
    _, yb = dls.train.one_batch()
    assert yb.shape[1] == 4 and set(yb.unique().tolist()) <= {0.0, 1.0}


def test_from_lists(folder):
    fnames = [f"train/cat/cat_train_{i}.png" for i in range(5)] + [f"train/dog/dog_train_{i}.png" for i in range(5)]
    labels = [0] * 5 + [1] * 5
    dls = ImageDataLoaders.from_lists(
        folder, fnames, labels, valid_pct=0.2, seed=0, item_tfms=Resize(6), img_mode="L", **KW
    )
    assert dls.vocab == ["0", "1"]
    xb, _ = dls.train.one_batch()
    assert xb.shape == (4, 1, 6, 6)
    with pytest.raises(DataError, match="labels"):
        ImageDataLoaders.from_lists(folder, fnames, labels[:-1], **KW)
