"""Reading the texts of the ``ember`` text tasks: class folders, the IMDb layout, CSV tables and plain folders,
split into training and validation texts."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ember.cli._common import data_fail, fail, read_csv, valid_column_mask


@dataclass
class Texts:
    """The texts of a run, read once. `extra` holds texts without a label (``train/unsup`` of IMDb) that only a
    language model reads."""

    train: list[str]
    valid: list[str]
    train_labels: list[str] | None = None
    valid_labels: list[str] | None = None
    extra: list[str] = field(default_factory=list)


def text_files(folder: Path) -> list[Path]:
    """Every ``.txt`` file under `folder` (sub-folders too), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() == ".txt" and p.is_file())


def read_texts(files: Sequence[Path]) -> list[str]:
    from ember.text.tokenize import read_text_files

    return read_text_files(files)  # a file that is not UTF-8 is a DataError naming it


def valid_mask(n: int, pct: float, seed: int) -> list[bool]:
    """Which of `n` items are held out: a random share `pct` (seeded), at least one, and at least one left over."""
    import numpy as np

    if not 0 < pct < 1:
        raise fail(f"--valid-pct must be between 0 and 1 (a share of the texts), not {pct}.")
    if n < 2:
        raise data_fail(f"Found {n} text(s): give at least two, one for training and one for validation.")
    n_valid = min(max(1, round(pct * n)), n - 1)
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(seed).permutation(n)[:n_valid]] = True
    return mask.tolist()


def split(items: Sequence[Any], mask: Sequence[bool]) -> tuple[list[Any], list[Any]]:
    return [x for x, v in zip(items, mask) if not v], [x for x, v in zip(items, mask) if v]


def column(df: Any, path: Path, name: str, option: str, what: str) -> list[Any]:
    """Column `name` of `df` (read from `path`) without missing values; the errors name the option to use."""
    if name not in df.columns:
        shown = ", ".join(map(str, list(df.columns)[:20]))
        raise data_fail(f"{path} has no column {name!r} (columns: {shown}). Name the {what} column with {option}.")
    missing = df[name].isna().to_numpy().nonzero()[0]
    if len(missing):
        raise data_fail(
            f"Column {name!r} of {path} has {len(missing)} missing value(s), the first in row {int(missing[0])} "
            "(row 0 is the first line after the header): fill or drop them."
        )
    return df[name].tolist()


def csv_valid_mask(df: Any, path: Path, args: argparse.Namespace, default_pct: float) -> list[bool]:
    """The validation rows: the boolean column ``--valid-col``, else a random ``--valid-pct`` of the rows."""
    if args.valid_col is None:
        pct = default_pct if args.valid_pct is None else args.valid_pct
        return valid_mask(len(df), pct, args.seed)
    column(df, path, args.valid_col, "--valid-col", "validation")  # present, without missing values
    return valid_column_mask(df, args.valid_col, path).tolist()


def check_classes(labels: Sequence[str], where: str, hint: str) -> None:
    classes = sorted(set(labels))
    if len(classes) < 2:
        found = classes[0] if classes else "none"
        raise data_fail(f"Found one class ({found}) in {where}: a classifier needs at least two. {hint}")


def classifier_texts(args: argparse.Namespace) -> Texts:
    """Texts and labels from a CSV file, the IMDb layout (``train/<class>``, ``test/<class>``) or class folders."""
    data = Path(args.data_dir)
    if data.is_file():
        return _classifier_texts_csv(args, data)
    if not data.is_dir():
        raise data_fail(
            f"No file or folder at {data}. Give a folder with one sub-folder of .txt files per class, or a CSV file."
        )
    for option, value in (("--valid-col", args.valid_col), ("--label-col", args.label_col)):
        if value is not None:
            raise fail(f"{option} is for a CSV file; {data} is a folder (its sub-folders are the classes).")
    train_name, valid_name = args.train_folder or "train", args.valid_folder or "test"
    if (data / train_name).is_dir():
        return _classifier_texts_imdb(args, data, train_name, valid_name)
    if args.train_folder or args.valid_folder:
        raise data_fail(f"No training folder {data / train_name} (name it with --train-folder).")
    pct = 0.2 if args.valid_pct is None else args.valid_pct
    class_dirs = sorted(p for p in data.iterdir() if p.is_dir())
    files, labels = [], []
    for d in class_dirs:
        found = text_files(d)
        files += found
        labels += [d.name] * len(found)
    if not files:
        loose = any(p.suffix.lower() == ".txt" for p in data.iterdir())
        raise data_fail(
            f"No .txt files in the sub-folders of {data}"
            + (" (the .txt files directly in it have no class)" if loose else "")
            + ". Put each class's texts in its own sub-folder: DATA/<class>/*.txt."
        )
    check_classes(labels, str(data), "Put each class's texts in its own sub-folder (DATA/pos/*.txt, DATA/neg/*.txt).")
    mask = valid_mask(len(files), pct, args.seed)
    (tfiles, vfiles), (tlabels, vlabels) = split(files, mask), split(labels, mask)
    return Texts(read_texts(tfiles), read_texts(vfiles), tlabels, vlabels)


def _classifier_texts_imdb(args: argparse.Namespace, data: Path, train_name: str, valid_name: str) -> Texts:
    """``DATA/<train>/<class>/*.txt`` and ``DATA/<valid>/<class>/*.txt``; the classes are the validation
    sub-folders, so that other training folders (IMDb's ``unsup``) feed only the language model."""
    if args.valid_pct is not None:
        raise fail(
            f"--valid-pct splits DATA/<class>/*.txt at random, but {data} has a {train_name}/ folder: its "
            f"validation texts are in {data / valid_name} (name that folder with --valid-folder)."
        )
    train_dir, valid_dir = data / train_name, data / valid_name
    if not valid_dir.is_dir():
        raise data_fail(f"No validation folder {valid_dir} beside {train_dir} (name it with --valid-folder).")
    classes = sorted(p.name for p in valid_dir.iterdir() if p.is_dir() and text_files(p))
    check_classes(classes, str(valid_dir), f"Put each class's texts in its own sub-folder of {valid_dir}.")
    texts: dict[str, list[Path]] = {"train": [], "valid": []}
    labels: dict[str, list[str]] = {"train": [], "valid": []}
    for c in classes:
        for split, root in (("train", train_dir), ("valid", valid_dir)):
            found = text_files(root / c) if (root / c).is_dir() else []
            if not found:
                raise data_fail(f"No .txt files in {root / c}: every class needs training and validation texts.")
            texts[split] += found
            labels[split] += [c] * len(found)
    known = set(texts["train"]) | set(texts["valid"])
    extra = [f for root in (train_dir, valid_dir) for f in text_files(root) if f not in known]
    return Texts(
        read_texts(texts["train"]),
        read_texts(texts["valid"]),
        labels["train"],
        labels["valid"],
        extra=read_texts(extra),
    )


def _classifier_texts_csv(args: argparse.Namespace, path: Path) -> Texts:
    if path.suffix.lower() != ".csv":
        raise data_fail(f"{path} is not a .csv file. Give a CSV file or a folder with one sub-folder per class.")
    for option, value in (("--train-folder", args.train_folder), ("--valid-folder", args.valid_folder)):
        if value is not None:
            raise fail(f"{option} is for a folder of texts; {path} is a CSV file (use --valid-col or --valid-pct).")
    df = read_csv(path)
    texts = [str(t) for t in column(df, path, args.text_col, "--text-col", "text")]
    label_col = args.label_col or "label"
    labels = [str(y) for y in column(df, path, label_col, "--label-col", "label")]
    check_classes(labels, f"column {label_col!r} of {path}", "Give each text its class in that column.")
    mask = csv_valid_mask(df, path, args, 0.2)
    (ttexts, vtexts), (tlabels, vlabels) = split(texts, mask), split(labels, mask)
    unknown = sorted(set(vlabels) - set(tlabels))
    if unknown:
        raise data_fail(
            f"Validation rows of {path} have classes with no training row ({', '.join(unknown[:5])}): every class "
            "needs training texts."
        )
    return Texts(ttexts, vtexts, tlabels, vlabels)


def lm_texts(args: argparse.Namespace) -> Texts:
    """The texts of a language model: every ``.txt`` file under a folder (one text per file), or a CSV column."""
    data = Path(args.data_dir)
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise data_fail(f"{data} is not a .csv file. Give a CSV file or a folder of .txt files.")
        df = read_csv(data)
        texts = [str(t) for t in column(df, data, args.text_col, "--text-col", "text")]
        return Texts(*split(texts, csv_valid_mask(df, data, args, 0.1)))
    if not data.is_dir():
        raise data_fail(f"No file or folder at {data}. Give a folder of .txt files or a CSV file.")
    if args.valid_col is not None:
        raise fail(f"--valid-col is for a CSV file; {data} is a folder (use --valid-pct).")
    files = text_files(data)
    if not files:
        raise data_fail(f"No .txt files under {data} (every sub-folder is searched).")
    if len(files) < 2:
        raise data_fail(
            f"Found one .txt file under {data}: give at least two, as validation holds out whole files "
            "(split a long text into several files)."
        )
    tfiles, vfiles = split(files, valid_mask(len(files), 0.1 if args.valid_pct is None else args.valid_pct, args.seed))
    return Texts(read_texts(tfiles), read_texts(vfiles))
