"""Which columns matter: permutation importance for any learner whose inputs are tables of columns.

Shuffling one column across the rows of the validation set keeps its values but breaks their link to the
target; how much the loss (or a metric) worsens is how much the model relies on that column. The rows are
read once into memory, each shuffle is one gather on the device, and the model runs in large batches in eval
mode with no device-to-host copy per batch: the loss of every shuffle stays on the device until the end.

>>> imp = learn.permutation_importance(seed=0)            # doctest: +SKIP
>>> imp.head()                                            # doctest: +SKIP
      column  importance    std   score  baseline
0  education      0.1310  0.004  0.4410    0.3100
"""

from __future__ import annotations

import copy
import numbers
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.learner import Learner, _in_dataset_order
from ember.metrics.base import Metric, as_metric, lower_is_better

__all__ = ["permutation_importance", "plot_importance", "tabular_features"]

# A feature: the (input position, column position) pairs that are shuffled together, with one permutation.
Feature = Sequence[tuple[int, int]]


def tabular_features(
    processor: Any, columns: Sequence[str] | Mapping[str, Sequence[str]] | None = None, group_na: bool = True
) -> dict[str, list[tuple[int, int]]]:
    """The features of a tabular model's inputs ``(x_cat, x_cont)`` by name: which columns each one shuffles.

    Args:
        processor: the fitted :class:`~ember.tabular.procs.TabularProcessor` (its ``cat_names`` and ``cont_names``).
        columns: ``None`` (every input column), a list of column names, or ``{name: [column, ...]}`` for groups of
            columns shuffled together (``{"place": ["lat", "lon"]}``).
        group_na: shuffle the ``<col>_na`` indicator that FillMissing adds together with ``<col>`` (the two say the
            same thing); ``False`` measures each on its own.

    Raises:
        ConfigError: an unknown column name, or a column in two features.
    """
    cat_names, cont_names = list(processor.cat_names), list(processor.cont_names)
    where = {c: (0, j) for j, c in enumerate(cat_names)}
    where.update({c: (1, j) for j, c in enumerate(cont_names)})
    na_cols = {c for p in getattr(processor, "procs", []) for c in getattr(p, "na_cols", [])}
    na_of = {c: f"{c}_na" for c in na_cols if c in cont_names and f"{c}_na" in where} if group_na else {}
    indicators = set(na_of.values())

    if columns is None:
        groups = {c: [c] for c in cat_names + cont_names if c not in indicators}
    elif isinstance(columns, Mapping):
        groups = {str(k): _names_list(v, f"columns[{k!r}]") for k, v in columns.items()}
    elif isinstance(columns, str):
        groups = {columns: [columns]}
    else:
        groups = {c: [c] for c in _names_list(columns, "columns")}
    if not groups:
        raise ConfigError(expected("at least one column name", "columns", columns, valid=list(where)))

    features: dict[str, list[tuple[int, int]]] = {}
    owner: dict[str, str] = {}
    for name, cols in groups.items():
        expanded = []
        for c in cols:
            if c not in where:
                raise ConfigError(expected("an input column of this table", "columns", c, valid=list(where)))
            expanded.append(c)
            if c in na_of and na_of[c] not in cols:
                expanded.append(na_of[c])
        for c in expanded:
            if c in owner and owner[c] != name:
                hint = "Name each column once" + (" (or pass group_na=False)." if c in indicators else ".")
                raise ConfigError(f"The column {c!r} is shuffled both for {owner[c]!r} and for {name!r}. {hint}")
            owner[c] = name
        features[name] = [where[c] for c in dict.fromkeys(expanded)]
    return features


def _names_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence) or not value:
        raise ConfigError(expected("a list of column names", name, value))
    return list(value)


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ConfigError(expected(f"an int >= {low}", name, value))
    return int(value)


def _scorer(learn: Learner, metric: Any) -> tuple[str, Metric | None, bool]:
    """``(name, a private copy of the metric or None for the loss, lower_is_better)``."""
    if metric is None:
        return "loss", None, True
    if isinstance(metric, str):
        from ember.learner.recorder import unique_names

        names = unique_names([m.name for m in learn.metrics])  # as the results table shows them
        if metric not in names:
            hint = "Pass a metric object or function, or leave `metric` out to use the loss."
            raise ConfigError(expected("the name of one of learn.metrics", "metric", metric, valid=names, hint=hint))
        name, m = metric, learn.metrics[names.index(metric)]
    else:
        m = as_metric(metric)
        name = m.name
    # A copy: the learner's own metric keeps what the last validation left in it.
    m = copy.deepcopy(m)
    return name, m, lower_is_better(name, m)


def _read_all(loader: Any, n_inp: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Every batch of `loader` concatenated: ``(inputs, targets)``, on the loader's device."""
    batches = list(loader)
    if not batches:
        raise DataError("Permutation importance needs rows: the loader gave no batch.")
    n = len(batches[0])
    if n <= n_inp:
        raise DataError(
            f"Permutation importance needs labelled data: the loader's batches hold {n} tensor(s), all inputs "
            f"(n_inp={n_inp}). Pass a loader with targets (e.g. learn.test_dl(df, with_labels=True))."
        )
    cols = [torch.cat([b[k] for b in batches]) for k in range(n)]
    return cols[:n_inp], cols[n_inp:]


def permutation_importance(
    learn: Learner,
    features: Mapping[str, Feature] | None = None,
    dl: Any = None,
    metric: str | Any = None,
    n_repeats: int = 5,
    seed: int | None = None,
    bs: int = 4096,
) -> pd.DataFrame:
    """How much shuffling each feature across the rows of `dl` worsens the loss or a metric of `learn`.

    Each feature's columns are shuffled together (one permutation of the rows), `n_repeats` times; the model
    runs in eval mode on the shuffled rows, and the worsening is the score after shuffling minus the baseline
    (the other way round for a metric where higher is better), so a column the model relies on gets a
    positive importance and one it ignores about 0. The model, the data and the learner (recorder, metrics,
    mode of every layer) are left as they were. The model's outputs are scored as they are, without the
    learner's callbacks.

    Args:
        learn: any learner whose inputs include 2-d tensors ``(B, n_columns)``.
        features: ``{name: [(input position, column position), ...]}``; default: every column of every 2-d input,
            named ``"input{i}[{j}]"``.
        dl: the rows (default: the validation set); a loader or a loader index as for ``learn.get_preds``.
        metric: ``None`` for the learner's loss, the name of one of ``learn.metrics``, or a metric object or
            function (see :func:`~ember.metrics.as_metric`); its ``lower_is_better`` sets the direction.
        n_repeats: shuffles per feature.
        seed: makes the shuffles repeatable; each feature's shuffles depend only on `seed` and its name.
        bs: rows per forward pass (large batches are faster; eval mode makes the size irrelevant to the result).

    Returns:
        One row per feature, most important first: ``column``, ``importance`` (mean worsening), ``std`` (over the
        repeats), ``score`` (mean score after shuffling) and ``baseline`` (the score of the rows as they are);
        ``df.attrs`` holds ``metric`` (its name) and ``lower_is_better``.

    Raises:
        ConfigError: a bad argument (an unknown metric name lists the valid ones).
        DataError: the loader has no rows or no targets.
    """
    n_repeats = _check_int(n_repeats, "n_repeats", 1)
    bs = _check_int(bs, "bs", 1)
    if seed is not None:
        seed = _check_int(seed, "seed", 0)
    name, m, lower = _scorer(learn, metric)
    loader = _in_dataset_order(learn._as_loader(dl))
    n_inp = getattr(loader, "n_inp", None) or learn.dls.n_inp
    inputs, targs = _read_all(loader, n_inp)
    features = _check_features(features, inputs)
    n_rows = int(inputs[0].shape[0])
    device = inputs[0].device
    root = seed if seed is not None else int(np.random.SeedSequence().entropy)  # fresh shuffles without a seed

    model = learn.model
    modes = [mod.training for mod in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            score = _make_score(learn, m, targs, bs)
            baseline = score(inputs)
            scores = []
            for fname, cols in features.items():
                gen = torch.Generator().manual_seed(_feature_seed(root, fname))
                for _ in range(n_repeats):
                    perm = torch.randperm(n_rows, generator=gen).to(device, non_blocking=True)  # (N,)
                    scores.append(score(_shuffled(inputs, cols, perm)))
    finally:
        for mod, mode in zip(model.modules(), modes):
            mod.training = mode
    if m is None:  # losses: tensors on the device until here, read in one sync
        all_scores = torch.stack([baseline, *scores]).cpu().double().numpy()
    else:
        all_scores = np.asarray([baseline, *scores], dtype=np.float64)
    base = float(all_scores[0])
    values = all_scores[1:].reshape(len(features), n_repeats)  # (n_features, n_repeats)
    worse = (values - base) if lower else (base - values)
    out = pd.DataFrame(
        {
            "column": list(features),
            "importance": worse.mean(axis=1),
            "std": worse.std(axis=1),
            "score": values.mean(axis=1),
            "baseline": base,
        }
    )
    out = out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    out.attrs.update(metric=name, lower_is_better=lower, n_repeats=n_repeats)
    return out


def _check_features(features: Mapping[str, Feature] | None, inputs: list[torch.Tensor]) -> dict[str, list]:
    """`features` checked against the inputs' shapes, or every column of every 2-d input."""
    if features is None:
        features = {f"input{i}[{j}]": [(i, j)] for i, x in enumerate(inputs) if x.ndim == 2 for j in range(x.shape[1])}
        if not features:
            shapes = [tuple(x.shape) for x in inputs]
            raise ConfigError(
                f"Permutation importance shuffles columns of 2-d inputs (rows, columns); this learner's inputs have "
                f"shapes {shapes}. Pass `features` naming the (input, column) positions to shuffle."
            )
        return dict(features)
    if not isinstance(features, Mapping) or not features:
        raise ConfigError(expected("a non-empty {name: [(input, column), ...]} mapping", "features", features))
    shapes = [tuple(x.shape) for x in inputs]
    out = {}
    for fname, cols in features.items():
        pairs = [_check_pair(p, inputs) for p in cols] if isinstance(cols, Sequence) else [None]
        if not pairs or None in pairs:
            what = "a non-empty list of (input, column) positions of 2-d inputs"
            raise ConfigError(expected(what, f"features[{fname!r}]", cols, hint=f"The inputs have shapes {shapes}."))
        out[str(fname)] = pairs
    return out


def _check_pair(pair: Any, inputs: list[torch.Tensor]) -> tuple[int, int] | None:
    """`pair` as ``(input, column)`` ints when it names a column of a 2-d input, else None."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return None
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in pair):
        return None
    i, j = int(pair[0]), int(pair[1])
    if not 0 <= i < len(inputs) or inputs[i].ndim != 2 or not 0 <= j < inputs[i].shape[1]:
        return None
    return i, j


def _feature_seed(root: int, name: str) -> int:
    """A seed for one feature's shuffles from `root` and its name: the same whichever other features are asked."""
    state = np.random.SeedSequence([root, zlib.crc32(name.encode())]).generate_state(1, dtype=np.uint64)
    return int(state[0] >> np.uint64(1))  # torch seeds are below 2**63


def _shuffled(inputs: list[torch.Tensor], cols: list[tuple[int, int]], perm: torch.Tensor) -> list[torch.Tensor]:
    """The inputs with the columns `cols` of every row taken from row ``perm[row]`` (the others untouched)."""
    out = list(inputs)
    by_input: dict[int, list[int]] = {}
    for i, j in cols:
        by_input.setdefault(i, []).append(j)
    for i, js in by_input.items():
        x = inputs[i].clone()  # (N, n_columns_i)
        idx = torch.tensor(js, device=x.device)
        x[:, idx] = inputs[i][:, idx][perm]  # (N, len(js))
        out[i] = x
    return out


def _make_score(
    learn: Learner, metric: Metric | None, targs: list[torch.Tensor], bs: int
) -> Callable[[list[torch.Tensor]], torch.Tensor | float]:
    """``score(inputs)``: the loss (a tensor on the device, no sync) or the metric (a float) over all the rows."""
    n_rows = int(targs[0].shape[0])
    starts = range(0, n_rows, bs)
    ys = [[t[s : s + bs] for t in targs] for s in starts]

    def score(inputs: list[torch.Tensor]) -> torch.Tensor | float:
        if metric is not None:
            metric.reset()
        total = torch.zeros((), device=targs[0].device)
        for s, yb in zip(starts, ys):
            with learn._autocast():
                pred = learn.model(*[x[s : s + bs] for x in inputs])
                if metric is None:
                    # Batch means weighted by batch size, as the validation loss is recorded.
                    total += learn.loss_func(pred, *yb).float() * len(yb[0])
            if metric is not None:
                metric.update(pred, *yb)
        return total / n_rows if metric is None else float(metric.compute())

    return score


def plot_importance(imp: pd.DataFrame, k: int = 20, fname: str | None = None) -> Any:
    """A horizontal bar chart of the `k` most important rows of a :func:`permutation_importance` result, with the
    standard deviation over the repeats as error bars; returns the matplotlib Figure (saved to `fname` if given)."""
    import matplotlib.pyplot as plt

    k = _check_int(k, "k", 1)
    missing = {"column", "importance", "std"} - set(getattr(imp, "columns", []))
    if not isinstance(imp, pd.DataFrame) or missing:
        hint = "Pass what permutation_importance returns."
        raise DataError(expected("a table with column, importance and std", "imp", type(imp).__name__, hint=hint))
    top = imp.head(k).iloc[::-1]  # the most important at the top of the chart
    fig, ax = plt.subplots(figsize=(6, 1.0 + 0.3 * len(top)))
    ax.barh([str(c) for c in top["column"]], top["importance"], xerr=top["std"], color="tab:blue", capsize=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    metric = imp.attrs.get("metric", "score")
    change = "increase" if imp.attrs.get("lower_is_better", True) else "decrease"
    ax.set_xlabel(f"{change} in {metric} when shuffled")
    ax.set_title("Permutation importance")
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=100)
    return fig
