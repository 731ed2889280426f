"""Tabular data: a table processed once into tensors, and loaders whose batches are slices of them.

A batch is ``(x_cat, x_cont, y)``: int64 codes ``(B, n_cat)``, float32 values ``(B, n_cont)`` and the
target (class indices ``(B,)`` or values ``(B,)`` / ``(B, n_targets)``). The loaders are plain torch
DataLoaders with ``batch_size=None`` over a sampler that yields whole index batches, and a dataset whose
``__getitem__`` takes such a batch and slices every tensor at once: no per-row work, no collate, and
workers, pinned memory and distributed samplers still behave as PyTorch users expect (that machinery is
:mod:`ember.tabular.slice_loader`; row splits are :mod:`ember.tabular.row_splits`, CSV reading and table
printing :mod:`ember.tabular.table_io`, all re-exported here).

>>> dls = TabularDataLoaders.from_df(df, y_names="species", cat_names=["island", "sex"],
...     cont_names=["bill_length_mm"], procs=[Categorify, FillMissing, Normalize])  # doctest: +SKIP
>>> x_cat, x_cont, y = dls.one_batch()  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.core.device import default_device
from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import dump, load, register_recipe
from ember.data.loaders import (
    DataLoaders,
    DeviceLoader,
    check_partial_n,
    check_random_loader_args,
    require_arg,
    train_weights,
)
from ember.tabular.procs import TabularProc, TabularProcessor, _check_frame
from ember.tabular.row_splits import _complement_split, as_positions, random_split_idx
from ember.tabular.slice_loader import (
    BatchIndexSampler,
    PartialBatchIndexSampler,
    SliceLoader,
    TensorBatches,
    WeightedBatchIndexSampler,
    check_bs,
    check_dl_kwargs,
    tensor_loader,
)
from ember.tabular.table_io import print_table, read_csv, split_read_csv_kwargs

__all__ = [
    "TabularPandas",
    "TabularSplit",
    "TabularDataLoaders",
    "TensorBatches",
    "BatchIndexSampler",
    "WeightedBatchIndexSampler",
    "PartialBatchIndexSampler",
    "SliceLoader",
    "tensor_loader",
    "random_split_idx",
]


def _y_kind(y_block: Any) -> str | None:
    """Accept ``"category"``/``"regression"`` or a block class/instance named like CategoryBlock/RegressionBlock."""
    if y_block is None or isinstance(y_block, str):
        return y_block
    name = (y_block if isinstance(y_block, type) else type(y_block)).__name__
    name = getattr(y_block, "__name__", name)
    if name.startswith("Category"):
        return "category"
    if name.startswith("Regression"):
        return "regression"
    raise ConfigError(expected("'category', 'regression', CategoryBlock or RegressionBlock", "y_block", y_block))


class TabularPandas:
    """A DataFrame processed once: the fitted :class:`TabularProcessor` and the training/validation tensors.

    Args:
        df: the table.
        procs: preprocessing steps (e.g. ``[Categorify, FillMissing, Normalize]``), set up on the
            training rows only.
        cat_names, cont_names, y_names: the columns' roles.
        y_block: ``"category"``, ``"regression"`` (or the blocks of those names); default: from the target.
        splits: ``(train_idx, valid_idx)``, positions in `df` or boolean masks of its rows; default: every row
            is training data.

    Attributes:
        processor: the fitted processing (what inference and export need).
        train, valid: ``(cats, conts, ys)`` tensors of each split (:class:`TabularSplit`); ``to.train.xs`` and
            ``to.train.y`` give them as pandas objects for a random forest or another library's model.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        procs: Sequence[TabularProc | type[TabularProc]] | None = None,
        cat_names: Sequence[str] | None = None,
        cont_names: Sequence[str] | None = None,
        y_names: str | Sequence[str] | None = None,
        y_block: Any = None,
        splits: tuple[Sequence[int], Sequence[int]] | None = None,
    ) -> None:
        _check_frame(df)
        self.processor = TabularProcessor(cat_names, cont_names, y_names, procs, y_kind=_y_kind(y_block))
        if not self.processor.cat_names and not self.processor.cont_names:
            raise ConfigError(
                "No input columns: name the model's inputs with `cat_names` and/or `cont_names` (cont_cat_split(df, "
                "dep_var=...) picks them from the column types)."
            )
        n = len(df)
        if splits is None:
            splits = (np.arange(n), np.arange(0))
        if len(splits) != 2:
            raise ConfigError(expected("a pair (train_idx, valid_idx)", "splits", type(splits).__name__))
        train_idx, valid_idx = (as_positions(s, n, name) for s, name in zip(splits, ("splits[0]", "splits[1]")))
        for name, idx in (("train", train_idx), ("valid", valid_idx)):
            if len(idx) and (idx.min() < 0 or idx.max() >= n):
                raise DataError(
                    f"The {name} split holds positions outside the {n} rows of the DataFrame (they are positions, "
                    "0 to len(df) - 1, not index labels)."
                )
        if len(train_idx) == 0:
            raise DataError("The training split is empty; check `valid_idx`/`splitter`/`valid_pct`.")
        self.splits = (train_idx, valid_idx)
        self.n_rows = n
        proc = self.processor
        cols = proc._fit(df, train_idx)
        every_row = len(train_idx) == n and len(valid_idx) == 0 and bool((train_idx == np.arange(n)).all())
        train, valid = proc._tensors(
            cols, df, with_y=bool(proc.y_names), splits=(None if every_row else train_idx, valid_idx)
        )
        self.train = TabularSplit([t for t in train if t is not None], proc, df.index[train_idx])
        self.valid = TabularSplit([t for t in valid if t is not None], proc, df.index[valid_idx])

    @property
    def cat_names(self) -> list[str]:
        return self.processor.cat_names

    @property
    def cont_names(self) -> list[str]:
        return self.processor.cont_names

    @property
    def y_names(self) -> list[str]:
        return self.processor.y_names

    def dataloaders(
        self,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        drop_last: bool | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        **dl_kwargs: Any,
    ) -> TabularDataLoaders:
        """Training and validation loaders over the processed tensors (see :class:`TabularDataLoaders`)."""
        return TabularDataLoaders.from_tensors_of(
            self, bs=bs, val_bs=val_bs, shuffle=shuffle, drop_last=drop_last, device=device, seed=seed, **dl_kwargs
        )

    def weighted_dataloaders(self, wgts: Sequence[float] | Any, bs: int = 64, **kwargs: Any) -> TabularDataLoaders:
        """Loaders whose training loader draws rows in proportion to `wgts` (for imbalanced classes).

        Each epoch it draws as many rows as the training split has, with replacement (weight 0: never drawn);
        with `seed` (or after ``set_seed``) the draws repeat. The validation loader is unchanged.

        Args:
            wgts: non-negative weights, one per row of the DataFrame (the training rows' are used) or one per
                training row.
            kwargs: as for :meth:`dataloaders` (``val_bs``, ``device``, ``seed``, ``num_workers``, …).

        Raises:
            ConfigError: no weights (None), weights of another length, negative or not finite, or zero on every
                training row.
        """
        require_arg(wgts, "wgts", "one weight per row")
        return TabularDataLoaders.from_tensors_of(self, bs=bs, wgts=wgts, **kwargs)

    def partial_dataloaders(self, partial_n: int, bs: int = 64, **kwargs: Any) -> TabularDataLoaders:
        """Loaders whose training loader reads a fresh random choice of `partial_n` distinct training rows each
        epoch (a quick run on a large table); the validation loader is unchanged.

        When `partial_n` is larger than `bs`, an epoch reads whole batches only (unless ``drop_last=False``):
        ``partial_n=10, bs=4`` reads 8 rows.

        Raises:
            ConfigError: `partial_n` is not a positive int.
        """
        require_arg(partial_n, "partial_n", "a positive int (the training rows read each epoch)")
        return TabularDataLoaders.from_tensors_of(self, bs=bs, partial_n=partial_n, **kwargs)


class TabularSplit(tuple):
    """One split of a :class:`TabularPandas`: the ``(cats, conts, ys)`` tensors (``ys`` absent without a target),
    and the same processed values as pandas objects for models outside ember (a random forest, gradient boosting).

    Attributes:
        xs: a DataFrame of the processed inputs, one column per name of ``cat_names`` then ``cont_names``:
            category codes (``0`` is a missing or unseen value) and continuous values as the procs left them
            (filled, normalized), indexed by the rows' labels in the original table.
        y: the target as a Series (a DataFrame for several targets): class indices of ``processor.y_vocab`` or
            the values; None without a target.
    """

    processor: TabularProcessor
    index: pd.Index

    def __new__(
        cls, tensors: Sequence[torch.Tensor], processor: TabularProcessor | None = None, index: pd.Index | None = None
    ) -> TabularSplit:
        # processor/index have defaults so that copy and pickle, which call __new__ with the tensors alone, work
        split = super().__new__(cls, tensors)
        split.processor = processor
        split.index = pd.RangeIndex(len(tensors[0]) if tensors else 0) if index is None else index
        return split

    @property
    def xs(self) -> pd.DataFrame:
        proc = self.processor
        cats, conts = self[0].numpy(), self[1].numpy()  # (n, n_cat) int64, (n, n_cont) float32
        columns = {c: cats[:, i] for i, c in enumerate(proc.cat_names)}
        columns.update({c: conts[:, i] for i, c in enumerate(proc.cont_names)})
        return pd.DataFrame(columns, index=self.index)

    @property
    def y(self) -> pd.Series | pd.DataFrame | None:
        if len(self) < 3:
            return None
        names, ys = self.processor.y_names, self[2].numpy()  # (n,) or (n, n_targets)
        # A copy: without copy-on-write (pandas 2), editing the Series would change the training targets.
        if ys.ndim == 1:
            return pd.Series(ys, index=self.index, name=names[0], copy=True)
        return pd.DataFrame(ys, index=self.index, columns=names, copy=True)


@register_recipe()
class TabularDataLoaders(DataLoaders):
    """Training and validation loaders over a processed table; batches are ``(x_cat, x_cont, y)``.

    Build them with :meth:`from_df` or :meth:`from_csv`. Besides what every DataLoaders has, they keep the
    fitted processing (`processor`) for :meth:`test_dl`, `predict` and export, and the default loss.
    Export writes the processing and the batch size (:meth:`to_recipe`); loading gives inference loaders
    with no rows (:meth:`from_recipe`) that process new ones exactly as these do.
    """

    processor: TabularProcessor

    @classmethod
    def from_tensors_of(
        cls,
        to: TabularPandas,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        drop_last: bool | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        wgts: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        partial_n: int | None = None,
        **dl_kwargs: Any,
    ) -> TabularDataLoaders:
        """Loaders over the tensors of a :class:`TabularPandas`.

        Args:
            wgts: weighted sampling of the training rows (see :meth:`TabularPandas.weighted_dataloaders`).
            partial_n: each epoch a fresh random `partial_n` training rows (see
                :meth:`TabularPandas.partial_dataloaders`).
        """
        bs = check_bs(bs)
        val_bs = None if val_bs is None else check_bs(val_bs, "val_bs")
        check_random_loader_args(wgts, partial_n, shuffle, dl_kwargs)
        check_dl_kwargs(dl_kwargs, "TabularDataLoaders")
        proc = to.processor
        if not proc.y_names:
            raise ConfigError("Training loaders need a target: pass `y_names`.")
        device = default_device(device)
        n_train = len(to.train[0])
        # Dropping the last incomplete training batch keeps a batch of one away from BatchNorm.
        drop = (n_train > bs) if drop_last is None else drop_last
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        kinds = ("tabular_cat", "tabular_cont", proc.y_kind)
        train_t, valid_t = to.train, to.valid
        if device.type != "cpu" and not dl_kwargs.get("num_workers"):
            # Small enough to live on the accelerator: slicing there saves a host-to-device copy per batch.
            train_t = tuple(t.to(device) for t in train_t)
            valid_t = tuple(t.to(device) for t in valid_t)
        sampler = _random_sampler(to, n_train, bs, drop_last, gen, wgts, partial_n)
        train = SliceLoader(
            tensor_loader(train_t, bs, shuffle=shuffle, drop_last=drop, generator=gen, sampler=sampler, **dl_kwargs),
            device=device,
            n_inp=2,
            kinds=kinds,
            split=0,
        )
        valid = None
        if len(to.valid[0]):
            valid = SliceLoader(
                tensor_loader(valid_t, val_bs or 2 * bs, shuffle=False, **dl_kwargs),
                device=device,
                n_inp=2,
                kinds=kinds,
                split=1,
            )
        for dl in (train, valid):
            if dl is not None:
                dl.to_table = partial(decode_batch, proc)
        dls = cls(train, valid, device=device, n_inp=2)
        dls.processor = proc
        dls.tabular = to
        return dls

    @classmethod
    def from_df(
        cls,
        df: pd.DataFrame,
        y_names: str | Sequence[str] | None = None,
        cat_names: Sequence[str] | None = None,
        cont_names: Sequence[str] | None = None,
        procs: Sequence[TabularProc | type[TabularProc]] | None = None,
        valid_idx: Sequence[int] | None = None,
        splitter: Callable[[Sequence[int]], tuple[Sequence[int], Sequence[int]]] | None = None,
        valid_pct: float = 0.2,
        seed: int | None = None,
        y_block: Any = None,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        device: torch.device | str | None = None,
        path: str | os.PathLike = ".",
        **dl_kwargs: Any,
    ) -> TabularDataLoaders:
        """Process `df` once and build loaders over it.

        Args:
            y_names: the target column(s); a float target (or several) means regression, otherwise
                classification, unless `y_block` says otherwise.
            cat_names, cont_names: categorical and continuous input columns (see
                :func:`~ember.tabular.procs.cont_cat_split` to pick them).
            procs: e.g. ``[Categorify, FillMissing, Normalize]`` (classes or configured instances; instances are
                copied, so one list can serve several tables).
            valid_idx: positions of the validation rows, or a boolean mask with one value per row
                (``df.year == 2020``). Else `splitter(range(len(df)))` returns ``(train_idx, valid_idx)``; else a
                random `valid_pct` of the rows (with `seed`).
            y_block: ``"category"`` or ``"regression"`` (or CategoryBlock/RegressionBlock).
            bs: training batch size (validation uses `val_bs`, default ``2 * bs``).
            dl_kwargs: torch DataLoader options (``num_workers``, ``pin_memory``, …).

        Raises:
            DataError: a named column is missing, a target has missing values, a continuous column is
                not numeric, or a categorical column has too many distinct values.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(expected("a pandas DataFrame", "df", type(df).__name__))
        if y_names is None or (not isinstance(y_names, str) and len(y_names) == 0):
            raise ConfigError(expected("the target column name(s)", "y_names", y_names))
        n = len(df)
        if valid_idx is not None:
            v = as_positions(valid_idx, n, "valid_idx")
            if len(v) and (v.min() < 0 or v.max() >= n):
                splits = (np.arange(n), np.unique(v))  # TabularPandas names the problem
            else:
                is_valid = np.zeros(n, dtype=bool)
                is_valid[v] = True
                splits = _complement_split(is_valid)
        elif splitter is not None:
            splits = splitter(range(n))
        else:
            splits = random_split_idx(n, valid_pct, seed)
        to = TabularPandas(df, procs, cat_names, cont_names, y_names, y_block=y_block, splits=splits)
        dls = to.dataloaders(bs=bs, val_bs=val_bs, shuffle=shuffle, device=device, seed=seed, **dl_kwargs)
        dls.path = path
        return dls

    @classmethod
    def from_csv(cls, csv: str | os.PathLike, skipinitialspace: bool = True, **kwargs: Any) -> TabularDataLoaders:
        """Read a CSV file with pandas (``skipinitialspace`` by default) and call :meth:`from_df`.

        Keyword arguments of ``pandas.read_csv`` that :meth:`from_df` does not take (``sep``, ``header``,
        ``names``, ``dtype``, ``encoding``, …) go to ``read_csv``; the others to :meth:`from_df`.
        """
        read_kwargs = split_read_csv_kwargs(kwargs, cls.from_df)
        df = read_csv(csv, skipinitialspace=skipinitialspace, **read_kwargs)
        return cls.from_df(df, **kwargs)

    # ---------------------------------------------------------------------------------------------
    @property
    def loss_func(self) -> Any:
        from ember.losses import CrossEntropyLossFlat, MSELossFlat

        return CrossEntropyLossFlat() if self.processor.y_kind == "category" else MSELossFlat()

    @property
    def c(self) -> int:
        """Number of classes (classification) or of targets (regression)."""
        return self.processor.n_out

    @property
    def vocab(self) -> list[Any] | None:
        return self.processor.y_vocab

    @property
    def cat_names(self) -> list[str]:
        return self.processor.cat_names

    @property
    def cont_names(self) -> list[str]:
        return self.processor.cont_names

    @property
    def y_names(self) -> list[str]:
        return self.processor.y_names

    def test_dl(self, df: pd.DataFrame, with_labels: bool | None = None, bs: int | None = None) -> SliceLoader:
        """A loader over new rows, processed exactly as the training rows were (unseen categories -> ``#na#``,
        missing values filled with the training fill values). Labels are kept when `df` has the target."""
        return tabular_test_dl(self.processor, df, self.device, with_labels=with_labels, bs=bs or 2 * self.bs)

    def show_batch(self, max_n: int = 10, dl: DeviceLoader | None = None, print_out: bool = True) -> pd.DataFrame:
        """The first `max_n` rows of a batch as a readable table: category names and values on their original
        scale (the processing undone), then the target. Printed, and returned as a DataFrame."""
        batch = (dl or self.train).one_batch()
        df = decode_batch(self.processor, batch, max_n)
        if print_out:
            print_table(df)
        return df

    def items_table(self, samples: Sequence[tuple]) -> pd.DataFrame:
        """Rows as a loader gives them (``(x_cat, x_cont, ...)`` each) -> their values, the processing undone."""
        cats = torch.stack([s[0] for s in samples]) if samples else torch.zeros(0, len(self.cat_names))
        conts = torch.stack([s[1] for s in samples]) if samples else torch.zeros(0, len(self.cont_names))
        return self.processor.decode(cats.cpu(), conts.cpu())

    # -- export ---------------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        """What inference needs, as JSON values: the fitted processing and the batch size (no rows)."""
        return {"processor": dump(self.processor), "bs": self.bs}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> TabularDataLoaders:
        """Inference loaders: an empty training loader, no validation loader, and the exported processing, so
        that :meth:`test_dl`, ``predict`` and decoding work as they did before export."""
        if "processor" not in data:
            raise ExportError("The tabular data recipe has no `processor`; the file is incomplete.")
        proc = load(data["processor"])
        if not isinstance(proc, TabularProcessor):
            raise ExportError(expected("a TabularProcessor", "processor", type(proc).__name__))
        bs = int(data.get("bs") or 64)
        if proc.y_kind == "category":
            ys = torch.zeros(0, dtype=torch.int64)
        else:
            n_y = max(len(proc.y_names), 1)
            ys = torch.zeros(0, dtype=torch.float32) if n_y == 1 else torch.zeros((0, n_y), dtype=torch.float32)
        tensors = (
            torch.zeros((0, len(proc.cat_names)), dtype=torch.int64),  # (0, n_cat)
            torch.zeros((0, len(proc.cont_names)), dtype=torch.float32),  # (0, n_cont)
            ys,
        )
        kinds = ("tabular_cat", "tabular_cont", proc.y_kind)
        train = SliceLoader(tensor_loader(tensors, bs, shuffle=False), device="cpu", n_inp=2, kinds=kinds, split=0)
        train.to_table = partial(decode_batch, proc)
        dls = cls(train, None, device="cpu", n_inp=2)
        dls.processor = proc
        return dls


def _random_sampler(
    to: Any,
    n_train: int,
    bs: int,
    drop_last: bool | None,
    generator: torch.Generator | None,
    wgts: Any,
    partial_n: Any,
) -> BatchIndexSampler | None:
    """The weighted or partial training sampler of a table, or None for the usual shuffling (the arguments
    already passed :func:`~ember.data.loaders.check_random_loader_args`)."""
    if wgts is None and partial_n is None:
        return None
    if wgts is not None:
        source = None
        n_rows = getattr(to, "n_rows", None)
        if n_rows is not None:
            source = (n_rows, to.splits[0])
        weights = train_weights(wgts, n_train, source, nouns=("row of the DataFrame", "training row"))
        n = n_train
    else:
        n = check_partial_n(partial_n, n_train)
    # Dropping the last incomplete batch keeps a batch of one away from BatchNorm (as for the usual loader).
    drop = (n > bs) if drop_last is None else drop_last
    if wgts is not None:
        return WeightedBatchIndexSampler(weights, bs, drop_last=drop, generator=generator)
    return PartialBatchIndexSampler(n_train, n, bs, drop_last=drop, generator=generator)


def tabular_test_dl(
    processor: TabularProcessor,
    df: pd.DataFrame,
    device: torch.device | str | None,
    with_labels: bool | None = None,
    bs: int = 128,
) -> SliceLoader:
    """A validation-style loader (no shuffling) over `df` processed by `processor`."""
    cats, conts, ys = processor.process(df, with_y=with_labels)
    tensors = (cats, conts) if ys is None else (cats, conts, ys)
    kinds = ("tabular_cat", "tabular_cont", processor.y_kind)[: len(tensors)]
    dl = SliceLoader(tensor_loader(tensors, check_bs(bs), shuffle=False), device=device, n_inp=2, kinds=kinds, split=1)
    dl.to_table = partial(decode_batch, processor)
    return dl


def decode_batch(processor: TabularProcessor, batch: Sequence[torch.Tensor], max_n: int | None = None) -> pd.DataFrame:
    """A batch ``(x_cat, x_cont[, y])`` back to a readable DataFrame."""
    cats, conts = batch[0][:max_n].cpu(), batch[1][:max_n].cpu()
    df = processor.decode(cats, conts)
    if len(batch) > 2:
        for k, v in processor.decode_y(batch[2][:max_n].cpu()).items():
            df[k] = v
    return df
