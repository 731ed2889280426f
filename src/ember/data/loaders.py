"""`DataLoaders`: a training and a validation loader that deliver batches on the right device.

A batch is a tuple of tensors. The first `n_inp` elements are the model's inputs, the rest its
targets. Each loader wraps a plain :class:`torch.utils.data.DataLoader` (workers, pinned memory and
samplers behave exactly as PyTorch users expect) and adds two things: the move to the device and
the batch transforms that run there (augmentation, normalization), in that order.

Loaders built from :class:`~ember.data.datasets.Datasets` (by ``DataBlock.dataloaders`` or
:meth:`DataLoaders.from_dsets`) also know their blocks, so they can decode and show batches
(:meth:`DataLoaders.show_batch`), suggest a loss (``dls.loss_func``) and the number of outputs
(``dls.c``), and build loaders over new items (:meth:`DataLoaders.test_dl`).
"""

from __future__ import annotations

import copy
import json
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, TensorDataset, WeightedRandomSampler

from ember.core import recipe
from ember.core.device import default_device, to_cpu, to_device
from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.seed import seed_worker
from ember.data.transform import Transform, as_transform

__all__ = ["DeviceLoader", "DataLoaders", "make_loader"]

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


def _default_workers(dataset: Dataset) -> int:
    # A fully cached dataset is a list lookup: worker processes would only add the cost of sending tensors.
    if getattr(dataset, "is_cached", False):
        return 0
    return min(8, os.cpu_count() or 1)


def make_loader(
    dataset: Dataset,
    bs: int = 64,
    shuffle: bool = False,
    drop_last: bool = False,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    collate_fn: Callable[[list], Any] | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A torch DataLoader with ember's defaults.

    Args:
        num_workers: ``None`` picks 0 for a fully cached dataset, else ``min(8, cpu_count)``.
        device: the device batches go to; pinned memory is used when it is CUDA.
        collate_fn: ``None`` takes the dataset's ``collate`` method if it has one.

    Workers are persistent and seeded by :func:`~ember.core.seed.seed_worker`; shuffling uses a
    generator seeded from torch's, so ``set_seed`` makes the order reproducible.
    """
    if not isinstance(bs, int) or bs < 1:
        raise ConfigError(expected("a positive int", "bs", bs))
    if num_workers is None:
        num_workers = _default_workers(dataset)
    if collate_fn is None:
        collate_fn = getattr(dataset, "collate", None)
    settings: dict[str, Any] = {
        "batch_size": bs,
        "shuffle": shuffle,
        "drop_last": drop_last,
        "num_workers": num_workers,
        "collate_fn": collate_fn,
        "pin_memory": device is not None and torch.device(device).type == "cuda",
        "worker_init_fn": seed_worker,
    }
    if "generator" not in kwargs:
        settings["generator"] = _loader_generator()
    if num_workers > 0:
        settings["persistent_workers"] = True
    settings.update(kwargs)
    return DataLoader(dataset, **settings)


def _loader_generator() -> torch.Generator:
    """A torch Generator for a loader's random order, seeded from torch's global one: ``set_seed`` before building
    the loaders fixes every epoch's order, and the loaders' own draws leave the global stream alone afterwards."""
    return torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))


def train_weights(
    wgts: Any,
    n_train: int,
    source: tuple[int, Sequence[int]] | None = None,
    nouns: tuple[str, str] = ("item of the source", "training item"),
) -> torch.Tensor:
    """Check sampling weights and return those of the training items (float64, one per training item).

    The weights returned are scaled so that the largest is 1: their sum stays finite however large they were,
    and the draws are the same (only the ratios count).

    Args:
        wgts: one non-negative weight per training item, or (when `source` is given) one per item of the whole
            source, of which the training items' are taken (so when the two counts are equal, the weights are
            read as the source's, in its order).
        n_train: the number of training items.
        source: ``(n_items, train_positions)``: how many items the source has and where the training items are
            in it.
        nouns: what the messages call an item of the source and a training item (``("row of the DataFrame",
            "training row")`` for a table).

    Raises:
        ConfigError: weights that are not numbers, of another length, negative or not finite, or all zero on
            the training items.
    """
    source_noun, train_noun = nouns
    try:
        arr = np.asarray(wgts.detach().cpu() if isinstance(wgts, torch.Tensor) else wgts, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ConfigError(expected(f"a sequence of numbers, one weight per {train_noun}", "wgts", _short(wgts))) from e
    sizes = [n_train] if source is None or source[0] == n_train else [source[0], n_train]
    what = " or ".join(
        f"one weight per {source_noun if source is not None and k == source[0] else train_noun} ({k})" for k in sizes
    )
    if arr.ndim != 1 or len(arr) not in sizes:
        raise ConfigError(f"Expected `wgts` to hold {what}; received {arr.size} weights of shape {arr.shape}.")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if len(bad):
        i = int(bad[0])
        raise ConfigError(
            f"Expected `wgts` to be non-negative finite numbers; received `wgts[{i}]={float(arr[i])!r}` "
            f"({len(bad)} such weight(s)). A weight of 0 is never drawn; a larger one is drawn more often."
        )
    if source is not None and len(arr) == source[0]:
        arr = arr[np.asarray(source[1], dtype=np.int64)]  # (n_train,)
    top = arr.max() if len(arr) else 0.0
    if n_train and not top > 0:
        raise ConfigError(
            f"Every {train_noun} has weight 0 in `wgts`, so none can be drawn: give at least one {train_noun} a "
            "positive weight (the validation weights are not used)."
        )
    if len(arr):
        # Weights near the float64 limit would sum to inf, and every draw would land on the last positive one.
        arr = arr / top  # (n_train,) in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(arr))


def check_partial_n(partial_n: Any, n_train: int) -> int:
    """`partial_n` as an int, at most `n_train` (a loader cannot read more distinct items than it has)."""
    if isinstance(partial_n, bool) or not isinstance(partial_n, numbers.Integral) or partial_n < 1:
        raise ConfigError(expected("a positive int (the training items read each epoch)", "partial_n", partial_n))
    return min(int(partial_n), n_train)


def _short(value: Any, n: int = 80) -> Any:
    text = repr(value)
    return value if len(text) <= n else text[: n - 3] + "..."


def weighted_draws(weights: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` positions drawn with replacement, each with probability proportional to its weight (int64, ``(n,)``).

    Inverse-CDF sampling of sorted uniforms, then shuffled: unlike ``torch.multinomial`` it has no limit of 2**24
    items, and sorted look-ups make it several times faster on millions of items (about 3 s instead of 30 s for
    16 million on one core). A weight of 0 is never drawn. `weights` are non-negative float64, not all zero, with
    a finite sum (:func:`train_weights` returns them so).
    """
    cdf = weights.cumsum(0)  # (N,)
    # n sorted uniforms in [0, total): the partial sums of n + 1 exponential draws, over their sum.
    gaps = torch.empty(n + 1, dtype=torch.float64).exponential_(generator=generator)  # (n + 1,)
    u = gaps.cumsum(0)[:n] * (cdf[-1] / gaps.sum())  # (n,)
    # The first position whose cumulative weight exceeds u; the clamp guards a u rounded up to the total.
    last = int(torch.nonzero(weights)[-1])
    idx = torch.searchsorted(cdf, u, right=True).clamp_(max=last)  # (n,) sorted
    return idx[torch.randperm(n, generator=generator)]


class _WeightedSampler(WeightedRandomSampler):
    """torch's WeightedRandomSampler (with replacement) drawing by :func:`weighted_draws`: any number of items."""

    def __iter__(self) -> Iterator[int]:
        yield from weighted_draws(self.weights, self.num_samples, self.generator).tolist()


def _random_train_sampler(
    n_train: int, generator: torch.Generator, wgts: torch.Tensor | None = None, partial_n: int | None = None
) -> Sampler:
    """The sampler of a weighted or partial training loader (torch's own samplers, drawing from `generator`).

    Weighted: ``n_train`` items an epoch, drawn with replacement in proportion to `wgts`. Partial: `partial_n`
    distinct items an epoch, a fresh random choice each time.
    """
    if wgts is not None:
        return _WeightedSampler(wgts, n_train, replacement=True, generator=generator)
    # RandomSampler without replacement and num_samples < n yields the start of a fresh permutation each epoch.
    return RandomSampler(range(n_train), replacement=False, num_samples=partial_n, generator=generator)


def _keeps_sampler(sampler: Any, dataset: Any) -> bool:
    """Whether a rebuilt loader keeps `sampler`: a weighted one, or a random one that draws part of the items."""
    if isinstance(sampler, WeightedRandomSampler):
        return True
    try:
        return isinstance(sampler, RandomSampler) and sampler.num_samples != len(dataset)
    except TypeError:
        return False


def loading_settings(dl: DataLoader) -> dict[str, Any]:
    """How `dl` loads (workers, collation, pinning, seeding), without how it batches: the arguments that
    a DataLoader rebuilt over the same dataset with another sampler keeps."""
    settings: dict[str, Any] = {
        "num_workers": dl.num_workers,
        "collate_fn": dl.collate_fn,
        "pin_memory": dl.pin_memory,
        "worker_init_fn": dl.worker_init_fn,
        "generator": dl.generator,
    }
    if dl.num_workers > 0:
        settings["persistent_workers"] = dl.persistent_workers
        settings["prefetch_factor"] = dl.prefetch_factor
    return settings


def _rebuild_dl(dl: DataLoader, bs: int | None = None, shuffle: bool | None = None, **kwargs: Any) -> DataLoader:
    """Rebuild a torch DataLoader with the same settings but a few changed."""
    settings = {"batch_size": dl.batch_size if bs is None else bs, "drop_last": dl.drop_last, **loading_settings(dl)}
    if "generator" not in kwargs and isinstance(dl.generator, torch.Generator):
        # The copy draws from a generator of its own, starting where the original's is now: reading one loader
        # leaves the other's draws alone.
        settings["generator"] = torch.Generator(dl.generator.device).set_state(dl.generator.get_state())
    settings.update(kwargs)
    if shuffle is None and _keeps_sampler(dl.sampler, dl.dataset):
        # A weighted or partial loader stays one, its sampler drawing from the copy's generator.
        sampler = copy.copy(dl.sampler)
        sampler.generator = settings["generator"]
        return DataLoader(dl.dataset, sampler=sampler, **settings)
    if shuffle is None:
        shuffle = isinstance(dl.sampler, RandomSampler)
    return DataLoader(dl.dataset, shuffle=shuffle, **settings)


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


def check_random_loader_args(wgts: Any, partial_n: Any, shuffle: bool, dl_kwargs: dict[str, Any]) -> None:
    """Refuse what a weighted or partial training loader cannot do, before any work (filling a cache) starts.

    Nothing is checked when neither `wgts` nor `partial_n` is given (the usual loaders). The weights and the count
    themselves are checked by :func:`train_weights` and :func:`check_partial_n`.

    Raises:
        ConfigError: both given, ``shuffle=False``, or a ``sampler``/``batch_sampler`` in `dl_kwargs`.
    """
    if wgts is None and partial_n is None:
        return
    if wgts is not None and partial_n is not None:
        raise ConfigError("Pass `wgts` (weighted loaders) or `partial_n` (partial loaders), not both.")
    what = "weighted" if wgts is not None else "partial"
    if not shuffle:
        raise ConfigError(
            f"A {what} training loader draws at random, so it cannot keep the training order: leave `shuffle` at "
            "True (for a loader in order, build one without weights or partial_n, with shuffle=False)."
        )
    given = [k for k in ("sampler", "batch_sampler") if dl_kwargs.get(k) is not None]
    if given:
        raise ConfigError(f"A {what} training loader makes its own sampler: do not pass `{given[0]}`.")


def require_arg(value: Any, name: str, what: str) -> None:
    """ConfigError when `value` (an argument that a weighted or partial loader needs) is None: inside
    ``dataloaders`` None means "not weighted", so a variable never filled in would quietly give the usual loaders.
    """
    if value is None:
        raise ConfigError(
            expected(what, name, None, hint="Fill it in, or call `dataloaders` for the usual training loader.")
        )


def _random_sampler_of(dsets: Any, n_train: int, wgts: Any, partial_n: Any, common: dict[str, Any]) -> Sampler:
    """The weighted or partial training sampler of :meth:`DataLoaders.from_dsets`, with its own generator
    (the arguments already passed :func:`check_random_loader_args`)."""
    if n_train == 0:
        raise DataError("The training set is empty: weighted and partial loaders need training items to draw from.")
    gen = common.get("generator") or _loader_generator()
    if wgts is not None:
        source = None
        if hasattr(dsets, "source_positions"):
            source = (dsets.n_source, dsets.source_positions(dsets.splits[0]))
        return _random_train_sampler(n_train, gen, wgts=train_weights(wgts, n_train, source))
    return _random_train_sampler(n_train, gen, partial_n=check_partial_n(partial_n, n_train))


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
