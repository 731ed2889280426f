"""`tabular_learner` and `TabularLearner`: train on a table, predict rows, show results as tables.

>>> learn = tabular_learner(dls, layers=[200, 100], metrics=accuracy)   # doctest: +SKIP
>>> learn.fit_one_cycle(3, 1e-2)                                         # doctest: +SKIP
>>> label, idx, probs = learn.predict(df.iloc[0])                        # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.export import register_learner
from ember.learner.learner import Learner
from ember.tabular.data import (
    BatchIndexSampler,
    SliceLoader,
    TabularDataLoaders,
    decode_batch,
    print_table,
    tabular_test_dl,
)
from ember.tabular.interpret import permutation_importance, plot_importance, tabular_features
from ember.tabular.model import get_emb_sz, tabular_model
from ember.tabular.procs import TabularProcessor

__all__ = ["TabularLearner", "tabular_learner", "TrainableCheck"]


class TrainableCheck:
    """Adds to the learner's check before training (no training rows, as a learner from ``load_learner`` has) the
    one that a batch of one row would break BatchNorm: a clear error before the optimizer takes a step."""

    _how_to_build = "a learner from the data (TabularDataLoaders.from_df and tabular_learner)"

    def _check_trainable(self) -> None:
        super()._check_trainable()  # type: ignore[misc]
        sampler = getattr(getattr(self.dls.train, "dl", None), "sampler", None)
        if not isinstance(sampler, BatchIndexSampler) or not any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules()
        ):
            return
        n, bs = sampler.n, sampler.bs
        if bs == 1 or (not sampler.drop_last and n % bs == 1):
            size = "bs=1" if bs == 1 else "one training row" if n == 1 else f"{n} training rows with bs={bs}"
            raise DataError(
                f"Training would give the model's BatchNorm layers a batch of one row ({size}); it needs at least "
                "2. Use a larger `bs`, add training rows, or build the model without BatchNorm (config={'use_bn': "
                "False, 'bn_cont': False})."
            )


@register_learner
class TabularLearner(TrainableCheck, Learner):
    """A :class:`~ember.learner.Learner` for tables: adds :meth:`predict` (one row), :meth:`predict_df`
    and :meth:`predict_batch` (many), :meth:`test_dl`, :meth:`show_results` and
    :meth:`permutation_importance` (which columns the model relies on).

    ``learn.export(path)`` writes the weights, the model recipe and the loaders' processing;
    ``ember.load_learner(path)`` gives back a ``TabularLearner`` whose ``predict``, ``predict_df`` and
    ``test_dl`` process new rows exactly as before.

    Attributes:
        model_recipe: ``{"factory": "tabular_model", "kwargs": {...}}`` to rebuild the model.
    """

    model_recipe: dict[str, Any] | None = None

    @property
    def processor(self) -> TabularProcessor:
        """The fitted preprocessing: the loaders' (``dls.processor``) unless one was set on the learner."""
        explicit = self.__dict__.get("_processor")
        if explicit is not None:
            return explicit
        proc = getattr(self.dls, "processor", None)
        if proc is None:
            raise ConfigError(
                "This TabularLearner has no preprocessing: its DataLoaders have no `processor`. "
                "Build them with TabularDataLoaders.from_df (or set `learn.processor`)."
            )
        return proc

    @processor.setter
    def processor(self, value: TabularProcessor) -> None:
        self.__dict__["_processor"] = value

    def test_dl(self, df: pd.DataFrame, with_labels: bool | None = None, bs: int | None = None) -> SliceLoader:
        """A loader over new rows, processed as the training rows were (see ``TabularDataLoaders.test_dl``)."""
        return tabular_test_dl(self.processor, df, self.dls.device, with_labels=with_labels, bs=bs or 1024)

    def _rows(self, row: Any) -> pd.DataFrame:
        if isinstance(row, pd.Series):
            return row.to_frame().T.infer_objects()
        if isinstance(row, dict):
            return pd.DataFrame({k: [v] for k, v in row.items()})
        if isinstance(row, pd.DataFrame):
            return row
        raise DataError(expected("a dict or a pandas Series (one row)", "row", type(row).__name__))

    @staticmethod
    def _table(rows: Any, name: str = "df") -> pd.DataFrame:
        """A DataFrame, or a list of rows (dicts or Series) as one."""
        if isinstance(rows, pd.DataFrame):
            return rows
        if isinstance(rows, (list, tuple)) and all(isinstance(r, (dict, pd.Series)) for r in rows):
            df = pd.DataFrame([r.to_dict() if isinstance(r, pd.Series) else r for r in rows]).infer_objects()
            if rows and all(isinstance(r, pd.Series) for r in rows):
                df.index = [r.name for r in rows]  # rows of a DataFrame keep their labels (errors name them)
            return df
        hint = "Pass a DataFrame, or a list of rows (dicts or Series)."
        raise DataError(expected("a table of rows", name, type(rows).__name__, hint=hint))

    def _decode_preds(self, preds: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """``preds`` (activated outputs, ``(N, out)``) -> (decoded values per row, encoded tensor)."""
        proc = self.processor
        if proc.y_kind == "category":
            idx = preds.argmax(dim=-1)
            return np.asarray(proc.y_vocab, dtype=object)[idx.numpy()], idx
        vals = preds.float().reshape(len(preds), -1)
        return vals.numpy(), vals

    def predict(self, row: dict[str, Any] | pd.Series) -> tuple[Any, Any, torch.Tensor]:
        """Predict one row (a dict or Series of column values; missing values and unseen categories are fine).

        Returns:
            Classification: ``(label, class index, probabilities (n_classes,))``. Regression: ``(value,
            value tensor, raw output)``; the value is a float for one target, a list for several.
        """
        df = self._rows(row)
        if len(df) != 1:
            raise DataError(f"`predict` takes one row; received {len(df)}. Use `predict_df` for several.")
        preds = self._predict_tensors(df)  # (1, out)
        decoded, enc = self._decode_preds(preds)
        if self.processor.y_kind == "category":
            return decoded[0], int(enc[0]), preds[0]
        value = float(decoded[0][0]) if decoded.shape[1] == 1 else [float(v) for v in decoded[0]]
        return value, enc[0], preds[0]

    def _predict_tensors(self, df: pd.DataFrame, bs: int = 4096) -> torch.Tensor:
        cats, conts, _ = self.processor.process(df, with_y=False)
        from ember.losses import loss_activation

        out = []
        for i in range(0, max(len(cats), 1), bs):  # an empty table still gives (0, n_out) predictions
            out.append(self.predict_tensor((cats[i : i + bs], conts[i : i + bs])))
        return loss_activation(self.loss_func)(torch.cat(out))

    def predict_batch(self, items: Any, bs: int = 4096) -> tuple[list[Any], torch.Tensor, torch.Tensor]:
        """Predict many rows at once: a DataFrame or a list of rows (dicts or Series).

        Returns:
            ``(answers, encoded, outputs)``, one entry per row, in order. Classification: the labels, the class
            indices ``(N,)`` and the probabilities ``(N, n_classes)``. Regression: the values (a float per row, a
            list with several targets), the values ``(N, n_targets)`` and the raw outputs. The answers are
            :meth:`predict_df`'s ``<target>_pred`` column.
        """
        df = self._table(items, "items")
        preds = self._predict_tensors(df, bs=bs)
        decoded, enc = self._decode_preds(preds)
        if self.processor.y_kind == "category":
            return list(decoded), enc, preds
        answers = [float(v[0]) if len(v) == 1 else [float(x) for x in v] for v in decoded]
        return answers, enc, preds

    def predict_df(self, df: pd.DataFrame) -> pd.DataFrame:
        """Predictions for every row of `df` (one vectorized pass; a list of rows is fine too): a DataFrame with
        ``<target>_pred`` columns, plus one probability column per class for classification."""
        df = self._table(df)
        preds = self._predict_tensors(df)
        decoded, _ = self._decode_preds(preds)
        proc, out = self.processor, pd.DataFrame(index=df.index)
        if proc.y_kind == "category":
            out[f"{proc.y_names[0]}_pred"] = decoded
            for j, label in enumerate(proc.y_vocab):
                out[f"p_{label}"] = preds[:, j].numpy()
        else:
            for j, c in enumerate(proc.y_names):
                out[f"{c}_pred"] = decoded[:, j]
        return out

    def show_results(self, max_n: int = 10, dl: Any = None, print_out: bool = True) -> pd.DataFrame:
        """Decoded inputs, the actual target and the prediction for `max_n` validation rows, as a table."""
        loader = self._as_loader(dl)
        batch = loader.one_batch()
        n = min(max_n, len(batch[0]))
        preds = self.predict_tensor(batch[:2])[:n]
        from ember.losses import loss_activation

        preds = loss_activation(self.loss_func)(preds)
        decoded, _ = self._decode_preds(preds)
        df = decode_batch(self.processor, [t[:n] for t in batch])
        proc = self.processor
        if proc.y_kind == "category":
            df[f"{proc.y_names[0]}_pred"] = decoded
        else:
            for j, c in enumerate(proc.y_names):
                df[f"{c}_pred"] = decoded[:, j]
        if print_out:
            print_table(df, title="Results")
        return df

    def permutation_importance(
        self,
        dl: Any = None,
        metric: str | Any = None,
        n_repeats: int = 5,
        seed: int | None = None,
        columns: Sequence[str] | dict[str, Sequence[str]] | None = None,
        group_na: bool = True,
        bs: int = 4096,
    ) -> pd.DataFrame:
        """Which columns the model relies on: how much shuffling each one across the validation rows (or `dl`)
        worsens the loss, or `metric` (see :func:`~ember.tabular.interpret.permutation_importance`).

        Args:
            dl: the rows (default: the validation set), e.g. ``learn.test_dl(df, with_labels=True)``.
            metric: ``None`` for the loss, the name of one of ``learn.metrics`` (``"accuracy"``), or a metric object
                or function; a metric where higher is better still gives positive importance when shuffling hurts.
            n_repeats: shuffles per column (the ``std`` column is their spread).
            seed: repeatable shuffles.
            columns: the columns to measure (default all), or ``{name: [column, ...]}`` to shuffle groups together.
            group_na: shuffle FillMissing's ``<col>_na`` indicator with ``<col>`` (``False``: measure it alone).
            bs: rows per forward pass.

        Returns:
            One row per column, most important first: ``column``, ``importance``, ``std``, ``score`` and
            ``baseline``.

        >>> learn.permutation_importance(metric="accuracy", seed=0).head()   # doctest: +SKIP
        """
        features = tabular_features(self.processor, columns, group_na=group_na)
        return permutation_importance(self, features, dl=dl, metric=metric, n_repeats=n_repeats, seed=seed, bs=bs)

    def plot_permutation_importance(self, k: int = 20, fname: str | None = None, **kwargs: Any) -> Any:
        """A horizontal bar chart of the `k` most important columns with their std as error bars; returns the
        matplotlib Figure (saved to `fname` if given). `kwargs` go to :meth:`permutation_importance`."""
        return plot_importance(self.permutation_importance(**kwargs), k=k, fname=fname)


def check_y_range(y_range: Any) -> tuple[float, float] | None:
    """`y_range` as ``(low, high)`` floats; ConfigError unless it is None or two numbers, low below high."""
    if y_range is None:
        return None
    try:
        low, high = (float(v) for v in y_range)
    except (TypeError, ValueError):
        raise ConfigError(expected("a pair of numbers (low, high)", "y_range", y_range)) from None
    if not low < high:
        raise ConfigError(expected("a pair of numbers (low, high) with low < high", "y_range", y_range))
    return low, high


def tabular_learner(
    dls: TabularDataLoaders,
    layers: Sequence[int] | None = None,
    emb_szs: dict[str, int] | None = None,
    config: dict[str, Any] | None = None,
    n_out: int | None = None,
    y_range: tuple[float, float] | None = None,
    **learner_kwargs: Any,
) -> TabularLearner:
    """A :class:`TabularLearner` with a :class:`~ember.tabular.model.TabularModel` sized for `dls`.

    Args:
        layers: hidden widths (default ``[200, 100]``).
        emb_szs: embedding widths by column name, overriding the rule of thumb.
        config: other :class:`TabularModel` arguments (``ps``, ``embed_p``, ``use_bn``, ``bn_final``, ``bn_cont``).
        n_out: outputs (default: the classes or the targets of `dls`).
        y_range: squash regression outputs into ``(low, high)``.
        learner_kwargs: :class:`~ember.learner.Learner` arguments (``metrics``, ``loss_func``, ``wd``, …).
    """
    if not isinstance(dls, TabularDataLoaders):
        hint = "Build them with TabularDataLoaders.from_df."
        raise ConfigError(expected("TabularDataLoaders", "dls", type(dls).__name__, hint=hint))
    config = dict(config or {})
    bad = set(config) - {"ps", "embed_p", "use_bn", "bn_final", "bn_cont"}
    if bad:
        raise ConfigError(expected("TabularModel arguments", "config", sorted(bad)))
    y_range = check_y_range(y_range)
    if n_out is not None:
        if isinstance(n_out, bool) or not isinstance(n_out, (int, np.integer)) or n_out < 1:
            raise ConfigError(expected("a positive int", "n_out", n_out))
        if dls.processor.y_kind == "category" and n_out < dls.c and "loss_func" not in learner_kwargs:
            raise ConfigError(
                f"`n_out={n_out}` is fewer than the {dls.c} classes of `{dls.y_names[0]}`: leave `n_out` out (it "
                'defaults to the number of classes), or pass y_block="regression" to predict a number.'
            )
    kwargs = {
        "emb_szs": [list(e) for e in get_emb_sz(dls, emb_szs)],
        "n_cont": len(dls.cont_names),
        "out_sz": int(n_out if n_out is not None else dls.c),
        "layers": list(layers if layers is not None else (200, 100)),
        "y_range": list(y_range) if y_range is not None else None,
        **config,
    }
    model = tabular_model(**kwargs)
    model._ember_factory = ("tabular_model", kwargs)
    learn = TabularLearner(dls, model, **learner_kwargs)
    learn.model_recipe = {"factory": "tabular_model", "kwargs": kwargs}
    return learn
