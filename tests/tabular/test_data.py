"""Tests of the tabular loaders: batches are slices of the processed tensors, splits, test_dl, show_batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from ember.core.errors import ConfigError, DataError
from ember.data.loaders import DeviceLoader
from ember.tabular import (
    BatchIndexSampler,
    Categorify,
    FillMissing,
    Normalize,
    SliceLoader,
    TabularDataLoaders,
    TabularPandas,
    TensorBatches,
    tensor_loader,
)
from ember.tabular.procs import TabularProcessor

PROCS = [Categorify, FillMissing, Normalize]


def _table(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "cat1": rng.choice(["a", "b", "c"], n),
            "cat2": rng.integers(0, 5, n),
            "num1": rng.normal(10, 2, n),
            "num2": rng.normal(0, 1, n),
        }
    )
    df.loc[::17, "num1"] = np.nan
    df["label"] = np.where(df["num2"] > 0, "pos", "neg")
    df["value"] = df["num2"] * 3.0 + 1.0
    return df


def _dls(df: pd.DataFrame | None = None, **kwargs) -> TabularDataLoaders:
    df = _table() if df is None else df
    args = dict(y_names="label", cat_names=["cat1", "cat2"], cont_names=["num1", "num2"], procs=PROCS, bs=32)
    args.update(kwargs)
    return TabularDataLoaders.from_df(df, device="cpu", seed=0, **args)


def test_sampler_yields_every_position_once_per_epoch():
    s = BatchIndexSampler(10, 4, shuffle=True, drop_last=False, generator=torch.Generator().manual_seed(0))
    batches = list(s)
    assert len(s) == 3 and [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    s2 = BatchIndexSampler(10, 4, shuffle=False, drop_last=True)
    assert len(s2) == 2 and torch.cat(list(s2)).tolist() == list(range(8))
    with pytest.raises(ConfigError, match="bs"):
        BatchIndexSampler(10, 0)


def test_tensor_batches_slice_all_tensors_at_once():
    a, b = torch.arange(10), torch.arange(10).float() * 2
    ds = TensorBatches(a, b)
    xa, xb = ds[torch.tensor([3, 1])]
    assert xa.tolist() == [3, 1] and xb.tolist() == [6.0, 2.0]
    assert [t.tolist() for t in ds[[0, 9]]] == [[0, 9], [0.0, 18.0]]
    with pytest.raises(DataError, match="one length"):
        TensorBatches(a, torch.zeros(3))


def test_tensor_loader_is_a_torch_dataloader_equal_to_direct_slicing():
    x, y = torch.randn(50, 3), torch.arange(50)
    dl = tensor_loader((x, y), bs=16, shuffle=True, generator=torch.Generator().manual_seed(1))
    assert isinstance(dl, DataLoader) and len(dl) == 4
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(1))
    for (xb, yb), idx in zip(dl, perm.split(16)):
        assert torch.equal(xb, x[idx]) and torch.equal(yb, y[idx])


def test_from_df_batches():
    dls = _dls()
    assert isinstance(dls.train, DeviceLoader) and isinstance(dls.train, SliceLoader)
    assert dls.n_inp == 2 and dls.train.kinds == ("tabular_cat", "tabular_cont", "category")
    x_cat, x_cont, y = dls.one_batch()
    assert x_cat.dtype == torch.int64 and x_cat.shape == (32, 3)  # cat1, cat2, num1_na
    assert x_cont.dtype == torch.float32 and x_cont.shape == (32, 2)
    assert y.dtype == torch.int64 and y.shape == (32,)
    assert dls.c == 2 and dls.vocab == ["neg", "pos"]
    assert dls.bs == 32 and dls.train.drop_last and not dls.valid.drop_last and dls.valid.bs == 64
    assert len(dls.train) == 160 // 32 and len(dls.valid) == 1
    assert type(dls.loss_func).__name__ == "CrossEntropyLossFlat"


def test_training_epoch_covers_the_training_rows_and_valid_is_in_order():
    dls = _dls(valid_idx=list(range(150, 200)), bs=50)
    ys = torch.cat([b[2] for b in dls.train])
    assert len(ys) == 150
    assert sorted(torch.cat([b[1][:, 1] for b in dls.train]).tolist()) == sorted(dls.tabular.train[1][:, 1].tolist())
    valid = torch.cat([b[1] for b in dls.valid])
    assert torch.equal(valid, dls.tabular.valid[1])


def test_valid_idx_and_splitter_and_seeded_repeatability():
    df = _table()
    dls = _dls(df, valid_idx=[0, 1, 2, 3])
    assert len(dls.tabular.valid[0]) == 4 and len(dls.tabular.train[0]) == 196
    dls2 = _dls(df, splitter=lambda items: (list(items)[:100], list(items)[100:]))
    assert len(dls2.tabular.valid[0]) == 100
    a = [b[1] for b in _dls(df)[0]]
    b = [b[1] for b in _dls(df)[0]]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_normalization_uses_the_training_rows_only():
    df = _table()
    df.loc[150:, "num2"] += 100.0  # the validation rows are far off
    dls = _dls(df, valid_idx=list(range(150, 200)))
    train_conts = dls.tabular.train[1]
    assert train_conts[:, 1].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert dls.tabular.valid[1][:, 1].mean().item() > 10


def test_regression_and_multi_target():
    df = _table()
    dls = _dls(df, y_names="value")
    assert dls.processor.y_kind == "regression" and dls.c == 1
    _, _, y = dls.one_batch()
    assert y.dtype == torch.float32 and y.shape == (32,)
    assert type(dls.loss_func).__name__ == "MSELossFlat"
    df["value2"] = df["value"] * 2
    dls2 = _dls(df, y_names=["value", "value2"])
    assert dls2.one_batch()[2].shape == (32, 2) and dls2.c == 2
    dls3 = _dls(df, y_names="cat2", cat_names=["cat1"], y_block="regression")
    assert dls3.processor.y_kind == "regression"


def test_show_batch_is_decoded():
    df = _table()
    dls = _dls(df, valid_idx=list(range(100, 200)), shuffle=False)
    shown = dls.show_batch(max_n=5, print_out=False)
    assert list(shown.columns) == ["cat1", "cat2", "num1_na", "num1", "num2", "label"]
    assert shown["cat1"].tolist() == df["cat1"].iloc[:5].tolist()
    assert shown["cat2"].tolist() == df["cat2"].iloc[:5].tolist()
    np.testing.assert_allclose(shown["num2"].to_numpy(float), df["num2"].iloc[:5].to_numpy(), rtol=1e-5)
    assert shown["label"].tolist() == df["label"].iloc[:5].tolist()
    assert bool(shown["num1_na"].iloc[0]) and np.isfinite(shown["num1"].iloc[0])  # row 0 had num1 missing


def test_test_dl_processes_new_rows_like_training_rows():
    df = _table()
    dls = _dls(df)
    new = pd.DataFrame({"cat1": ["zzz", "a"], "cat2": [1, 2], "num1": [np.nan, 11.0], "num2": [0.5, -0.5]})
    dl = dls.test_dl(new)
    (batch,) = list(dl)
    assert len(batch) == 2  # no labels
    x_cat, x_cont = batch
    assert x_cat[0, 0].item() == 0  # unseen category -> #na#
    assert x_cat[0, 2].item() == 2 and x_cat[1, 2].item() == 1  # num1_na True / False
    labelled = dls.test_dl(df.iloc[:10])
    assert len(labelled.one_batch()) == 3


def test_new_changes_the_batch_size_and_keeps_the_design():
    dls = _dls()
    small = dls.train.new(bs=8)
    assert isinstance(small, SliceLoader) and small.bs == 8 and small.one_batch()[0].shape[0] == 8
    bigger = dls.new(bs=64)
    assert bigger.train.bs == 64 and bigger.processor is dls.processor


def test_tabular_pandas_dataloaders():
    to = TabularPandas(_table(), PROCS, ["cat1"], ["num2"], "label", splits=(range(150), range(150, 200)))
    assert to.cat_names == ["cat1"] and len(to.train[0]) == 150
    dls = to.dataloaders(bs=16, device="cpu")
    assert dls.one_batch()[0].shape == (16, 1)
    with pytest.raises(DataError, match="positions"):
        TabularPandas(_table(), PROCS, ["cat1"], ["num2"], "label", splits=([0, 1], [500]))


def test_tabular_pandas_splits_as_pandas_for_other_models():
    import copy

    df = _table(40).set_index(pd.Index([f"r{i}" for i in range(40)]))
    df.loc["r3", "num1"] = np.nan
    to = TabularPandas(df, PROCS, ["cat1"], ["num1", "num2"], "label", splits=(range(30), range(30, 40)))
    xs, y = to.train.xs, to.train.y
    cats, conts, ys = to.train  # still the tensors
    assert list(xs.columns) == ["cat1", "num1_na", "num1", "num2"] and list(xs.index[:2]) == ["r0", "r1"]
    assert (xs["cat1"].to_numpy() == cats[:, 0].numpy()).all() and xs["num1_na"]["r3"] == 2  # FillMissing's flag
    assert np.allclose(xs["num2"], conts[:, 1].numpy()) and abs(float(xs["num2"].mean())) < 1e-5  # normalized
    assert y.name == "label" and (y.to_numpy() == ys.numpy()).all() and list(to.valid.y.index) == list(df.index[30:])
    assert to.valid.xs.shape == (10, 4)
    copied = copy.deepcopy(to)
    assert copied.train.xs.equals(xs)
    reg = TabularPandas(df, PROCS, ["cat1"], ["num1"], ["value", "num2"], y_block="regression")
    assert list(reg.train.y.columns) == ["value", "num2"] and len(reg.valid.xs) == 0
    unlabelled = TabularPandas(df.drop(columns="label"), PROCS, ["cat1"], ["num2"])
    assert unlabelled.train.y is None and unlabelled.train.xs.shape == (40, 2)


def test_editing_the_pandas_target_leaves_the_training_targets_alone():
    df = _table(40)
    to = TabularPandas(df, PROCS, ["cat1"], ["num2"], "label", splits=(range(30), range(30, 40)))
    reg = TabularPandas(df, PROCS, ["cat1"], ["num1"], ["value", "num2"], y_block="regression")
    before, reg_before = to.train[2].clone(), reg.train[2].clone()
    y, reg_y = to.train.y, reg.train.y
    # Without copy-on-write (pandas 2) a Series over the tensor's memory would write through to it.
    assert not np.shares_memory(y.to_numpy(), to.train[2].numpy())
    assert not np.shares_memory(reg_y.to_numpy(), reg.train[2].numpy())
    y.iloc[:5] = 7
    reg_y.iloc[:5, 0] = -100.0
    assert torch.equal(to.train[2], before) and torch.equal(reg.train[2], reg_before)


def test_from_csv(tmp_path):
    path = tmp_path / "t.csv"
    _table().to_csv(path, index=False)
    dls = TabularDataLoaders.from_csv(path, y_names="label", cat_names=["cat1"], cont_names=["num1"], procs=PROCS)
    assert dls.one_batch()[0].shape[1] == 2
    with pytest.raises(DataError, match="No CSV"):
        TabularDataLoaders.from_csv(tmp_path / "missing.csv", y_names="label")


def test_bad_input_errors_name_the_column():
    df = _table()
    with pytest.raises(DataError, match="nme1"):
        _dls(df, cont_names=["nme1"])
    with pytest.raises(DataError, match="labl"):
        _dls(df, y_names="labl")
    with pytest.raises(DataError, match="`cat1`"):
        _dls(df, cat_names=["cat2"], cont_names=["cat1"])
    with pytest.raises(ConfigError, match="y_names"):
        TabularDataLoaders.from_df(df, cat_names=["cat1"])


def test_split_tensors_are_the_rows_of_the_processed_table():
    df = _table()
    before = df.copy()
    rng = np.random.default_rng(3)
    train, valid = rng.permutation(200)[:150], np.array([199, 0, 7, 7])  # unordered, a repeat: positions as given
    to = TabularPandas(df, PROCS, ["cat1", "cat2"], ["num1", "num2"], "label", splits=(train, valid))
    whole = TabularProcessor(["cat1", "cat2"], ["num1", "num2"], "label", procs=PROCS).setup(df, train)
    for part, idx in ((to.train, train), (to.valid, valid)):
        assert len(part) == 3
        for t, full in zip(part, whole):
            assert t.is_contiguous() and torch.equal(t, full[torch.from_numpy(idx)])
    every = TabularPandas(df, PROCS, ["cat1"], ["num1"], "label")  # no splits: every row trains
    alone = TabularProcessor(["cat1"], ["num1"], "label", procs=PROCS).setup(df)
    assert len(every.valid[0]) == 0 and all(torch.equal(a, b) for a, b in zip(every.train, alone))
    pd.testing.assert_frame_equal(df, before)  # the user's table is never modified


def test_valid_idx_is_sorted_and_deduplicated_and_checked():
    dls = _dls(valid_idx=[5, 3, 3, 0])
    assert dls.tabular.splits[1].tolist() == [0, 3, 5]
    assert dls.tabular.splits[0].tolist() == [i for i in range(200) if i not in (0, 3, 5)]
    with pytest.raises(DataError, match="positions"):
        _dls(valid_idx=[3, 200])


def test_sampler_of_no_rows_yields_no_batch():
    assert list(BatchIndexSampler(0, 4)) == [] and len(BatchIndexSampler(0, 4)) == 0
    assert list(BatchIndexSampler(3, 4, drop_last=True)) == []  # fewer rows than one batch, dropped
    empty = SliceLoader(tensor_loader((torch.zeros(0, 2), torch.zeros(0)), bs=8))
    assert list(empty) == [] and list(empty.dl) == []
    assert BatchIndexSampler(10, np.int64(4)).bs == 4  # numpy integers are integers
    with pytest.raises(ConfigError, match="bs"):
        BatchIndexSampler(10, True)


def test_valid_idx_and_splits_accept_a_boolean_mask_of_the_rows():
    df = _table()
    dls = _dls(df, valid_idx=(df.index >= 150).tolist())  # a mask, not the positions 0 and 1
    assert dls.tabular.splits[1].tolist() == list(range(150, 200)) and len(dls.tabular.valid[0]) == 50
    assert (
        _dls(df, valid_idx=df["cat1"] == "a").tabular.splits[1].tolist() == np.flatnonzero(df["cat1"] == "a").tolist()
    )
    to = TabularPandas(df, PROCS, ["cat1"], ["num1"], "label", splits=(df.num2 > 0, df.num2 <= 0))
    assert len(to.train[0]) == int((df.num2 > 0).sum()) and len(to.valid[0]) == int((df.num2 <= 0).sum())
    with pytest.raises(DataError, match=r"`valid_idx` is a boolean mask of 3 values.*200 rows"):
        _dls(df, valid_idx=[True, False, True])
    with pytest.raises(DataError, match=r"`valid_idx` holds 'a'"):
        _dls(df, valid_idx=["a", "b"])


def test_from_df_refuses_unknown_options_and_no_input_columns():
    df = _table()
    with pytest.raises(ConfigError, match=r"unknown keyword argument\(s\) \['foo'\]"):
        _dls(df, foo=1)
    with pytest.raises(ConfigError, match="cat_names.*cont_names"):
        TabularDataLoaders.from_df(df, y_names="label")
    assert _dls(df, bs=np.int64(16)).bs == 16


def test_from_csv_passes_read_csv_options_on(tmp_path):
    path = tmp_path / "t.tsv"
    _table().to_csv(path, sep="\t", index=False)
    dls = TabularDataLoaders.from_csv(
        path, sep="\t", y_names="label", cat_names=["cat1"], cont_names=["num1"], procs=PROCS, bs=16
    )
    assert dls.bs == 16 and dls.cat_names == ["cat1", "num1_na"]


def test_each_loader_shows_its_batch_as_a_table():
    dls = _dls()
    shown = dls.valid.show_batch(max_n=3, print_out=False)
    assert list(shown.columns) == ["cat1", "cat2", "num1_na", "num1", "num2", "label"] and len(shown) == 3
    pd.testing.assert_frame_equal(shown, dls.show_batch(max_n=3, dl=dls.valid, print_out=False))
    new = dls.test_dl(_table(5, seed=1).drop(columns="label"))
    assert list(new.show_batch(print_out=False).columns) == ["cat1", "cat2", "num1_na", "num1", "num2"]
    assert new.new(bs=2).show_batch(print_out=False).shape == (2, 5)
