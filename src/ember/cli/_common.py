"""What every `ember` subcommand shares: the task protocol, the shared options and user errors."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Task", "Predictor", "fail", "data_fail", "fmt", "fit_default", "close_figures"]


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
