"""Tabular preprocessing: fill missing values, turn categories into codes, normalize, once, into tensors.

A *proc* learns its state (fill values, vocabularies, means and standard deviations) from the training
rows in :meth:`TabularProc.setup` and applies it to any rows in :meth:`TabularProc.process`. A
:class:`TabularProcessor` chains the procs in a fixed order (:class:`FillMissing`, then
:class:`Categorify`, then :class:`Normalize`), encodes the target, and turns a DataFrame into the three
tensors a batch is sliced from: ``cats`` (int64, ``(N, n_cat)``), ``conts`` (float32, ``(N, n_cont)``) and
``ys``. Every piece writes itself to JSON (:func:`ember.core.recipe.dump`) so that a model exported
with it processes new rows exactly as it did its training rows.

>>> proc = TabularProcessor(cat_names=["island"], cont_names=["bill_length_mm"], y_names="species")
>>> cats, conts, ys = proc.setup(train_df)           # doctest: +SKIP
>>> cats, conts, _ = proc.process(new_rows)          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import datetime
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import dump, load, register_recipe

# The DataFrame helpers live in frames.py; they are imported here too so that older imports keep working.
from ember.tabular.frames import _check_frame, _missing_col, _names, add_datepart, cont_cat_split

__all__ = [
    "TabularProc",
    "Categorify",
    "FillMissing",
    "Normalize",
    "TabularProcessor",
    "cont_cat_split",
    "add_datepart",
    "NA_TOKEN",
    "lookup",
]

NA_TOKEN = "#na#"
Y_KINDS = ("category", "regression")


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


class _Rows(Mapping):
    """The training rows of a mapping of columns, each column taken once, on first use (procs read few columns)."""

    def __init__(self, cols: Mapping[str, Any], idx: np.ndarray) -> None:
        self._cols, self._idx, self._taken = cols, idx, {}

    def __getitem__(self, col: str) -> Any:
        if col not in self._taken:
            self._taken[col] = self._cols[col][self._idx]
        return self._taken[col]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


class TabularProc:
    """Base of the preprocessing steps. Subclasses implement `setup`, `process`, `to_recipe`, `from_recipe`.

    `setup` and `process` receive a DataFrame. (The built-in procs also accept a mapping of column names to arrays:
    :class:`TabularProcessor` gives them one, which spares it a DataFrame and copies of the training rows.)

    Attributes:
        order: procs run in increasing order (fill missing values, then categorify, then normalize).
    """

    order: int = 0

    def setup(self, df: pd.DataFrame, cat_names: list[str], cont_names: list[str]) -> None:
        """Learn the state from the training rows `df`; may append new column names to `cat_names`."""

    def process(self, df: pd.DataFrame) -> None:
        """Apply the learned state to `df`, in place."""

    def to_recipe(self) -> dict[str, Any]:
        raise ExportError(
            f"The tabular proc {type(self).__name__} cannot be written to a model file: give it to_recipe/from_recipe "
            "and register it with @register_recipe (see ember.core.recipe), or use ember's procs."
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_recipe("tabular.FillMissing")
class FillMissing(TabularProc):
    """Fill missing values of continuous columns, and add a ``<col>_na`` indicator column (a category).

    The fill value of every continuous column is learned from the training rows, so a value missing in
    new rows is filled even in a column that had none in training; the indicator is only added for
    columns that had missing training values (the model's inputs stay the same).

    Args:
        fill_strategy: ``"median"``, ``"mode"`` or ``"constant"`` (uses `fill_value`).
        fill_value: the constant of ``"constant"``.
        add_col: add the ``<col>_na`` indicator columns.
    """

    order = 0
    STRATEGIES = ("median", "mode", "constant")

    def __init__(self, fill_strategy: str = "median", fill_value: float = 0.0, add_col: bool = True) -> None:
        if fill_strategy not in self.STRATEGIES:
            raise ConfigError(expected("a fill strategy", "fill_strategy", fill_strategy, self.STRATEGIES))
        self.fill_strategy, self.fill_value, self.add_col = fill_strategy, float(fill_value), add_col
        self.fill_values: dict[str, float] = {}
        self.na_cols: list[str] = []

    def _fill_value(self, x: np.ndarray, na: np.ndarray) -> float:
        if self.fill_strategy == "constant":
            return self.fill_value
        x = x[~na] if na.any() else x
        if len(x) == 0:
            return self.fill_value
        if self.fill_strategy == "median":
            return float(_median(x))
        return float(pd.Series(x, copy=False).mode().iloc[0])

    def setup(self, df: pd.DataFrame, cat_names: list[str], cont_names: list[str]) -> None:
        self.fill_values, self.na_cols = {}, []
        for c in cont_names:
            x = _floats(df[c])
            na = np.isnan(x)
            self.fill_values[c] = self._fill_value(x, na)
            if self.add_col and na.any():
                self.na_cols.append(c)
        for c in self.na_cols:
            if f"{c}_na" not in cat_names:
                cat_names.append(f"{c}_na")

    def process(self, df: pd.DataFrame) -> None:
        masks = {}
        for c in self.na_cols:
            masks[c] = _isna(df[c])
            df[f"{c}_na"] = masks[c]
        for c, v in self.fill_values.items():
            x = df[c]
            na = masks[c] if c in masks else _isna(x)
            if na.any():
                df[c] = x.fillna(v) if isinstance(x, pd.Series) else _filled(x, na, v)

    def to_recipe(self) -> dict[str, Any]:
        return {
            "fill_strategy": self.fill_strategy,
            "fill_value": self.fill_value,
            "add_col": self.add_col,
            "fill_values": dict(self.fill_values),
            "na_cols": list(self.na_cols),
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> FillMissing:
        out = cls(data["fill_strategy"], data["fill_value"], data["add_col"])
        out.fill_values = {k: float(v) for k, v in data["fill_values"].items()}
        out.na_cols = list(data["na_cols"])
        return out

    def __repr__(self) -> str:
        return f"FillMissing(fill_strategy={self.fill_strategy!r}, add_col={self.add_col})"


@register_recipe("tabular.Categorify")
class Categorify(TabularProc):
    """Replace the values of categorical columns by integer codes, from a vocabulary of the training rows.

    Code 0 is ``#na#``: missing values and categories never seen in training both map to it.

    Args:
        max_vocab: the most distinct training values a column may have; more means the column is
            probably an identifier (a DataError says so).
    """

    order = 1

    def __init__(self, max_vocab: int = 100_000) -> None:
        self.max_vocab = int(max_vocab)
        self.vocabs: dict[str, list[Any]] = {}

    def setup(self, df: pd.DataFrame, cat_names: list[str], cont_names: list[str]) -> None:
        self.vocabs = {}
        for c in cat_names:
            try:
                values = pd.unique(df[c])  # in order of appearance
            except TypeError as e:
                raise DataError(_unhashable(c, df[c])) from e
            values = values[~_isna(values)]
            n = len(values)
            if n > self.max_vocab:
                raise DataError(
                    f"Categorical column `{c}` has {n:,} distinct values in the training rows (more than "
                    f"max_vocab={self.max_vocab:,}): it looks like an identifier, which a model cannot learn from. "
                    "Drop it, list it in `cont_names` if it is a number, or raise Categorify(max_vocab=...)."
                )
            try:
                values = sorted(values)
            except TypeError:  # mixed types: keep the order of appearance
                values = list(values)
            self.vocabs[c] = [NA_TOKEN, *(_scalar(v) for v in values)]

    def process(self, df: pd.DataFrame) -> None:
        """Codes of every categorical column.

        Raises:
            DataError: a column holds unhashable values (lists), or none of its values is known and they are of
                another type than the vocabulary's (e.g. the strings "2" for the integer 2).
        """
        for c, vocab in self.vocabs.items():
            x = df[c]
            # A hash lookup per value: missing and unseen values give -1, hence +1 -> 0 (#na#).
            try:
                codes = lookup(vocab[1:], x) + 1
            except TypeError as e:
                raise DataError(_unhashable(c, x)) from e
            if len(vocab) > 1 and len(codes) and not codes.any():
                _check_value_type(c, vocab[1:], x)
            df[c] = codes

    def n_classes(self, col: str) -> int:
        """Size of the vocabulary of `col`, ``#na#`` included (the rows of its embedding)."""
        return len(self.vocabs[col])

    def decode(self, col: str, codes: np.ndarray | torch.Tensor) -> np.ndarray:
        """Codes of `col` back to its values (``#na#`` for code 0)."""
        vocab = np.asarray(self.vocabs[col], dtype=object)
        codes = codes.cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
        return vocab[codes]

    def to_recipe(self) -> dict[str, Any]:
        return {
            "max_vocab": self.max_vocab,
            "vocabs": {c: [_json_scalar(v, f"column `{c}`") for v in vocab] for c, vocab in self.vocabs.items()},
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Categorify:
        out = cls(data["max_vocab"])
        out.vocabs = {c: [_from_json_scalar(x) for x in v] for c, v in data["vocabs"].items()}
        return out

    def __repr__(self) -> str:
        return f"Categorify({', '.join(f'{c}: {len(v)}' for c, v in self.vocabs.items())})"


@register_recipe("tabular.Normalize")
class Normalize(TabularProc):
    """Standardize continuous columns with the mean and standard deviation of the training rows."""

    order = 2

    def __init__(self) -> None:
        self.stats: dict[str, tuple[float, float]] = {}

    def setup(self, df: pd.DataFrame, cat_names: list[str], cont_names: list[str]) -> None:
        self.stats = {}
        for c in cont_names:
            x = _floats(df[c], np.float64)
            if len(x) == 0:
                mean, std = 0.0, 1.0
            elif np.isnan(x).any():
                mean, std = float(np.nanmean(x)), float(np.nanstd(x))
            else:  # the same sums as nanmean/nanstd, without their copy of the column
                mean, std = float(x.mean()), float(x.std())
            # A constant column would divide by zero; it carries no information either way.
            self.stats[c] = (0.0 if mean != mean else mean, std if std > 1e-7 else 1.0)

    def process(self, df: pd.DataFrame) -> None:
        for c, (mean, std) in self.stats.items():
            # Integers and float64 in float64, cast at the end: a column far from zero (dates in seconds,
            # counters) keeps its resolution, which float32 would lose before the mean is subtracted. A float32
            # (or float16) column has no more resolution to keep: float32 arithmetic, half the memory traffic.
            x = _floats(df[c])
            work = np.float32 if x.dtype in (np.float32, np.float16) else np.float64
            x = x.astype(work) - work(mean)  # a new array: the input is never written to
            x /= work(std)
            df[c] = x.astype(np.float32, copy=False)

    def decode(self, col: str, values: np.ndarray | torch.Tensor) -> np.ndarray:
        """Normalized values of `col` back to the original scale."""
        values = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
        mean, std = self.stats[col]
        return values.astype(np.float64) * std + mean

    def to_recipe(self) -> dict[str, Any]:
        return {"stats": {c: [m, s] for c, (m, s) in self.stats.items()}}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Normalize:
        out = cls()
        out.stats = {c: (float(m), float(s)) for c, (m, s) in data["stats"].items()}
        return out


def _unhashable(col: str, x: Any) -> str:
    """The message of a categorical column holding values that cannot be categories (lists, dicts, sets)."""
    for v in pd.Series(x, copy=False):
        try:
            hash(v)
        except TypeError:
            return (
                f"Categorical column `{col}` holds the value {v!r} (a {type(v).__name__}), which cannot be a category: "
                f"categories are strings, numbers, booleans or dates. Convert such cells (e.g. df[{col!r}] = "
                f"df[{col!r}].astype(str)) or leave the column out of `cat_names`."
            )
    return f"Categorical column `{col}` holds values that cannot be categories (they are not hashable)."


def _value_kind(v: Any) -> str:
    v = _scalar(v)
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


_TYPE_HINTS = {
    "number": "pd.to_numeric(df[{c!r}])",
    "str": "df[{c!r}].astype(str)",
    "bool": 'df[{c!r}].map({{"True": True, "False": False}})',
}


def _check_value_type(col: str, vocab: Sequence[Any], x: Any) -> None:
    """DataError when the values `x` of `col`, none of them in `vocab`, are of another type than the vocabulary's (a
    model trained on the integers 1, 2, 3 given the strings "1", "2", "3" would read every row as unknown)."""
    na = _isna(x)
    if na.all():
        return
    first = pd.Series(x, copy=False).iloc[int(np.flatnonzero(~na)[0])]
    kinds = {_value_kind(v) for v in vocab}
    kind = _value_kind(first)
    if kind in kinds:
        return  # categories of the right type, only not seen in training
    known = next(iter(kinds)) if len(kinds) == 1 else " / ".join(sorted(kinds))
    fix = _TYPE_HINTS.get(known)
    how = f"e.g. {fix.format(c=col)}" if fix else "the type it had in the training data"
    raise DataError(
        f"Categorical column `{col}` holds {kind} values (e.g. {first!r}) but the model's categories of `{col}` are "
        f"{known} values (e.g. {vocab[0]!r}): no value matches, so every row would be read as unknown. Convert the "
        f"column first ({how})."
    )


# Procs whose setup/process take a mapping of column arrays as well as a DataFrame (subclasses may not).
_ARRAY_PROCS = (FillMissing, Categorify, Normalize)


def _filled(x: Any, na: np.ndarray, value: float) -> np.ndarray:
    """A copy of the column `x` with `value` where `na` is True."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        out = x.copy()
        out[na] = value
        return out
    return pd.Series(x, copy=False).fillna(value).to_numpy()


def _rows_of(columns: list[np.ndarray], rows: np.ndarray | None, m: int, dtype: Any) -> np.ndarray:
    """The rows `rows` (None: all) of equally long 1-d arrays as one C-contiguous ``(m, n_columns)`` array."""
    # Columns go to the rows of an (n_columns, m) array (contiguous writes), which is transposed once at the end:
    # writing the columns of an (m, n_columns) array directly strides through memory and is several times slower.
    out = np.empty((len(columns), m), dtype=dtype)  # (n_columns, m)
    for i, x in enumerate(columns):
        if rows is None:
            out[i] = x
        else:
            np.take(x, rows, out=out[i])
    return np.ascontiguousarray(out.T)  # (m, n_columns)


def _as_procs(procs: Any) -> list[TabularProc]:
    """Fresh procs: classes are instantiated and instances copied, so that two tables given the same procs never
    share the state fitted on either."""
    hint = "e.g. [Categorify, FillMissing, Normalize]"
    if isinstance(procs, TabularProc) or (isinstance(procs, type) and issubclass(procs, TabularProc)):
        procs = [procs]
    elif procs is not None and (isinstance(procs, (str, Mapping)) or not isinstance(procs, Iterable)):
        raise ConfigError(expected("a list of TabularProc instances or classes", "procs", procs, hint=hint))
    out = []
    for p in procs or []:
        if isinstance(p, type) and issubclass(p, TabularProc):
            p = p()
        elif isinstance(p, TabularProc):
            try:
                p = copy.deepcopy(p)
            except Exception as e:  # noqa: BLE001 - a proc holding a lock, a file, a generator...
                raise ConfigError(
                    f"Cannot copy the proc {p!r} ({type(e).__name__}: {e}). Each table gets its own copy of the "
                    "procs it is given, so that tables never share fitted state: pass the proc's class, or give it "
                    "only settings that can be copied."
                ) from e
        else:
            raise ConfigError(expected("TabularProc instances or classes", "procs", p, hint=hint))
        out.append(p)
    return sorted(out, key=lambda p: p.order)


def _check_unique(arg: str, names: list[str]) -> None:
    seen: set[Any] = set()
    dup = [c for c in names if c in seen or seen.add(c)]
    if dup:
        raise ConfigError(f"`{arg}` names the column(s) {sorted(set(dup), key=str)} more than once; list each once.")


@register_recipe("tabular.TabularProcessor")
class TabularProcessor:
    """The fitted processing of a table: column roles, procs, target encoding; DataFrame -> tensors.

    Args:
        cat_names: categorical columns (embedded by the model).
        cont_names: continuous columns.
        y_names: the target column(s); none for unlabelled data.
        procs: :class:`TabularProc` instances or classes. Instances are copied (their settings kept): the
            processor fits its own procs, so a list of procs can serve several tables. A :class:`Categorify` is
            added when there are categorical columns (or a FillMissing that adds indicator columns) and none is
            given (the model needs codes).
        y_kind: ``"category"`` (classification) or ``"regression"``; ``None`` picks regression for float
            targets or several targets, classification otherwise (with a warning for an integer target with many
            distinct values).
    """

    def __init__(
        self,
        cat_names: Sequence[str] | None = None,
        cont_names: Sequence[str] | None = None,
        y_names: str | Sequence[str] | None = None,
        procs: Sequence[TabularProc | type[TabularProc]] | None = None,
        y_kind: str | None = None,
    ) -> None:
        if y_kind is not None and y_kind not in Y_KINDS:
            raise ConfigError(expected("a target kind", "y_block", y_kind, Y_KINDS))
        self.cat_names = _names(cat_names)
        self.cont_names = _names(cont_names)
        self.y_names = _names(y_names)
        for arg, names in (("cat_names", self.cat_names), ("cont_names", self.cont_names), ("y_names", self.y_names)):
            _check_unique(arg, names)
        inputs = set(self.cat_names + self.cont_names)
        overlap = (set(self.cat_names) & set(self.cont_names)) | (inputs & set(self.y_names))
        if overlap:
            raise ConfigError(f"Columns {sorted(overlap)} are named in more than one of cat_names/cont_names/y_names.")
        self.procs = _as_procs(procs)
        # FillMissing's `<col>_na` indicators are categorical columns too.
        indicators = any(isinstance(p, FillMissing) and p.add_col for p in self.procs)
        if (self.cat_names or indicators) and not any(isinstance(p, Categorify) for p in self.procs):
            self.procs = _as_procs([*self.procs, Categorify()])
        self.y_kind = y_kind
        self.y_vocab: list[Any] | None = None
        self.input_cat_names = list(self.cat_names)  # the columns a new row must have
        self.is_setup = False

    # -- validation -----------------------------------------------------------------------------
    def check_columns(self, df: pd.DataFrame, with_y: bool) -> None:
        """DataError naming any column that `df` lacks, or a continuous column that is not numeric."""
        _check_frame(df)
        named = [("cat_names", self.input_cat_names), ("cont_names", self.cont_names)]
        if with_y:
            named.append(("y_names", self.y_names))
        dup = set(df.columns[df.columns.duplicated()]) if not df.columns.is_unique else set()
        for arg, cols in named:
            for c in cols:
                if c not in df.columns:
                    raise DataError(_missing_col(arg, c, df))
                if c in dup:
                    raise DataError(
                        f"The DataFrame has {int((df.columns == c).sum())} columns named {c!r} (in `{arg}`): rename "
                        "or drop the copies, e.g. df = df.loc[:, ~df.columns.duplicated()]."
                    )
        for c in self.cont_names:
            check_numeric(df, c)

    def _check_y(self, df: pd.DataFrame, new_rows: bool = False) -> None:
        for c in self.y_names:
            na = df[c].isna().to_numpy()
            if na.any():
                other = " or pass with_labels=False to ignore the target" if new_rows else ""
                raise DataError(
                    f"The target column `{c}` has {int(na.sum())} missing value(s) (first at row "
                    f"{_first_bad_row(df, na)!r}). Drop those rows (df.dropna(subset=[{c!r}])), fill them{other}."
                )
        if self.y_kind == "regression":
            for c in self.y_names:
                check_numeric(df, c, "y_names")

    # -- setup / process ------------------------------------------------------------------------
    def setup(self, df: pd.DataFrame, train_idx: Sequence[int] | np.ndarray | None = None) -> tuple:
        """Learn every proc's state from the training rows (positions `train_idx`, default all) and
        process all of `df`; returns ``(cats, conts, ys)`` for every row of `df`."""
        return self._tensors(self._fit(df, train_idx), df, with_y=bool(self.y_names))[0]

    def _fit(self, df: pd.DataFrame, train_idx: Sequence[int] | np.ndarray | None = None) -> dict[str, Any]:
        """The first half of :meth:`setup`: learn every proc's state from the training rows and process all of `df`.

        Returns:
            The processed columns (name -> array, every row of `df`), for :meth:`_tensors`.
        """
        self.check_columns(df, with_y=True)
        if self.y_names:
            inferred = self.y_kind is None
            if inferred:
                ys = df[self.y_names]
                is_float = all(pd.api.types.is_float_dtype(ys[c]) for c in self.y_names)
                self.y_kind = "regression" if (is_float or len(self.y_names) > 1) else "category"
            self._check_y(df)  # once the kind is known: a regression target must be finite numbers
            if self.y_kind == "category":
                if len(self.y_names) > 1:
                    raise ConfigError(
                        f"Several targets {self.y_names} are only supported for regression; pass y_block='regression' "
                        "or a single target column."
                    )
                # Every label of the table (not only training ones), so a class seen only in validation still decodes.
                labels = pd.unique(df[self.y_names[0]])
                try:
                    labels = sorted(labels)
                except TypeError:
                    labels = list(labels)
                self.y_vocab = [_scalar(v) for v in labels]
                if inferred:
                    _warn_many_int_classes(df, self.y_names[0], len(self.y_vocab))
        cat_names = list(self.input_cat_names)
        cols = self._columns(df)
        idx = None if train_idx is None else np.asarray(train_idx, dtype=np.int64)
        for p in self.procs:
            if type(p) in _ARRAY_PROCS:
                # Built-in procs work on the column arrays: no DataFrame, and only the training rows of the columns
                # a proc reads are copied.
                p.setup(cols if idx is None else _Rows(cols, idx), cat_names, self.cont_names)
                self.cat_names = cat_names
                p.process(cols)
            else:
                work = pd.DataFrame(cols, index=df.index, copy=True)
                p.setup(work if idx is None else work.iloc[idx], cat_names, self.cont_names)
                self.cat_names = cat_names
                p.process(work)
                cols = {c: _values(work[c]) for c in work.columns}
        self.is_setup = True
        return cols

    def process(self, df: pd.DataFrame, with_y: bool | None = None) -> tuple:
        """Apply the learned processing to new rows: ``(cats, conts, ys)`` (``ys`` is None without labels).

        Args:
            with_y: encode the target too; default: when `df` has every target column.
        """
        if not self.is_setup:
            raise ConfigError("This TabularProcessor is not set up yet: call `setup(train_df)` first.")
        _check_frame(df)
        if with_y is None:
            # A target column that is there but entirely empty (a test table to fill in) is no label.
            with_y = bool(self.y_names) and all(c in df.columns and not df[c].isna().all() for c in self.y_names)
        self.check_columns(df, with_y=with_y)
        if with_y:
            self._check_y(df, new_rows=True)
        cols = self._columns(df)
        for p in self.procs:
            if type(p) in _ARRAY_PROCS:
                p.process(cols)
            else:
                work = pd.DataFrame(cols, index=df.index, copy=True)
                p.process(work)
                cols = {c: _values(work[c]) for c in work.columns}
        return self._tensors(cols, df, with_y=with_y)[0]

    def _columns(self, df: pd.DataFrame) -> dict[str, Any]:
        """The input columns as arrays, without copies: procs replace columns, they never write into them, so the
        user's DataFrame is never modified."""
        out = {c: _values(df[c]) for c in self.input_cat_names}
        for c in self.cont_names:
            s = df[c]
            # Object columns of numbers and None (rows built by hand) become floats with NaN.
            out[c] = s.to_numpy() if pd.api.types.is_numeric_dtype(s) else pd.to_numeric(s).to_numpy(float)
        return out

    def _tensors(
        self,
        cols: Mapping[str, Any],
        df: pd.DataFrame,
        with_y: bool,
        splits: Sequence[np.ndarray | None] = (None,),
    ) -> list[tuple]:
        """Processed columns (from :meth:`_fit`) to ``(cats, conts, ys)`` tensors, one tuple per entry of `splits`.

        Args:
            df: the table `cols` come from (for the target).
            with_y: encode the target; else ``ys`` is None.
            splits: row positions of each tuple (None: every row, in order). Taking the rows of each split here, one
                column at a time, spares a copy of the whole table.

        Raises:
            DataError: a continuous column still has missing values.
        """
        n = len(df)
        cats = []
        for c in self.cat_names:
            x = cols[c]  # codes (int64) after Categorify
            ok = isinstance(x, np.ndarray) and x.dtype.kind in "iub"
            cats.append((x if ok else pd.Series(x, copy=False).to_numpy()).astype(np.int64, copy=False))
        conts = [_floats(cols[c], np.float32) for c in self.cont_names]
        for c, x in zip(self.cont_names, conts):
            if np.isnan(x).any():
                raise DataError(
                    f"Continuous column `{c}` still has missing values after processing. Add FillMissing to `procs` "
                    "(or fill the column yourself)."
                )
        ys = self.encode_y(df) if with_y else None
        out = []
        for rows in splits:
            m = n if rows is None else len(rows)
            t = torch.from_numpy(rows) if rows is not None else None
            out.append(
                (
                    torch.from_numpy(_rows_of(cats, rows, m, np.int64)),  # (m, n_cat)
                    torch.from_numpy(_rows_of(conts, rows, m, np.float32)),  # (m, n_cont)
                    ys if ys is None or t is None else ys.index_select(0, t),
                )
            )
        return out

    def encode_y(self, df: pd.DataFrame) -> torch.Tensor:
        """The target of `df` as a tensor: class indices ``(N,)`` or values ``(N,)`` / ``(N, n_targets)``."""
        if self.y_kind == "category":
            col = self.y_names[0]
            codes = lookup(self.y_vocab, df[col])
            if (codes < 0).any():
                bad = codes < 0
                raise DataError(
                    f"The target column `{col}` holds {df[col][bad].iloc[0]!r} (row {_first_bad_row(df, bad)!r}), "
                    f"which is not one of the {len(self.y_vocab)} classes the model knows."
                )
            return torch.from_numpy(codes)
        ys = np.stack([df[c].to_numpy(dtype=np.float32) for c in self.y_names], axis=1)
        t = torch.from_numpy(ys)  # (N, n_targets)
        return t[:, 0].contiguous() if t.shape[1] == 1 else t

    # -- decoding -------------------------------------------------------------------------------
    def proc(self, kind: type[TabularProc]) -> TabularProc | None:
        """The proc of class `kind`, or None."""
        return next((p for p in self.procs if isinstance(p, kind)), None)

    @property
    def n_out(self) -> int:
        """Outputs the model needs: the number of classes, or of regression targets."""
        if self.y_kind == "category":
            return len(self.y_vocab or [])
        return len(self.y_names)

    def decode(self, cats: torch.Tensor, conts: torch.Tensor) -> pd.DataFrame:
        """Encoded inputs back to a readable table (category names, values on their original scale)."""
        cat_proc, norm = self.proc(Categorify), self.proc(Normalize)
        out: dict[str, Any] = {}
        for i, c in enumerate(self.cat_names):
            out[c] = cat_proc.decode(c, cats[:, i]) if cat_proc is not None else cats[:, i].numpy()
        for i, c in enumerate(self.cont_names):
            v = conts[:, i].float()
            out[c] = norm.decode(c, v) if norm is not None and c in norm.stats else v.numpy()
        return pd.DataFrame(out)

    def decode_y(self, ys: torch.Tensor) -> Any:
        """Encoded targets (class indices or values) back to labels / values, as a DataFrame column dict."""
        if self.y_kind == "category":
            vocab = np.asarray(self.y_vocab, dtype=object)
            return {self.y_names[0]: vocab[ys.long().cpu().numpy()]}
        ys = ys.detach().float().cpu().reshape(len(ys), -1)
        return {c: ys[:, i].numpy() for i, c in enumerate(self.y_names)}

    # -- export ---------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        # JSON object keys are strings: a column named 0 would come back as "0" and no longer match the table.
        for c in [*self.cat_names, *self.cont_names, *self.y_names]:
            if not isinstance(c, str):
                raise ExportError(
                    f"Cannot export the processing of column {c!r}: column names must be strings to be written "
                    "to JSON. Rename the columns (df.columns = df.columns.astype(str)) before building the data."
                )
        return {
            "cat_names": list(self.input_cat_names),
            "all_cat_names": list(self.cat_names),
            "cont_names": list(self.cont_names),
            "y_names": list(self.y_names),
            "y_kind": self.y_kind,
            "y_vocab": None if self.y_vocab is None else [_json_scalar(v, "the target") for v in self.y_vocab],
            "procs": [dump(p) for p in self.procs],
            "is_setup": self.is_setup,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> TabularProcessor:
        procs = [load(p) for p in data["procs"]]
        out = cls(data["cat_names"], data["cont_names"], data["y_names"], procs=procs, y_kind=data["y_kind"])
        out.procs = procs  # exactly the exported ones (no Categorify added)
        out.cat_names = list(data["all_cat_names"])
        out.y_vocab = None if data["y_vocab"] is None else [_from_json_scalar(v) for v in data["y_vocab"]]
        out.is_setup = data["is_setup"]
        return out

    def __repr__(self) -> str:
        return (
            f"TabularProcessor(cat_names={self.cat_names}, cont_names={self.cont_names}, y_names={self.y_names}, "
            f"y_kind={self.y_kind!r}, procs={self.procs})"
        )


# An integer target with more distinct values than this (and than MANY_CLASSES_PCT of the rows) is probably a quantity.
MANY_CLASSES, MANY_CLASSES_PCT = 20, 0.05


def _warn_many_int_classes(df: pd.DataFrame, col: str, n_classes: int) -> None:
    s = df[col]
    if not pd.api.types.is_integer_dtype(s) or pd.api.types.is_bool_dtype(s):
        return
    if n_classes > MANY_CLASSES and n_classes > MANY_CLASSES_PCT * len(df):
        warnings.warn(
            f"The integer target `{col}` has {n_classes} distinct values and is treated as {n_classes} classes; "
            f'if it is a quantity, pass y_block="regression" (or y_block="category" to keep classes and silence '
            "this warning).",
            UserWarning,
            stacklevel=_first_frame_outside_ember(),
        )


def _first_frame_outside_ember() -> int:
    """The ``stacklevel`` of a warning issued by the caller that points at the user's line, however deep in ember
    the call came from (``from_df``, ``TabularPandas``, ``TabularProcessor.setup``)."""
    import sys

    frame, level = sys._getframe(1), 1  # the function that warns is level 1
    while frame is not None and str(frame.f_globals.get("__name__", "")).split(".")[0] == "ember":
        frame, level = frame.f_back, level + 1
    return level
