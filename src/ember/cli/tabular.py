"""`ember train` tasks and `ember predict` for tabular models (being built)."""

from __future__ import annotations

import argparse

from ember.cli._common import Predictor, Task

__all__ = ["TASKS", "PREDICTORS", "add_predict_args"]

TASKS: dict[str, Task] = {}
PREDICTORS: list[Predictor] = []


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """The options of ``ember predict`` for tabular models."""
