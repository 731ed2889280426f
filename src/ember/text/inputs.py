"""Checking and encoding what users give the text loaders: lists of texts, labels, validation columns, vocabularies.

Labels become class ids ``(N,)`` or multi-hot floats ``(N, C)``; a missing label, an unknown class, a single string
where a list of texts is expected or a vocabulary without the special tokens is an error naming the item.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.text.tokenize import PAD, UNK, read_text_files
from ember.text.vocab import Vocab


def _encode_labels(labels: Sequence[Any] | None, classes: Sequence[str], split: str) -> torch.Tensor:
    if labels is None:
        raise ConfigError(f"A classifier needs `{split}_labels`.")
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for i, label in enumerate(labels):
        j = index.get(str(label))
        if j is None:
            raise DataError(
                f"The {split} label {label!r} (item {i}) is not a training class; valid: {', '.join(classes)}."
            )
        out.append(j)
    return torch.tensor(out, dtype=torch.long)


def _label_list(names: Any) -> list[Any]:
    return [names] if isinstance(names, str) or not isinstance(names, (list, tuple)) else list(names)


def _encode_multi_labels(labels: Sequence[Any], classes: Sequence[str], split: str = "test") -> torch.Tensor:
    """Lists of class names -> multi-hot floats ``(N, C)``."""
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(labels), len(classes))
    for i, names in enumerate(labels):
        for name in _label_list(names):
            j = index.get(str(name))
            if j is None:
                valid = ", ".join(classes)
                raise DataError(f"The {split} label {name!r} (item {i}) is not a training class; valid: {valid}.")
            out[i, j] = 1.0
    return out


def _bool_column(col: Any, name: str) -> np.ndarray:
    """A validation column as booleans: bools, 0/1, or the strings "True"/"False" (any case); DataError otherwise."""
    if col.dtype == bool:
        return col.to_numpy()
    out = []
    for row, v in zip(col.index, col.tolist()):
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            out.append(v.strip().lower() == "true")
        elif isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) and v in (0, 1):
            out.append(bool(v))
        else:
            raise DataError(
                f"Column {name!r} should say which rows are for validation (True/False); row {row!r} holds {v!r}."
            )
    return np.array(out, dtype=bool)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_labels(labels: Sequence[Any], split: str) -> None:
    """DataError naming the first missing label (None or NaN: it would otherwise become a class "nan")."""
    for i, label in enumerate(labels):
        if _is_missing(label):
            raise DataError(f"The {split} label of item {i} is missing ({label!r}); fill or drop that row first.")


def _check_texts(texts: Any, name: str) -> None:
    if isinstance(texts, (str, bytes)):
        raise DataError(
            f"Expected `{name}` to be a list of texts; received a single {type(texts).__name__} ({texts[:40]!r}). "
            "Wrap it in a list: [text]."
        )


def _read_text(item: Any, i: int) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, os.PathLike):
        return read_text_files([item])[0]
    raise DataError(f"Expected item {i} to be a text (str) or a text file path; received a {type(item).__name__}.")


def _check_vocab(vocab: Any) -> None:
    """ConfigError unless `vocab` is a Vocab holding the unknown and padding tokens (their ids are used everywhere)."""
    if not isinstance(vocab, Vocab):
        raise ConfigError(expected("a Vocab", "vocab", type(vocab).__name__))
    missing = [t for t in (UNK, PAD) if t not in vocab]
    if missing:
        raise ConfigError(
            f"The vocabulary lacks the special token(s) {', '.join(missing)}: unknown words and padding would take "
            "the ids of real words. Build it with Vocab.from_tokens / Vocab.from_counter (which put the special "
            "tokens first), or add them: Vocab([*SPECIAL_TOKENS, *words])."
        )
