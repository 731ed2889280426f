"""The column values the tabular procs work on: category values as Python and JSON values, vocabulary lookups,
missing-value masks, float arrays and the check that a continuous column holds finite numbers.

Columns arrive as numpy arrays or pandas arrays (see :func:`_values`), never copied unless a helper says so.

>>> lookup(["a", "b"], np.array(["b", "c", None], dtype=object))
array([ 1, -1, -1])
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ember.core.errors import DataError, ExportError, expected

__all__ = ["check_numeric", "lookup"]


def _scalar(v: Any) -> Any:
    """A category value as a plain Python value: numpy scalars become Python ones, dates Timestamps (``.item()`` of a
    nanosecond datetime64 would give an int), durations Timedeltas."""
    if isinstance(v, np.datetime64):
        return pd.Timestamp(v)
    if isinstance(v, np.timedelta64):
        return pd.Timedelta(v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, datetime.datetime) and not isinstance(v, pd.Timestamp):
        return pd.Timestamp(v)
    return v


def _json_scalar(v: Any, where: str) -> Any:
    """A category value as a JSON value: numpy scalars become Python ones, dates ``{"timestamp": ISO string}`` (or
    ``{"date": ...}`` for ``datetime.date``) and durations ``{"timedelta": ISO string}`` (:func:`_from_json_scalar`
    reads them back); ExportError otherwise."""
    v = _scalar(v)
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    if isinstance(v, pd.Timestamp):
        return {"timestamp": v.isoformat()}
    if isinstance(v, pd.Timedelta):
        return {"timedelta": v.isoformat()}
    if isinstance(v, datetime.timedelta):
        return {"timedelta": pd.Timedelta(v).isoformat()}
    if isinstance(v, datetime.date):
        return {"date": v.isoformat()}
    raise ExportError(
        f"Cannot export the category {v!r} of {where}: only strings, numbers, booleans and dates can be written to "
        "JSON. Convert the column to strings before building the data."
    )


def _from_json_scalar(v: Any) -> Any:
    """The inverse of :func:`_json_scalar`."""
    if isinstance(v, dict):
        if "timestamp" in v:
            return pd.Timestamp(v["timestamp"])
        if "timedelta" in v:
            return pd.Timedelta(v["timedelta"])
        if "date" in v:
            return datetime.date.fromisoformat(v["date"])
        raise ExportError(f"Unknown category value {v!r} in the model file; the file is damaged or from a newer ember.")
    return v


def _first_bad_row(df: pd.DataFrame, mask: np.ndarray) -> Any:
    return df.index[int(np.flatnonzero(mask)[0])]


def check_numeric(df: pd.DataFrame, col: str, arg: str = "cont_names") -> None:
    """Raise a DataError naming `col` (and a row) when it is not a numeric column, or holds infinities.

    Args:
        arg: the argument that named the column (for the message).
    """
    s = df[col]
    if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
        raise DataError(
            expected(
                "a continuous column of numbers",
                arg,
                col,
                hint=f"Column `{col}` holds {'dates' if pd.api.types.is_datetime64_any_dtype(s) else 'durations'} "
                f"({s.dtype}). Expand dates into numbers with add_datepart(df, {col!r}) (or convert the column to "
                "numbers yourself, e.g. durations with .dt.total_seconds()).",
            )
        )
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_integer_dtype(s):
        return  # no missing values or infinities to look for
    if pd.api.types.is_numeric_dtype(s):
        x = (
            s.to_numpy(dtype=np.float64, na_value=np.nan)
            if isinstance(s.dtype, pd.api.extensions.ExtensionDtype)
            else s.to_numpy()
        )
        _check_finite(df, col, x, arg)
        return
    coerced = pd.to_numeric(s, errors="coerce")
    bad = coerced.isna().to_numpy() & s.notna().to_numpy()
    if not bad.any() and not pd.api.types.is_string_dtype(s) or s.isna().all():
        # An object column of numbers and None (a row built by hand) is fine.
        _check_finite(df, col, coerced.to_numpy(dtype=np.float64, na_value=np.nan), arg)
        return
    where = f" (row {_first_bad_row(df, bad)!r} holds {s[bad].iloc[0]!r})" if bad.any() else ""
    raise DataError(
        expected(
            "a continuous column of numbers",
            arg,
            col,
            hint=f"Column `{col}` has dtype {s.dtype}{where}. Convert it with pd.to_numeric, or list it in "
            "`cat_names` if it is a category.",
        )
    )


def _check_finite(df: pd.DataFrame, col: str, x: np.ndarray, arg: str) -> None:
    """DataError naming `col` and its first row holding an infinity."""
    if x.dtype.kind != "f":
        return
    inf = np.isinf(x)
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise DataError(
            f"Column `{col}` (in `{arg}`) holds {float(x[i])} at row {df.index[i]!r} ({int(inf.sum())} infinite "
            "value(s)): a model cannot learn from infinities. Replace them, e.g. df.replace([np.inf, -np.inf], np.nan) "
            "(FillMissing then fills them), or clip the column."
        )


def lookup(vocab: Sequence[Any], values: Any) -> np.ndarray:
    """Position of each value in `vocab` (a hash lookup), -1 for missing values and values not in it."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iub":
        out = _lookup_ints(vocab, values)
        if out is not None:
            return out
    return pd.Index(list(vocab)).get_indexer(pd.Series(values, copy=False)).astype(np.int64, copy=False)


def _lookup_ints(vocab: Sequence[Any], values: np.ndarray) -> np.ndarray | None:
    """`lookup` of integer (or boolean) values in a vocabulary of integers (or booleans) through a table indexed by
    value: a few vectorised passes instead of a hash probe per row. None when it does not apply (other types, a
    vocabulary too sparse for a table, repeated entries)."""
    if not vocab or any(type(v) is not type(vocab[0]) for v in vocab) or type(vocab[0]) not in (int, bool):
        return None
    if (type(vocab[0]) is bool) != (values.dtype.kind == "b") or values.dtype == np.uint64:
        return None  # pandas does not match booleans with integers; uint64 may not fit in int64
    lo, hi = int(min(vocab)), int(max(vocab))
    if hi - lo > 4 * len(vocab) + len(values) or len(set(vocab)) != len(vocab):
        return None  # the table would be much bigger than the work it saves
    table = np.full(hi - lo + 1, -1, dtype=np.int64)
    table[np.asarray(vocab, dtype=np.int64) - lo] = np.arange(len(vocab))
    x = values.astype(np.int64, copy=False)
    out = table[np.clip(x - lo, 0, hi - lo)]
    out[(x < lo) | (x > hi)] = -1
    return out


def _values(s: pd.Series) -> Any:
    """A column's values without a copy: pandas string arrays as they are (hash lookups on them are about twice as
    fast as on the object array `to_numpy` makes of them), nullable integers and booleans as they are too (with a
    missing value `to_numpy` would make them floats, and the categories 1.0, 2.0), anything else as a numpy
    array."""
    if isinstance(s.dtype, pd.StringDtype):
        return s.array
    if pd.api.types.is_extension_array_dtype(s.dtype) and s.dtype.kind in "iub":
        return s.array if s.hasnans else s.to_numpy(dtype=s.dtype.numpy_dtype)
    return s.to_numpy()


def _isna(x: Any) -> np.ndarray:
    """Missing-value mask of a column (a Series, a numpy or a pandas array) as a bool numpy array."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return np.isnan(x)
    return np.asarray(pd.isna(x), dtype=bool)


def _floats(x: Any, dtype: Any = None) -> np.ndarray:
    """A numeric column as a float numpy array, NaN for missing values.

    Args:
        dtype: the float type; None keeps float32/float16 columns as they are (so that their median is the one pandas
            computes) and makes anything else float64.
    """
    arr = x.to_numpy() if isinstance(x, pd.Series) else x
    if isinstance(arr, np.ndarray) and arr.dtype.kind in "fiub":
        if dtype is None:
            return arr if arr.dtype.kind == "f" else arr.astype(np.float64)
        return arr.astype(dtype, copy=False)
    return pd.Series(x, copy=False).to_numpy(dtype=dtype or np.float64, na_value=np.nan)


def _median(x: np.ndarray) -> Any:
    """``np.median`` of a float array without NaN, with one partition instead of two (several times faster)."""
    k = len(x) // 2
    part = np.partition(x, k)  # part[k] is the k-th smallest, everything before it is no larger
    if len(x) % 2:
        return part[k]
    return np.mean(np.array([part[:k].max(), part[k]], dtype=x.dtype))  # the mean np.median takes, in x's type
