"""Tabular preprocessing: fill missing values, turn categories into codes, normalize, once, into tensors.

A *proc* learns its state (fill values, vocabularies, means and standard deviations) from the training
rows in :meth:`TabularProc.setup` and applies it to any rows in :meth:`TabularProc.process`. A
:class:`TabularProcessor` chains the procs in a fixed order (:class:`FillMissing`, then
:class:`Categorify`, then :class:`Normalize`), encodes the target, and turns a DataFrame into the three
tensors a batch is sliced from: ``cats`` (int64, ``(N, n_cat)``), ``conts`` (float32, ``(N, n_cont)``) and
``ys``. Every piece writes itself to JSON (:func:`ember.core.recipe.dump`) so that a model exported
with it processes new rows exactly as it did its training rows.

This module holds the processor; the procs themselves are in :mod:`ember.tabular.builtin_procs` and the column
helpers they share in :mod:`ember.tabular.columns` (both re-exported here).

>>> proc = TabularProcessor(cat_names=["island"], cont_names=["bill_length_mm"], y_names="species")
>>> cats, conts, ys = proc.setup(train_df)           # doctest: +SKIP
>>> cats, conts, _ = proc.process(new_rows)          # doctest: +SKIP
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import dump, load, register_recipe

# The procs, the column helpers and the DataFrame helpers live in builtin_procs.py, columns.py and frames.py; they are
# imported here too so that older imports keep working.
from ember.tabular.builtin_procs import NA_TOKEN, Categorify, FillMissing, Normalize, TabularProc
from ember.tabular.columns import (
    _first_bad_row,
    _floats,
    _from_json_scalar,
    _json_scalar,
    _median,  # noqa: F401 - imported from here by the tests
    _scalar,
    _values,
    check_numeric,
    lookup,
)
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

Y_KINDS = ("category", "regression")


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


# Procs whose setup/process take a mapping of column arrays as well as a DataFrame (subclasses may not).
_ARRAY_PROCS = (FillMissing, Categorify, Normalize)


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
