"""`Datasets`: items turned into encoded samples, split into training and validation, cached in memory.

For each item, a getter per block reads the raw value (``get_x``/``get_y``: a path, a label), the
block encodes it into a tensor, and the item transforms run on the sample (a tuple, one element per
block). Encoding and the leading run of *deterministic* item transforms (a resize) give the same
result every epoch, so when the data fits in memory that result is computed once, by a thread pool,
and kept: decoding image files every epoch would otherwise be most of the CPU's work. Random item
transforms (a random crop) run on every access, after the cache.

>>> from ember.data.block import CategoryBlock, TransformBlock
>>> ds = Datasets([1.0, 2.0, 3.0, 4.0], [TransformBlock(), CategoryBlock()],
...               getters=[None, lambda v: "big" if v > 2 else "small"], splits=([0, 1, 2], [3]))
>>> ds.train[0], ds.valid.decode(ds.valid[0])
((tensor(1.), tensor(1)), (tensor(4.), 'big'))
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch.utils.data import Dataset

from ember.core.errors import ConfigError, DataError, EmberError, expected
from ember.data.transform import Transform, as_transform

__all__ = ["Datasets", "cache_budget"]

_GIB = 1024**3
# Items encoded to estimate the size of the cache, and the seconds of cache filling before a progress bar shows.
_N_ESTIMATE = 4
_QUIET_SECONDS = 2.0


def cache_budget() -> int:
    """Bytes the in-memory cache may take when ``cache=None``: a quarter of the available RAM, at most 8 GiB.

    When the available memory cannot be read, 2 GiB.
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return 2 * _GIB
    return min(avail // 4, 8 * _GIB)


def _is_frame(items: Any) -> bool:
    return hasattr(items, "iloc") and hasattr(items, "columns")


def _item_repr(item: Any, n: int = 120) -> str:
    if hasattr(item, "to_dict") and hasattr(item, "index"):  # a DataFrame row
        item = item.to_dict()
    text = str(item) if isinstance(item, os.PathLike) else repr(item)
    return text if len(text) <= n else text[: n - 3] + "..."


def _nbytes(sample: tuple) -> int:
    # 128 bytes per tensor approximates the Python object's own overhead.
    return sum(x.numel() * x.element_size() + 128 for x in sample if isinstance(x, torch.Tensor))


def _name(obj: Any) -> str:
    return getattr(obj, "__name__", None) or repr(obj)


class _Position:
    """A getter reading element `j` of an ``(input, target)`` item."""

    def __init__(self, j: int) -> None:
        self.j = j

    def __call__(self, item: Any) -> Any:
        return item[self.j]

    def __repr__(self) -> str:
        return f"item[{self.j}]"


class Datasets(Dataset):
    """Items and blocks, giving encoded samples (tuples of tensors); ``.train`` and ``.valid`` are the splits.

    Args:
        items: a list of items (paths, values) or a DataFrame (its rows are the items).
        blocks: one block instance per sample element.
        getters: one callable per block, ``item -> raw value`` (``None``: the item itself).
        n_inp: how many leading elements are inputs.
        item_tfms: transforms run on each sample after encoding (sorted by ``order``).
        splits: ``(train_idx, valid_idx)``; ``None`` puts every item in training.
        cache: keep the encoded (and deterministically transformed) samples in memory; ``None``
            decides by size (see :func:`cache_budget`).
        setup: let the blocks learn their state (vocab, …) from the training values; ``False`` when
            they are already set up (new items for inference).

    Raises:
        DataError: a getter fails on an item, or a block rejects a value (e.g. a validation label that
            no training item has); the message names the item.
    """

    def __init__(
        self,
        items: Sequence[Any] | Any,
        blocks: Sequence[Any],
        getters: Sequence[Callable[[Any], Any] | None] | None = None,
        n_inp: int = 1,
        item_tfms: Sequence[Transform | Callable] | None = None,
        splits: tuple[Sequence[int], Sequence[int]] | None = None,
        cache: bool | None = None,
        setup: bool = True,
    ) -> None:
        self.items_all = items if _is_frame(items) else list(items)
        self.blocks = list(blocks)
        if not self.blocks:
            raise ConfigError(expected("at least one block", "blocks", blocks))
        getters = list(getters) if getters is not None else [None] * len(self.blocks)
        if len(getters) != len(self.blocks):
            raise ConfigError(expected(f"one getter per block ({len(self.blocks)})", "getters", getters))
        self.getters = getters
        self.n_inp = n_inp
        tfms = sorted((as_transform(t) for t in item_tfms or []), key=lambda t: t.order)
        n_cached = 0
        while n_cached < len(tfms) and tfms[n_cached].deterministic and tfms[n_cached].split_idx is None:
            n_cached += 1
        self.item_tfms = tfms
        self.cached_tfms, self.random_tfms = tfms[:n_cached], tfms[n_cached:]
        n = len(self.items_all)
        # Items in neither split are dropped below; these say where the kept ones were (weights per source item).
        self.n_source, self._source_idxs = n, None
        train_idx, valid_idx = splits if splits is not None else (range(n), [])
        self.splits = ([int(i) for i in train_idx], [int(i) for i in valid_idx])
        used = sorted(set(self.splits[0]) | set(self.splits[1]))
        if used and (used[0] < 0 or used[-1] >= n):
            bad = [i for i in used if not 0 <= i < n][:5]
            raise DataError(expected(f"positions in [0, {n})", "splits", bad, hint=f"There are {n} items."))
        if len(used) < n:
            # Items in neither split (an unlabelled test/ folder) are dropped before anything reads them.
            self._keep_only(used)
            n = len(self.items_all)
        self.raw = self._read_raw()
        self._new_items = not setup  # items for inference, labelled or not: no training split involved
        self.label_getters: list[Any] | None = None  # set on loaders loaded from a file (see DataLoaders)
        if setup:
            for j, block in enumerate(self.blocks):
                block.setup([self.raw[i][j] for i in self.splits[0]])
        self._validate()
        self.idxs: list[int] = list(range(n))
        self.split = 0
        self._cache: list[tuple | None] | None = [None] * n
        self.cache = self._decide_cache(cache)
        if setup and "mask" in self.kinds and "image" in self.kinds and self.splits[0]:
            self._check_mask_size(self.splits[0][0])

    def _check_mask_size(self, i: int) -> None:
        """An image and its mask must have the same size: checked on the first training item (it is cached)."""
        sample = self._encoded(i)
        sizes = [(k, tuple(x.shape[-2:])) for x, k in zip(sample, self.kinds) if k in ("image", "mask")]
        if len({s for _, s in sizes}) > 1:
            shown = ", ".join(f"{k} {h}x{w}" for k, (h, w) in sizes)
            raise DataError(
                f"Item {i} ({_item_repr(self._item(i))}): the image and its mask differ in size ({shown}; height x "
                "width). A mask needs one class id per pixel of its image: check that `get_y` gives each image its "
                "own mask."
            )

    # -- construction helpers -------------------------------------------------------------------------
    def _keep_only(self, used: list[int]) -> None:
        """Keep the items at positions `used` (sorted) and renumber the splits to match."""
        if _is_frame(self.items_all):
            self.items_all = self.items_all.iloc[used].reset_index(drop=True)
        else:
            self.items_all = [self.items_all[i] for i in used]
        new = {old: k for k, old in enumerate(used)}
        self.splits = ([new[i] for i in self.splits[0]], [new[i] for i in self.splits[1]])
        self._source_idxs = list(used)

    def source_positions(self, idxs: Sequence[int]) -> list[int]:
        """Where the items at positions `idxs` (of ``items_all``) were in the items given to the constructor
        (they differ when items in neither split were dropped)."""
        src = self._source_idxs
        return [int(i) for i in idxs] if src is None else [src[i] for i in idxs]

    def _item(self, i: int) -> Any:
        return self.items_all.iloc[i] if _is_frame(self.items_all) else self.items_all[i]

    def _read_raw(self) -> list[tuple]:
        """Apply the getters to every item (cheap: paths and labels, not file contents)."""
        n = len(self.items_all)
        columns = []
        for j, get in enumerate(self.getters):
            where = f"reading the value of block {j} ({type(self.blocks[j]).__name__}) with {_name(get)}"
            if get is not None and _is_frame(self.items_all) and hasattr(get, "read_frame"):
                try:
                    columns.append(get.read_frame(self.items_all))
                    continue
                except EmberError as e:
                    raise DataError(f"Failed {where}: {e}") from e
            col = []
            for i in range(n):
                item = self._item(i)
                try:
                    col.append(get(item) if get is not None else item)
                except Exception as e:
                    raise DataError(f"Failed {where} on item {i} ({_item_repr(item)}): {type(e).__name__}: {e}") from e
            columns.append(col)
        return list(zip(*columns)) if columns else [() for _ in range(n)]

    def _validate(self) -> None:
        valid = set(self.splits[1])
        for j, block in enumerate(self.blocks):
            check = getattr(block, "validate", None)
            if check is None:
                continue
            for i in self.splits[1] + self.splits[0]:
                try:
                    check(self.raw[i][j])
                except EmberError as e:
                    if self._new_items:
                        why = getattr(e, "new_item_message", None) or str(e)
                        raise DataError(f"Item {i} ({_item_repr(self._item(i))}): {why}") from e
                    where = "validation" if i in valid else "training"
                    raise DataError(f"Item {i} ({_item_repr(self._item(i))}, in the {where} set): {e}") from e

    def _decide_cache(self, cache: bool | None) -> bool:
        if cache is not None:
            if not cache:
                self._cache = None
            return bool(cache)
        n = len(self.items_all)
        if n == 0:
            return True
        k = min(_N_ESTIMATE, n)
        size = sum(_nbytes(self._encoded(i)) for i in range(k)) / k * n
        if size > cache_budget():
            self._cache = None
            return False
        return True

    # -- the samples ------------------------------------------------------------------------------------
    def _encoded(self, i: int) -> tuple:
        """Item `i` encoded by every block and through the cacheable transforms (from the cache if there)."""
        cache = self._cache
        if cache is not None and cache[i] is not None:
            return cache[i]
        sample = []
        for j, block in enumerate(self.blocks):
            try:
                sample.append(block.encode(self.raw[i][j]))
            except Exception as e:
                raise DataError(
                    f"{type(block).__name__} could not encode item {i} ({_item_repr(self._item(i))}): "
                    f"{type(e).__name__}: {e}"
                ) from e
        out = self._apply(tuple(sample), self.cached_tfms, 0, i)
        if cache is not None:
            cache[i] = out
        return out

    def _apply(self, sample: tuple, tfms: Sequence[Transform], split: int, i: int) -> tuple:
        kinds = self.kinds
        for t in tfms:
            try:
                sample = t(sample, kinds, split)
            except Exception as e:
                raise DataError(
                    f"The item transform {t!r} failed on item {i} ({_item_repr(self._item(i))}): "
                    f"{type(e).__name__}: {e}"
                ) from e
        return sample

    def __getitem__(self, j: int) -> tuple:
        i = self.idxs[j]
        sample = self._encoded(i)
        if self.random_tfms:
            sample = self._apply(sample, self.random_tfms, self.split, i)
        return sample

    def __len__(self) -> int:
        return len(self.idxs)

    def collate(self, samples: list[tuple]) -> tuple:
        """Batch samples element by element, each with its block's ``collate`` (the DataLoader's ``collate_fn``)."""
        return tuple(block.collate([s[j] for s in samples]) for j, block in enumerate(self.blocks))

    def decode(self, sample: tuple) -> tuple:
        """An encoded sample (CPU tensors) -> human values, one per block."""
        return tuple(block.decode(x) for block, x in zip(self.blocks, sample))

    # -- splits and views -------------------------------------------------------------------------------
    def _view(self, idxs: Sequence[int], split: int) -> Datasets:
        view = type(self).__new__(type(self))
        view.__dict__.update(self.__dict__)  # shares blocks, raw values and the cache list
        view.idxs, view.split = list(idxs), split
        return view

    @property
    def train(self) -> Datasets:
        """The training items (random item transforms run with ``split=0``)."""
        return self._view(self.splits[0], 0)

    @property
    def valid(self) -> Datasets:
        """The validation items (``split=1``: training-only transforms are skipped)."""
        return self._view(self.splits[1], 1)

    @property
    def items(self) -> Any:
        """The items of this view (a list, or a DataFrame of the rows)."""
        if _is_frame(self.items_all):
            return self.items_all.iloc[self.idxs]
        return [self.items_all[i] for i in self.idxs]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.kind for b in self.blocks)

    @property
    def vocab(self) -> list[str] | None:
        """The vocabulary of the first target block that has one."""
        for block in self.blocks[self.n_inp :]:
            if getattr(block, "vocab", None) is not None:
                return block.vocab
        return None

    @property
    def is_cached(self) -> bool:
        """Whether every item of this view is in the cache."""
        return self._cache is not None and all(self._cache[i] is not None for i in self.idxs)

    def new(self, items: Sequence[Any] | Any, with_labels: bool = False, cache: bool = False) -> Datasets:
        """Datasets over new items with these (already set up) blocks and transforms, as validation data.

        Args:
            with_labels: the items also have targets; otherwise only the input blocks are used.
        """
        k = len(self.blocks) if with_labels else self.n_inp
        getters = self.getters[:k]
        if with_labels:
            getters = self._labelled_getters(items, k)
        ds = Datasets(
            items,
            self.blocks[:k],
            getters=getters,
            n_inp=self.n_inp,
            item_tfms=self.item_tfms,
            cache=cache,
            setup=False,
        )
        return ds._view(ds.idxs, 1)

    def _labelled_getters(self, items: Any, k: int) -> list[Any]:
        """The getters that read labelled new items: the training ones, or those a loaded file kept.

        When a loaded file lacks one (a lambda cannot be written), items given as ``(input, target)`` pairs are
        read by position; other items get an error saying how to pass them.
        """
        kept = getattr(self, "label_getters", None)
        if kept is None:  # loaders that were not loaded from a file: some getters may be missing there too
            return list(self.getters[:k])
        missing = [g for g in kept[:k] if type(g).__name__ == "MissingGetter"]
        if not missing:
            return list(kept[:k])
        pairs = not _is_frame(items) and all(isinstance(it, (tuple, list)) and len(it) == k for it in items)
        if pairs:
            return [_Position(j) for j in range(k)]
        names = ", ".join(g.name for g in missing)
        n_inp = getattr(self, "n_inp", 1)
        roles = {
            "input" if j < n_inp else "target" for j, g in enumerate(kept[:k]) if type(g).__name__ == "MissingGetter"
        }
        what = " and ".join(f"the {r}s" for r in sorted(roles))
        raise DataError(
            f"This learner's file does not hold the function that reads {what} ({names}: only ember's getters, "
            "parent_label, RegexLabeller, ColReader and using_attr, can be written to a file). Pass each item with "
            "its target instead: test_dl([(input, target), ...], with_labels=True)."
        )

    # -- loaders ----------------------------------------------------------------------------------------
    def dataloaders(self, bs: int = 64, **kwargs: Any) -> Any:
        """Training and validation loaders over these splits (see :meth:`DataLoaders.from_dsets
        <ember.data.loaders.DataLoaders.from_dsets>` for the arguments)."""
        from ember.data.loaders import DataLoaders

        return DataLoaders.from_dsets(self, bs=bs, **kwargs)

    def weighted_dataloaders(self, wgts: Sequence[float] | Any, bs: int = 64, **kwargs: Any) -> Any:
        """Loaders whose training loader samples items in proportion to `wgts` (for imbalanced classes).

        Each epoch the training loader draws ``len(self.train)`` items with replacement, each with probability
        proportional to its weight (an item of weight 0 is never drawn), from a generator seeded from torch's:
        ``set_seed`` before building the loaders repeats the draws. The validation loader is unchanged.

        Args:
            wgts: non-negative weights, one per training item (``len(self.train)``), or one per item given to
                these Datasets (the training items' are used).
            kwargs: as for :meth:`dataloaders` (``num_workers``, ``device``, ``batch_tfms``, …).

        Raises:
            ConfigError: no weights (None), weights of another length, negative or not finite, or zero on every
                training item.

        >>> counts = {"cat": 90, "dog": 10}                                        # doctest: +SKIP
        >>> wgts = [1 / counts[label] for label in labels]                         # doctest: +SKIP
        >>> dls = dsets.weighted_dataloaders(wgts, bs=32)                          # doctest: +SKIP
        """
        from ember.data.loaders import require_arg

        require_arg(wgts, "wgts", "one weight per item")
        return self.dataloaders(bs=bs, wgts=wgts, **kwargs)

    def partial_dataloaders(self, partial_n: int, bs: int = 64, **kwargs: Any) -> Any:
        """Loaders whose training loader reads a fresh random choice of `partial_n` distinct training items each
        epoch (a quick run on a large dataset); the validation loader is unchanged.

        With ``drop_last`` (the default) and `partial_n` of at least `bs`, an epoch reads whole batches only:
        ``partial_n=15, bs=10`` reads 10 items.

        Raises:
            ConfigError: `partial_n` is not a positive int.
        """
        from ember.data.loaders import require_arg

        require_arg(partial_n, "partial_n", "a positive int (the training items read each epoch)")
        return self.dataloaders(bs=bs, partial_n=partial_n, **kwargs)

    # -- the cache --------------------------------------------------------------------------------------
    def fill_cache(
        self, n_workers: int | None = None, progress: bool = True, idxs: Sequence[int] | None = None
    ) -> None:
        """Encode every item of this view not yet cached, with a thread pool (image decoders release the GIL).

        Quiet unless it takes more than 2 seconds; then a progress bar shows. Does nothing without a cache.

        Args:
            idxs: the items to encode (positions in the whole item list); default: this view's items.
        """
        if self._cache is None:
            return
        todo = [i for i in (self.idxs if idxs is None else idxs) if self._cache[i] is None]
        if not todo:
            return
        n_workers = n_workers if n_workers is not None else min(8, os.cpu_count() or 1)
        start, bar, task, asked = time.perf_counter(), None, None, False
        try:
            if n_workers <= 1 or len(todo) < 32:
                results = map(self._encoded, todo)
                pool = None
            else:
                pool = ThreadPoolExecutor(max_workers=n_workers)
                results = pool.map(self._encoded, todo, chunksize=16)
            for done, _ in enumerate(results, 1):
                if not asked and time.perf_counter() - start > _QUIET_SECONDS:
                    asked = True
                    bar, task = _start_bar(len(todo), done, progress)
                if bar is not None:
                    bar.update(task, completed=done)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.stop()

    def __repr__(self) -> str:
        blocks = ", ".join(type(b).__name__ for b in self.blocks)
        return (
            f"Datasets({len(self)} items; train {len(self.splits[0])}, valid {len(self.splits[1])}; "
            f"blocks: {blocks}; cache={self.cache})"
        )


def _start_bar(total: int, done: int, progress: bool) -> tuple[Any, Any]:
    """A rich progress bar for the cache (or ``(None, None)`` on a console that should stay quiet)."""
    from ember.core.parallel import progress_enabled

    if not progress_enabled(progress):
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("Caching items"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    bar.start()
    return bar, bar.add_task("cache", total=total, completed=done)
