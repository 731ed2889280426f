"""Tabular data: a table processed once into tensors, and loaders whose batches are slices of them.

A batch is ``(x_cat, x_cont, y)``: int64 codes ``(B, n_cat)``, float32 values ``(B, n_cont)`` and the
target (class indices ``(B,)`` or values ``(B,)`` / ``(B, n_targets)``). The loaders are plain torch
DataLoaders with ``batch_size=None`` over a sampler that yields whole index batches, and a dataset whose
``__getitem__`` takes such a batch and slices every tensor at once: no per-row work, no collate, and
workers, pinned memory and distributed samplers still behave as PyTorch users expect.

>>> dls = TabularDataLoaders.from_df(df, y_names="species", cat_names=["island", "sex"],
...     cont_names=["bill_length_mm"], procs=[Categorify, FillMissing, Normalize])  # doctest: +SKIP
>>> x_cat, x_cont, y = dls.one_batch()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import inspect
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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
    weighted_draws,
)
from ember.tabular.procs import TabularProc, TabularProcessor, _check_frame

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


class TensorBatches(Dataset):
    """A dataset of equally long tensors indexed by a whole batch of positions at once.

    ``ds[idx]`` with a 1-d index tensor (or list) returns ``tuple(t[idx] for t in tensors)``; an int
    returns one row of each.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        n = {int(t.shape[0]) for t in tensors}
        if len(n) > 1:
            raise DataError(f"Expected tensors of one length; received lengths {sorted(n)}.")
        self.tensors = tuple(tensors)

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0]) if self.tensors else 0

    def __getitem__(self, idx: Any) -> tuple:
        if not isinstance(idx, (int, torch.Tensor)):
            idx = torch.as_tensor(idx, dtype=torch.int64)
        if isinstance(idx, torch.Tensor) and idx.device != self.tensors[0].device:
            idx = idx.to(self.tensors[0].device, non_blocking=True)
        return tuple(t[idx] for t in self.tensors)

    def to(self, device: torch.device | str) -> TensorBatches:
        """Move the tensors to `device` (in place); returns self."""
        self.tensors = tuple(t.to(device) for t in self.tensors)
        return self


def check_bs(bs: Any, name: str = "bs") -> int:
    """`bs` as an int (numpy integers are fine); ConfigError unless it is a positive integer."""
    if isinstance(bs, bool) or not isinstance(bs, numbers.Integral) or bs < 1:
        raise ConfigError(expected("a positive int", name, bs))
    return int(bs)


# What torch's DataLoader takes besides what the slicing loaders set themselves.
_DL_ARGS = frozenset(inspect.signature(DataLoader.__init__).parameters) - {
    "self",
    "dataset",
    "batch_size",
    "shuffle",
    "sampler",
    "batch_sampler",
    "collate_fn",
    "drop_last",
    "generator",
}


def check_dl_kwargs(dl_kwargs: dict[str, Any], where: str) -> None:
    """ConfigError naming the keyword arguments that neither `where` nor torch's DataLoader knows."""
    bad = sorted(set(dl_kwargs) - _DL_ARGS)
    if bad:
        raise ConfigError(
            f"{where} got unknown keyword argument(s) {bad}: besides its own arguments it only passes torch "
            f"DataLoader options on ({', '.join(sorted(_DL_ARGS))}). Check the spelling."
        )


def split_read_csv_kwargs(kwargs: dict[str, Any], own: Callable[..., Any]) -> dict[str, Any]:
    """Take out of `kwargs` (in place) the options of pandas.read_csv that `own` (a from_df) does not take."""
    csv_args = set(inspect.signature(pd.read_csv).parameters) - set(inspect.signature(own).parameters)
    return {k: kwargs.pop(k) for k in list(kwargs) if k in csv_args}


def read_csv(csv: str | os.PathLike, **read_kwargs: Any) -> pd.DataFrame:
    """pandas.read_csv with a DataError naming the file when it is missing or cannot be read."""
    if not os.path.isfile(csv):
        raise DataError(f"No CSV file at {os.fspath(csv)!r}.")
    try:
        return pd.read_csv(csv, **read_kwargs)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise DataError(f"Cannot read the CSV file {os.fspath(csv)!r}: {e}") from e


def as_positions(idx: Any, n: int, name: str) -> np.ndarray:
    """Row positions from positions or a boolean mask of the `n` rows (``df.year == 2020``): int64, 1-d.

    Raises:
        DataError: a boolean mask of another length, or values that are not integers.
    """
    arr = np.asarray(idx.to_numpy() if isinstance(idx, (pd.Series, pd.Index)) else idx)
    if arr.dtype == bool:
        if arr.ndim != 1 or len(arr) != n:
            raise DataError(
                f"`{name}` is a boolean mask of {arr.size} values, but the DataFrame has {n} rows: a mask needs one "
                "value per row (or give row positions, 0 to len(df) - 1)."
            )
        return np.flatnonzero(arr).astype(np.int64)
    arr = arr.reshape(-1)
    if len(arr) == 0:
        return arr.astype(np.int64)
    whole = arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr) & (arr == np.round(arr))))
    )
    if not whole:
        bad = next((v for v in arr.tolist() if not isinstance(v, numbers.Integral)), arr[0])
        raise DataError(
            f"`{name}` holds {bad!r}: expected row positions (integers, 0 to len(df) - 1) or a boolean mask with one "
            "value per row."
        )
    return arr.astype(np.int64)


class BatchIndexSampler(Sampler):
    """Yield batches of positions as int64 tensors: slices of one permutation per epoch (or of ``arange``).

    Args:
        n: number of items.
        bs: batch size.
        shuffle: a new random permutation each epoch.
        drop_last: skip the last, incomplete batch.
        generator: the torch Generator for the permutation (seeded loaders repeat their order).
    """

    def __init__(
        self, n: int, bs: int, shuffle: bool = True, drop_last: bool = False, generator: torch.Generator | None = None
    ) -> None:
        bs = check_bs(bs)
        self.n, self.bs, self.shuffle, self.drop_last, self.generator = n, bs, shuffle, drop_last, generator

    def __iter__(self) -> Iterator[torch.Tensor]:
        stop = self.n - self.n % self.bs if self.drop_last else self.n
        if stop <= 0:
            return  # no rows (an inference-only loader), or fewer than one batch with drop_last: no batch at all
        order = torch.randperm(self.n, generator=self.generator) if self.shuffle else torch.arange(self.n)
        yield from order[:stop].split(self.bs)

    def __len__(self) -> int:
        return self.n // self.bs if self.drop_last else -(-self.n // self.bs)


class WeightedBatchIndexSampler(BatchIndexSampler):
    """Batches of positions drawn with replacement in proportion to `weights`: ``len(weights)`` of them an epoch.

    Args:
        weights: one non-negative weight per item (a 1-d tensor; they need not sum to 1).
        bs: batch size.
        drop_last: skip the last, incomplete batch.
        generator: the torch Generator for the draws (``None``: torch's global one).
    """

    def __init__(
        self, weights: torch.Tensor, bs: int, drop_last: bool = False, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(len(weights), bs, shuffle=True, drop_last=drop_last, generator=generator)
        self.weights = torch.as_tensor(weights, dtype=torch.float64)

    def __iter__(self) -> Iterator[torch.Tensor]:
        stop = self.n - self.n % self.bs if self.drop_last else self.n
        if stop <= 0:
            return
        order = weighted_draws(self.weights, self.n, self.generator)  # (n,)
        yield from order[:stop].split(self.bs)


class PartialBatchIndexSampler(BatchIndexSampler):
    """Batches of `n` distinct positions out of `n_items`, a fresh random choice every epoch.

    ``n`` (what the batches hold in all) is the count a distributed loader divides, as for the other samplers.
    """

    def __init__(
        self, n_items: int, n: int, bs: int, drop_last: bool = False, generator: torch.Generator | None = None
    ) -> None:
        super().__init__(min(n, n_items), bs, shuffle=True, drop_last=drop_last, generator=generator)
        self.n_items = n_items

    def __iter__(self) -> Iterator[torch.Tensor]:
        stop = self.n - self.n % self.bs if self.drop_last else self.n
        if stop <= 0:
            return
        order = torch.randperm(self.n_items, generator=self.generator)[: self.n]  # (n,)
        yield from order[:stop].split(self.bs)


def _identity(batch: Any) -> Any:
    # Module level (not a lambda) so that loaders with workers can pickle it.
    return batch


def tensor_loader(
    tensors: Sequence[torch.Tensor],
    bs: int = 64,
    shuffle: bool = False,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
    sampler: BatchIndexSampler | None = None,
    **dl_kwargs: Any,
) -> DataLoader:
    """A torch DataLoader whose batches are slices of `tensors` (one index op per tensor per batch).

    Args:
        sampler: the batches of positions (a weighted or partial sampler); default: a :class:`BatchIndexSampler`
            over every row built from `bs`, `shuffle`, `drop_last` and `generator`.
    """
    ds = TensorBatches(*tensors)
    if sampler is None:
        sampler = BatchIndexSampler(len(ds), bs, shuffle=shuffle, drop_last=drop_last, generator=generator)
    return DataLoader(ds, batch_size=None, sampler=sampler, collate_fn=_identity, **dl_kwargs)


class SliceLoader(DeviceLoader):
    """A :class:`DeviceLoader` over a :func:`tensor_loader`: it knows its batch size, and `new`/`to` keep
    the slicing design (``to`` also moves the preprocessed tensors when they live on an accelerator).

    Attributes:
        to_table: ``(batch, max_n) -> DataFrame``, the decoding of a batch as a readable table (set by the tabular
            and ratings loaders), which :meth:`show_batch` prints.
    """

    to_table: Callable[[Sequence[torch.Tensor], int], pd.DataFrame] | None = None

    def show_batch(
        self, batch: Sequence[torch.Tensor] | None = None, max_n: int = 10, print_out: bool = True, **kwargs: Any
    ) -> Any:
        """The first `max_n` rows of `batch` (default: the first batch) as a readable table, printed and returned."""
        if self.to_table is None:
            return super().show_batch(batch, max_n=max_n, **kwargs)
        df = self.to_table(batch if batch is not None else self.one_batch(), max_n)
        if print_out:
            print_table(df)
        return df

    def __iter__(self) -> Iterator[tuple]:
        dl = self.dl
        if dl.num_workers > 0 or dl.pin_memory:
            yield from super().__iter__()  # torch's own machinery: worker processes, pinning
            return
        # In one process a DataLoader with batch_size=None does exactly `dataset[idx] for idx in sampler`;
        # doing it here skips its per-batch bookkeeping (about 100 us a batch, 10% of a small model's step).
        tensors, device, tfms, kinds, split = dl.dataset.tensors, self.device, self.batch_tfms, self.kinds, self.split
        src = tensors[0].device if tensors else None
        move = device is not None and any(t.device != device for t in tensors)
        for idx in dl.sampler:
            if idx.device != src:
                idx = idx.to(src, non_blocking=True)
            batch = tuple(t[idx] for t in tensors)
            if move:
                batch = tuple(t.to(device, non_blocking=True) for t in batch)
            if tfms:
                k = kinds if kinds is not None else ("any",) * len(batch)
                for tfm in tfms:
                    batch = tfm(batch, k, split)
            yield batch

    @property
    def bs(self) -> int:
        return self.dl.sampler.bs

    @property
    def drop_last(self) -> bool:
        return self.dl.sampler.drop_last

    @property
    def shuffle(self) -> bool:
        return self.dl.sampler.shuffle

    def to(self, device: torch.device | str | None) -> SliceLoader:
        super().to(device)
        ds = self.dl.dataset
        if device is not None and ds.tensors and ds.tensors[0].device.type != "cpu":
            ds.to(device)
        return self

    def new(self, dl: DataLoader | None = None, **kwargs: Any) -> SliceLoader:
        """A copy over the same tensors with some settings changed (``bs``, ``shuffle``, ``drop_last``)."""
        if dl is None:
            s = self.dl.sampler
            bs, shuffle = kwargs.pop("bs", s.bs), kwargs.pop("shuffle", None)
            drop_last, generator = kwargs.pop("drop_last", s.drop_last), kwargs.pop("generator", None)
            if generator is None and isinstance(s.generator, torch.Generator):
                # The copy draws from a generator of its own, starting where the original's is now.
                generator = torch.Generator(s.generator.device).set_state(s.generator.get_state())
            sampler = None
            if shuffle is None and type(s) is not BatchIndexSampler:
                # A weighted or partial loader stays one, with the new batch size and generator.
                sampler = copy.copy(s)
                sampler.bs, sampler.drop_last, sampler.generator = check_bs(bs), drop_last, generator
            dl = tensor_loader(
                self.dl.dataset.tensors,
                bs=bs,
                shuffle=s.shuffle if shuffle is None else shuffle,
                drop_last=drop_last,
                generator=generator,
                sampler=sampler,
                num_workers=kwargs.pop("num_workers", self.dl.num_workers),
                pin_memory=kwargs.pop("pin_memory", self.dl.pin_memory),
                **kwargs,
            )
        out = type(self)(
            dl, device=self.device, batch_tfms=self.batch_tfms, n_inp=self.n_inp, kinds=self.kinds, split=self.split
        )
        out.to_table = self.to_table
        return out


def random_split_idx(n: int, valid_pct: float = 0.2, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(train_idx, valid_idx)`` of a random split of `n` items (`seed` makes it repeatable)."""
    if not 0.0 <= valid_pct < 1.0:
        raise ConfigError(expected("a fraction in [0, 1)", "valid_pct", valid_pct))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_valid = int(round(n * valid_pct))
    is_valid = np.zeros(n, dtype=bool)
    is_valid[perm[:n_valid]] = True
    return _complement_split(is_valid)


def _complement_split(is_valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted positions ``(train_idx, valid_idx)`` from a validation mask (linear time, unlike sorting or setdiff)."""
    return np.flatnonzero(~is_valid).astype(np.int64), np.flatnonzero(is_valid).astype(np.int64)


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


def print_table(df: pd.DataFrame, title: str | None = None) -> None:
    """Print a DataFrame as a readable table (rich when it is installed, pandas' text otherwise)."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but printing must never fail for lack of it
        print(df.to_string(index=False))
        return
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))  # piped output: do not squeeze the columns to 80
    table = Table(title=title)
    for c in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
        table.add_column(str(c), justify="right" if numeric else "left")
    for row in df.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    console.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}"
    return str(v)
