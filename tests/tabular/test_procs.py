"""Tests of the tabular preprocessing: procs, the processor, export round trips and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from ember.core.errors import ConfigError, DataError
from ember.core.recipe import dump, load
from ember.tabular.data import TabularDataLoaders
from ember.tabular.procs import (
    NA_TOKEN,
    Categorify,
    FillMissing,
    Normalize,
    TabularProc,
    TabularProcessor,
    _median,
    add_datepart,
    cont_cat_split,
    lookup,
)


def _df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "color": ["red", "blue", "red", None, "green", "blue"],
            "size": [1, 2, 3, 1, 2, 3],
            "x": [1.0, np.nan, 3.0, 5.0, 7.0, 9.0],
            "z": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
            "y": ["a", "b", "a", "b", "a", "b"],
        }
    )


def _roundtrip(obj):
    return load(json.loads(json.dumps(dump(obj))))


def test_categorify_vocab_from_training_rows_and_unknowns_map_to_zero():
    df = _df()
    cat = Categorify()
    cat.setup(df.iloc[:3], ["color"], [])
    assert cat.vocabs["color"] == [NA_TOKEN, "blue", "red"]  # "green" is only in later rows
    work = df[["color"]].copy()
    cat.process(work)
    assert work["color"].tolist() == [2, 1, 2, 0, 0, 1]  # None and unseen "green" -> 0
    assert list(cat.decode("color", np.array([0, 1, 2]))) == [NA_TOKEN, "blue", "red"]


def test_fill_missing_uses_training_median_and_adds_indicator():
    df = _df()
    fm = FillMissing()
    cats: list[str] = []
    fm.setup(df, cats, ["x", "z"])
    assert cats == ["x_na"]  # only x had missing values
    assert fm.fill_values["x"] == pytest.approx(5.0)
    work = df[["x", "z"]].copy()
    fm.process(work)
    assert work["x"].tolist() == [1.0, 5.0, 3.0, 5.0, 7.0, 9.0]
    assert work["x_na"].tolist() == [False, True, False, False, False, False]
    # A value missing in new rows of a column that had none in training is filled too.
    new = pd.DataFrame({"x": [np.nan], "z": [np.nan]})
    fm.process(new)
    assert new["z"].iloc[0] == pytest.approx(35.0) and bool(new["x_na"].iloc[0])


@pytest.mark.parametrize(("strategy", "expected"), [("mode", 1.0), ("constant", -1.0)])
def test_fill_missing_strategies(strategy, expected):
    df = pd.DataFrame({"x": [1.0, 1.0, 4.0, np.nan]})
    fm = FillMissing(strategy, fill_value=-1.0)
    fm.setup(df, [], ["x"])
    assert fm.fill_values["x"] == expected


def test_fill_missing_rejects_an_unknown_strategy():
    with pytest.raises(ConfigError, match="fill_strategy"):
        FillMissing("mean-ish")


def test_normalize_uses_training_stats_and_survives_constant_columns():
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0, 100.0], "c": [5.0, 5.0, 5.0, 5.0]})
    norm = Normalize()
    norm.setup(df.iloc[:3], [], ["a", "c"])
    work = df.copy()
    norm.process(work)
    assert work["a"].iloc[:3].mean() == pytest.approx(0.0, abs=1e-6)
    assert work["a"].iloc[:3].std(ddof=0) == pytest.approx(1.0, abs=1e-5)
    assert work["c"].tolist() == [0.0] * 4  # std 0 -> divided by 1, not by zero
    assert norm.decode("a", work["a"].to_numpy()) == pytest.approx(df["a"].to_numpy(), rel=1e-5)


def test_processor_tensors_and_new_rows():
    df = _df()
    proc = TabularProcessor(["color", "size"], ["x", "z"], "y", procs=[Categorify, FillMissing, Normalize])
    cats, conts, ys = proc.setup(df, train_idx=[0, 1, 2, 3])
    assert proc.cat_names == ["color", "size", "x_na"]
    assert cats.dtype == torch.int64 and cats.shape == (6, 3)
    assert conts.dtype == torch.float32 and conts.shape == (6, 2)
    assert proc.y_kind == "category" and proc.y_vocab == ["a", "b"]
    assert ys.tolist() == [0, 1, 0, 1, 0, 1]
    new = pd.DataFrame({"color": ["purple"], "size": [3], "x": [np.nan], "z": [25.0]})
    c2, x2, y2 = proc.process(new)
    assert y2 is None
    assert c2.tolist() == [[0, 3, 2]]  # unseen color -> #na#, x missing -> indicator True (code 2)
    decoded = proc.decode(c2, x2)
    assert decoded["z"].iloc[0] == pytest.approx(25.0, rel=1e-5)
    assert decoded["color"].iloc[0] == NA_TOKEN


def test_categorify_is_added_when_missing_from_procs():
    proc = TabularProcessor(["color"], [], "y", procs=[])
    cats, _, _ = proc.setup(_df())
    assert isinstance(proc.procs[0], Categorify) and cats.max() == 3
    # FillMissing's indicator columns need one too, even without categorical columns of the table.
    proc = TabularProcessor([], ["x"], "y", procs=[FillMissing])
    cats, _, _ = proc.setup(_df())
    assert proc.cat_names == ["x_na"] and proc.proc(Categorify).n_classes("x_na") == 3 and cats.max() == 2


@pytest.mark.parametrize("obj", [Categorify(), FillMissing("constant", 2.0), Normalize()])
def test_each_proc_round_trips_through_json(obj):
    df = _df()
    cats = ["color"] if isinstance(obj, Categorify) else []
    conts = [] if isinstance(obj, Categorify) else ["x", "z"]
    if isinstance(obj, Normalize):
        df = df.fillna({"x": 0.0})
    obj.setup(df, list(cats), conts)
    back = _roundtrip(obj)
    a, b = df.copy(), df.copy()
    obj.process(a)
    back.process(b)
    pd.testing.assert_frame_equal(a, b)


def test_processor_round_trip_processes_new_rows_identically():
    df = _df()
    proc = TabularProcessor(["color", "size"], ["x", "z"], "y", procs=[Categorify, FillMissing, Normalize])
    proc.setup(df, train_idx=[0, 1, 2, 3, 4])
    back = _roundtrip(proc)
    new = pd.DataFrame(
        {"color": ["green", None, "teal"], "size": [2, 9, 1], "x": [np.nan, 2.5, 8.0], "z": [1.0, 2.0, np.nan]}
    )
    for t1, t2 in zip(proc.process(new)[:2], back.process(new)[:2]):
        assert torch.equal(t1, t2)
    assert back.y_vocab == proc.y_vocab and back.cat_names == proc.cat_names
    assert torch.equal(proc.process(df)[2], back.process(df)[2])


def test_y_kind_is_picked_from_the_target():
    df = _df().assign(price=np.linspace(1, 2, 6), qty=np.arange(6.0))
    reg = TabularProcessor(["color"], [], "price")
    reg.setup(df)
    assert reg.y_kind == "regression" and reg.n_out == 1
    multi = TabularProcessor(["color"], [], ["price", "qty"])
    _, _, ys = multi.setup(df)
    assert multi.y_kind == "regression" and ys.shape == (6, 2)
    with pytest.raises(ConfigError, match="regression"):
        TabularProcessor(["color"], [], ["y", "size"], y_kind="category").setup(df)


def test_missing_column_is_named_with_a_suggestion():
    proc = TabularProcessor(["colour"], ["x"], "y")
    with pytest.raises(DataError, match=r"colour.*Did you mean 'color'"):
        proc.setup(_df())


def test_target_with_missing_values_is_named():
    df = _df()
    df.loc[4, "y"] = None
    with pytest.raises(DataError, match=r"target column `y`.*1 missing.*row 4"):
        TabularProcessor(["color"], ["x"], "y").setup(df)


def test_continuous_column_holding_strings_is_named():
    df = _df().assign(z=["1", "2", "three", "4", "5", "6"])
    with pytest.raises(DataError, match=r"`z`.*row 2.*'three'"):
        TabularProcessor(["color"], ["z"], "y").setup(df)


def test_categorical_with_a_million_distinct_values_is_named():
    n = 1_000_000
    df = pd.DataFrame({"id": np.arange(n), "y": np.zeros(n)})
    with pytest.raises(DataError, match=r"Categorical column `id` has 1,000,000 distinct values"):
        TabularProcessor(["id"], [], "y", procs=[Categorify]).setup(df)


def test_cont_cat_split():
    df = pd.DataFrame(
        {
            "f": [0.5] * 30,
            "small_int": np.arange(30) % 3,
            "big_int": np.arange(30),
            "s": ["a"] * 30,
            "b": [True] * 30,
            "target": np.arange(30.0),
        }
    )
    cont, cat = cont_cat_split(df, max_card=20, dep_var="target")
    assert cont == ["f", "big_int"]
    assert cat == ["small_int", "s", "b"]


def test_add_datepart():
    df = pd.DataFrame({"saledate": ["2020-02-29", "2021-12-31", None], "v": [1, 2, 3]})
    out = add_datepart(df, "saledate")
    assert "saledate" not in out.columns and "saledate" in df.columns  # input left alone
    assert out["saleYear"].tolist()[:2] == [2020, 2021]
    assert out["saleDayofyear"].tolist()[:2] == [60, 365]
    assert out["saleIs_year_end"].tolist()[:2] == [False, True]
    assert out["saleElapsed"].iloc[0] == pytest.approx(1582934400.0)
    assert np.isnan(out["saleElapsed"].iloc[2])
    with pytest.raises(DataError, match="nope"):
        add_datepart(df, "nope")


def test_lookup_of_integers_matches_the_hash_lookup():
    vocab = [-3, 0, 2, 5, 40]
    values = np.array([5, -3, 7, 40, -10, 0, 2, 100, 1])
    for dtype in (np.int64, np.int32, np.int8, np.uint8):
        x = np.abs(values).astype(dtype) if np.dtype(dtype).kind == "u" else values.astype(dtype)
        assert lookup(vocab, x).tolist() == lookup(vocab, pd.Series(x)).tolist()  # ndarray: table; Series: hash
    assert lookup(vocab, values).tolist() == [3, 0, -1, 4, -1, 1, 2, -1, -1]
    flags = np.array([True, False, True])
    assert lookup([False, True], flags).tolist() == [1, 0, 1]
    assert lookup([0, 1], flags).tolist() == lookup([0, 1], pd.Series(flags)).tolist()  # bools are not integers
    assert lookup([0, 10**9], np.array([10**9, 5])).tolist() == [1, -1]  # too sparse for a table: hash lookup


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 2, 7, 10, 1001])
def test_median_is_numpys(dtype, n):
    x = np.random.default_rng(n).normal(3.0, 2.0, n).astype(dtype)
    x[0] = x[-1]  # a tie
    got, want = _median(x), np.median(x)
    assert got == want and np.asarray(got).dtype == np.asarray(want).dtype


def test_processor_matches_the_procs_applied_to_dataframes():
    df = _df().assign(w=np.array([0.5, np.nan, 1.5, 2.5, np.nan, 4.0], dtype=np.float32))
    train = [0, 1, 2, 4]
    proc = TabularProcessor(["color", "size"], ["x", "z", "w"], "y", procs=[Categorify, FillMissing, Normalize])
    cats, conts, _ = proc.setup(df, train_idx=train)
    by_hand = [FillMissing(), Categorify(), Normalize()]
    work, cat_names = df[["color", "size", "x", "z", "w"]].copy(), ["color", "size"]
    for p in by_hand:  # the documented DataFrame interface of each proc, in order
        p.setup(work.iloc[train], cat_names, ["x", "z", "w"])
        p.process(work)
    assert cat_names == proc.cat_names == ["color", "size", "x_na", "w_na"]
    assert torch.equal(cats, torch.from_numpy(work[cat_names].to_numpy(np.int64)))
    assert torch.equal(conts, torch.from_numpy(work[["x", "z", "w"]].to_numpy(np.float32)))
    assert [p.to_recipe() for p in by_hand] == [p.to_recipe() for p in proc.procs]


class _ShiftZ(TabularProc):
    """A user-written proc: it must still see DataFrames (with the built-in procs' work done)."""

    order = 5

    def setup(self, df, cat_names, cont_names):
        assert isinstance(df, pd.DataFrame)
        self.columns, self.rows = list(df.columns), len(df)

    def process(self, df):
        assert isinstance(df, pd.DataFrame)
        df["z"] = df["z"] + 1000.0


def test_user_procs_get_dataframes_and_the_input_is_left_alone():
    df = _df()
    before = df.copy()
    plain = TabularProcessor(["color"], ["x", "z"], "y", procs=[Categorify, FillMissing, Normalize])
    custom = TabularProcessor(["color"], ["x", "z"], "y", procs=[Categorify, FillMissing, Normalize, _ShiftZ()])
    c1, x1, y1 = plain.setup(df, train_idx=[0, 1, 2])
    c2, x2, y2 = custom.setup(df, train_idx=[0, 1, 2])
    shift = custom.procs[-1]
    assert shift.rows == 3 and shift.columns == ["color", "x", "z", "x_na"]
    assert torch.equal(c1, c2) and torch.equal(y1, y2) and torch.equal(x1[:, 0], x2[:, 0])
    assert torch.allclose(x2[:, 1], x1[:, 1] + 1000.0)
    assert torch.allclose(custom.process(df)[1], x2)
    pd.testing.assert_frame_equal(df, before)


def test_normalize_keeps_the_resolution_of_columns_far_from_zero():
    # Unix times a second apart: float32 has a spacing of 128 there, so the mean must be taken off in float64.
    df = pd.DataFrame({"t": 1_700_000_000 + np.arange(200), "big": 2**40 + np.arange(200) % 3, "y": ["a", "b"] * 100})
    _, conts, _ = TabularProcessor([], ["t", "big"], "y", procs=[Normalize]).setup(df)
    assert conts.dtype == torch.float32
    assert len(np.unique(conts[:, 0].numpy())) == 200 and len(np.unique(conts[:, 1].numpy())) == 3


@pytest.mark.parametrize(
    "col",
    [pd.Series(pd.date_range("2020-01-01", periods=6)), pd.Series(pd.to_timedelta(np.arange(6), unit="D"))],
    ids=["dates", "durations"],
)
def test_dates_and_durations_in_cont_names_are_refused(col):
    df = _df().assign(when=col)
    df.loc[3, "when"] = pd.NaT  # would otherwise become -9.2e18 and swamp the column
    with pytest.raises(DataError, match=r"`when`.*add_datepart"):
        TabularProcessor([], ["when"], "y", procs=[FillMissing, Normalize]).setup(df)


def test_proc_instances_are_copied_so_tables_never_share_fitted_state():
    procs = [Categorify(max_vocab=50), FillMissing(add_col=False), Normalize()]
    first = TabularProcessor(["color"], ["z"], "y", procs=procs)
    first.setup(_df())
    other = pd.DataFrame({"color": ["cyan", "teal"], "z": [1000.0, 2000.0], "y": ["a", "b"]})
    TabularProcessor(["color"], ["z"], "y", procs=procs).setup(other)
    assert first.proc(Categorify).vocabs["color"] == [NA_TOKEN, "blue", "green", "red"]
    assert first.proc(Normalize).stats["z"][0] == pytest.approx(35.0)
    assert first.proc(Categorify).max_vocab == 50 and not first.proc(FillMissing).add_col  # settings kept
    assert procs[0].vocabs == {} and procs[2].stats == {}  # the caller's procs stay unfitted
    # One proc class (not in a list) is fine too.
    assert isinstance(TabularProcessor([], ["z"], "y", procs=Normalize).procs[0], Normalize)
    with pytest.raises(ConfigError, match="procs"):
        TabularProcessor([], ["z"], "y", procs="Normalize")


def test_names_listed_twice_are_refused():
    with pytest.raises(ConfigError, match=r"`cat_names`.*'color'.*more than once"):
        TabularProcessor(["color", "color"], ["x"], "y")
    with pytest.raises(ConfigError, match=r"`cont_names`"):
        TabularProcessor([], ["x", "x"], "y")


def test_duplicate_columns_of_the_dataframe_are_named():
    df = pd.concat([_df(), _df()[["x"]]], axis=1)
    with pytest.raises(DataError, match=r"2 columns named 'x'.*duplicated"):
        TabularProcessor(["color"], ["x"], "y").setup(df)


def test_an_integer_target_with_many_values_warns_and_stays_a_category():
    df = pd.DataFrame({"x": np.arange(100.0), "price": np.arange(100) % 30})
    with pytest.warns(UserWarning, match=r"`price` has 30 distinct values.*y_block=\"regression\"") as record:
        proc = TabularProcessor([], ["x"], "price")
        proc.setup(df)
    assert record[0].filename == __file__  # it points at the caller's line, not inside ember
    with pytest.warns(UserWarning, match="distinct values") as record:
        TabularDataLoaders.from_df(df, y_names="price", cont_names=["x"], device="cpu")
    assert record[0].filename == __file__
    assert proc.y_kind == "category" and proc.n_out == 30  # the documented rule holds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TabularProcessor([], ["x"], "price", y_kind="category").setup(df)  # asked for: no warning
        TabularProcessor([], ["x"], "price").setup(df.assign(price=np.arange(100) % 5))  # few classes
        TabularProcessor([], ["x"], "price").setup(pd.concat([df] * 8))  # 30 classes in 800 rows: under 5%


def test_new_categories_of_another_type_than_the_vocabulary_are_named():
    df = pd.DataFrame({"code": [1, 2, 3, 1], "flag": [True, False, True, True], "x": [0.1, 0.2, 0.3, 0.4]})
    proc = TabularProcessor(["code", "flag"], ["x"], procs=[Categorify])
    proc.setup(df)
    with pytest.raises(DataError, match=r"`code` holds str values \(e.g. '2'\).*int|`code`.*number.*pd.to_numeric"):
        proc.process(pd.DataFrame({"code": ["2", "3"], "flag": [True, True], "x": [0.1, 0.2]}))
    with pytest.raises(DataError, match=r"`flag` holds str values.*bool"):
        proc.process(pd.DataFrame({"code": [2], "flag": ["True"], "x": [0.1]}))
    # Unseen values of the right type, and missing ones, are still just unknown (#na#).
    cats, _, _ = proc.process(pd.DataFrame({"code": [7, None], "flag": [None, None], "x": [0.1, 0.2]}))
    assert cats.tolist() == [[0, 0], [0, 0]]


def test_unhashable_categories_are_named():
    df = _df().astype({"color": object})
    df.at[2, "color"] = ["red", "blue"]
    with pytest.raises(DataError, match=r"`color` holds the value \['red', 'blue'\] \(a list\)"):
        TabularProcessor(["color"], [], "y").setup(df)
    proc = TabularProcessor(["color"], [], "y")
    proc.setup(_df())
    with pytest.raises(DataError, match=r"`color`.*a list"):
        proc.process(df)


def test_infinities_are_named_with_their_row_in_training_and_new_rows():
    df = _df()
    df.loc[4, "z"] = np.inf
    with pytest.raises(DataError, match=r"`z`.*inf at row 4.*replace"):
        TabularProcessor([], ["x", "z"], "y", procs=[FillMissing, Normalize]).setup(df)
    proc = TabularProcessor([], ["x", "z"], "y", procs=[FillMissing, Normalize])
    proc.setup(_df(), train_idx=[0, 1, 2])
    with pytest.raises(DataError, match=r"`z`.*-inf at row 'r2'"):
        proc.process(pd.DataFrame({"x": [1.0, 2.0], "z": [1.0, -np.inf]}, index=["r1", "r2"]))
    with pytest.raises(DataError, match=r"`x`.*inf at row 1"):  # an object column of numbers too
        proc.process(pd.DataFrame({"x": [1.0, np.inf], "z": [1.0, 2.0]}).astype(object))
    with pytest.raises(DataError, match=r"`v`.*y_names.*inf"):
        TabularProcessor([], ["z"], "v").setup(_df().assign(v=[1.0, 2.0, np.inf, 4.0, 5.0, 6.0]))


def test_process_needs_a_dataframe_and_an_empty_target_column_is_no_label():
    proc = TabularProcessor(["color"], ["x"], "y", procs=[Categorify, FillMissing])
    proc.setup(_df())
    with pytest.raises(DataError, match=r"a pandas DataFrame.*'list'.*pd.DataFrame\(rows\)"):
        proc.process([{"color": "red", "x": 1.0}])
    test = _df().assign(y=pd.Series([None] * 6, dtype=object))  # a test table whose target is to be filled in
    assert proc.process(test)[2] is None
    test.loc[0, "y"] = "a"
    with pytest.raises(DataError, match="with_labels=False"):
        proc.process(test)


@pytest.mark.parametrize("unit", ["ns", "us"])
def test_date_categories_round_trip_through_json(unit):
    when = pd.Series(pd.date_range("2020-01-01", periods=6)).astype(f"datetime64[{unit}]")
    df = _df().assign(when=when, lag=pd.to_timedelta(np.arange(6) % 2, unit="h"), day=[d.date() for d in when])
    proc = TabularProcessor(["when", "lag", "day"], ["z"], "y", procs=[Categorify])
    cats, _, _ = proc.setup(df, train_idx=[0, 1, 2, 3])
    assert proc.proc(Categorify).vocabs["when"][1] == pd.Timestamp("2020-01-01")
    back = _roundtrip(proc)  # an ExportError before dates could be written
    assert torch.equal(back.process(df)[0], cats) and cats[:4].min() > 0 and cats[4:, 0].tolist() == [0, 0]


def test_a_proc_that_cannot_be_copied_is_named_and_float32_columns_normalize_alike():
    import threading

    norm = Normalize()
    norm.lock = threading.Lock()
    with pytest.raises(ConfigError, match="Cannot copy the proc"):
        TabularProcessor([], ["z"], "y", procs=[norm])
    df = pd.DataFrame({"z": np.linspace(-3, 5, 50), "y": ["a", "b"] * 25})
    as32 = df.astype({"z": np.float32})
    out64, out32 = (TabularProcessor([], ["z"], "y", procs=[Normalize]) for _ in range(2))
    out64.setup(df)
    out32.setup(as32)
    np.testing.assert_allclose(out64.process(df)[1].numpy(), out32.process(as32)[1].numpy(), atol=1e-6)


def test_nullable_integer_and_boolean_categories_keep_their_type():
    df = pd.DataFrame(
        {
            "code": pd.array([1, 2, None, 1, 3, 2], dtype="Int64"),
            "flag": pd.array([True, None, False, True, False, True], dtype="boolean"),
            "x": np.arange(6.0),
        }
    )
    proc = TabularProcessor(["code", "flag"], ["x"], procs=[Categorify])
    proc.setup(df)
    cat = proc.proc(Categorify)
    assert cat.vocabs["code"] == ["#na#", 1, 2, 3] and cat.vocabs["flag"] == ["#na#", False, True]
    assert [type(v) for v in cat.vocabs["code"][1:]] == [int] * 3  # not 1.0, 2.0, 3.0 (equal, but shown so)
    assert [type(v) for v in cat.vocabs["flag"][1:]] == [bool] * 2
    cats, _, _ = proc.process(df)
    assert cats[:, 0].tolist() == [1, 2, 0, 1, 3, 2] and cats[:, 1].tolist() == [2, 0, 1, 2, 1, 2]
    plain = df.assign(code=df["code"].fillna(1))  # no missing value: the same codes as plain integers
    assert proc.process(plain)[0][:, 0].tolist() == [1, 2, 1, 1, 3, 2]
