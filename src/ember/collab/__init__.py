"""Collaborative filtering: ratings to user/item codes, dot-product and MLP recommenders, and their learner.

>>> from ember.collab import CollabDataLoaders, collab_learner
>>> dls = CollabDataLoaders.from_df(ratings, bs=64)            # doctest: +SKIP
>>> learn = collab_learner(dls, n_factors=50, y_range=(0.5, 5.5))  # doctest: +SKIP
"""

from __future__ import annotations

from ember.collab.data import CollabDataLoaders
from ember.collab.learner import CollabLearner, collab_learner
from ember.collab.model import EmbeddingDotBias, EmbeddingNN, embedding_dot_bias, embedding_nn

__all__ = [
    "CollabDataLoaders",
    "CollabLearner",
    "collab_learner",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "embedding_dot_bias",
    "embedding_nn",
]
