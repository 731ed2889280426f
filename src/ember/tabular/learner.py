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

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.export import register_learner
from ember.learner.learner import Learner
from ember.tabular.data import SliceLoader, TabularDataLoaders, decode_batch, print_table, tabular_test_dl
from ember.tabular.model import get_emb_sz, tabular_model
from ember.tabular.procs import TabularProcessor

__all__ = ["TabularLearner", "tabular_learner"]


@register_learner
class TabularLearner(Learner):
    """A :class:`~ember.learner.Learner` for tables: adds :meth:`predict` (one row), :meth:`predict_df`
    (many), :meth:`test_dl` and :meth:`show_results`.

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

    def _predict_tensors(self, df: pd.DataFrame) -> torch.Tensor:
        cats, conts, _ = self.processor.process(df, with_y=False)
        from ember.losses import loss_activation

        out = []
        for i in range(0, max(len(cats), 1), 4096):  # an empty table still gives (0, n_out) predictions
            out.append(self.predict_tensor((cats[i : i + 4096], conts[i : i + 4096])))
        return loss_activation(self.loss_func)(torch.cat(out))

    def predict_df(self, df: pd.DataFrame) -> pd.DataFrame:
        """Predictions for every row of `df` (one vectorized pass): a DataFrame with ``<target>_pred``
        columns, plus one probability column per class for classification."""
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
    if y_range is not None:
        y_range = (float(y_range[0]), float(y_range[1]))
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
