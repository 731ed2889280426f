"""`collab_learner` and `CollabLearner`: train a recommender, predict ratings, look inside the factors.

>>> learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5))   # doctest: +SKIP
>>> learn.fit_one_cycle(5, 5e-3, wd=0.1)                            # doctest: +SKIP
>>> learn.predict((196, 242))                                       # doctest: +SKIP
>>> learn.top_items(5)                                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.collab.data import CollabDataLoaders
from ember.collab.model import EmbeddingDotBias, embedding_dot_bias, embedding_nn
from ember.core.errors import ConfigError, DataError, expected
from ember.learner.export import register_learner
from ember.learner.learner import Learner
from ember.tabular.data import SliceLoader, print_table
from ember.tabular.learner import TrainableCheck, check_y_range
from ember.tabular.model import emb_sz_rule

__all__ = ["CollabLearner", "collab_learner"]

UNKNOWN = ("error", "mean")


@register_learner
class CollabLearner(TrainableCheck, Learner):
    """A :class:`~ember.learner.Learner` for ratings, with prediction for (user, item) pairs and analysis helpers.

    ``learn.export(path)`` writes the weights, the model recipe and the coding of users and items;
    ``ember.load_learner(path)`` gives back a ``CollabLearner`` whose ``predict`` and analysis helpers
    (``bias``, ``weight``, ``top_items``, ``item_pca``) give the same answers.

    Attributes:
        model_recipe: ``{"factory": "embedding_dot_bias" | "embedding_nn", "kwargs": {...}}``.
    """

    dls: CollabDataLoaders
    model_recipe: dict[str, Any] | None = None
    _how_to_build = "a learner from the data (CollabDataLoaders.from_df and collab_learner)"

    # -- prediction ---------------------------------------------------------------------------------
    def _pairs(self, pairs: Any) -> tuple[pd.Series, pd.Series, bool]:
        if isinstance(pairs, pd.DataFrame):
            for c in (self.dls.user_name, self.dls.item_name):
                if c not in pairs.columns:
                    raise DataError(expected("a column of the DataFrame", "pairs", c, list(pairs.columns)))
            return pairs[self.dls.user_name], pairs[self.dls.item_name], False
        if isinstance(pairs, tuple) and len(pairs) == 2 and not isinstance(pairs[0], (tuple, list)):
            return pd.Series([pairs[0]]), pd.Series([pairs[1]]), True
        try:
            users, items = zip(*pairs)
        except (TypeError, ValueError) as e:
            raise DataError(
                expected("a (user, item) pair, a list of pairs or a DataFrame", "pairs", type(pairs).__name__)
            ) from e
        return pd.Series(users), pd.Series(items), False

    def predict(self, pairs: Any, unknown: str = "error") -> float | np.ndarray:
        """Predicted ratings of (user, item) pairs.

        Args:
            pairs: one ``(user, item)`` tuple, a list of them, or a DataFrame with the user and item columns.
            unknown: ``"error"`` raises a DataError naming users/items never seen in training data;
                ``"mean"`` gives those pairs the mean training rating.

        Returns:
            A float for one pair, else an array with one rating per pair.
        """
        preds, single = self._predict(pairs, unknown)
        return float(preds[0]) if single else preds

    def _predict(self, pairs: Any, unknown: str, bs: int = 8192) -> tuple[np.ndarray, bool]:
        if unknown not in UNKNOWN:
            raise ConfigError(expected("one of the policies", "unknown", unknown, UNKNOWN))
        users, items, single = self._pairs(pairs)
        u, i = self.dls.encode(users, is_item=False), self.dls.encode(items, is_item=True)
        missing = (u == 0) | (i == 0)
        if missing.any() and unknown == "error":
            msg = self.dls.unknown_message(users, items, u, i)
            raise DataError(f"{msg} Pass unknown='mean' to give such pairs the mean rating.")
        x = torch.from_numpy(np.stack([u, i], axis=1))  # (N, 2)
        outs = [self.predict_tensor(x[s : s + bs]).float().reshape(-1) for s in range(0, len(x), bs)]
        preds = (torch.cat(outs) if outs else torch.zeros(0)).numpy().astype(np.float64)
        preds[missing] = self.dls.rating_mean
        return preds, single

    def predict_batch(
        self, pairs: Any, bs: int = 8192, unknown: str = "error"
    ) -> tuple[list[float], torch.Tensor, torch.Tensor]:
        """Predicted ratings of many (user, item) pairs (a list of pairs or a DataFrame), as :meth:`predict` gives
        them: ``(ratings (a list of floats), ratings (N,), ratings (N,))``, in the form every learner's
        ``predict_batch`` returns (answers, decoded tensor, model outputs)."""
        preds, _ = self._predict(pairs, unknown, bs=bs)
        t = torch.from_numpy(preds.astype(np.float32))
        return preds.tolist(), t, t.clone()

    def test_dl(self, ratings: pd.DataFrame, with_labels: bool | None = None, bs: int | None = None) -> SliceLoader:
        """A loader over new ratings for ``get_preds(dl=...)`` (see ``CollabDataLoaders.test_dl``)."""
        return self.dls.test_dl(ratings, with_labels=with_labels, bs=bs)

    def show_results(self, max_n: int = 10, dl: Any = None, print_out: bool = True) -> pd.DataFrame:
        """User, item, actual and predicted rating for `max_n` validation ratings (or those of `dl`, e.g.
        ``learn.test_dl(ratings)``), as a table."""
        batch = self._as_loader(dl).one_batch()
        batch = tuple(t[:max_n] for t in batch)
        pred = self.predict_tensor(batch[0]).float().reshape(-1)
        df = self.dls._batch_table(batch)
        df[f"{self.dls.rating_name}_pred"] = pred.numpy()
        if print_out:
            print_table(df, title="Results")
        return df

    # -- analysis -----------------------------------------------------------------------------------
    def _codes(self, values: Sequence[Any], is_item: bool) -> torch.Tensor:
        kind = self.dls.item_name if is_item else self.dls.user_name
        if isinstance(values, (str, bytes, tuple)) or not isinstance(values, Iterable):
            hint = f"Pass a list of {kind}s, e.g. [{values!r}]."
            raise DataError(expected(f"a list of {kind}s", "items", values, hint=hint))
        values = list(values)
        codes = self.dls.encode(values, is_item=is_item)
        if (codes == 0).any():
            bad = [v for v, c in zip(values, codes) if c == 0][:5]
            kind = self.dls.item_name if is_item else self.dls.user_name
            raise DataError(f"Unknown {kind} {bad!r}: not in the training data (check the type too).")
        return torch.from_numpy(codes).to(self.dls.device)

    def bias(self, items: Sequence[Any], is_item: bool = True) -> torch.Tensor:
        """Learned biases ``(n,)`` of items (or users, with ``is_item=False``), by id."""
        if not isinstance(self.model, EmbeddingDotBias):
            raise ConfigError("Biases exist only for the dot-product model (collab_learner(..., use_nn=False)).")
        with torch.no_grad():
            return self.model.bias(self._codes(items, is_item), is_item).cpu()

    def weight(self, items: Sequence[Any], is_item: bool = True) -> torch.Tensor:
        """Learned factors (embeddings) ``(n, n_factors)`` of items (or users), by id."""
        with torch.no_grad():
            return self.model.weight(self._codes(items, is_item), is_item).cpu()

    def _all_items(self, min_ratings: int) -> tuple[np.ndarray, torch.Tensor]:
        codes = np.flatnonzero(self.dls.item_counts >= max(min_ratings, 1))
        codes = codes[codes > 0]  # never #na#
        return codes, torch.from_numpy(codes).to(self.dls.device)

    def _items_by_bias(self, n: int, min_ratings: int, descending: bool) -> pd.DataFrame:
        if not isinstance(self.model, EmbeddingDotBias):
            raise ConfigError("Biases exist only for the dot-product model (collab_learner(..., use_nn=False)).")
        codes, t = self._all_items(min_ratings)
        with torch.no_grad():
            b = self.model.bias(t, is_item=True).cpu().numpy()
        order = np.argsort(-b if descending else b, kind="stable")[:n]
        return pd.DataFrame(
            {
                self.dls.item_name: self.dls.decode(codes[order]),
                "bias": b[order],
                "n_ratings": self.dls.item_counts[codes[order]],
            }
        )

    def top_items(self, n: int = 10, min_ratings: int = 0) -> pd.DataFrame:
        """The `n` items with the highest learned bias (liked beyond what their factors explain), among
        those with at least `min_ratings` ratings."""
        return self._items_by_bias(n, min_ratings, descending=True)

    def bottom_items(self, n: int = 10, min_ratings: int = 0) -> pd.DataFrame:
        """The `n` items with the lowest learned bias."""
        return self._items_by_bias(n, min_ratings, descending=False)

    def item_pca(self, n: int = 3, items: Sequence[Any] | None = None, min_ratings: int = 0) -> pd.DataFrame:
        """Item factors projected on their first `n` principal components (an exact SVD of the centred factors).

        Args:
            items: the items to project (default: every item with at least `min_ratings` ratings). The
                components are computed from the same items.

        Returns:
            A DataFrame with the item column and ``pc1 … pc<n>``; ``df.attrs["explained_variance_ratio"]``
            holds each component's share of the variance.
        """
        if items is None:
            codes, t = self._all_items(min_ratings)
            labels = self.dls.decode(codes)
        else:
            t, labels = self._codes(list(items), True), np.asarray(list(items), dtype=object)
        with torch.no_grad():
            w = self.model.weight(t, is_item=True).float().cpu()  # (N, k)
        if not 1 <= n <= min(w.shape):
            raise ConfigError(expected(f"between 1 and {min(w.shape)}", "n", n))
        centred = w - w.mean(dim=0, keepdim=True)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (k, k)
        comps = vh[:n]  # (n, k)
        # An SVD's signs are arbitrary: make each component's largest loading positive, so results repeat.
        signs = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
        proj = centred @ (comps * signs).T  # (N, n)
        df = pd.DataFrame({self.dls.item_name: labels})
        for j in range(n):
            df[f"pc{j + 1}"] = proj[:, j].numpy()
        var = s**2
        df.attrs["explained_variance_ratio"] = (var[:n] / var.sum()).tolist()
        return df

    def plot_item_pca(
        self,
        items: Sequence[Any] | None = None,
        n_items: int = 50,
        components: tuple[int, int] = (1, 2),
        fname: str | None = None,
        figsize: tuple[float, float] = (10, 10),
    ) -> Any:
        """Scatter the items on two principal components of their factors, labelled; returns the Figure.

        Args:
            items: items to show (default: the `n_items` most rated).
            components: which components (1-based) go on the x and y axes.
            fname: save the figure there too.
        """
        import matplotlib.pyplot as plt

        if (
            not isinstance(components, (tuple, list))
            or len(components) != 2
            or not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c >= 1 for c in components)
        ):
            raise ConfigError(
                expected("two component numbers, counted from 1", "components", components, hint="e.g. (1, 2).")
            )
        if items is None:
            codes = np.argsort(-self.dls.item_counts, kind="stable")
            codes = codes[codes > 0][:n_items]
            items = list(self.dls.decode(codes))
        df = self.item_pca(max(components), items=items)
        cx, cy = (f"pc{c}" for c in components)
        fig, ax = plt.subplots(figsize=figsize)
        ax.scatter(df[cx], df[cy], s=12)
        for label, x, y in zip(df[self.dls.item_name], df[cx], df[cy]):
            ax.annotate(str(label), (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(cx)
        ax.set_ylabel(cy)
        ax.set_title("Item factors, principal components")
        if fname is not None:
            fig.savefig(fname)
        return fig


def collab_learner(
    dls: CollabDataLoaders,
    n_factors: int = 50,
    use_nn: bool = False,
    emb_szs: dict[str, int] | None = None,
    layers: Sequence[int] | None = None,
    config: dict[str, Any] | None = None,
    y_range: tuple[float, float] | None = None,
    **learner_kwargs: Any,
) -> CollabLearner:
    """A :class:`CollabLearner` with an :class:`EmbeddingDotBias` (or an :class:`EmbeddingNN` with `use_nn`).

    Args:
        n_factors: latent factors per user and item (the dot-product model).
        use_nn: use the MLP model instead; its embedding widths follow the rule of thumb unless `emb_szs`
            (by column name) says otherwise.
        layers: hidden widths of the MLP model (default ``[200, 100]``).
        config: other :class:`~ember.tabular.model.TabularModel` arguments for the MLP model.
        y_range: ``(low, high)``: squash predictions into it, e.g. ``(0.5, 5.5)`` for 1-5 stars.
        learner_kwargs: :class:`~ember.learner.Learner` arguments (``wd``, ``metrics``, ``loss_func``, …).
    """
    if not isinstance(dls, CollabDataLoaders):
        raise ConfigError(expected("CollabDataLoaders", "dls", type(dls).__name__))
    yr = check_y_range(y_range)
    yr = None if yr is None else list(yr)
    if isinstance(n_factors, bool) or not isinstance(n_factors, (int, np.integer)) or n_factors < 1:
        raise ConfigError(expected("a positive int", "n_factors", n_factors))
    names = (dls.user_name, dls.item_name)
    if emb_szs is not None and not use_nn:
        raise ConfigError("`emb_szs` sizes the MLP model's embeddings: pass use_nn=True, or n_factors= instead.")
    bad = sorted(set(emb_szs or {}) - set(names), key=str)
    if bad:
        raise ConfigError(expected("the user or item column", "emb_szs", bad, valid=names))
    bad = sorted(set(config or {}) - {"ps", "embed_p", "use_bn", "bn_final", "bn_cont"})
    if bad:
        raise ConfigError(
            expected("MLP model arguments", "config", bad, valid=["ps", "embed_p", "use_bn", "bn_final", "bn_cont"])
        )
    if config and not use_nn:
        raise ConfigError("`config` sets the MLP model's arguments: pass use_nn=True as well.")
    if use_nn:
        sz = emb_szs or {}
        sizes = (dls.n_users, dls.n_items)
        kwargs: dict[str, Any] = {
            "emb_szs": [[n, int(sz.get(c, emb_sz_rule(n)))] for c, n in zip(names, sizes)],
            "layers": list(layers if layers is not None else (200, 100)),
            "y_range": yr,
            **(config or {}),
        }
        factory, model = "embedding_nn", embedding_nn(**kwargs)
    else:
        kwargs = {"n_factors": int(n_factors), "n_users": dls.n_users, "n_items": dls.n_items, "y_range": yr}
        factory, model = "embedding_dot_bias", embedding_dot_bias(**kwargs)
    model._ember_factory = (factory, kwargs)
    learn = CollabLearner(dls, model, **learner_kwargs)
    learn.model_recipe = {"factory": factory, "kwargs": kwargs}
    return learn
