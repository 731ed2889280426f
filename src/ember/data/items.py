"""Finding items, splitting them into training and validation, and reading labels from them.

The three questions of the data block API before any tensor exists:

- *where are the items?* :func:`get_files`, :func:`get_image_files` (or the rows of a DataFrame);
- *how are they split?* a splitter, a callable ``items -> (train_idx, valid_idx)``:
  :class:`RandomSplitter`, :class:`GrandparentSplitter`, :class:`FuncSplitter`,
  :class:`IndexSplitter`, :class:`ColSplitter`, :class:`TrainTestSplitter`, :class:`EndSplitter`,
  :class:`MaskSplitter`, :class:`FileSplitter`, :class:`RandomSubsetSplitter`;
- *what is the label (or the input) of an item?* a labeller: :func:`parent_label`,
  :class:`RegexLabeller`, :class:`ColReader`, :func:`using_attr`.

>>> splitter = RandomSplitter(valid_pct=0.25, seed=0)
>>> train_idx, valid_idx = splitter(list(range(8)))
>>> len(train_idx), len(valid_idx)
(6, 2)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected

__all__ = [
    "IMAGE_EXTENSIONS",
    "get_files",
    "get_image_files",
    "RandomSplitter",
    "GrandparentSplitter",
    "FuncSplitter",
    "IndexSplitter",
    "ColSplitter",
    "TrainTestSplitter",
    "EndSplitter",
    "MaskSplitter",
    "FileSplitter",
    "RandomSubsetSplitter",
    "parent_label",
    "RegexLabeller",
    "ColReader",
    "using_attr",
    "getter_to_recipe",
    "getter_from_recipe",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)

Split = tuple[list[int], list[int]]


# --------------------------------------------------------------------------------------------- items
def _normalize_extensions(extensions: Iterable[str] | str | None) -> frozenset[str] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = [extensions]
    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _scan(folder: str, extensions: frozenset[str] | None, recurse: bool, out: list[str]) -> None:
    """Append the matching files under `folder` to `out` (hidden files and folders are skipped)."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return
    subdirs = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir(follow_symlinks=True):
            subdirs.append(entry.path)
        elif extensions is None or os.path.splitext(entry.name)[1].lower() in extensions:
            out.append(entry.path)
    if recurse:
        for sub in subdirs:
            _scan(sub, extensions, recurse, out)


def get_files(
    path: str | os.PathLike,
    extensions: Iterable[str] | str | None = None,
    recurse: bool = True,
    folders: Iterable[str] | str | None = None,
) -> list[Path]:
    """Every file under `path` whose suffix is in `extensions`, sorted (so runs are reproducible).

    Args:
        path: the folder to search.
        extensions: suffixes to keep, case-insensitive, with or without the dot (``None``: every file).
        recurse: also search sub-folders (hidden ones, whose names start with ".", are skipped).
        folders: only search these sub-folders of `path` (e.g. ``["train", "valid"]``).

    Raises:
        DataError: `path` is not a folder.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        hint = "It is a file; pass its folder." if root.is_file() else "Check the path (untar_data returns it)."
        raise DataError(expected("an existing folder", "path", str(root), hint=hint))
    exts = _normalize_extensions(extensions)
    if isinstance(folders, str):
        folders = [folders]
    found: list[str] = []
    if folders is None:
        _scan(str(root), exts, recurse, found)
    else:
        for name in folders:
            sub = root / name
            if not sub.is_dir():
                raise DataError(expected("a sub-folder of " + str(root), "folders", name))
            _scan(str(sub), exts, recurse, found)
    return [Path(p) for p in sorted(found)]


def get_image_files(
    path: str | os.PathLike, recurse: bool = True, folders: Iterable[str] | str | None = None
) -> list[Path]:
    """Every image file (by suffix: .jpg, .png, .bmp, .gif, .tif, .webp, …) under `path`, sorted."""
    return get_files(path, extensions=IMAGE_EXTENSIONS, recurse=recurse, folders=folders)


# ----------------------------------------------------------------------------------------- splitters
def _check_split(train: list[int], valid: list[int], who: str, hint: str = "") -> Split:
    for name, idx in (("training", train), ("validation", valid)):
        if not idx:
            raise DataError(f"{who} gave an empty {name} set. {hint}".rstrip())
    return train, valid


def _n_items(items: Any) -> int:
    try:
        return len(items)
    except TypeError as e:
        raise DataError(f"A splitter needs a sized list of items; received a {type(items).__name__}.") from e


def _short_repr(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _iter_items(items: Any) -> Iterable[Any]:
    """Items one by one; a DataFrame's rows as Series."""
    if hasattr(items, "iloc") and hasattr(items, "columns"):
        return (items.iloc[i] for i in range(len(items)))
    return iter(items)


class RandomSplitter:
    """Put a random `valid_pct` of the items in the validation set.

    Args:
        valid_pct: the fraction of items for validation.
        seed: fixes the split; ``None`` draws from torch's generator (so ``set_seed`` fixes it too).
    """

    def __init__(self, valid_pct: float = 0.2, seed: int | None = None) -> None:
        if not 0.0 < valid_pct < 1.0:
            raise ConfigError(expected("a fraction strictly between 0 and 1", "valid_pct", valid_pct))
        self.valid_pct, self.seed = valid_pct, seed

    def __call__(self, items: Sequence[Any]) -> Split:
        n = _n_items(items)
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        perm = torch.randperm(n, generator=gen).tolist()
        n_valid = int(round(self.valid_pct * n))
        return _check_split(
            sorted(perm[n_valid:]),
            sorted(perm[:n_valid]),
            f"RandomSplitter(valid_pct={self.valid_pct}) on {n} items",
            "Use more items or another valid_pct.",
        )

    def __repr__(self) -> str:
        return f"RandomSplitter(valid_pct={self.valid_pct}, seed={self.seed})"


class GrandparentSplitter:
    """Split by the name of each file's grandparent folder (``train/cat/1.jpg`` is in ``train``).

    Items in neither folder are left out of both sets.
    """

    def __init__(self, train_name: str = "train", valid_name: str = "valid") -> None:
        self.train_name, self.valid_name = train_name, valid_name

    def __call__(self, items: Sequence[Any]) -> Split:
        train, valid, seen = [], [], set()
        for i, item in enumerate(items):
            name = Path(item).parent.parent.name
            seen.add(name)
            if name == self.train_name:
                train.append(i)
            elif name == self.valid_name:
                valid.append(i)
        hint = (
            f"Grandparent folders found: {sorted(seen)[:10]}. "
            "Pass GrandparentSplitter(train_name=..., valid_name=...) with the right names."
        )
        return _check_split(train, valid, repr(self), hint)

    def __repr__(self) -> str:
        return f"GrandparentSplitter(train_name={self.train_name!r}, valid_name={self.valid_name!r})"


class FuncSplitter:
    """Items for which ``func(item)`` is true go to the validation set."""

    def __init__(self, func: Callable[[Any], bool]) -> None:
        if not callable(func):
            raise ConfigError(expected("a function item -> bool", "func", func))
        self.func = func

    def __call__(self, items: Sequence[Any]) -> Split:
        train, valid = [], []
        for i, item in enumerate(_iter_items(items)):
            (valid if self.func(item) else train).append(i)
        return _check_split(train, valid, repr(self))

    def __repr__(self) -> str:
        return f"FuncSplitter({getattr(self.func, '__name__', self.func)})"


class IndexSplitter:
    """The items at `valid_idx` form the validation set; the others the training set."""

    def __init__(self, valid_idx: Iterable[int]) -> None:
        self.valid_idx = sorted({int(i) for i in valid_idx})

    def __call__(self, items: Sequence[Any]) -> Split:
        n = _n_items(items)
        bad = [i for i in self.valid_idx if not 0 <= i < n]
        if bad:
            raise DataError(expected(f"indices in [0, {n})", "valid_idx", bad[:5], hint=f"There are {n} items."))
        valid = set(self.valid_idx)
        return _check_split([i for i in range(n) if i not in valid], list(self.valid_idx), "IndexSplitter")


class ColSplitter:
    """Rows of a DataFrame whose column `col` is true go to the validation set."""

    def __init__(self, col: str | int = "is_valid") -> None:
        self.col = col

    def __call__(self, items: Any) -> Split:
        if not hasattr(items, "columns"):
            raise DataError(expected("a DataFrame", "items", type(items).__name__, hint="ColSplitter reads a column."))
        col = self.col
        if isinstance(col, int) and col not in items.columns:
            col = items.columns[col]
        if col not in items.columns:
            raise DataError(expected("a column of the DataFrame", "col", self.col, valid=list(items.columns)))
        values = items[col]
        if values.dtype.kind not in "biuf":
            # A CSV may hold "True"/"False" as text: read them as booleans, not as non-empty strings.
            values = values.map(lambda v: str(v).strip().lower() in ("true", "1", "yes"))
        flags = values.astype(bool).tolist()
        train = [i for i, f in enumerate(flags) if not f]
        valid = [i for i, f in enumerate(flags) if f]
        return _check_split(train, valid, f"ColSplitter(col={self.col!r})")


class TrainTestSplitter:
    """A random split like scikit-learn's ``train_test_split``, optionally stratified.

    Args:
        test_size: the fraction (float) or the number (int) of items for validation.
        random_state: fixes the split; ``None`` draws from torch's generator.
        stratify: one label per item; each label then has the same share of validation items
            (at least one training item per label), so every class is seen in training.
        shuffle: shuffle before splitting; ``False`` takes the last items for validation.
    """

    def __init__(
        self,
        test_size: float | int = 0.2,
        random_state: int | None = None,
        stratify: Sequence[Hashable] | None = None,
        shuffle: bool = True,
    ) -> None:
        if isinstance(test_size, float) and not 0.0 < test_size < 1.0:
            raise ConfigError(expected("a fraction in (0, 1) or a positive count", "test_size", test_size))
        if isinstance(test_size, int) and test_size < 1:
            raise ConfigError(expected("a fraction in (0, 1) or a positive count", "test_size", test_size))
        if stratify is not None and not shuffle:
            raise ConfigError("Stratified splitting needs shuffle=True (as in scikit-learn).")
        self.test_size, self.random_state, self.shuffle = test_size, random_state, shuffle
        self.stratify = list(stratify) if stratify is not None else None

    def __call__(self, items: Sequence[Any]) -> Split:
        n = _n_items(items)
        n_test = self.test_size if isinstance(self.test_size, int) else int(math.ceil(self.test_size * n))
        if n_test >= n:
            raise DataError(expected(f"fewer than the {n} items", "test_size", self.test_size))
        gen = torch.Generator().manual_seed(self.random_state) if self.random_state is not None else None
        if not self.shuffle:
            return _check_split(list(range(n - n_test)), list(range(n - n_test, n)), repr(self))
        if self.stratify is None:
            perm = torch.randperm(n, generator=gen).tolist()
            return _check_split(sorted(perm[n_test:]), sorted(perm[:n_test]), repr(self))
        if len(self.stratify) != n:
            raise DataError(expected(f"one label per item ({n})", "len(stratify)", len(self.stratify)))
        return _check_split(*self._stratified(n, n_test, gen), repr(self))

    def _stratified(self, n: int, n_test: int, gen: torch.Generator | None) -> Split:
        groups: dict[Hashable, list[int]] = {}
        for i, label in enumerate(self.stratify):
            groups.setdefault(label, []).append(i)
        labels = sorted(groups, key=str)
        # Each class gets its proportional share, rounded down; the remaining test slots go to the
        # classes with the largest remainders, never taking a class's last training item.
        exact = {k: n_test * len(groups[k]) / n for k in labels}
        share = {k: min(int(exact[k]), len(groups[k]) - 1) for k in labels}
        by_remainder = sorted(labels, key=lambda k: exact[k] - int(exact[k]), reverse=True)
        left = n_test - sum(share.values())
        for k in by_remainder * 2:
            if left <= 0:
                break
            if share[k] < len(groups[k]) - 1:
                share[k] += 1
                left -= 1
        train, valid = [], []
        for k in labels:
            idx = groups[k]
            perm = torch.randperm(len(idx), generator=gen).tolist()
            valid += [idx[j] for j in perm[: share[k]]]
            train += [idx[j] for j in perm[share[k] :]]
        return sorted(train), sorted(valid)

    def __repr__(self) -> str:
        strat = "labels" if self.stratify is not None else None
        return f"TrainTestSplitter(test_size={self.test_size}, random_state={self.random_state}, stratify={strat})"


class EndSplitter:
    """The last (or first) `valid_pct` of the items, in their order, form the validation set: for data ordered
    in time, where the model must be judged on what comes after what it learned from.

    Args:
        valid_pct: the fraction of items for validation.
        valid_last: take the last items; ``False`` takes the first ones.
    """

    def __init__(self, valid_pct: float = 0.2, valid_last: bool = True) -> None:
        if not 0.0 < valid_pct < 1.0:
            raise ConfigError(expected("a fraction strictly between 0 and 1", "valid_pct", valid_pct))
        self.valid_pct, self.valid_last = valid_pct, valid_last

    def __call__(self, items: Sequence[Any]) -> Split:
        n = _n_items(items)
        n_valid = int(round(self.valid_pct * n))
        cut = n - n_valid if self.valid_last else n_valid
        first, last = list(range(cut)), list(range(cut, n))
        train, valid = (first, last) if self.valid_last else (last, first)
        return _check_split(train, valid, f"{self!r} on {n} items", "Use more items or another valid_pct.")

    def __repr__(self) -> str:
        return f"EndSplitter(valid_pct={self.valid_pct}, valid_last={self.valid_last})"


class MaskSplitter:
    """One boolean per item: the items marked true form the validation set."""

    def __init__(self, mask: Iterable[Any]) -> None:
        # a numpy array, pandas Series or torch tensor gives Python values through tolist()
        values = list(mask.tolist() if hasattr(mask, "tolist") else mask)
        if not all(isinstance(v, bool) for v in values):
            raise ConfigError(
                expected("one boolean per item (True: validation)", "mask", values[:5], hint="Compare to get them.")
            )
        self.mask = [bool(v) for v in values]

    def __call__(self, items: Sequence[Any]) -> Split:
        n = _n_items(items)
        if len(self.mask) != n:
            raise DataError(expected(f"one boolean per item ({n})", "len(mask)", len(self.mask)))
        train = [i for i, v in enumerate(self.mask) if not v]
        valid = [i for i, v in enumerate(self.mask) if v]
        return _check_split(train, valid, "MaskSplitter")


class FileSplitter:
    """The items whose file name (``Path(item).name``) is listed in the text file `fname` (one name per line)
    form the validation set, as datasets that publish their validation list do.
    """

    def __init__(self, fname: str | os.PathLike) -> None:
        path = Path(fname)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise DataError(f"FileSplitter cannot read the list of validation files {str(path)!r}: {e}") from e
        self.fname = path
        self.names = frozenset(name.strip() for name in lines if name.strip())
        if not self.names:
            raise DataError(f"FileSplitter: {str(path)!r} names no file (one validation file name per line).")

    def __call__(self, items: Sequence[Any]) -> Split:
        other = "Split other items with ColSplitter (a column marking the validation rows) or FuncSplitter."
        if hasattr(items, "iloc") and hasattr(items, "columns"):
            raise DataError(
                f"{self!r} splits file paths; received a DataFrame of items. {other} For example "
                "FuncSplitter(lambda row: Path(row['fname']).name in names), with your file-name column."
            )
        train, valid = [], []
        for i, item in enumerate(_iter_items(items)):
            if not isinstance(item, (str, os.PathLike)):
                raise DataError(
                    f"{self!r} splits file paths (str or os.PathLike); received "
                    f"`items[{i}]={_short_repr(item)}` ({type(item).__name__}). {other}"
                )
            (valid if Path(item).name in self.names else train).append(i)
        hint = f"None of the items' file names is among the {len(self.names)} listed in {str(self.fname)!r}."
        return _check_split(train, valid, repr(self), hint if not valid else "")

    def __repr__(self) -> str:
        return f"FileSplitter({str(self.fname)!r})"


class RandomSubsetSplitter:
    """Random training and validation sets of the given fractions of the items; the rest is left out of both
    (a quick experiment on part of a large dataset).

    Args:
        train_sz, valid_sz: the fractions of all items for training and for validation (their sum at most 1).
        seed: fixes the split; ``None`` draws from torch's generator.
    """

    def __init__(self, train_sz: float, valid_sz: float, seed: int | None = None) -> None:
        for name, value in (("train_sz", train_sz), ("valid_sz", valid_sz)):
            if not isinstance(value, (int, float)) or not 0.0 < value < 1.0:
                raise ConfigError(expected("a fraction strictly between 0 and 1", name, value))
        if train_sz + valid_sz > 1.0 + 1e-9:
            raise ConfigError(expected("train_sz + valid_sz <= 1", "train_sz + valid_sz", train_sz + valid_sz))
        self.train_sz, self.valid_sz, self.seed = train_sz, valid_sz, seed

    def __call__(self, items: Sequence[Any]) -> Split:
        n = _n_items(items)
        gen = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        perm = torch.randperm(n, generator=gen).tolist()
        n_train, n_valid = int(round(self.train_sz * n)), int(round(self.valid_sz * n))
        return _check_split(
            sorted(perm[:n_train]),
            sorted(perm[n_train : n_train + n_valid]),
            f"{self!r} on {n} items",
            "Use more items or larger fractions.",
        )

    def __repr__(self) -> str:
        return f"RandomSubsetSplitter(train_sz={self.train_sz}, valid_sz={self.valid_sz}, seed={self.seed})"


# ---------------------------------------------------------------------------------------- labellers
def parent_label(item: str | os.PathLike) -> str:
    """The name of the folder a file is in: ``train/cat/1.jpg`` -> ``"cat"``."""
    return Path(item).parent.name


class RegexLabeller:
    """The first group of `pat` found in the item's path (``re.search``; ``re.match`` with ``match=True``).

    >>> RegexLabeller(r"([a-z]+)_\\d+\\.jpg$")("images/great_pyrenees_1.jpg")
    'pyrenees'
    """

    def __init__(self, pat: str, match: bool = False) -> None:
        try:
            self.regex = re.compile(pat)
        except re.error as e:
            raise ConfigError(expected("a valid regular expression", "pat", pat, hint=str(e))) from e
        self.pat, self.match = pat, match

    def __call__(self, item: Any) -> str:
        text = item.as_posix() if isinstance(item, Path) else str(item)
        m = self.regex.match(text) if self.match else self.regex.search(text)
        if m is None:
            raise DataError(
                f"The pattern {self.pat!r} does not match {text!r}. Check it on a few file names "
                "(e.g. with re.search), or label with using_attr(RegexLabeller(pat), 'name') to match the name only."
            )
        return m.group(1) if m.groups() else m.group(0)

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pat!r}, match={self.match})"


class ColReader:
    """Read column(s) of a DataFrame row, optionally adding a prefix/suffix or splitting labels.

    Args:
        cols: a column name or position, or a list of them (then a list of values is returned).
        pref: put before each value; a ``Path`` prefix gives a ``Path`` (``pref / value``).
        suff: put after each value.
        label_delim: split each value on this delimiter into a list of labels.
    """

    def __init__(
        self,
        cols: str | int | Sequence[str | int],
        pref: str | os.PathLike = "",
        suff: str = "",
        label_delim: str | None = None,
    ) -> None:
        self.cols = list(cols) if isinstance(cols, (list, tuple)) else [cols]
        self.pref, self.suff, self.label_delim = pref, suff, label_delim

    def _one(self, row: Any, col: str | int) -> Any:
        try:
            if isinstance(col, int) and hasattr(row, "iloc") and col not in row.index:
                value = row.iloc[col]
            else:
                value = row[col]
        except (KeyError, IndexError) as e:
            valid = list(row.index) if hasattr(row, "index") and hasattr(row, "iloc") else None
            raise DataError(expected("a column of the rows", "cols", col, valid=valid)) from e
        return self._format(value)

    def _format(self, value: Any) -> Any:
        if isinstance(self.pref, Path):
            value = self.pref / f"{value}{self.suff}"
        elif self.pref or self.suff:
            value = f"{self.pref}{value}{self.suff}"
        if self.label_delim is not None:
            if value is None or (isinstance(value, float) and math.isnan(value)):
                return []
            value = [v for v in str(value).split(self.label_delim) if v != ""]
        return value

    def __call__(self, row: Any) -> Any:
        values = [self._one(row, c) for c in self.cols]
        return values if len(values) > 1 else values[0]

    def read_frame(self, df: Any) -> list[Any]:
        """The values of every row of a DataFrame at once (much faster than row by row)."""
        columns = []
        for col in self.cols:
            if col in df.columns:
                series = df[col]
            elif isinstance(col, int) and 0 <= col < len(df.columns):
                series = df.iloc[:, col]
            else:
                raise DataError(expected("a column of the DataFrame", "cols", col, valid=list(df.columns)))
            columns.append([self._format(v) for v in series.tolist()])
        if len(columns) == 1:
            return columns[0]
        return [list(vals) for vals in zip(*columns)]

    def __repr__(self) -> str:
        cols = self.cols if len(self.cols) > 1 else self.cols[0]
        return f"ColReader({cols!r}, pref={self.pref!r}, suff={self.suff!r}, label_delim={self.label_delim!r})"


class using_attr:  # noqa: N801 - a function-like name users know
    """``func(getattr(item, attr))``: e.g. ``using_attr(RegexLabeller(pat), "name")`` matches file names only."""

    def __init__(self, func: Callable[[Any], Any], attr: str) -> None:
        self.func, self.attr = func, attr

    def __call__(self, item: Any) -> Any:
        return self.func(getattr(item, self.attr))

    def __repr__(self) -> str:
        return f"using_attr({self.func!r}, {self.attr!r})"


# ------------------------------------------------------------------------------------- export of labellers
def getter_to_recipe(getter: Any) -> dict[str, Any] | None:
    """A labeller as JSON data for an export file, or None when it cannot be written (a lambda, your function).

    Written: :func:`parent_label`, :class:`RegexLabeller`, :class:`ColReader`, and :class:`using_attr` around one
    of them. ``None`` (the item itself) is ``{"type": "item"}``.
    """
    if getter is None:
        return {"type": "item"}
    if getter is parent_label:
        return {"type": "parent_label"}
    if type(getter) is RegexLabeller:
        regex = getter.regex  # a pattern given compiled is written as its text and flags
        if not isinstance(regex.pattern, str):
            return None
        return {"type": "RegexLabeller", "pat": regex.pattern, "flags": int(regex.flags), "match": getter.match}
    if type(getter) is ColReader:
        pref = getter.pref
        return {
            "type": "ColReader",
            "cols": list(getter.cols),
            "pref": os.fspath(pref) if isinstance(pref, os.PathLike) else pref,
            "pref_is_path": isinstance(pref, Path),
            "suff": getter.suff,
            "label_delim": getter.label_delim,
        }
    if type(getter) is using_attr and isinstance(getter.attr, str):
        inner = getter_to_recipe(getter.func)
        if inner is not None and inner["type"] != "item":
            return {"type": "using_attr", "func": inner, "attr": getter.attr}
    return None


def getter_from_recipe(data: dict[str, Any]) -> Callable[[Any], Any] | None:
    """The labeller :func:`getter_to_recipe` wrote (``None`` for the item itself)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "item":
        return None
    if kind == "parent_label":
        return parent_label
    if kind == "RegexLabeller":
        return RegexLabeller(re.compile(data["pat"], int(data.get("flags", 0))), match=bool(data.get("match", False)))
    if kind == "ColReader":
        pref = Path(data["pref"]) if data.get("pref_is_path") else data.get("pref", "")
        return ColReader(data["cols"], pref=pref, suff=data.get("suff", ""), label_delim=data.get("label_delim"))
    if kind == "using_attr":
        return using_attr(getter_from_recipe(data["func"]), data["attr"])
    raise ConfigError(expected("a labeller recipe", "type", kind, valid=["parent_label", "RegexLabeller", "ColReader"]))
