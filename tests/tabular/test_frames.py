"""Tests of the DataFrame helpers: smaller dtypes, dates, elapsed times between events, and the moved helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import ember.tabular.frames as frames
import ember.tabular.procs as procs
from ember.core.errors import ConfigError, DataError
from ember.tabular.data import TabularDataLoaders, TabularPandas
from ember.tabular.frames import add_datepart, add_elapsed_times, df_shrink, df_shrink_dtypes, make_date
from ember.tabular.procs import Categorify, FillMissing, Normalize


def _str_types(types: dict) -> dict:
    return {c: str(t) for c, t in types.items()}


def test_moved_helpers_are_still_importable_from_procs():
    assert procs.add_datepart is frames.add_datepart
    assert procs.cont_cat_split is frames.cont_cat_split
    assert {"add_datepart", "cont_cat_split"} <= set(procs.__all__)


# -- df_shrink -------------------------------------------------------------------------------------------------------
def test_integers_get_the_smallest_type_that_holds_them():
    df = pd.DataFrame(
        {
            "small": [0, 1, 255],
            "neg": [-1, 0, 100_000],
            "big": [0, 1, 2**40],
            "extreme": np.array([np.iinfo(np.int64).min, 0, 1]),
            "u32": np.array([1, 2, 3], dtype=np.uint32),
            "i8": np.array([1, 2, 3], dtype=np.int8),
            "nullable": pd.array([1, None, 300], dtype="Int64"),
            "flag": [True, False, True],
            "when": pd.to_datetime(["2020-01-01", "2020-01-02", None]),
            "skipped": [1, 2, 3],
        }
    )
    # Unchanged columns (big, extreme, i8, bools, dates, skipped) are left out of the mapping.
    assert _str_types(df_shrink_dtypes(df, skip="skipped")) == {
        "small": "int16",
        "neg": "int32",
        "u32": "uint8",
        "nullable": "Int16",
    }
    assert _str_types(df_shrink_dtypes(df, skip=["skipped"], int2uint=True)) == {
        "small": "uint8",
        "neg": "int32",
        "big": "uint64",
        "u32": "uint8",
        "i8": "uint8",
        "nullable": "UInt16",
    }
    small = df_shrink(df, int2uint=True)
    assert str(small["skipped"].dtype) == "uint8" and df["skipped"].dtype == np.int64  # the input is not changed
    for c in ("small", "neg", "big", "extreme", "u32", "i8", "skipped"):
        assert small[c].tolist() == df[c].tolist()  # never a changed integer
    assert small["nullable"].isna().tolist() == [False, True, False] and small["nullable"][2] == 300


def test_float64_becomes_float32_only_where_float32_keeps_the_column():
    day = 86_400.0
    df = pd.DataFrame(
        {
            "price": [0.1, 2.5, 1e4, np.nan],  # rounding error ~1e-4 of a 1e4 range
            "halves": [0.5, 1.5, -2.0, 3.0],  # exact in float32
            "daily_secs": [1.6e9, 1.6e9 + day, 1.6e9 + 9 * day, np.nan],  # whole days since 1970: exact
            "secs": [1.6e9 + 1, 1.6e9 + 3_001, 1.6e9 + 2 * day + 7, 1.6e9],  # float32 steps of 128 s over 2 days
            "huge": [1e300, 0.0, 1.0, 2.0],  # beyond float32
            "const": [0.1] * 4,  # a constant float32 cannot hold exactly
            "empty": [np.nan] * 4,
            "f32": np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32),
            "nullable": pd.array([0.25, None, 1.0, 2.0], dtype="Float64"),
        }
    )
    assert _str_types(df_shrink_dtypes(df)) == {
        "price": "float32",
        "halves": "float32",
        "daily_secs": "float32",
        "empty": "float32",
        "nullable": "Float32",
    }
    small = df_shrink(df)
    np.testing.assert_array_equal(small["daily_secs"].to_numpy(np.float64), df["daily_secs"].to_numpy())
    np.testing.assert_allclose(small["price"].to_numpy(np.float64), df["price"], rtol=1e-7)


def test_object_and_string_columns_with_few_values_become_categories():
    n = 12
    df = pd.DataFrame(
        {
            "colour": (["red", "blue", None] * 4),
            "text": pd.array([f"id{i}" for i in range(n)], dtype="string"),  # identifiers: no category
            "city": pd.array(["Oslo", "Rome"] * 6, dtype="string"),
            "lists": [[1]] * n,  # cannot be categories
            "cat": pd.Categorical(["x"] * n),
        }
    )
    assert _str_types(df_shrink_dtypes(df)) == {"colour": "category", "city": "category"}
    assert df_shrink_dtypes(df, obj2cat=False) == {}
    small = df_shrink(df)
    assert small["colour"].tolist()[:3] == ["red", "blue", np.nan] and sorted(small["colour"].cat.categories) == [
        "blue",
        "red",
    ]


def test_df_shrink_cuts_memory_several_times():
    rng = np.random.default_rng(0)
    n = 2_000
    df = pd.DataFrame(
        {
            "store": rng.integers(0, 50, n),
            "year": rng.integers(2000, 2020, n),
            "state": rng.choice(["NY", "CA", "TX", "WA"], n).astype(object),
            "sales": np.round(rng.normal(100.0, 20.0, n), 2),
        }
    )
    before, after = df.memory_usage(deep=True).sum(), df_shrink(df, int2uint=True).memory_usage(deep=True).sum()
    assert before / after > 5


def test_df_shrink_bad_input_names_the_argument():
    df = pd.DataFrame({"a": [1, 2]})
    with pytest.raises(DataError, match=r"`skip`.*'b'"):
        df_shrink(df, skip=["b"])
    with pytest.raises(DataError, match="`df`"):
        df_shrink_dtypes(df.to_numpy())
    with pytest.raises(DataError, match="several columns named 'a'"):
        df_shrink(pd.DataFrame([[1, 2]], columns=["a", "a"]))


def _shop_table(n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "colour": rng.choice(np.array(["red", "green", "blue", None], dtype=object), n),
            "shop": rng.integers(0, 5, n),
            "visits": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 100, n)), dtype="Int64"),
            "price": np.round(rng.normal(50.0, 10.0, n), 2),
            "age": np.where(rng.random(n) < 0.1, np.nan, rng.integers(18, 80, n).astype(float)),
            "label": rng.choice(np.array(["no", "yes"], dtype=object), n),
        }
    )


def test_a_shrunk_table_gives_the_same_model_inputs():
    df = _shop_table()
    small = df_shrink(df, int2uint=True)
    types = {c: str(t) for c, t in small.dtypes.items()}
    assert types == {
        "colour": "category",
        "shop": "uint8",
        "visits": "UInt8",
        "price": "float32",
        "age": "float32",
        "label": "category",
    }
    roles = dict(cat_names=["colour", "shop", "visits"], cont_names=["price", "age"], y_names="label")
    procs_ = [Categorify, FillMissing, Normalize]
    splits = (np.arange(200), np.arange(200, len(df)))
    a, b = TabularPandas(df, procs_, splits=splits, **roles), TabularPandas(small, procs_, splits=splits, **roles)
    assert a.processor.cat_names == b.processor.cat_names == ["colour", "shop", "visits", "age_na"]
    assert a.processor.proc(Categorify).vocabs == b.processor.proc(Categorify).vocabs
    assert a.processor.y_vocab == b.processor.y_vocab == ["no", "yes"]
    for split_a, split_b in ((a.train, b.train), (a.valid, b.valid)):
        assert torch.equal(split_a[0], split_b[0])  # category codes
        assert split_b[1].dtype == torch.float32
        torch.testing.assert_close(split_a[1], split_b[1], rtol=0, atol=2e-6)  # float32 rounding of the inputs
        assert torch.equal(split_a[2], split_b[2])
    # The loaders built from either table give the same batches; the fitted processing reads either table.
    dls_a = TabularDataLoaders.from_df(df, procs=procs_, bs=64, seed=0, device="cpu", **roles)
    dls_b = TabularDataLoaders.from_df(small, procs=procs_, bs=64, seed=0, device="cpu", **roles)
    for xa, xb in zip(next(iter(dls_a.valid)), next(iter(dls_b.valid))):
        torch.testing.assert_close(xa, xb, rtol=0, atol=2e-6)
    cats_a, conts_a, _ = a.processor.process(df.iloc[:20])
    cats_b, conts_b, _ = a.processor.process(small.iloc[:20])
    assert torch.equal(cats_a, cats_b)
    torch.testing.assert_close(conts_a, conts_b, rtol=0, atol=2e-6)


# -- dates -----------------------------------------------------------------------------------------------------------
def test_make_date_converts_in_place_and_leaves_dates_alone():
    df = pd.DataFrame({"day": ["2020-02-29", None, "2021-01-05"], "v": [1, 2, 3]})
    assert make_date(df, "day") is None
    assert pd.api.types.is_datetime64_any_dtype(df["day"])
    assert df["day"].dt.day_of_year.tolist()[::2] == [60, 5] and pd.isna(df["day"][1])
    aware = pd.DataFrame({"t": pd.to_datetime(["2020-01-01 12:00"]).tz_localize("Europe/Oslo")})
    before = aware["t"]
    make_date(aware, "t")
    assert aware["t"] is before or aware["t"].equals(before)
    assert str(aware["t"].dt.tz) == "Europe/Oslo"


def test_make_date_names_the_row_that_is_not_a_date():
    df = pd.DataFrame({"day": ["2020-01-01", "2020-01-02", "someday", "2020-01-04"]}, index=["a", "b", "c", "d"])
    with pytest.raises(DataError, match=r"`date_field`.*Row 'c' holds 'someday'"):
        make_date(df, "day")
    assert df["day"].tolist()[2] == "someday" and not pd.api.types.is_datetime64_any_dtype(df["day"])  # unchanged
    with pytest.raises(DataError, match=r"holds numbers.*unit='s'"):
        make_date(pd.DataFrame({"day": [20200101, 20200102]}), "day")
    with pytest.raises(DataError, match=r"`date_field`.*Did you mean 'day'"):
        make_date(df, "dya")
    with pytest.raises(DataError, match=r"`field_name`.*Row 'c'"):
        add_datepart(df, "day")


# -- add_elapsed_times -----------------------------------------------------------------------------------------------
def _events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": ["2000-01-01", "2000-01-02", "2000-01-03", "2000-01-05"]
            + ["2000-01-01", "2000-01-03"]
            + ["2000-01-04", "2000-01-06"],
            "store": [1, 1, 1, 1, 2, 2, 2, 2],
            "event": [False, True, False, True, True, False, False, False],
            "hol": [0, 0, 1, 0, 0, 1, 1, 0],
        }
    )


# The values fastai 2.8's add_elapsed_times gives on _events() (same columns, same order).
EXPECTED = {
    "Afterevent": [0, 0, 1, 0, 0, 2, 3, 5],
    "Afterhol": [0, 0, 0, 2, 0, 0, 0, 2],
    "Beforeevent": [-1, 0, -2, 0, 0, 0, 0, 0],
    "Beforehol": [-2, -1, 0, 0, -2, 0, 0, 0],
    "event_bw": [0.0, 1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 1.0],
    "hol_bw": [0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 2.0, 2.0],
    "event_fw": [2.0, 2.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
    "hol_fw": [1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 1.0, 0.0],
}


def test_add_elapsed_times_matches_the_reference_values():
    df = _events()
    out = add_elapsed_times(df, ["event", "hol"], "date", "store")
    assert list(out.columns) == ["date", "store", "event", "hol", *EXPECTED]
    for c, values in EXPECTED.items():
        assert out[c].tolist() == values, c
    assert out["Afterevent"].dtype == np.int64 and out["event_bw"].dtype == np.float64
    assert pd.api.types.is_datetime64_any_dtype(out["date"]) and df["date"][0] == "2000-01-01"  # input unchanged
    assert out["hol"].tolist() == df["hol"].tolist()


def test_add_elapsed_times_keeps_the_row_order_and_index_of_a_shuffled_table():
    df = _events()
    shuffled = df.sample(frac=1, random_state=3)
    shuffled.index = [f"r{i}" for i in shuffled.index]
    out = add_elapsed_times(shuffled, "event", "date", "store")
    assert list(out.index) == list(shuffled.index)
    rows = [int(i[1:]) for i in out.index]
    assert out["Afterevent"].tolist() == [EXPECTED["Afterevent"][r] for r in rows]
    assert out["event_fw"].tolist() == [EXPECTED["event_fw"][r] for r in rows]


def test_add_elapsed_times_floors_partial_days_and_counts_rows_not_days():
    df = pd.DataFrame(
        {
            "date": pd.to_datetime(["2000-01-01 18:00", "2000-01-02 06:00", "2000-01-03 20:00", "2000-01-05 01:00"]),
            "store": "a",
            "event": [True, False, True, False],
        }
    )
    out = add_elapsed_times(df, "event", "date", "store")
    assert out["Afterevent"].tolist() == [0, 0, 0, 1]  # 12 h after: 0 days; 29 h after: 1 day
    assert out["Beforeevent"].tolist() == [0, -2, 0, 0]  # 38 h before: -2 days (floored)
    far = pd.DataFrame({"date": pd.date_range("2000-01-01", periods=10, freq="30D"), "store": 1, "event": True})
    out = add_elapsed_times(far, "event", "date", "store")
    assert out["event_bw"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 7.0, 7.0, 7.0]  # 7 rows, months apart
    assert out["event_fw"].tolist() == [7.0, 7.0, 7.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]


def test_add_elapsed_times_bad_input():
    df = _events()
    with pytest.raises(DataError, match=r"Rows 0 and 8 have the same `store` \(1\)"):
        add_elapsed_times(pd.concat([df, df.iloc[[0]]], ignore_index=True), "event", "date", "store")
    gappy = df.assign(event=[True, None, False, True, True, False, False, False])
    with pytest.raises(DataError, match=r"event column `event`.*row 1"):
        add_elapsed_times(gappy, "event", "date", "store")
    with pytest.raises(DataError, match=r"`field_names`.*holds 'yes' at row 0"):
        add_elapsed_times(df.assign(event="yes"), "event", "date", "store")
    with pytest.raises(DataError, match=r"`date`.*row 2"):
        add_elapsed_times(df.assign(date=df["date"].where(df.index != 2)), "event", "date", "store")
    with pytest.raises(DataError, match=r"`base_field`.*'shop'"):
        add_elapsed_times(df, "event", "date", "shop")
    with pytest.raises(DataError, match="called twice"):
        add_elapsed_times(add_elapsed_times(df, "event", "date", "store"), "event", "date", "store")
    with pytest.raises(ConfigError, match="`field_names`"):
        add_elapsed_times(df, [], "date", "store")
