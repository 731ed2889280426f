"""`DataLoaders`: a training and a validation loader that deliver batches on the right device.

A batch is a tuple of tensors. The first `n_inp` elements are the model's inputs, the rest its
targets. Each loader wraps a plain :class:`torch.utils.data.DataLoader` (workers, pinned memory and
samplers behave exactly as PyTorch users expect) and adds two things: the move to the device and
the batch transforms that run there (augmentation, normalization), in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from ember.core.device import default_device, to_device
from ember.core.errors import ConfigError, DataError, expected
from ember.data.transform import Transform, as_transform

__all__ = ["DeviceLoader", "DataLoaders"]

BatchTfm = Transform | Callable[[tuple], tuple]


def _as_tuple(batch: Any) -> tuple:
    if isinstance(batch, tuple):
        return batch
    if isinstance(batch, list):
        return tuple(batch)
    if isinstance(batch, torch.Tensor):
        return (batch,)
    raise DataError(
        f"Expected a batch to be a tuple or list of tensors; received a {type(batch).__name__}. "
        "Make the dataset return (input, target) tuples."
    )


class DeviceLoader:
    """A torch DataLoader whose batches arrive as tuples on `device`, with batch transforms applied.

    Args:
        dl: the torch DataLoader.
        device: where batches go; ``None`` leaves them where the DataLoader put them.
        batch_tfms: :class:`~ember.data.transform.Transform` objects (or plain callables
            ``batch -> batch``) run, in order, on the device after the move.
        n_inp: how many leading batch elements are inputs.
        kinds: what each batch element is (``("image", "category")``); transforms act by kind.
        split: 0 for a training loader (augmentations run), 1 for validation/inference.
    """

    def __init__(
        self,
        dl: DataLoader,
        device: torch.device | str | None = None,
        batch_tfms: Sequence[BatchTfm] | None = None,
        n_inp: int = 1,
        kinds: Sequence[str] | None = None,
        split: int = 0,
    ) -> None:
        if not isinstance(dl, DataLoader):
            raise ConfigError(expected("a torch.utils.data.DataLoader", "dl", type(dl).__name__))
        self.dl = dl
        self.device = torch.device(device) if device is not None else None
        self.batch_tfms = sorted((as_transform(t) for t in batch_tfms or []), key=lambda t: t.order)
        self.n_inp = n_inp
        self.kinds = tuple(kinds) if kinds is not None else None
        self.split = split

    def __iter__(self) -> Iterator[tuple]:
        device, tfms, split = self.device, self.batch_tfms, self.split
        kinds = self.kinds
        for batch in self.dl:
            batch = to_device(_as_tuple(batch), device)
            if tfms:
                k = kinds if kinds is not None else ("any",) * len(batch)
                for tfm in tfms:
                    batch = tfm(batch, k, split)
            yield batch

    def __len__(self) -> int:
        return len(self.dl)

    @property
    def dataset(self) -> Any:
        return self.dl.dataset

    @property
    def bs(self) -> int | None:
        return self.dl.batch_size

    @property
    def drop_last(self) -> bool:
        return self.dl.drop_last

    def one_batch(self) -> tuple:
        """The first batch (a tuple of tensors on the device). Raises DataError on an empty loader."""
        for batch in self:
            return batch
        raise DataError("This loader yields no batch: its dataset is empty (or smaller than `bs` with drop_last).")

    def to(self, device: torch.device | str | None) -> DeviceLoader:
        """Send later batches to `device` (in place); returns self."""
        self.device = torch.device(device) if device is not None else None
        return self

    def new(self, dl: DataLoader | None = None, **dl_kwargs: Any) -> DeviceLoader:
        """A copy with another torch DataLoader, or this one rebuilt with some arguments changed (e.g. ``bs=``)."""
        if dl is None:
            dl = _rebuild_dl(self.dl, **dl_kwargs)
        return type(self)(
            dl, device=self.device, batch_tfms=self.batch_tfms, n_inp=self.n_inp, kinds=self.kinds, split=self.split
        )


def _rebuild_dl(dl: DataLoader, bs: int | None = None, shuffle: bool | None = None, **kwargs: Any) -> DataLoader:
    """Rebuild a torch DataLoader with the same settings but a few changed."""
    if shuffle is None:
        shuffle = isinstance(dl.sampler, torch.utils.data.RandomSampler)
    settings: dict[str, Any] = {
        "batch_size": dl.batch_size if bs is None else bs,
        "shuffle": shuffle,
        "num_workers": dl.num_workers,
        "collate_fn": dl.collate_fn,
        "pin_memory": dl.pin_memory,
        "drop_last": dl.drop_last,
        "worker_init_fn": dl.worker_init_fn,
        "generator": dl.generator,
    }
    if dl.num_workers > 0:
        settings["persistent_workers"] = dl.persistent_workers
        settings["prefetch_factor"] = dl.prefetch_factor
    settings.update(kwargs)
    return DataLoader(dl.dataset, **settings)


class DataLoaders:
    """A training and a validation loader, and the device their batches go to.

    Args:
        train: the training loader (a torch DataLoader or a :class:`DeviceLoader`).
        valid: the validation loader.
        device: where batches go; ``None`` picks CUDA when available, else the CPU.
        n_inp: how many leading batch elements are inputs (the rest are targets).

    >>> dls = DataLoaders(train_dl, valid_dl)          # doctest: +SKIP
    >>> xb, yb = dls.one_batch()                       # doctest: +SKIP
    """

    def __init__(
        self,
        train: DataLoader | DeviceLoader,
        valid: DataLoader | DeviceLoader | None = None,
        device: torch.device | str | None = None,
        n_inp: int = 1,
    ) -> None:
        if n_inp < 1:
            raise ConfigError(expected("a positive int", "n_inp", n_inp))
        self.device = default_device(device)
        self.n_inp = n_inp
        self.train = self._wrap(train, "train")
        self.valid = self._wrap(valid, "valid") if valid is not None else None

    def _wrap(self, dl: DataLoader | DeviceLoader, name: str) -> DeviceLoader:
        if isinstance(dl, DeviceLoader):
            dl.to(self.device)
            dl.n_inp = self.n_inp
            return dl
        if isinstance(dl, DataLoader):
            return DeviceLoader(dl, device=self.device, n_inp=self.n_inp, split=0 if name == "train" else 1)
        raise ConfigError(expected("a torch DataLoader or an ember DeviceLoader", name, type(dl).__name__))

    @classmethod
    def from_tensors(
        cls,
        train: Sequence[torch.Tensor],
        valid: Sequence[torch.Tensor] | None = None,
        bs: int = 64,
        shuffle: bool = True,
        device: torch.device | str | None = None,
        n_inp: int = 1,
        **dl_kwargs: Any,
    ) -> DataLoaders:
        """Loaders over in-memory tensors: ``train=(x, y)``, ``valid=(x, y)``.

        The validation loader uses twice the batch size (no gradients are kept) and no shuffling.
        """
        for name, ts in (("train", train), ("valid", valid)):
            if ts is None:
                continue
            n = {int(t.shape[0]) for t in ts}
            if len(n) != 1:
                raise DataError(f"Expected the `{name}` tensors to have the same length; received lengths {sorted(n)}.")
        train_dl = DataLoader(TensorDataset(*train), batch_size=bs, shuffle=shuffle, **dl_kwargs)
        valid_dl = None
        if valid is not None:
            valid_dl = DataLoader(TensorDataset(*valid), batch_size=bs * 2, shuffle=False, **dl_kwargs)
        return cls(train_dl, valid_dl, device=device, n_inp=n_inp)

    @property
    def loaders(self) -> list[DeviceLoader]:
        return [dl for dl in (self.train, self.valid) if dl is not None]

    def __getitem__(self, i: int) -> DeviceLoader:
        return self.loaders[i]

    def __len__(self) -> int:
        return len(self.loaders)

    @property
    def train_ds(self) -> Any:
        return self.train.dataset

    @property
    def valid_ds(self) -> Any:
        return self.valid.dataset if self.valid is not None else None

    @property
    def bs(self) -> int | None:
        return self.train.bs

    def one_batch(self) -> tuple:
        """The first training batch, on the device, with batch transforms applied."""
        return self.train.one_batch()

    def to(self, device: torch.device | str) -> DataLoaders:
        """Send later batches of every loader to `device` (in place); returns self."""
        self.device = torch.device(device)
        for dl in self.loaders:
            dl.to(self.device)
        return self

    def new(self, **dl_kwargs: Any) -> DataLoaders:
        """A copy whose loaders are rebuilt with some torch DataLoader arguments changed (e.g. ``bs=``)."""
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.train = self.train.new(**dl_kwargs)
        out.valid = self.valid.new(**dl_kwargs) if self.valid is not None else None
        return out

    def __repr__(self) -> str:
        n_valid = len(self.valid) if self.valid is not None else 0
        return (
            f"{type(self).__name__}(train: {len(self.train)} batches, valid: {n_valid} batches, device={self.device})"
        )
