"""Slicing loaders: batches that are slices of equally long tensors, one index op per tensor per batch.

The loaders are plain torch DataLoaders with ``batch_size=None`` over a sampler that yields whole index
batches (:class:`BatchIndexSampler` and its weighted and partial variants), and a dataset
(:class:`TensorBatches`) whose ``__getitem__`` takes such a batch and slices every tensor at once: no per-row
work, no collate, and workers, pinned memory and distributed samplers still behave as PyTorch users expect.
:class:`SliceLoader` wraps one for the device, batch transforms and ``show_batch``; the tabular and ratings
loaders are built from them.
"""

from __future__ import annotations

import copy
import inspect
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ember.core.errors import ConfigError, DataError, expected
from ember.data.loaders import DeviceLoader, weighted_draws
from ember.tabular.table_io import print_table

__all__ = [
    "TensorBatches",
    "BatchIndexSampler",
    "WeightedBatchIndexSampler",
    "PartialBatchIndexSampler",
    "SliceLoader",
    "tensor_loader",
    "check_bs",
    "check_dl_kwargs",
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
