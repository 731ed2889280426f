"""`DeviceLoader`: a torch DataLoader whose batches arrive as tuples on the device, with batch transforms applied.

A batch is a tuple of tensors. The first `n_inp` elements are the model's inputs, the rest its targets. The loader
moves each batch to the device and runs the batch transforms there (augmentation, normalization), in that order;
when it knows its blocks it also decodes and shows batches. :func:`setup_batch_tfms` readies the batch transforms
that learn from data (``Normalize()``) from a training batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from ember.core.device import to_cpu, to_device
from ember.core.errors import ConfigError, DataError, expected
from ember.data.torch_loader import _rebuild_dl
from ember.data.transform import Transform, as_transform

__all__ = ["DeviceLoader", "setup_batch_tfms"]

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
        blocks: the block of each batch element (needed to decode and show batches).
    """

    def __init__(
        self,
        dl: DataLoader,
        device: torch.device | str | None = None,
        batch_tfms: Sequence[BatchTfm] | None = None,
        n_inp: int = 1,
        kinds: Sequence[str] | None = None,
        split: int = 0,
        blocks: Sequence[Any] | None = None,
    ) -> None:
        if not isinstance(dl, DataLoader):
            raise ConfigError(expected("a torch.utils.data.DataLoader", "dl", type(dl).__name__))
        self.dl = dl
        self.device = torch.device(device) if device is not None else None
        self.batch_tfms = sorted((as_transform(t) for t in batch_tfms or []), key=lambda t: t.order)
        self.n_inp = n_inp
        self.blocks = list(blocks) if blocks is not None else None
        if kinds is None and self.blocks is not None:
            kinds = [b.kind for b in self.blocks]
        self.kinds = tuple(kinds) if kinds is not None else None
        self.split = split
        # The training loader that sets up stateful batch transforms (Normalize() statistics) for this one.
        self.setup_from: DeviceLoader | None = None

    def setup_tfms(self) -> None:
        """Make the batch transforms that learn from data (``Normalize()``) ready before a batch goes through them.

        A training loader's first batch sets them itself; any other loader (validation, test, TTA) asks its
        training loader (``setup_from``) for one batch first, so the statistics always come from training data.
        """
        setup_batch_tfms(self.batch_tfms, self.setup_from if self.split != 0 else None)

    def __iter__(self) -> Iterator[tuple]:
        device, tfms, split = self.device, self.batch_tfms, self.split
        kinds = self.kinds
        if split != 0 and tfms:
            self.setup_tfms()
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
        out = type(self)(
            dl,
            device=self.device,
            batch_tfms=self.batch_tfms,
            n_inp=self.n_inp,
            kinds=self.kinds,
            split=self.split,
            blocks=self.blocks,
        )
        out.setup_from = self.setup_from
        return out

    def decode(self, batch: Sequence[torch.Tensor]) -> tuple:
        """Undo the batch transforms (their ``decode``, in reverse order) and move the batch to the CPU."""
        batch = _as_tuple(batch)
        kinds = self.kinds if self.kinds is not None else ("any",) * len(batch)
        kinds = kinds[: len(batch)]
        for tfm in reversed(self.batch_tfms):
            batch = tfm.decode(batch, kinds)
        return to_cpu(batch)

    def decode_batch(self, batch: Sequence[torch.Tensor], max_n: int = 9) -> list[tuple]:
        """The first `max_n` samples of a batch as human values: one tuple per sample, one value per block."""
        if self.blocks is None:
            raise DataError(
                "This loader does not know its blocks, so it cannot decode batches. "
                "Build it with DataBlock.dataloaders or DataLoaders.from_dsets."
            )
        batch = self.decode(batch)
        n = min(max_n, len(batch[0]))
        return [tuple(block.decode(x[i]) for block, x in zip(self.blocks, batch)) for i in range(n)]

    def _one_item_batch(self, n: int) -> tuple:
        """The first item of the dataset `n` times, each drawn again (random item transforms) and then augmented
        as one batch on the device."""
        ds = self.dataset
        collate = self.dl.collate_fn
        if len(ds) == 0:
            raise DataError("This loader has no item to show: its dataset is empty.")
        # Statistics (Normalize()) come from a real batch of the training loader, never from copies of one item.
        setup_batch_tfms(self.batch_tfms, self if self.split == 0 else self.setup_from)
        batch = _as_tuple(collate([ds[0] for _ in range(n)]))
        batch = to_device(batch, self.device)
        kinds = self.kinds if self.kinds is not None else ("any",) * len(batch)
        for tfm in self.batch_tfms:
            batch = tfm(batch, kinds, self.split)
        return batch

    def show_batch(
        self,
        batch: Sequence[torch.Tensor] | None = None,
        max_n: int = 9,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
        fname: str | os.PathLike | None = None,
        unique: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Draw the first `max_n` samples of `batch` (default: the first batch); returns the matplotlib Figure.

        Args:
            nrows, ncols: the grid; when both are given, at most ``nrows * ncols`` samples are shown.
            unique: draw the first item `max_n` times, each time through the random transforms (how the
                augmentation varies one image).
            kwargs: passed to the input blocks' ``show`` (matplotlib's ``imshow`` for images); an unknown one
                is a ConfigError.
        """
        from ember.data.show import check_show_kwargs, show_batch

        if nrows is not None and ncols is not None:
            max_n = min(max_n, nrows * ncols)
        check_show_kwargs(
            "show_batch",
            kwargs,
            self.blocks or [],
            self.n_inp,
            ("batch", "max_n", "nrows", "ncols", "unique", "figsize", "fname"),
        )
        if unique and batch is None:
            batch = self._one_item_batch(max_n)
        samples = self.decode_batch(batch if batch is not None else self.one_batch(), max_n=max_n)
        return show_batch(
            samples, self.blocks, n_inp=self.n_inp, nrows=nrows, ncols=ncols, figsize=figsize, fname=fname, **kwargs
        )


def _needs_setup(tfms: Sequence[Any]) -> bool:
    return any(getattr(t, "ready", True) is False for t in tfms)


def setup_batch_tfms(tfms: Sequence[Any], train: DeviceLoader | None) -> None:
    """Set up the batch transforms in `tfms` that learn from data (``Normalize()``) from one batch of `train`.

    Nothing to do when they are ready (or `train` is None: a training loader sets them with its own first batch).
    When `train` has no data (a learner loaded from a file), the transforms themselves raise a clear error later.
    """
    if train is None or not _needs_setup(tfms):
        return
    try:
        has_data = len(train) > 0
    except TypeError:
        has_data = True
    if has_data:
        train.one_batch()
