"""The preprocessing steps of a table: the :class:`TabularProc` base and ember's three procs.

:class:`FillMissing` fills missing continuous values (and adds ``<col>_na`` indicator columns),
:class:`Categorify` turns categories into integer codes (0 is :data:`NA_TOKEN`), :class:`Normalize`
standardizes continuous columns. Each learns its state from the training rows in ``setup``, applies it in
``process`` and writes itself to JSON under a registered recipe name (``tabular.FillMissing``, ...).
:class:`~ember.tabular.procs.TabularProcessor` chains them.

>>> proc = Categorify()
>>> proc.setup(train_df, cat_names=["island"], cont_names=[])  # doctest: +SKIP
>>> proc.process(new_rows)                                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import register_recipe
from ember.tabular.columns import _floats, _from_json_scalar, _isna, _json_scalar, _median, _scalar, lookup

__all__ = ["TabularProc", "FillMissing", "Categorify", "Normalize", "NA_TOKEN"]

NA_TOKEN = "#na#"


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


def _filled(x: Any, na: np.ndarray, value: float) -> np.ndarray:
    """A copy of the column `x` with `value` where `na` is True."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        out = x.copy()
        out[na] = value
        return out
    return pd.Series(x, copy=False).fillna(value).to_numpy()
