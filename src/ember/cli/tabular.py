"""`ember train tabular` (a table in a CSV file) and `ember predict` on CSV files for tabular models.

The command reads the CSV with pandas, checks every column the options name before anything is trained,
picks the roles of the other columns (`cont_cat_split`) and the kind of target when not told, and builds
the loaders with ``TabularDataLoaders.from_df`` and the model with ``tabular_learner``: the same few lines
a user would write in Python.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ember.cli._common import (
    Predictor,
    Task,
    close_figures,
    data_fail,
    fail,
    fmt,
    parse_ints,
    parse_range,
    read_csv,
    valid_column_mask,
)

__all__ = ["TASKS", "PREDICTORS", "add_predict_args", "info_lines"]

#: A categorical column with more distinct values than this share of the rows looks like an identifier.
_ID_SHARE = 0.5
#: How many column names ``ember info`` and the messages show before shortening the list.
_SHOWN = 12


# ---------------------------------------------------------------------------------------------------
# reading and checking the table
# ---------------------------------------------------------------------------------------------------
def _shorten(names: Sequence[Any], n: int = _SHOWN) -> str:
    """``a, b, c`` or, for long lists, the first `n` names and how many more there are."""
    shown = ", ".join(map(str, names[:n]))
    return shown + (f" … ({len(names) - n} more)" if len(names) > n else "")


def _column_list(text: str | None, option: str) -> list[str]:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` (an option's comma-separated column names)."""
    if text is None:
        return []
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise fail(f"{option} needs column names separated by commas, not {text!r}.")
    return names


def _check_names(names: Sequence[str], option: str, df: Any, path: Path) -> None:
    """Fail on the first name that is not a column of `df`, with the closest names and the columns."""
    columns = list(df.columns)
    for name in names:
        if name in columns:
            continue
        close = difflib.get_close_matches(name, columns, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        if len(columns) == 1 and any(s in columns[0] for s in ";\t|"):
            hint += " The file has a single column: is it separated by something else than commas (--sep)?"
        raise data_fail(f"{option} {name!r}: {path} has no such column (its columns: {_shorten(columns)}).{hint}")


def _row_number(df: Any, pos: int) -> int:
    """The 1-based number, in the file, of the row at position `pos` (rows may have been dropped before)."""
    return int(df.index[pos]) + 1


def _check_numbers(df: Any, cols: Sequence[str], where: str, hint: str) -> None:
    """Fail naming the first continuous column of `df` that holds text, with its first bad row (1-based)."""
    import pandas as pd

    for c in cols:
        s = df[c]
        if pd.api.types.is_numeric_dtype(s):
            continue
        bad = (pd.to_numeric(s, errors="coerce").isna() & s.notna()).to_numpy(dtype=bool)
        if bad.any():
            pos = int(bad.nonzero()[0][0])
            raise data_fail(
                f"The column {c!r} {where} holds {s.iloc[pos]!r} (row {_row_number(df, pos)}), not a number. {hint}"
            )
        df[c] = pd.to_numeric(s)


def _target_kind(s: Any, y_kind: str, max_card: int) -> tuple[str, str]:
    """``(kind, why)``: the kind asked for, or, with ``auto``, category for text, booleans and integers with
    at most `max_card` distinct values, regression for other numbers."""
    import pandas as pd

    if y_kind != "auto":
        return y_kind, "--y-kind"
    if pd.api.types.is_bool_dtype(s):
        return "category", "true/false values"
    if not pd.api.types.is_numeric_dtype(s):
        return "category", "text values"
    n = s.nunique()
    if pd.api.types.is_integer_dtype(s):
        if n <= max_card:
            return "category", f"whole numbers, {n} distinct (at most --max-card {max_card})"
        return "regression", f"whole numbers, {n} distinct (more than --max-card {max_card})"
    return "regression", "decimal numbers"


def _tabular_dls(args: argparse.Namespace) -> Any:
    import pandas as pd

    from ember.tabular import Categorify, FillMissing, Normalize, TabularDataLoaders, cont_cat_split

    _model_options(args)  # a typo in the model's options fails before the table is read
    path = Path(args.data_dir)
    df = read_csv(path, sep=args.sep)
    y = args.y
    _check_names([y], "--y", df, path)
    cat = _column_list(args.cat, "--cat")
    cont = _column_list(args.cont, "--cont")
    ignore = _column_list(args.ignore, "--ignore")
    valid_col = args.valid_col
    for names, option in ((cat, "--cat"), (cont, "--cont"), (ignore, "--ignore")):
        _check_names(names, option, df, path)
    if valid_col is not None:
        _check_names([valid_col], "--valid-col", df, path)
    roles = {"--y": [y], "--cat": cat, "--cont": cont, "--ignore": ignore, "--valid-col": [valid_col] * bool(valid_col)}
    seen: dict[str, str] = {}
    for option, names in roles.items():
        for name in names:
            if name in seen:
                raise fail(f"Column {name!r} is named by both {seen[name]} and {option}; give each column one role.")
            seen[name] = option
    if not 0 < args.valid_pct < 1:
        raise fail(f"--valid-pct must be between 0 and 1 (like 0.2), not {args.valid_pct}.")

    # the target: rows without one cannot teach anything
    missing = df[y].isna().to_numpy(dtype=bool)
    if missing.all():
        raise data_fail(f"The target column {y!r} of {path} is empty.")
    if missing.any():
        df = df[~missing]  # the index keeps the rows' numbers in the file, for messages
        print(f"Dropped {int(missing.sum())} row(s) with no {y!r} value.")
        if pd.api.types.is_float_dtype(df[y]) and (df[y] % 1 == 0).all():
            df = df.assign(**{y: df[y].astype("int64")})  # whole numbers that pandas read as floats because of the gaps
    kind, why = _target_kind(df[y], args.y_kind, args.max_card)
    if kind == "regression":
        _check_numbers(df, [y], f"of {path} (the --y target)", "Use --y-kind category for classes.")
    elif df[y].nunique() < 2:
        raise data_fail(f"The target {y!r} of {path} has a single value: a classifier needs at least two classes.")
    print(f"Target {y!r}: {kind} ({why})")

    # the inputs: the columns named, and the others split by their type unless both lists were given
    if not (cat and cont):
        rest = df.drop(columns=[c for c in seen if c in df.columns])
        auto_cont, auto_cat = cont_cat_split(rest, max_card=args.max_card)
        cat, cont = cat + auto_cat, cont + auto_cont
        print(f"Categorical columns ({len(cat)}): {_shorten(cat) or 'none'}")
        print(f"Continuous columns ({len(cont)}): {_shorten(cont) or 'none'}")
        print("(set them with --cat and --cont, drop columns with --ignore)")
        for c in auto_cat:
            n = df[c].nunique()
            if len(df) >= 20 and n > _ID_SHARE * len(df):
                print(f"Note: {c!r} has {n} distinct values in {len(df)} rows: an identifier? Drop it with --ignore.")
    if not cat and not cont:
        raise data_fail(f"{path} has no input columns left besides the target {y!r}.")
    _check_numbers(df, cont, f"of {path}", "List it with --cat if it is a category.")

    if valid_col is not None:
        is_valid = valid_column_mask(df, valid_col, path)
        split: dict[str, Any] = {"valid_idx": is_valid.nonzero()[0].tolist()}
    else:
        split = {"valid_pct": args.valid_pct}
    return TabularDataLoaders.from_df(
        df,
        y_names=y,
        cat_names=cat,
        cont_names=cont,
        procs=[Categorify, FillMissing, Normalize],
        y_block=kind,
        seed=args.seed,
        bs=args.bs,
        path=args.workdir,
        **split,
    )


def _describe(dls: Any) -> str:
    proc = dls.processor
    y = ", ".join(proc.y_names)
    target = (
        f"target {y} (category, {len(proc.y_vocab)} classes: {_shorten(proc.y_vocab)})"
        if proc.y_kind == "category"
        else f"target {y} (regression)"
    )
    flags = len(proc.cat_names) - len(proc.input_cat_names)
    extra = f" (+{flags} missing-value flags)" if flags else ""
    return (
        f"Data: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation rows, {target}, "
        f"{len(proc.input_cat_names)} categorical{extra} and {len(proc.cont_names)} continuous columns"
    )


def _model_options(args: argparse.Namespace) -> tuple[list[int], tuple[float, float] | None]:
    """``(layers, y_range)`` from the options, or a one-line error (checked before the table is read)."""
    if not 0 <= args.dropout < 1:
        raise fail(f"--dropout must be at least 0 and below 1, not {args.dropout}.")
    return parse_ints(args.layers, "--layers"), parse_range(args.y_range)


def _tabular_learner(args: argparse.Namespace, dls: Any) -> Any:
    from ember.metrics import accuracy, rmse
    from ember.tabular import tabular_learner

    layers, y_range = _model_options(args)
    category = dls.processor.y_kind == "category"
    if y_range is not None and category:
        raise fail("--y-range is for regression targets; this target is a category.")
    return tabular_learner(
        dls,
        layers=layers,
        config={"ps": args.dropout} if args.dropout else None,
        y_range=y_range,
        metrics=[accuracy] if category else [rmse()],
        path=args.workdir,
    )


def _tabular_report(learn: Any, report_dir: Path, start: float) -> None:
    """Print the validation accuracy (or RMSE) and loss; save ``loss.png`` in `report_dir`."""
    close_figures(learn.recorder.plot_loss(fname=report_dir / "loss.png"))
    loss, metric = learn.validate()
    name = "accuracy" if learn.processor.y_kind == "category" else "RMSE"
    print(f"Validation {name} {fmt(metric)} (loss {fmt(loss)}) in {time.perf_counter() - start:.0f} s")


# ---------------------------------------------------------------------------------------------------
# predictions on CSV files
# ---------------------------------------------------------------------------------------------------
def _is_tabular(learn: Any) -> bool:
    from ember.tabular import TabularLearner

    return isinstance(learn, TabularLearner)


def _predict_file(learn: Any, path: Path) -> tuple[Any, Any]:
    """``(rows, predictions)`` of one CSV file: the table as read, and ``learn.predict_df`` of its inputs."""
    from ember.core.errors import EmberError

    proc = learn.processor
    df = read_csv(path)
    needed = [*proc.input_cat_names, *proc.cont_names]
    lacking = [c for c in needed if c not in df.columns]
    if lacking:
        raise data_fail(
            f"{path} lacks the column(s) {_shorten(lacking)} that the model needs (it reads {_shorten(needed)}); "
            "other columns, the target included, are ignored."
        )
    if df.empty:
        raise data_fail(f"{path} has a header row but no rows to predict.")
    inputs = df[needed].copy()  # only the inputs: extra columns, and the target with its gaps, play no part
    _check_numbers(inputs, proc.cont_names, f"of {path}", "The model was trained on numbers there.")
    try:
        preds = learn.predict_df(inputs)
    except EmberError as e:
        raise data_fail(f"{path}: {e}") from None
    return df, preds


def _predict_tables(args: argparse.Namespace, learn: Any) -> int:
    """Predict every row of every CSV file: a line per row (or JSON), and the rows with predictions in ``--out``."""
    import pandas as pd

    if not args.inputs:
        raise fail(f"Give the CSV files to predict: ember predict {args.model} ROWS.csv [MORE.csv …].")
    proc = learn.processor
    category = proc.y_kind == "category"
    vocab = list(proc.y_vocab or [])
    k = max(1, min(args.top_k, len(vocab))) if category else 0
    tables, results = [], []
    for name in args.inputs:
        path = Path(name)
        df, preds = _predict_file(learn, path)
        if category:
            probs = preds[[f"p_{label}" for label in vocab]].to_numpy()  # (N, n_classes)
            order = (-probs).argsort(axis=1, kind="stable")[:, :k]
            out = df.copy()
            out[f"{proc.y_names[0]}_pred"] = preds[f"{proc.y_names[0]}_pred"].to_numpy()
            out[f"{proc.y_names[0]}_probability"] = probs.max(axis=1)
            for row, (p, top) in enumerate(zip(probs, order), start=1):
                results.append(
                    {
                        "file": str(path),
                        "row": row,
                        "predictions": [
                            {"label": _json_value(vocab[i]), "probability": round(float(p[i]), 6)} for i in top
                        ],
                    }
                )
        else:
            cols = [f"{c}_pred" for c in proc.y_names]
            out = df.copy()
            for c in cols:
                out[c] = preds[c].to_numpy()
            for row, values in enumerate(preds[cols].to_numpy(), start=1):
                results.append(
                    {
                        "file": str(path),
                        "row": row,
                        "values": {c: round(float(v), 6) for c, v in zip(proc.y_names, values)},
                    }
                )
        if len(args.inputs) > 1 and "file" not in out.columns:
            out.insert(0, "file", str(path))
        tables.append(out)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        for r in results:
            if category:
                shown = ", ".join(f"{q['label']} {q['probability']:.3f}" for q in r["predictions"])
            else:
                shown = ", ".join(f"{c} {v:.6g}" for c, v in r["values"].items())
            print(f"{r['file']} row {r['row']}: {shown}")
    if args.out:
        table = pd.concat(tables, ignore_index=True)
        table.to_csv(args.out, index=False)
        print(f"Wrote {len(table)} rows with predictions to {args.out}", file=sys.stderr)
    return 0


def _json_value(v: Any) -> Any:
    """A class label as JSON can hold it (numpy scalars become Python ones)."""
    return v.item() if hasattr(v, "item") else v


# ---------------------------------------------------------------------------------------------------
# ember info
# ---------------------------------------------------------------------------------------------------
def info_lines(rec: dict[str, Any]) -> list[str]:
    """What ``ember info`` adds for a tabular model: the target, the input columns and the classes."""
    data = rec.get("data") or {}
    if data.get("type") != "TabularDataLoaders":
        return []
    proc = ((data.get("data") or {}).get("processor") or {}).get("data") or {}
    cats, conts = proc.get("cat_names") or [], proc.get("cont_names") or []
    flags = len(proc.get("all_cat_names") or cats) - len(cats)
    target = ", ".join(proc.get("y_names") or []) or "none"
    lines = [f"Target: {target} ({proc.get('y_kind') or 'unknown kind'})"]
    vocab = proc.get("y_vocab")
    if vocab:
        lines.append(f"Classes ({len(vocab)}): {_shorten(vocab)}")
    extra = f" (+{flags} missing-value flags)" if flags else ""
    lines.append(f"Categorical columns ({len(cats)}){extra}: {_shorten(cats) or 'none'}")
    lines.append(f"Continuous columns ({len(conts)}): {_shorten(conts) or 'none'}")
    return lines


# ---------------------------------------------------------------------------------------------------
# options and tasks
# ---------------------------------------------------------------------------------------------------
def _add_tabular_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--y", required=True, metavar="COLUMN", help="the column to predict (required)")
    p.add_argument("--cat", default=None, metavar="A,B", help="categorical input columns, separated by commas")
    p.add_argument("--cont", default=None, metavar="A,B", help="continuous (numeric) input columns")
    p.add_argument("--ignore", default=None, metavar="A,B", help="columns to leave out (ids, leaks, …)")
    p.add_argument(
        "--y-kind",
        choices=("auto", "category", "regression"),
        default="auto",
        help="classes or a number; auto: text, true/false and integers with few values are classes (default)",
    )
    p.add_argument(
        "--max-card",
        type=int,
        default=20,
        help="integer columns with at most this many distinct values are categories (default 20)",
    )
    split = p.add_mutually_exclusive_group()
    split.add_argument("--valid-pct", type=float, default=0.2, help="share of rows held out (default 0.2)")
    split.add_argument(
        "--valid-col", default=None, metavar="COLUMN", help="a true/false column marking validation rows"
    )
    p.add_argument("--layers", default="200,100", help="hidden layer widths (default 200,100)")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout of each hidden layer (default 0)")
    p.add_argument("--y-range", default=None, metavar="LOW,HIGH", help="regression: squash predictions into a range")
    p.add_argument("--sep", default=None, help="the CSV field separator (default: comma, or detected ; or tab)")


TASKS: dict[str, Task] = {
    "tabular": Task(
        help="predict a column of a CSV table from the others (classes or numbers)",
        data_help="a CSV file with a header row, one example per row",
        add_args=_add_tabular_args,
        dls=_tabular_dls,
        learner=_tabular_learner,
        report=_tabular_report,
        describe=_describe,
    ),
}


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """The options of ``ember predict`` for tabular models: none beyond the shared ones (``--out`` writes the
    rows with their predictions; the CSV separator is detected)."""


PREDICTORS = [Predictor(handles=_is_tabular, predict=_predict_tables)]
