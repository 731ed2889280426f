"""Row splits of a table: row positions from positions or boolean masks, and random training/validation splits."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import pandas as pd

from ember.core.errors import ConfigError, DataError, expected

__all__ = ["as_positions", "random_split_idx"]


def as_positions(idx: Any, n: int, name: str) -> np.ndarray:
    """Row positions from positions or a boolean mask of the `n` rows (``df.year == 2020``): int64, 1-d.

    Raises:
        DataError: a boolean mask of another length, or values that are not integers.
    """
    arr = np.asarray(idx.to_numpy() if isinstance(idx, (pd.Series, pd.Index)) else idx)
    if arr.dtype == bool:
        if arr.ndim != 1 or len(arr) != n:
            raise DataError(
                f"`{name}` is a boolean mask of {arr.size} values, but the DataFrame has {n} rows: a mask needs one "
                "value per row (or give row positions, 0 to len(df) - 1)."
            )
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.reshape(-1)
    if len(arr) == 0:
        return arr.astype(np.int64)
    whole = arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr) & (arr == np.round(arr))))
    )
    if not whole:
        bad = next((v for v in arr.tolist() if not isinstance(v, numbers.Integral)), arr[0])
        raise DataError(
            f"`{name}` holds {bad!r}: expected row positions (integers, 0 to len(df) - 1) or a boolean mask with one "
            "value per row."
        )
    return arr.astype(np.int64)


def random_split_idx(n: int, valid_pct: float = 0.2, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(train_idx, valid_idx)`` of a random split of `n` items (`seed` makes it repeatable)."""
    if not 0.0 <= valid_pct < 1.0:
        raise ConfigError(expected("a fraction in [0, 1)", "valid_pct", valid_pct))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_valid = int(round(n * valid_pct))
    is_valid = np.zeros(n, dtype=bool)
    is_valid[perm[:n_valid]] = True
    return _complement_split(is_valid)


def _complement_split(is_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions ``(train_idx, valid_idx)`` from a validation mask (linear time, unlike sorting or setdiff)."""
    return np.flatnonzero(~is_valid).astype(np.int64), np.flatnonzero(is_valid).astype(np.int64)
