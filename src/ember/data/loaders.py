"""`DataLoaders`: a training and a validation loader that deliver batches on the right device.

A batch is a tuple of tensors. The first `n_inp` elements are the model's inputs, the rest its
targets. Each loader wraps a plain :class:`torch.utils.data.DataLoader` (workers, pinned memory and
samplers behave exactly as PyTorch users expect) and adds two things: the move to the device and
the batch transforms that run there (augmentation, normalization), in that order.

Loaders built from :class:`~ember.data.datasets.Datasets` (by ``DataBlock.dataloaders`` or
:meth:`DataLoaders.from_dsets`) also know their blocks, so they can decode and show batches
(:meth:`DataLoaders.show_batch`), suggest a loss (``dls.loss_func``) and the number of outputs
(``dls.c``), and build loaders over new items (:meth:`DataLoaders.test_dl`).

Each loader is a :class:`~ember.data.device_loader.DeviceLoader`; the torch DataLoaders are built by
:mod:`ember.data.torch_loader`, and the samplers of weighted and partial training loaders are in
:mod:`ember.data.sampling`. Every name stays importable from here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ember.core import recipe
from ember.core.device import default_device
from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.data.device_loader import (
    BatchTfm,
    DeviceLoader,
    _as_tuple,  # noqa: F401  (kept importable from here)
    _needs_setup,
    setup_batch_tfms,
)
from ember.data.sampling import (
    _random_sampler_of,
    check_partial_n,
    check_random_loader_args,
    require_arg,
    train_weights,
    weighted_draws,
)
from ember.data.torch_loader import loading_settings, make_loader
from ember.data.transform import Transform

__all__ = [
    "DeviceLoader",
    "DataLoaders",
    "make_loader",
    "setup_batch_tfms",
    "loading_settings",
    "train_weights",
    "check_partial_n",
    "weighted_draws",
    "check_random_loader_args",
    "require_arg",
]


def _inference_tfms(tfms: Sequence[Transform], what: str) -> list[dict[str, Any]]:
    """Recipes of the transforms that run at inference; training-only ones (augmentation) are left out."""
    out = []
    for t in tfms:
        if t.split_idx == 0:
            continue
        if not recipe.is_registered(t):
            raise ExportError(
                f"The {what} transform {t!r} runs at inference but cannot be written to a file (it is not an "
                "ember transform with a recipe). Use ember's transforms, or make it training-only (split_idx=0)."
            )
        out.append(recipe.dump(t))
    return out


class MissingGetter:
    """Stands for a labeller that could not be written to the export file (a lambda, a function of yours)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, item: Any) -> Any:
        raise DataError(f"The function {self.name} that read this value was not exported.")

    def __repr__(self) -> str:
        return f"MissingGetter({self.name!r})"


def _label_getters(dsets: Any) -> list[dict[str, Any]]:
    """Every getter of `dsets` (inputs and targets) as a recipe, so that a loaded learner can read labelled items
    (``test_dl(items, with_labels=True)``); one that cannot be written is marked missing, with its name."""
    from ember.data.items import getter_to_recipe

    kept = getattr(dsets, "label_getters", None)
    out = []
    for j, g in enumerate(dsets.getters):
        if kept is not None:  # loaders loaded from a file: their labellers as they were read
            g = kept[j]
        if isinstance(g, MissingGetter):
            out.append({"type": "missing", "name": g.name})
            continue
        rec = getter_to_recipe(g)
        try:  # a labeller holding something JSON cannot write (bytes, an object) is marked missing, not fatal
            json.dumps(rec)
        except (TypeError, ValueError):
            rec = None
        out.append(rec if rec is not None else {"type": "missing", "name": getattr(g, "__name__", None) or repr(g)})
    return out


@recipe.register_recipe()
class DataLoaders:
    """A training and a validation loader, and the device their batches go to.

    Args:
        train: the training loader (a torch DataLoader or a :class:`DeviceLoader`).
        valid: the validation loader.
        device: where batches go; ``None`` picks CUDA when available, else the CPU.
        n_inp: how many leading batch elements are inputs (the rest are targets).

    >>> dls = DataLoaders(train_dl, valid_dl)          # doctest: +SKIP
    >>> xb, yb = dls.one_batch()                       # doctest: +SKIP

    Built from Datasets (``DataBlock(...).dataloaders(source)``), they also have ``blocks``,
    ``kinds``, ``vocab``, ``c``, ``loss_func``, ``dsets``, and can decode, show and make test loaders.
    """

    blocks: list[Any] | None = None
    dsets: Any = None

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
        if self.valid is not None:
            self.valid.setup_from = self.train

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

    @classmethod
    def from_dsets(
        cls,
        dsets: Any,
        bs: int = 64,
        shuffle: bool = True,
        drop_last: bool = True,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        batch_tfms: Sequence[BatchTfm] | None = None,
        wgts: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        partial_n: int | None = None,
        **dl_kwargs: Any,
    ) -> DataLoaders:
        """Loaders over :class:`~ember.data.datasets.Datasets` (``dsets.train`` and ``dsets.valid``).

        The training loader shuffles and drops the last partial batch (unless the training set is
        smaller than `bs`); the validation loader keeps the order and every item, with the same `bs`.

        Args:
            num_workers: ``None``: 0 when the data is fully cached in memory, else ``min(8, cpu_count)``.
            batch_tfms: transforms run on each batch on the device (``split`` 0 for training, 1 for validation).
            wgts: weighted sampling (imbalanced data): each epoch the training loader draws ``len(dsets.train)``
                items with replacement, in proportion to these non-negative weights, one per training item or one
                per item of the whole source (see :meth:`~ember.data.datasets.Datasets.weighted_dataloaders`).
            partial_n: each epoch the training loader reads a fresh random choice of this many distinct training
                items (all of them when there are fewer).
            dl_kwargs: passed to :class:`torch.utils.data.DataLoader`.

        Raises:
            ConfigError: bad `wgts` or `partial_n`, both given, or either with ``shuffle=False`` or a ``sampler``.
        """
        check_random_loader_args(wgts, partial_n, shuffle, dl_kwargs)
        device = default_device(device)
        train_ds, valid_ds = dsets.train, dsets.valid
        common = {"num_workers": num_workers, "device": device, **dl_kwargs}
        if wgts is None and partial_n is None:
            train_dl = make_loader(train_ds, bs, shuffle=shuffle, drop_last=drop_last and len(train_ds) >= bs, **common)
        else:
            sampler = _random_sampler_of(dsets, len(train_ds), wgts, partial_n, common)
            n_draw = len(sampler)
            common_train = {**common, "generator": sampler.generator}
            train_dl = make_loader(train_ds, bs, sampler=sampler, drop_last=drop_last and n_draw >= bs, **common_train)
        loaders = [DeviceLoader(train_dl, device, batch_tfms, n_inp=dsets.n_inp, split=0, blocks=dsets.blocks)]
        if len(valid_ds) > 0:
            valid_dl = make_loader(valid_ds, bs, shuffle=False, drop_last=False, **common)
            loaders.append(DeviceLoader(valid_dl, device, batch_tfms, n_inp=dsets.n_inp, split=1, blocks=dsets.blocks))
        dls = cls(*loaders, device=device, n_inp=dsets.n_inp)
        dls.blocks, dls.dsets = list(dsets.blocks), dsets
        return dls

    # -- what the blocks tell ---------------------------------------------------------------------------
    @property
    def kinds(self) -> tuple[str, ...] | None:
        """The kind of each batch element (``("image", "category")``), when known."""
        if self.blocks is not None:
            return tuple(b.kind for b in self.blocks)
        return self.train.kinds

    @property
    def target_blocks(self) -> list[Any]:
        return list(self.blocks[self.n_inp :]) if self.blocks is not None else []

    @property
    def vocab(self) -> list[str] | None:
        """The vocabulary of the first target block that has one (``None`` otherwise)."""
        for block in self.target_blocks:
            if getattr(block, "vocab", None) is not None:
                return block.vocab
        return None

    @property
    def class_names(self) -> list[str] | None:
        """The names of the classes a classifier on these loaders predicts (the target's ``vocab``)."""
        vocab = self.vocab
        return None if vocab is None else [str(v) for v in vocab]

    @property
    def c(self) -> int | None:
        """The number of model outputs the target needs (classes, or regression values)."""
        targets = self.target_blocks
        for block in targets:
            if getattr(block, "vocab", None) is not None:
                return block.n_out
        return targets[0].n_out if targets else None

    @property
    def loss_func(self) -> Any:
        """The default loss: set explicitly, else the single target block's (``None`` when unknown)."""
        explicit = self.__dict__.get("_loss_func")
        if explicit is not None:
            return explicit
        targets = self.target_blocks
        return targets[0].loss_func if len(targets) == 1 else None

    @loss_func.setter
    def loss_func(self, value: Any) -> None:
        self.__dict__["_loss_func"] = value

    # -- decoding, showing, new items -------------------------------------------------------------------
    def decode_batch(self, batch: Sequence[torch.Tensor], max_n: int = 9) -> list[tuple]:
        """The first `max_n` samples of a batch as human values (one tuple per sample)."""
        return self.train.decode_batch(batch, max_n=max_n)

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
        """Draw `max_n` training samples (augmented, then decoded); returns the matplotlib Figure.

        ``unique=True`` draws one item augmented `max_n` times; ``nrows * ncols`` caps the number shown.
        """
        return self.train.show_batch(
            batch, max_n=max_n, nrows=nrows, ncols=ncols, figsize=figsize, fname=fname, unique=unique, **kwargs
        )

    def test_dl(
        self, items: Sequence[Any] | Any, with_labels: bool = False, bs: int | None = None, **dl_kwargs: Any
    ) -> DeviceLoader:
        """A loader over new raw items, encoded and transformed as validation data (no shuffling).

        Args:
            items: raw items, as `get_items` would return them (paths, DataFrame rows).
            with_labels: the items also have targets to encode; otherwise batches hold the inputs only.
            bs: the batch size (default: the training loader's).
        """
        if self.dsets is None:
            raise DataError("test_dl needs DataLoaders built from Datasets (e.g. by DataBlock.dataloaders).")
        try:
            empty = len(items) == 0
        except TypeError:
            empty = False
        if empty:
            raise DataError("No items given to test_dl (or predict_batch): pass at least one item.")
        ds = self.dsets.new(items, with_labels=with_labels)
        ref = self.valid if self.valid is not None else self.train
        # A test loader is used once: workers only pay off for many items on a machine with cores to spare,
        # and are never kept alive after it.
        few_cores = (os.cpu_count() or 1) <= 2
        dl_kwargs.setdefault("num_workers", 0 if len(ds) <= 1024 or few_cores else None)
        dl_kwargs.setdefault("persistent_workers", False)
        dl = make_loader(ds, bs or self.bs or 64, shuffle=False, drop_last=False, device=self.device, **dl_kwargs)
        out = DeviceLoader(dl, self.device, ref.batch_tfms, n_inp=self.n_inp, split=1, blocks=ds.blocks)
        out.setup_from = self.train
        return out

    def setup_tfms(self) -> None:
        """Set up the batch transforms that learn from data (``Normalize()`` statistics) from a training batch,
        if they are not ready yet. Building a loader over validation or new items does it when needed."""
        for dl in self.loaders:
            setup_batch_tfms(dl.batch_tfms, self.train)

    @property
    def loaders(self) -> list[DeviceLoader]:
        return [dl for dl in (self.train, self.valid) if dl is not None]

    # -- export ---------------------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        """What inference needs (blocks with their vocab, item and batch transforms), as JSON values.

        Training-only transforms (augmentation) are left out; a transform needed at inference that has no
        recipe raises an ExportError naming it. Loaders not built from blocks keep only `n_inp` and `bs`.
        """
        data: dict[str, Any] = {"n_inp": self.n_inp, "bs": self.bs, "blocks": None}
        if self.dsets is not None and self.blocks is not None:
            data["blocks"] = [recipe.dump(b) for b in self.blocks]
            # Getters that are ember objects (ColReader, …) travel; a lambda does not: after loading, the
            # items given to predict/test_dl are then the inputs themselves (a path, an image, a row's value).
            data["getters"] = [
                recipe.dump(g) if g is not None and recipe.is_registered(g) else None
                for g in self.dsets.getters[: self.n_inp]
            ]
            data["label_getters"] = _label_getters(self.dsets)
            data["item_tfms"] = _inference_tfms(self.dsets.item_tfms, "item")
            ref = self.valid if self.valid is not None else self.train
            setup_batch_tfms(ref.batch_tfms, self.train)  # Normalize() statistics, from a training batch
            if _needs_setup(ref.batch_tfms):
                raise ExportError(
                    "A batch transform still has to learn its statistics (Normalize() with no mean/std) and these "
                    "loaders have no training batch to take them from. Pass Normalize.from_stats(mean, std), or "
                    "export from loaders built on the training data."
                )
            data["batch_tfms"] = _inference_tfms(ref.batch_tfms, "batch")
        return data

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> DataLoaders:
        """Inference loaders: no training data, but `test_dl`, decoding and showing work as before export."""
        from ember.data.datasets import Datasets

        n_inp, bs = int(data.get("n_inp", 1)), int(data.get("bs") or 64)
        if not data.get("blocks"):
            empty = TensorDataset(torch.zeros(0))
            return cls(DataLoader(empty, batch_size=bs), device="cpu", n_inp=n_inp)
        blocks = [recipe.load(b) for b in data["blocks"]]
        item_tfms = [recipe.load(t) for t in data.get("item_tfms", [])]
        batch_tfms = [recipe.load(t) for t in data.get("batch_tfms", [])]
        getters = [recipe.load(g) if g is not None else None for g in data.get("getters", [])]
        getters += [None] * (len(blocks) - len(getters))
        dsets = Datasets([], blocks, getters=getters, n_inp=n_inp, item_tfms=item_tfms, cache=False, setup=False)
        if data.get("label_getters") is not None:
            from ember.data.items import getter_from_recipe

            dsets.label_getters = [
                getter_from_recipe(g) if g.get("type") != "missing" else MissingGetter(g.get("name", "?"))
                for g in data["label_getters"]
            ]
        dl = make_loader(dsets.train, bs, shuffle=False, drop_last=False, num_workers=0, device="cpu")
        dls = cls(DeviceLoader(dl, None, batch_tfms, n_inp=n_inp, split=1, blocks=blocks), device="cpu", n_inp=n_inp)
        dls.blocks, dls.dsets = blocks, dsets
        return dls

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
        if out.valid is not None:
            out.valid.setup_from = out.train
        return out

    def __repr__(self) -> str:
        n_valid = len(self.valid) if self.valid is not None else 0
        return (
            f"{type(self).__name__}(train: {len(self.train)} batches, valid: {n_valid} batches, device={self.device})"
        )
