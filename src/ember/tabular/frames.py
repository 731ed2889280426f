"""DataFrame helpers for tables: a DataFrame in, a DataFrame (or column names) out, before any proc runs.

- :func:`cont_cat_split` picks the continuous and the categorical columns from their types.
- :func:`make_date` and :func:`add_datepart` read a column as dates and expand it into numbers.
- :func:`add_elapsed_times` adds "days since the last / until the next event" and "events in the last / next 7
  rows" columns per group (the Rossmann features: days since the last promotion of each store).
- :func:`df_shrink_dtypes` and :func:`df_shrink` give each column the smallest type that holds its values, which
  cuts the memory of a large table several times.

>>> df = df_shrink(pd.read_csv("train.csv"))                    # doctest: +SKIP
>>> df = add_elapsed_times(df, ["Promo"], "Date", "Store")      # doctest: +SKIP
>>> df = add_datepart(df, "Date")                               # doctest: +SKIP
>>> cont_names, cat_names = cont_cat_split(df, dep_var="Sales") # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ember.core.errors import ConfigError, DataError, expected

__all__ = [
    "cont_cat_split",
    "make_date",
    "add_datepart",
    "add_elapsed_times",
    "df_shrink_dtypes",
    "df_shrink",
]


# -- checks shared with the procs ------------------------------------------------------------------------------------
def _names(x: str | Sequence[str] | None) -> list[str]:
    """One column name or several as a list (None: none)."""
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return list(x)


def _check_frame(df: Any) -> None:
    if not isinstance(df, pd.DataFrame):
        hint = "Build one from rows with pd.DataFrame(rows) (a list of dicts or Series)."
        raise DataError(expected("a pandas DataFrame", "df", type(df).__name__, hint=hint))


def _missing_col(arg: str, col: str, df: pd.DataFrame) -> str:
    """The message of a column `col` (named by the argument `arg`) that `df` does not have, with the closest names."""
    close = difflib.get_close_matches(str(col), [str(c) for c in df.columns], n=3)
    hint = f"Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    cols = list(df.columns)
    shown = cols if len(cols) <= 20 else cols[:20] + ["…"]
    return expected(
        "columns of the DataFrame",
        arg,
        col,
        hint=f"There is no column {col!r}; the columns are {shown}. {hint}".rstrip(),
    )


def _check_columns(df: pd.DataFrame, arg: str, cols: Sequence[Any]) -> None:
    """DataError for the first of `cols` that `df` does not have, or has twice."""
    for c in cols:
        if c not in df.columns:
            raise DataError(_missing_col(arg, c, df))
        if isinstance(df[c], pd.DataFrame):
            raise DataError(
                f"The DataFrame has {df[c].shape[1]} columns named {c!r} (in `{arg}`): rename them so that each "
                "name is used once."
            )


# -- column roles ----------------------------------------------------------------------------------------------------
def cont_cat_split(
    df: pd.DataFrame, max_card: int = 20, dep_var: str | Sequence[str] | None = None
) -> tuple[list[str], list[str]]:
    """Split the columns of `df` into continuous and categorical ones: ``(cont_names, cat_names)``.

    Float columns, and integer columns with more than `max_card` distinct values, are continuous;
    everything else (strings, booleans, categoricals, low-cardinality integers) is categorical. The
    target column(s) `dep_var` are left out.
    """
    skip = set(_names(dep_var))
    cont, cat = [], []
    for c in df.columns:
        if c in skip:
            continue
        s = df[c]
        if pd.api.types.is_float_dtype(s) or (
            pd.api.types.is_integer_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.nunique() > max_card
        ):
            cont.append(c)
        else:
            cat.append(c)
    return cont, cat


# -- dates -----------------------------------------------------------------------------------------------------------
def _parse_dates(s: pd.Series, col: Any, arg: str) -> pd.Series:
    """The column `s` as datetime64 (a date column as it is).

    Raises:
        DataError: the column holds numbers (ambiguous: seconds? days? 20200131?), or a value that cannot be read
            as a date (the message names its row).
    """
    if pd.api.types.is_datetime64_any_dtype(s):
        return s
    if pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise DataError(
            expected(
                "a column of dates",
                arg,
                col,
                hint=f"Column `{col}` holds numbers ({s.dtype}), which could be seconds, days or 20200131-like dates. "
                f"Convert it first, e.g. pd.to_datetime(df[{col!r}], unit='s') or "
                f"pd.to_datetime(df[{col!r}].astype(str), format='%Y%m%d').",
            )
        )
    try:
        return pd.to_datetime(s)
    except (ValueError, TypeError, OverflowError) as e:
        raise DataError(_bad_dates(s, col, arg, e)) from e


def _bad_dates(s: pd.Series, col: Any, arg: str, error: Exception) -> str:
    """The message of a column that pandas cannot read as dates, naming the first row it cannot read."""
    fix = "Correct or remove that value (missing dates may be None or NaN), or convert the column yourself with "
    fix += f"pd.to_datetime(df[{col!r}], format=...)."
    try:
        coerced = pd.to_datetime(s, errors="coerce")
    except (ValueError, TypeError, OverflowError):
        coerced = None
    if coerced is not None:
        bad = (coerced.isna() & s.notna()).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = s.iloc[i]
            try:
                pd.to_datetime(value)
                alone = True
            except (ValueError, TypeError, OverflowError):
                alone = False
            if alone:  # a date, only in another format than the first ones
                first = s.iloc[int(np.flatnonzero(s.notna().to_numpy())[0])]
                why = f"which is a date in another format than the first ones (e.g. {first!r})"
                fix = f"Write the dates in one format, or pass pd.to_datetime(df[{col!r}], format='mixed')."
            else:
                why = "which cannot be read as a date"
            where = f"Row {s.index[i]!r} holds {value!r}, {why} ({int(bad.sum())} such row(s))."
            return expected("a column of dates", arg, col, hint=f"{where} {fix}")
    return expected("a column of dates", arg, col, hint=f"pandas cannot read it as dates: {error}. {fix}")


def make_date(df: pd.DataFrame, date_field: str) -> None:
    """Make the column `date_field` of `df` a datetime64 column, in place (a date column is left as it is).

    Strings and date objects are read with ``pd.to_datetime``; missing values become ``NaT``.

    Raises:
        DataError: the column does not exist, holds numbers (convert them with the unit they are in), or holds a
            value that cannot be read as a date (the message names its row and value).

    >>> df = pd.DataFrame({"day": ["2020-02-29", None]})
    >>> make_date(df, "day")
    >>> str(df["day"].dtype).startswith("datetime64")
    True
    """
    _check_frame(df)
    _check_columns(df, "date_field", [date_field])
    s = df[date_field]
    dates = _parse_dates(s, date_field, "date_field")
    if dates is not s:
        df[date_field] = dates


_DATE_ATTRS = ("Year", "Month", "Week", "Day", "Dayofweek", "Dayofyear")
_DATE_FLAGS = ("Is_month_end", "Is_month_start", "Is_quarter_end", "Is_quarter_start", "Is_year_end", "Is_year_start")


def add_datepart(
    df: pd.DataFrame, field_name: str, prefix: str | None = None, drop: bool = True, time: bool = False
) -> pd.DataFrame:
    """Expand a date column into its parts (year, month, week, day, weekday, flags, and seconds since 1970).

    Returns a new DataFrame (the input is not modified) with columns ``<prefix>Year``, ``<prefix>Month``,
    ``<prefix>Week``, ``<prefix>Day``, ``<prefix>Dayofweek``, ``<prefix>Dayofyear``, the
    ``<prefix>Is_month_end``-style flags, ``<prefix>Elapsed`` (and ``Hour``, ``Minute``, ``Second`` with
    `time`). The default prefix is the column name without a trailing "date"/"Date".

    Raises:
        DataError: when the column does not exist or cannot be read as dates (the message names the first row).
    """
    _check_frame(df)
    _check_columns(df, "field_name", [field_name])
    if prefix is None:
        prefix = field_name[:-4] if field_name.lower().endswith("date") else f"{field_name}_"
    dates = _parse_dates(df[field_name], field_name, "field_name")
    out = df.copy()
    dt = dates.dt
    parts: dict[str, Any] = {
        "Year": dt.year,
        "Month": dt.month,
        "Week": dt.isocalendar().week.astype("Int64").to_numpy(dtype=np.float64, na_value=np.nan),
        "Day": dt.day,
        "Dayofweek": dt.day_of_week,
        "Dayofyear": dt.day_of_year,
    }
    for flag in _DATE_FLAGS:
        parts[flag] = getattr(dt, flag.lower())
    if time:
        parts.update({"Hour": dt.hour, "Minute": dt.minute, "Second": dt.second})
    for k, v in parts.items():
        out[prefix + k] = v
    # Seconds since the epoch; NaT stays missing (FillMissing can fill it).
    secs = dates.to_numpy(dtype="datetime64[ns]").astype(np.int64) / 1e9
    out[prefix + "Elapsed"] = np.where(dates.isna().to_numpy(), np.nan, secs)
    if drop:
        out = out.drop(columns=field_name)
    return out


# -- elapsed times between events ------------------------------------------------------------------------------------
_DAY_NS = 86_400 * 10**9
_EVENT_WINDOW = 7  # rows summed by the <field>_bw / <field>_fw columns (a week in a daily table)


def _events(df: pd.DataFrame, col: Any) -> np.ndarray:
    """The event column `col` as a bool array (non-zero numbers are events).

    Raises:
        DataError: a missing value (the message names its row), or values that are not booleans or numbers.
    """
    s = df[col]
    na = s.isna().to_numpy()
    if na.any():
        i = int(np.flatnonzero(na)[0])
        raise DataError(
            f"The event column `{col}` (in `field_names`) is missing at row {df.index[i]!r} ({int(na.sum())} missing "
            f"value(s)): say whether each row is an event, e.g. df[{col!r}] = df[{col!r}].fillna(False)."
        )
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=bool)
    values = s.to_numpy(dtype=object)
    ok = np.array([isinstance(v, (bool, np.bool_, int, float, np.number)) for v in values], dtype=bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(
            expected(
                "columns of events (booleans, or numbers where non-zero is an event)",
                "field_names",
                col,
                hint=f"Column `{col}` ({s.dtype}) holds {values[i]!r} at row {df.index[i]!r}. Convert it, "
                f"e.g. df[{col!r}] = df[{col!r}] == 'yes'.",
            )
        )
    return values.astype(bool)


def add_elapsed_times(
    df: pd.DataFrame, field_names: str | Sequence[str], date_field: str, base_field: str
) -> pd.DataFrame:
    """Add, for each event column, the days since the last and until the next event and the events nearby, per group.

    The rows of each group (the same `base_field` value, e.g. a store) are taken in date order. For every event
    column ``f`` (booleans, or numbers where non-zero is an event) the returned copy of `df` gets, after its own
    columns and in this order:

    - ``After<f>``: whole days since the last event of the group on or before the row's date (0 on the day of an
      event, and 0 before the group's first event);
    - ``Before<f>``: whole days until the next event, as a negative number (0 on the day of an event, and 0 after the
      group's last event);
    - ``<f>_bw``: the events in the row and the 6 rows before it in the group (a week in a daily table), as a float;
    - ``<f>_fw``: the events in the row and the 6 rows after it.

    Differences are floored to whole days (36 hours before is -2). The values are fastai's; unlike fastai the input is
    not modified, its index and event columns are kept as they are (fastai resets the index and turns the event
    columns into booleans), and only the date column changes, to datetime64 (:func:`make_date`).

    Args:
        field_names: the event column(s), e.g. ``["Promo", "StateHoliday"]``.
        date_field: the date of each row (read with :func:`make_date`'s rules).
        base_field: the group of each row, e.g. ``"Store"``.

    Raises:
        DataError: a column is missing, a date, a group or an event is missing (the message names the row), an
            event column holds something other than booleans or numbers, a group has two rows with the same date, or
            a column to add is already there.
        ConfigError: no event column, an event column named twice, or `date_field`/`base_field` among the events.

    >>> df = pd.DataFrame({"day": ["2000-01-01", "2000-01-02", "2000-01-04"], "store": 1, "promo": [1, 0, 0]})
    >>> add_elapsed_times(df, "promo", "day", "store")["Afterpromo"].tolist()
    [0, 1, 3]
    """
    _check_frame(df)
    fields = _names(field_names)
    if not fields:
        raise ConfigError(expected("one or more event columns", "field_names", field_names))
    if len(set(fields)) != len(fields):
        raise ConfigError(expected("distinct column names", "field_names", field_names))
    for arg, c in (("date_field", date_field), ("base_field", base_field)):
        if c in fields:
            raise ConfigError(expected("a column that is not one of `field_names`", arg, c))
    _check_columns(df, "field_names", fields)
    _check_columns(df, "date_field", [date_field])
    _check_columns(df, "base_field", [base_field])
    new_cols = [f"{p}{f}" for p in ("After", "Before") for f in fields] + [
        f"{f}{s}" for s in ("_bw", "_fw") for f in fields
    ]
    there = [c for c in new_cols if c in df.columns]
    if there:
        raise DataError(
            f"The DataFrame already has the column(s) {there} that add_elapsed_times adds (was it called twice?). "
            "Drop or rename them first."
        )

    dates = _parse_dates(df[date_field], date_field, "date_field")
    for col, na in ((date_field, dates.isna().to_numpy()), (base_field, df[base_field].isna().to_numpy())):
        if na.any():
            i = int(np.flatnonzero(na)[0])
            raise DataError(
                f"Column `{col}` is missing at row {df.index[i]!r} ({int(na.sum())} missing value(s)): every row needs "
                "a date and a group to be placed among the events. Drop or fill those rows first."
            )
    t = dates.to_numpy(dtype="datetime64[ns]").view(np.int64)  # (N,) nanoseconds, UTC for time-zone-aware dates
    group, _ = pd.factorize(df[base_field])
    order = np.lexsort((t, group))  # by group, then date
    t, group = t[order], group[order]
    n = len(order)
    pos = np.arange(n)
    new_group = np.ones(n, dtype=bool)
    new_group[1:] = group[1:] != group[:-1]
    same_day = ~new_group & np.concatenate([[False], t[1:] == t[:-1]])
    if same_day.any():
        k = int(np.flatnonzero(same_day)[0])
        i = order[k]
        group_value = df[base_field].iloc[i]
        group_value = group_value.item() if isinstance(group_value, np.generic) else group_value
        raise DataError(
            f"Rows {df.index[order[k - 1]]!r} and {df.index[i]!r} have the same "
            f"`{base_field}` ({group_value!r}) and the same `{date_field}` ({dates.iloc[i]}): each group "
            "may have one row per date. Aggregate the duplicates first (e.g. df.groupby([...]).max())."
        )
    start = np.maximum.accumulate(np.where(new_group, pos, 0))  # (N,) first position of each row's group
    last_of_group = np.ones(n, dtype=bool)
    last_of_group[:-1] = new_group[1:]
    end = np.minimum.accumulate(np.where(last_of_group, pos + 1, n)[::-1])[::-1]  # (N,) one past the group's last

    columns: dict[str, np.ndarray] = {}
    back, forward = {}, {}
    for f in fields:
        ev = _events(df, f)[order]  # (N,) in group and date order
        last = np.maximum.accumulate(np.where(ev, pos, -1))  # the latest event at or before each row
        has = last >= start
        after = np.where(has, (t - t[np.maximum(last, 0)]) // _DAY_NS, 0)
        nxt = np.minimum.accumulate(np.where(ev, pos, n)[::-1])[::-1]  # the earliest event at or after each row
        has = nxt < end
        before = np.where(has, (t - t[np.minimum(nxt, n - 1)]) // _DAY_NS, 0)
        csum = np.concatenate([[0], np.cumsum(ev, dtype=np.int64)])  # csum[k]: events in the first k rows
        bw = csum[pos + 1] - csum[np.maximum(pos - (_EVENT_WINDOW - 1), start)]
        fw = csum[np.minimum(pos + _EVENT_WINDOW, end)] - csum[pos]
        for name, values, dtype in (("After", after, np.int64), ("Before", before, np.int64)):
            out = np.empty(n, dtype=dtype)
            out[order] = values
            columns[f"{name}{f}"] = out
        for store, values in ((back, bw), (forward, fw)):
            out = np.empty(n, dtype=np.float64)
            out[order] = values
            store[f] = out
    columns.update({f"{f}_bw": back[f] for f in fields})
    columns.update({f"{f}_fw": forward[f] for f in fields})
    out = df.copy()
    out[date_field] = dates
    return pd.concat([out, pd.DataFrame({c: columns[c] for c in new_cols}, index=df.index)], axis=1)


# -- smaller types ---------------------------------------------------------------------------------------------------
_INTS = tuple(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))
_UINTS = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64))
_NULLABLE_INTS = {"Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"}
# float32 must keep every value of a column to within this fraction of the column's range (max - min).
_FLOAT32_TOL = 1e-6


def _smallest_int(s: pd.Series, int2uint: bool) -> Any:
    """The smallest integer type of `s`'s kind (numpy, or pandas nullable) that holds all its values."""
    lo, hi = s.min(), s.max()
    lo, hi = (0, 0) if pd.isna(lo) else (int(lo), int(hi))  # an empty or all-missing column
    unsigned = s.dtype.name.lower().startswith("uint") or (int2uint and lo >= 0)
    t = next(t for t in (_UINTS if unsigned else _INTS) if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max)
    if s.dtype.name in _NULLABLE_INTS:
        return pd.api.types.pandas_dtype(t.name.replace("uint", "UInt").replace("int", "Int"))
    return t


def _float32_if_close(s: pd.Series) -> Any:
    """float32 (Float32 for a nullable column) when it keeps every value of `s` within `_FLOAT32_TOL` of its range."""
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    x = x[np.isfinite(x)]
    if len(x):
        if np.abs(x).max() > np.finfo(np.float32).max:
            return None  # beyond float32's range
        x32 = x.astype(np.float32)
        err = float(np.abs(x32.astype(np.float64) - x).max())
        if err > _FLOAT32_TOL * float(x.max() - x.min()):
            return None
    return pd.Float32Dtype() if s.dtype.name == "Float64" else np.dtype(np.float32)


def _few_values(s: pd.Series) -> bool:
    """Whether a column of objects or strings has few distinct values (at most half its non-missing ones)."""
    try:
        n_distinct = s.nunique(dropna=True)
    except TypeError:  # lists, dicts: no category
        return False
    return n_distinct <= int(s.notna().sum()) // 2


def df_shrink_dtypes(
    df: pd.DataFrame, skip: str | Sequence[str] = (), obj2cat: bool = True, int2uint: bool = False
) -> dict[Any, Any]:
    """Smaller types for the columns of `df` that can have one, as ``{column: dtype}`` (for ``df.astype``).

    - Integers (numpy or pandas nullable ones such as ``Int64``) get the smallest integer type of the same kind
      that holds their minimum and maximum, so no value changes; with `int2uint`, a column with no negative value
      gets an unsigned type (``uint8`` holds 0 to 255). Unsigned columns stay unsigned.
    - ``float64`` (and ``Float64``) columns become ``float32`` (``Float32``) only where that keeps every value to
      within a millionth of the column's range (``max - min``), so no precision that matters to a model is lost.
      fastai casts every float64 column that fits float32's range; ember keeps float64 where float32 would blur the
      column, e.g. seconds since 1970 (128 s steps in float32) that span a few days. Exactly representable values
      (integers, halves, days in seconds) always shrink; a constant column shrinks only if float32 holds it exactly.
    - With `obj2cat`, object and string columns with few distinct values (at most half their non-missing values)
      become ``category``. fastai turns every object column into a category; ember leaves identifiers and free text
      as they are (a category would not save memory on them). Categories keep the values and missing values.
    - Booleans, dates, durations, categories, other extension types, and the columns in `skip` are not changed.

    Raises:
        DataError: a column of `skip` is not in `df`, or a column name is used twice.

    >>> df = pd.DataFrame({"n": [1, 200], "x": [0.5, 1.25], "s": ["a", "a"]})
    >>> {c: str(t) for c, t in df_shrink_dtypes(df, int2uint=True).items()}
    {'n': 'uint8', 'x': 'float32', 's': 'category'}
    """
    _check_frame(df)
    skip = _names(skip)
    _check_columns(df, "skip", skip)
    dupes = df.columns[df.columns.duplicated()]
    if len(dupes):
        raise DataError(
            f"The DataFrame has several columns named {dupes[0]!r}: rename them so that each name is used once."
        )
    out: dict[Any, Any] = {}
    for c in df.columns:
        if c in skip:
            continue
        s = df[c]
        dt, name = s.dtype, s.dtype.name
        new = None
        if (isinstance(dt, np.dtype) and dt.kind in "iu") or name in _NULLABLE_INTS:
            new = _smallest_int(s, int2uint)
        elif name in ("float64", "Float64"):
            new = _float32_if_close(s)
        elif obj2cat and (pd.api.types.is_object_dtype(dt) or isinstance(dt, pd.StringDtype)) and _few_values(s):
            new = "category"
        if new is not None and new != dt:
            out[c] = new
    return out


def df_shrink(
    df: pd.DataFrame, skip: str | Sequence[str] = (), obj2cat: bool = True, int2uint: bool = False
) -> pd.DataFrame:
    """A copy of `df` whose columns have the smaller types of :func:`df_shrink_dtypes` (same arguments).

    The result goes to ``TabularPandas`` / ``TabularDataLoaders.from_df`` as it is: category columns have the same
    vocabulary as the strings they came from, and the model inputs are those of `df` up to float32 rounding.

    >>> df = pd.DataFrame({"n": np.arange(1000), "s": ["a", "b"] * 500})
    >>> small = df_shrink(df)
    >>> str(small["n"].dtype), str(small["s"].dtype)
    ('int16', 'category')
    """
    return df.astype(df_shrink_dtypes(df, skip=skip, obj2cat=obj2cat, int2uint=int2uint))
