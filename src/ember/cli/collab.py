"""`ember train collab RATINGS.csv` and predictions of ratings for (user, item) pairs in a CSV file.

The task follows the collaborative-filtering lesson: a table of (user, item, rating) rows, a dot product of
latent factors with biases (`collab_learner`, or an MLP with ``--use-nn``) whose predictions are squashed into
a range a little wider than the ratings, and ``fit_one_cycle`` with weight decay.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from ember.cli._common import Predictor, Task, close_figures, data_fail, fail, fmt, parse_ints, parse_range, read_csv

__all__ = ["TASKS", "PREDICTORS", "add_predict_args", "info_lines"]

#: The default y range reaches this share of the ratings' span beyond their min and max: (0.5, 5.5) for 1-5 stars.
_Y_RANGE_PAD = 0.125
#: How many items the report lists by highest and by lowest bias, and how many rows an error names.
_N_SHOWN = 5
#: What ``--unknown`` does with pairs whose user or item the model never saw.
_UNKNOWN = ("error", "skip", "mean")


# ---------------------------------------------------------------------------------------------------
# reading CSV files
# ---------------------------------------------------------------------------------------------------
def _lines(mask: Any) -> str:
    """The file lines (header = line 1) of the first rows where `mask` is true, for error messages."""
    import numpy as np

    rows = np.flatnonzero(np.asarray(mask))
    shown = ", ".join(str(r + 2) for r in rows[:_N_SHOWN])
    return ("line " if len(rows) == 1 else "lines ") + shown + (" …" if len(rows) > _N_SHOWN else "")


def _no_column(path: Path, name: str, option: str, columns: list[str]) -> Exception:
    close = difflib.get_close_matches(name, columns, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return data_fail(
        f"{path} has no column {name!r} ({option}).{hint} Its columns are: {', '.join(map(repr, columns))}."
    )


def _pick_columns(df: Any, args: argparse.Namespace, path: Path) -> tuple[str, str, str]:
    """The user, item and rating columns: those named by the options, the others in the file's column order."""
    columns = [str(c) for c in df.columns]
    options = (("--user-col", args.user_col), ("--item-col", args.item_col), ("--rating-col", args.rating_col))
    named = [name for _, name in options if name is not None]
    for option, name in options:
        if name is not None and name not in columns:
            raise _no_column(path, name, option, columns)
    if len(set(named)) < len(named):
        raise fail("--user-col, --item-col and --rating-col must name three different columns.")
    rest = [c for c in columns if c not in named]
    if len(rest) < 3 - len(named):
        raise data_fail(
            f"{path} has {len(columns)} column(s) ({', '.join(map(repr, columns))}); a ratings file needs user, "
            "item and rating columns (name them with --user-col, --item-col, --rating-col)."
        )
    free = iter(rest)
    user, item, rating = (name if name is not None else next(free) for _, name in options)
    return user, item, rating


def _check_ratings(df: Any, path: Path, user: str, item: str, rating: str) -> Any:
    """`df` with a float rating column; missing values and ratings that are not numbers are errors."""
    import numpy as np
    import pandas as pd

    if len(df) == 0:
        raise data_fail(f"{path} holds a header but no ratings.")
    values = pd.to_numeric(df[rating], errors="coerce")
    bad = values.isna() & df[rating].notna()
    if bad.any():
        examples = ", ".join(repr(v) for v in df.loc[bad, rating].head(3).tolist())
        raise data_fail(
            f"The rating column {rating!r} of {path} must hold numbers; it has {examples} ({_lines(bad)}). "
            "Name the rating column with --rating-col."
        )
    empty = df[[user, item]].isna().any(axis=1) | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
    if empty.any():
        raise data_fail(
            f"{int(empty.sum())} row(s) of {path} lack a user, an item or a finite rating ({_lines(empty)}). "
            "Remove or fill them."
        )
    df = df[[user, item, rating]].copy()
    df[rating] = values.astype(float)
    return df


# ---------------------------------------------------------------------------------------------------
# options
# ---------------------------------------------------------------------------------------------------
def _parse_layers(text: str | None) -> list[int] | None:
    return None if text is None else parse_ints(text, "--layers")


def _check_options(args: argparse.Namespace) -> None:
    """Fail on bad option values before reading any data."""
    if not 0.0 <= args.valid_pct < 1.0:
        raise fail(f"--valid-pct must be at least 0 and below 1, not {args.valid_pct}.")
    if args.n_factors is not None and args.n_factors < 1:
        raise fail(f"--n-factors must be a positive number, not {args.n_factors}.")
    if not args.wd >= 0:
        raise fail(f"--wd must be 0 or more, not {args.wd}.")
    if args.layers is not None and not args.use_nn:
        raise fail("--layers sets the widths of the --use-nn model; add --use-nn or leave --layers out.")
    parse_range(args.y_range)
    _parse_layers(args.layers)


# ---------------------------------------------------------------------------------------------------
# the task
# ---------------------------------------------------------------------------------------------------
def _collab_dls(args: argparse.Namespace) -> Any:
    """Read and check the ratings, then code users and items and split the rows at random."""
    from ember.collab import CollabDataLoaders

    _check_options(args)
    path = Path(args.data_dir)
    df = read_csv(path, "ratings")
    user, item, rating = _pick_columns(df, args, path)
    df = _check_ratings(df, path, user, item, rating)
    if len(df) - round(len(df) * args.valid_pct) < 1:  # the split's own rounding
        raise data_fail(f"{path} has {len(df)} rating(s): too few to keep any for training with --valid-pct.")
    dls = CollabDataLoaders.from_df(
        df,
        valid_pct=args.valid_pct,
        user_name=user,
        item_name=item,
        rating_name=rating,
        seed=args.seed,
        bs=args.bs,
        path=args.workdir,
    )
    dls.rating_range = (float(df[rating].min()), float(df[rating].max()))  # for the default y range
    return dls


def _describe(dls: Any) -> str:
    n_valid = len(dls.valid_ds) if dls.valid is not None else 0
    low, high = dls.rating_range
    return (
        f"Data: {len(dls.train_ds) + n_valid} ratings ({len(dls.train_ds)} training, {n_valid} validation) "
        f"by {dls.n_users - 1} users of {dls.n_items - 1} items, from {low:g} to {high:g}; "
        f"columns: user {dls.user_name!r}, item {dls.item_name!r}, rating {dls.rating_name!r}"
    )


def _default_y_range(low: float, high: float) -> tuple[float, float]:
    """The ratings' range widened by an eighth of its span on each side (half a star either side of 1-5 stars),
    so that a sigmoid can reach the lowest and highest ratings."""
    pad = _Y_RANGE_PAD * (high - low) if high > low else 0.5
    return low - pad, high + pad


def _collab_learner(args: argparse.Namespace, dls: Any) -> Any:
    """A dot-product model (or an MLP with ``--use-nn``) with the y range and weight decay of the options."""
    from ember.collab import collab_learner
    from ember.metrics import rmse

    low, high = dls.rating_range
    y_range = parse_range(args.y_range)
    if y_range is None:
        y_range = _default_y_range(low, high)
        how = "from the ratings; set it with --y-range"
    else:
        how = "--y-range"
        if low < y_range[0] or high > y_range[1]:
            warnings.warn(
                f"The ratings run from {low:g} to {high:g}, beyond --y-range {y_range[0]:g},{y_range[1]:g}: "
                "the model cannot predict the ratings outside it.",
                stacklevel=2,
            )
    kwargs: dict[str, Any] = {"y_range": y_range, "metrics": [rmse], "wd": args.wd, "path": args.workdir}
    if args.use_nn:
        emb_szs = None if args.n_factors is None else dict.fromkeys((dls.user_name, dls.item_name), args.n_factors)
        learn = collab_learner(dls, use_nn=True, emb_szs=emb_szs, layers=_parse_layers(args.layers), **kwargs)
        widths = [e[1] for e in learn.model_recipe["kwargs"]["emb_szs"]]
        layers = learn.model_recipe["kwargs"]["layers"]
        model = f"an MLP on embeddings of {widths[0]} (users) and {widths[1]} (items), layers {layers}"
    else:
        n_factors = 50 if args.n_factors is None else args.n_factors
        learn = collab_learner(dls, n_factors=n_factors, **kwargs)
        model = f"a dot product of {n_factors} factors with biases"
    print(f"Model: {model}; predictions in y range ({y_range[0]:g}, {y_range[1]:g}) ({how}); weight decay {args.wd:g}")
    return learn


def _collab_fit(learn: Any, args: argparse.Namespace, lr: float) -> None:
    """``fit_one_cycle`` with ``--wd``, as in the lesson."""
    learn.fit_one_cycle(args.epochs, lr, wd=args.wd)


def _min_ratings(counts: Any) -> int:
    """The report ranks items rated at least this often (the median count): biases of rarely rated items are noise."""
    import numpy as np

    rated = counts[1:][counts[1:] > 0]
    return max(1, int(np.median(rated))) if len(rated) else 1


def _items_line(title: str, df: Any, item: str) -> str:
    return f"{title}: " + ", ".join(f"{name} ({b:+.2f})" for name, b in zip(df[item], df["bias"]))


def _collab_report(learn: Any, report_dir: Path, start: float) -> None:
    """Validation MSE and RMSE, the items with the highest and lowest bias; loss.png and item_pca.png."""
    from ember.collab import EmbeddingDotBias

    close_figures(learn.recorder.plot_loss(fname=report_dir / "loss.png"))
    dls = learn.dls
    if dls.valid is not None:
        preds, targs = learn.get_preds()
        preds, targs = preds.float().reshape(-1), targs.float().reshape(-1)
        mse = float(((preds - targs) ** 2).mean())
        base = float(((targs - dls.rating_mean) ** 2).mean())
        print(
            f"Validation MSE {fmt(mse)}, RMSE {fmt(mse**0.5)} on {len(targs)} ratings (always predicting the mean "
            f"training rating: MSE {fmt(base)}) in {time.perf_counter() - start:.0f} s"
        )
    else:
        print(f"No validation set (--valid-pct 0), trained in {time.perf_counter() - start:.0f} s")
    if isinstance(learn.model, EmbeddingDotBias):
        at_least = _min_ratings(dls.item_counts)
        print(f"Items by learned bias (among those with at least {at_least} ratings; the number is the bias):")
        print("  " + _items_line("highest", learn.top_items(_N_SHOWN, min_ratings=at_least), dls.item_name))
        print("  " + _items_line("lowest", learn.bottom_items(_N_SHOWN, min_ratings=at_least), dls.item_name))
        if learn.model.i_weight.weight.shape[1] >= 2 and dls.n_items >= 3:  # two components of two items or more
            close_figures(learn.plot_item_pca(n_items=50, fname=report_dir / "item_pca.png"))


def _add_collab_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--user-col", default=None, metavar="NAME", help="the users' column (default: the first column not named)"
    )
    p.add_argument(
        "--item-col", default=None, metavar="NAME", help="the items' column (default: the next column not named)"
    )
    p.add_argument(
        "--rating-col", default=None, metavar="NAME", help="the ratings' column, numbers (default: the next one)"
    )
    p.add_argument(
        "--n-factors",
        type=int,
        default=None,
        metavar="N",
        help="latent factors per user and item (default 50); with --use-nn, the embedding width",
    )
    p.add_argument(
        "--y-range",
        default=None,
        metavar="LOW,HIGH",
        help="predictions are squashed into this range (default: the ratings' min and max, widened by an eighth "
        "of their span: 0.5,5.5 for 1-5 stars); write --y-range=-1,1 for a negative LOW",
    )
    p.add_argument("--wd", type=float, default=0.1, metavar="X", help="weight decay (default 0.1)")
    p.add_argument("--use-nn", action="store_true", help="an MLP on the user and item embeddings, not a dot product")
    p.add_argument(
        "--layers", default=None, metavar="W1,W2", help="hidden widths of the --use-nn model (default 200,100)"
    )
    p.add_argument("--valid-pct", type=float, default=0.2, metavar="P", help="share of ratings held out (default 0.2)")


TASKS: dict[str, Task] = {
    "collab": Task(
        help="ratings of items by users (collaborative filtering), from a CSV of user, item, rating",
        data_help="a CSV file with one rating per row: user, item and rating columns",
        add_args=_add_collab_args,
        dls=_collab_dls,
        learner=_collab_learner,
        report=_collab_report,
        describe=_describe,
        fit=_collab_fit,
    ),
}


# ---------------------------------------------------------------------------------------------------
# predict and info
# ---------------------------------------------------------------------------------------------------
def _unknown_message(df: Any, dls: Any, unknown: Any, u: Any, i: Any) -> str:
    parts = []
    for name, codes in ((dls.user_name, u), (dls.item_name, i)):
        values = list(dict.fromkeys(df.loc[unknown & (codes == 0), name].tolist()))
        if values:
            shown = ", ".join(map(repr, values[:_N_SHOWN])) + (" …" if len(values) > _N_SHOWN else "")
            known = dls.classes[name][1] if len(dls.classes[name]) > 1 else None
            parts.append(f"{name} never seen in training: {shown} (known ones look like {known!r})")
    return "; ".join(parts)


def _predict_ratings(args: argparse.Namespace, learn: Any) -> int:
    """One predicted rating per row of a CSV of (user, item) pairs: text lines, ``--json`` or an ``--out`` CSV."""
    import numpy as np

    if len(args.inputs) != 1:
        raise fail(f"Give one CSV file of (user, item) pairs to a ratings model, not {len(args.inputs)} inputs.")
    path = Path(args.inputs[0])
    df = read_csv(path, "pairs")
    dls = learn.dls
    user, item = dls.user_name, dls.item_name
    columns = [str(c) for c in df.columns]
    for name in (user, item):
        if name not in columns:
            raise data_fail(
                f"{path} has no column {name!r}: the model was trained on the columns {user!r} (users) and "
                f"{item!r} (items). Its columns are: {', '.join(map(repr, columns))}."
            )
    empty = df[[user, item]].isna().any(axis=1)
    if empty.any():
        raise data_fail(f"{int(empty.sum())} row(s) of {path} lack a user or an item ({_lines(empty)}).")
    u, i = dls.encode(df[user], is_item=False), dls.encode(df[item], is_item=True)
    unknown = (u == 0) | (i == 0)
    n_unknown = int(unknown.sum())
    if n_unknown and args.unknown == "error":
        raise data_fail(
            f"{n_unknown} of {len(df)} rows of {path} have a user or an item the model was not trained on: "
            f"{_unknown_message(df, dls, unknown, u, i)}. Use --unknown skip to leave them out, or --unknown mean "
            f"to give them the mean training rating ({dls.rating_mean:.2f})."
        )
    if n_unknown and args.unknown == "skip":
        df = df.loc[~unknown].reset_index(drop=True)
        print(
            f"Skipped {n_unknown} of {n_unknown + len(df)} rows (a user or item the model never saw).", file=sys.stderr
        )
    elif n_unknown:
        print(
            f"{n_unknown} of {len(df)} rows (a user or item the model never saw) get the mean rating.", file=sys.stderr
        )
    preds = np.atleast_1d(learn.predict(df[[user, item]], unknown="mean")) if len(df) else np.zeros(0, dtype=np.float64)
    users, items = df[user].tolist(), df[item].tolist()
    if args.json:
        rows = [{"user": a, "item": b, "prediction": round(float(p), 6)} for a, b, p in zip(users, items, preds)]
        print(json.dumps(rows, indent=1))
    else:
        for a, b, p in zip(users, items, preds):
            print(f"{a} {b} -> {p:.3f}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        df.assign(prediction=preds).to_csv(out, index=False)
        print(f"Wrote {len(df)} predictions to {out}", file=sys.stderr)
    return 0


def _is_collab(learn: Any) -> bool:
    from ember.collab import CollabLearner

    return isinstance(learn, CollabLearner)


def add_predict_args(p: argparse.ArgumentParser) -> None:
    """The options of ``ember predict`` for collab models."""
    p.add_argument(
        "--unknown",
        choices=_UNKNOWN,
        default="error",
        help="ratings models: pairs whose user or item the model never saw are an error (default), are left out "
        "(skip) or get the mean training rating (mean)",
    )


def info_lines(rec: dict[str, Any]) -> list[str]:
    """The users, items, columns and y range of a ratings model's recipe; nothing for other models."""
    data = rec.get("data") or {}
    if data.get("type") != "CollabDataLoaders":
        return []
    body = data.get("data") or {}
    user, item, rating = body.get("names") or (None, None, None)
    vocabs: dict[str, list[Any]] = {}
    for proc in (body.get("processor") or {}).get("data", {}).get("procs", []):
        vocabs.update((proc.get("data") or {}).get("vocabs") or {})
    n_users, n_items = (max(len(vocabs.get(c, [])) - 1, 0) for c in (user, item))
    y_range = ((rec.get("model") or {}).get("kwargs") or {}).get("y_range")
    lines = [
        f"Ratings: {n_users} users (column {user!r}), {n_items} items (column {item!r}), ratings in {rating!r}",
        "Y range: " + (f"{y_range[0]:g} to {y_range[1]:g}" if y_range else "none (predictions are not bounded)"),
    ]
    if "rating_mean" in body:
        lines.append(f"Mean training rating: {body['rating_mean']:.3f}")
    return lines


PREDICTORS = [Predictor(handles=_is_collab, predict=_predict_ratings)]
