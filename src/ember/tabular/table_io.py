"""Tables in and out: reading a CSV file into a DataFrame, and printing a DataFrame as a readable table."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ember.core.errors import DataError

__all__ = ["read_csv", "split_read_csv_kwargs", "print_table"]


def split_read_csv_kwargs(kwargs: dict[str, Any], own: Callable[..., Any]) -> dict[str, Any]:
    """Take out of `kwargs` (in place) the options of pandas.read_csv that `own` (a from_df) does not take."""
    csv_args = set(inspect.signature(pd.read_csv).parameters) - set(inspect.signature(own).parameters)
    return {k: kwargs.pop(k) for k in list(kwargs) if k in csv_args}


def read_csv(csv: str | os.PathLike, **read_kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv with a DataError naming the file when it is missing or cannot be read."""
    if not os.path.isfile(csv):
        raise DataError(f"No CSV file at {os.fspath(csv)!r}.")
    try:
        return pd.read_csv(csv, **read_kwargs)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"Cannot read the CSV file {os.fspath(csv)!r}: {e}") from e


def print_table(df: pd.DataFrame, title: str | None = None) -> None:
    """Print a DataFrame as a readable table (rich when it is installed, pandas' text otherwise)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but printing must never fail for lack of it
        print(df.to_string(index=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))  # piped output: do not squeeze the columns to 80
    table = Table(title=title)
    for c in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        table.add_column(str(c), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)
