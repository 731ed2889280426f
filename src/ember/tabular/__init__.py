"""Tabular data: preprocessing once into tensors, loaders that slice them, the tabular model and learner.

>>> from ember.tabular import TabularDataLoaders, tabular_learner, Categorify, FillMissing, Normalize
>>> dls = TabularDataLoaders.from_df(df, y_names="salary", cat_names=cats, cont_names=conts,
...                                  procs=[Categorify, FillMissing, Normalize])   # doctest: +SKIP
>>> learn = tabular_learner(dls, metrics=accuracy)                                 # doctest: +SKIP
"""

from __future__ import annotations

from ember.tabular.data import (
    BatchIndexSampler,
    PartialBatchIndexSampler,
    SliceLoader,
    TabularDataLoaders,
    TabularPandas,
    TabularSplit,
    TensorBatches,
    WeightedBatchIndexSampler,
    random_split_idx,
    tensor_loader,
)
from ember.tabular.frames import add_elapsed_times, df_shrink, df_shrink_dtypes, make_date
from ember.tabular.interpret import permutation_importance, plot_importance, tabular_features
from ember.tabular.learner import TabularLearner, tabular_learner
from ember.tabular.model import TabularModel, emb_sz_rule, get_emb_sz, tabular_model
from ember.tabular.procs import (
    NA_TOKEN,
    Categorify,
    FillMissing,
    Normalize,
    TabularProc,
    TabularProcessor,
    add_datepart,
    cont_cat_split,
)

__all__ = [
    "TabularDataLoaders",
    "TabularPandas",
    "TabularSplit",
    "TabularProcessor",
    "TabularProc",
    "Categorify",
    "FillMissing",
    "Normalize",
    "NA_TOKEN",
    "cont_cat_split",
    "add_datepart",
    "make_date",
    "add_elapsed_times",
    "df_shrink",
    "df_shrink_dtypes",
    "TabularModel",
    "tabular_model",
    "emb_sz_rule",
    "get_emb_sz",
    "TabularLearner",
    "tabular_learner",
    "permutation_importance",
    "plot_importance",
    "tabular_features",
    "TensorBatches",
    "BatchIndexSampler",
    "WeightedBatchIndexSampler",
    "PartialBatchIndexSampler",
    "SliceLoader",
    "tensor_loader",
    "random_split_idx",
]
