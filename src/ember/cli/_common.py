"""What every `ember` subcommand shares: the task protocol, the shared options, user errors, and what a model is."""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "MODULES",
    "modules",
    "info_lines",
    "learner_kind",
    "IMAGE_KINDS",
    "Task",
    "Predictor",
    "fail",
    "data_fail",
    "fmt",
    "fit_default",
    "close_figures",
    "read_csv",
    "parse_ints",
    "parse_range",
    "valid_column_mask",
]


#: The modules that define tasks (``TASKS``), predictors (``PREDICTORS``, ``add_predict_args``) and what ``ember info``
#: shows of one kind of model (``info_lines``). They import only the standard library at the top, so that
#: ``ember --help`` stays instant. Predictors are asked in this order; the image predictor, last, takes any model that
#: no other one claims.
MODULES = ("ember.cli.tabular", "ember.cli.collab", "ember.cli.text", "ember.cli.vision")


def modules() -> list[ModuleType]:
    """The modules of `MODULES`, imported."""
    return [importlib.import_module(name) for name in MODULES]


def fail(message: str) -> Exception:
    """An `EmberError` for bad input: the command prints its message on one line and exits with code 2."""
    from ember.core.errors import EmberError

    return EmberError(message)


def data_fail(message: str) -> Exception:
    """A `DataError` (an `EmberError` about the user's data)."""
    from ember.core.errors import DataError

    return DataError(message)


def fmt(value: float | None) -> str:
    """A metric for printing: four decimals, or ``n/a`` when there is none."""
    return "n/a" if value is None else f"{value:.4f}"


def read_csv(path: Path, what: str = "CSV", sep: str | None = None) -> Any:
    """The table in `path`, or a one-line error naming the file (missing, a folder, empty or not a CSV).

    Args:
        what: what the file holds, for the messages (``"ratings"`` gives "No ratings file at …").
        sep: the field separator; ``None`` reads commas, or the semicolons or tabs of a header with no comma.
    """
    import pandas as pd

    if not path.exists():
        raise data_fail(f"No {what} file at {path}. Give a CSV file with a header line.")
    if not path.is_file():
        raise data_fail(f"{path} is a folder; give a CSV file.")
    try:
        df = pd.read_csv(path, sep=sep or ",", skipinitialspace=True)
        if sep is None and len(df.columns) == 1:
            header = str(df.columns[0])
            other = next((s for s in (";", "\t") if s in header), None)
            if other is not None:
                df = pd.read_csv(path, sep=other, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise data_fail(f"{path} is empty: a CSV file needs a header line and rows.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise data_fail(f"{path} cannot be read as a CSV file ({first}).") from None
    df.columns = [str(col) for col in df.columns]
    return df


def parse_ints(text: str, option: str) -> list[int]:
    """``"200,100"`` -> ``[200, 100]``: an option's positive whole numbers, or a one-line error naming it."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = [0]
    if not values or min(values) < 1:
        raise fail(f"{option} takes positive whole numbers separated by commas (like 200,100), not {text!r}.")
    return values


def parse_range(text: str | None, option: str = "--y-range") -> tuple[float, float] | None:
    """``"0.5,5.5"`` -> ``(0.5, 5.5)`` (None stays None), or a one-line error naming the option."""
    if text is None:
        return None
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        low = high = float("nan")
    if not low < high:  # also false for NaN
        raise fail(f"{option} must be two numbers LOW,HIGH with LOW < HIGH (like 0.5,5.5), not {text!r}.")
    return low, high


_TRUE = {"true", "t", "yes", "y", "1", "1.0", "valid", "validation"}
_FALSE = {"false", "f", "no", "n", "0", "0.0", "train", "training"}


def valid_column_mask(df: Any, col: str, path: Path, option: str = "--valid-col") -> Any:
    """The validation rows marked by column `col` of `df` (true/false, 1/0, yes/no, valid/train), as a boolean
    array; a value that is none of these, or a column marking every row or none, is a one-line error."""
    import numpy as np
    import pandas as pd

    s = df[col]
    if pd.api.types.is_bool_dtype(s):
        mask = s.to_numpy(dtype=bool)
    else:
        text = s.astype("string").str.strip().str.lower()
        mask, is_false = text.isin(_TRUE).to_numpy(dtype=bool), text.isin(_FALSE).to_numpy(dtype=bool)
        bad = np.flatnonzero(~(mask | is_false))
        if len(bad):
            pos = int(bad[0])  # the file's line: the header is line 1 (rows dropped before keep their index)
            raise data_fail(
                f"{option} {col!r} in {path} must hold true/false (or 1/0, yes/no); line {int(df.index[pos]) + 2} "
                f"holds {s.iloc[pos]!r}."
            )
    if mask.all() or not mask.any():
        which = "every" if mask.all() else "no"
        raise data_fail(f"{option} {col!r} marks {which} row of {path} as validation; mark some, not all.")
    return mask


def fit_default(learn: Any, args: argparse.Namespace, lr: float) -> None:
    """``fine_tune`` from pretrained weights (``--pretrained``), ``fit_one_cycle`` otherwise."""
    if getattr(args, "pretrained", False):
        learn.fine_tune(args.epochs, base_lr=lr)
    else:
        learn.fit_one_cycle(args.epochs, lr)


def close_figures(*figs: Any) -> None:
    """Close matplotlib figures a report saved (plots return a figure, or None when nothing was drawn)."""
    import matplotlib.pyplot as plt

    for fig in figs:
        if fig is not None and hasattr(fig, "savefig"):
            plt.close(fig)


@dataclass(frozen=True)
class Task:
    """One kind of model that ``ember train TASK DATA`` and ``ember lr-find TASK DATA`` build.

    Attributes:
        help: one line for ``ember train --help``.
        data_help: what the ``DATA`` argument is.
        add_args: adds the task's own options (data and model) to its sub-parser; ``--bs``, ``--seed``,
            ``--workdir`` and the command's options (``--epochs``, ``--lr``, ``--out`` …) are added for all.
        dls: builds the `DataLoaders` from the parsed arguments (bad data raises an `EmberError`).
        learner: builds the learner from the arguments and the loaders.
        report: after export, prints the validation figures and saves plots in the report folder;
            called with ``(learn, report_dir, start_time)``.
        describe: the one line printed about the data before training.
        fit: trains ``(learn, args, lr)``; by default `fit_default`.
    """

    help: str
    data_help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    dls: Callable[[argparse.Namespace], Any]
    learner: Callable[[argparse.Namespace, Any], Any]
    report: Callable[[Any, Path, float], None]
    describe: Callable[[Any], str]
    fit: Callable[[Any, argparse.Namespace, float], None] = fit_default


@dataclass(frozen=True)
class Predictor:
    """How ``ember predict MODEL INPUT…`` treats one kind of exported model.

    Attributes:
        handles: whether a loaded learner is of this kind.
        predict: predicts ``args.inputs`` (and the kind's own options) with the learner; returns the exit code.
    """

    handles: Callable[[Any], bool]
    predict: Callable[[argparse.Namespace, Any], int]


# ---------------------------------------------------------------------------------------------------
# what an exported model is: ``ember info`` and ``ember serve``
# ---------------------------------------------------------------------------------------------------
def info_lines(rec: dict[str, Any], path: str | None = None, local: str | Path | None = None) -> list[str]:
    """The lines ``ember info`` prints about a model's recipe.

    Args:
        path: the file it was read from, as the user wrote it (or as it is to be shown), if any.
        local: where that file is on this machine, for its size; None: `path` itself (an ``hf://`` address is then
            looked up in the Hugging Face cache; pass the path already resolved to spare that).
    """
    lines = []
    if path is not None:
        if local is None:
            from ember.hub import resolve_model_path

            local = resolve_model_path(path)
        lines.append(f"File: {path} ({Path(local).stat().st_size / 1e6:.2f} MB)")
    model = rec["model"]
    lines.append(f"Written by ember {rec['ember_version']} (format {rec['format_version']})")
    lines.append(f"Learner: {rec.get('learner')}  application: {rec.get('application') or 'generic'}")
    if "factory" in model:
        kwargs = ", ".join(f"{k}={v!r}" for k, v in model.get("kwargs", {}).items())
        lines.append(f"Model: {model['factory']}({kwargs})")
    else:
        lines.append(f"Model: {model.get('class') or 'a class defined in a script (load with model=...)'}")
    lines.append(f"Parameters: {rec.get('n_params', 0):,}")
    data = (rec.get("data") or {}).get("data") or {}
    for b in data.get("blocks") or []:
        block_data = b.get("data") or {}
        vocab, noun = (
            (block_data.get("vocab"), "classes") if block_data.get("vocab") else (block_data.get("codes"), "codes")
        )
        extra = (
            f" ({len(vocab)} {noun}: {', '.join(map(str, vocab[:10]))}{' …' if len(vocab) > 10 else ''})"
            if vocab
            else ""
        )
        lines.append(f"Block: {b['type']}{extra}")
    for t in data.get("item_tfms", []) + data.get("batch_tfms", []):
        lines.append(f"Transform: {t['type']} {json.dumps(t.get('data', {}))[:100]}")
    for module in modules():  # what only one kind of model holds (a table's columns, a text vocabulary, …)
        lines += getattr(module, "info_lines", lambda rec: [])(rec)
    return lines


#: The kinds `learner_kind` gives a model whose input is an image.
IMAGE_KINDS = ("image-classifier", "segmentation", "keypoints", "image-to-image", "image-regression", "image")


def learner_kind(learn: Any) -> str:
    """What a loaded learner predicts, told apart as ``ember predict`` tells them apart.

    Returns:
        ``"tabular"``, ``"collab"``, ``"text-classifier"``, ``"language-model"``, or for image inputs (the
        predictor that takes any other model) ``"segmentation"``, ``"keypoints"``, ``"image-to-image"``,
        ``"image-classifier"`` (single- or multi-label), ``"image-regression"`` or ``"image"`` (another target).
    """
    from ember.cli.collab import _is_collab
    from ember.cli.tabular import _is_tabular
    from ember.cli.text import _is_text_learner
    from ember.cli.vision import _is_segmentation

    if _is_tabular(learn):
        return "tabular"
    if _is_collab(learn):
        return "collab"
    if _is_text_learner(learn):
        from ember.text.learner import LMLearner

        return "language-model" if isinstance(learn, LMLearner) else "text-classifier"
    if _is_segmentation(learn):
        return "segmentation"
    targets = getattr(learn.dls, "target_blocks", None) or []
    target = getattr(targets[0], "kind", None) if targets else None
    kinds = {"points": "keypoints", "image": "image-to-image", "category": "image-classifier"}
    kinds.update(multicategory="image-classifier", regression="image-regression")
    return kinds.get(target, "image")
