"""Collaborative-filtering models: dot product of latent factors plus biases, or a small MLP on embeddings.

Both take ``x`` of shape ``(B, 2)`` (user code, item code) and return ``(B,)`` predicted ratings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, expected
from ember.layers import Embedding
from ember.learner.export import register_model_factory
from ember.tabular.model import TabularModel

__all__ = ["EmbeddingDotBias", "EmbeddingNN", "embedding_dot_bias", "embedding_nn", "COLLAB_FACTORIES"]


class EmbeddingDotBias(nn.Module):
    """``user · item + user bias + item bias``, optionally squashed into `y_range` with a scaled sigmoid.

    Args:
        n_factors: latent factors per user and per item.
        n_users, n_items: vocabulary sizes (``#na#`` included).
        y_range: ``(low, high)`` of the ratings, a little wider than the real range (e.g. ``(0.5, 5.5)``).
    """

    def __init__(self, n_factors: int, n_users: int, n_items: int, y_range: tuple[float, float] | None = None) -> None:
        super().__init__()
        for name, v in (("n_factors", n_factors), ("n_users", n_users), ("n_items", n_items)):
            if not isinstance(v, int) or v < 1:
                raise ConfigError(expected("a positive int", name, v))
        if y_range is not None and not y_range[1] > y_range[0]:
            raise ConfigError(expected("(low, high) with low < high", "y_range", y_range))
        self.y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
        self.u_weight = Embedding(n_users, n_factors)
        self.i_weight = Embedding(n_items, n_factors)
        self.u_bias = Embedding(n_users, 1)
        self.i_bias = Embedding(n_items, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        users, items = x[:, 0], x[:, 1]  # (B,), (B,)
        dot = (self.u_weight(users) * self.i_weight(items)).sum(dim=1)  # (B,)
        res = dot + self.u_bias(users).squeeze(1) + self.i_bias(items).squeeze(1)
        if self.y_range is None:
            return res
        low, high = self.y_range
        return torch.sigmoid(res) * (high - low) + low

    def weight(self, codes: torch.Tensor, is_item: bool = True) -> torch.Tensor:
        """Latent factors ``(n, n_factors)`` of item (or user) codes."""
        return (self.i_weight if is_item else self.u_weight)(codes)

    def bias(self, codes: torch.Tensor, is_item: bool = True) -> torch.Tensor:
        """Biases ``(n,)`` of item (or user) codes."""
        return (self.i_bias if is_item else self.u_bias)(codes).squeeze(1)


class EmbeddingNN(TabularModel):
    """A :class:`~ember.tabular.model.TabularModel` on the user and item embeddings only (no continuous
    input), with one output: ``(B, 2)`` codes -> ``(B,)`` ratings.

    Args:
        emb_szs: ``[(n_users, width), (n_items, width)]``.
        layers: hidden widths.
        kwargs: other :class:`TabularModel` arguments (``ps``, ``embed_p``, ``y_range``, ``use_bn``, ``bn_final``).
    """

    def __init__(self, emb_szs: Sequence[tuple[int, int]], layers: Sequence[int] = (200, 100), **kwargs: Any) -> None:
        super().__init__(emb_szs, n_cont=0, out_sz=1, layers=layers, **kwargs)

    def forward(self, x: torch.Tensor, x_cont: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x).squeeze(1)  # (B, 1) -> (B,)

    def weight(self, codes: torch.Tensor, is_item: bool = True) -> torch.Tensor:
        """Embeddings ``(n, width)`` of item (or user) codes."""
        return self.embeds[1 if is_item else 0](codes)


@register_model_factory()
def embedding_dot_bias(
    n_factors: int, n_users: int, n_items: int, y_range: Sequence[float] | None = None
) -> EmbeddingDotBias:
    """Build an :class:`EmbeddingDotBias` from JSON-able arguments (the model factory ``load_learner`` calls)."""
    return EmbeddingDotBias(n_factors, n_users, n_items, None if y_range is None else (y_range[0], y_range[1]))


@register_model_factory()
def embedding_nn(emb_szs: Sequence[Sequence[int]], layers: Sequence[int] = (200, 100), **kwargs: Any) -> EmbeddingNN:
    """Build an :class:`EmbeddingNN` from JSON-able arguments (the model factory ``load_learner`` calls)."""
    if kwargs.get("y_range") is not None:
        kwargs["y_range"] = tuple(kwargs["y_range"])
    return EmbeddingNN([tuple(e) for e in emb_szs], layers=list(layers), **kwargs)


#: Factories of this package by the name stored in ``learn.model_recipe["factory"]``.
COLLAB_FACTORIES = {"embedding_dot_bias": embedding_dot_bias, "embedding_nn": embedding_nn}
