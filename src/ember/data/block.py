"""Blocks: what each element of a sample is, and how it becomes a tensor and back.

A block knows one *kind* of data (``"category"``, ``"image"``, ``"points"``, …): it learns its state
from the training values (:meth:`TransformBlock.setup`, e.g. a vocabulary), turns one raw value into
a tensor (:meth:`~TransformBlock.encode`), batches tensors (:meth:`~TransformBlock.collate`), turns
a tensor back into something a person reads (:meth:`~TransformBlock.decode`), draws it
(:meth:`~TransformBlock.show`), and, as a target, suggests the loss and the number of model
outputs. Blocks may contribute default item and batch transforms.

:class:`DataBlock` puts blocks, an item finder, a splitter, labellers and transforms together and
builds :class:`~ember.data.datasets.Datasets` and :class:`~ember.data.loaders.DataLoaders` from a source.

>>> block = CategoryBlock()
>>> block.setup(["dog", "cat", "dog"])
>>> block.vocab, int(block.encode("dog")), block.decode(block.encode("dog"))
(['cat', 'dog'], 1, 'dog')
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.transform import Transform

__all__ = ["TransformBlock", "CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "DataBlock", "LABEL_KINDS"]

# Kinds that are drawn as a title (a label, a value) rather than as a picture.
LABEL_KINDS = frozenset({"category", "multicategory", "regression"})
_NA = "#na#"


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@register_recipe()
class TransformBlock:
    """The base block, also usable directly with your own functions.

    Args:
        kind: what the element is; transforms act by kind.
        encode: ``raw value -> tensor`` (default: tensors pass through, numbers become tensors).
        decode: ``tensor -> human value`` (default: the tensor itself).
        item_tfms: item transforms this block contributes (they run before the user's).
        batch_tfms: batch transforms this block contributes.
        loss_func: the default loss when this block is the target.
        n_out: the number of model outputs this target needs.

    Subclasses override the methods; they need not call ``super().__init__``.

    >>> block = TransformBlock(kind="number", encode=lambda s: torch.tensor(float(s)))
    >>> block.encode("2.5")
    tensor(2.5000)
    """

    kind: str = "any"
    item_tfms: list[Transform] = []  # noqa: RUF012 - read-only class defaults; instances get their own list
    batch_tfms: list[Transform] = []  # noqa: RUF012

    def __init__(
        self,
        kind: str | None = None,
        encode: Callable[[Any], torch.Tensor] | None = None,
        decode: Callable[[torch.Tensor], Any] | None = None,
        item_tfms: Sequence[Transform] | None = None,
        batch_tfms: Sequence[Transform] | None = None,
        loss_func: nn.Module | None = None,
        n_out: int | None = None,
    ) -> None:
        if kind is not None:
            if not isinstance(kind, str) or not kind:
                raise ConfigError(expected("a non-empty str", "kind", kind))
            self.kind = kind
        self._encode_fn, self._decode_fn = encode, decode
        self.item_tfms = list(item_tfms or [])
        self.batch_tfms = list(batch_tfms or [])
        self._loss_func, self._n_out = loss_func, n_out

    # -- the block interface ------------------------------------------------------------------------
    def setup(self, train_values: Sequence[Any]) -> None:
        """Learn state (a vocabulary, a size) from the training values. Default: nothing."""

    def validate(self, value: Any) -> None:
        """Raise a DataError if `value` cannot be encoded after setup (cheap checks only; default: none).

        Datasets call this for every item before training so that, e.g., a validation label missing from
        the vocabulary is reported at once rather than in the middle of an epoch.
        """

    def encode(self, value: Any) -> torch.Tensor:
        """One raw value -> a tensor."""
        fn = getattr(self, "_encode_fn", None)
        if fn is not None:
            return fn(value)
        if isinstance(value, torch.Tensor):
            return value
        if isinstance(value, (bool, int, float)) or (hasattr(value, "__array__") and not isinstance(value, str)):
            return torch.as_tensor(value)
        raise DataError(
            f"A TransformBlock(kind={self.kind!r}) without an `encode` function cannot turn {_short(value)} "
            "into a tensor. Pass TransformBlock(encode=...) or use a block for this kind of data."
        )

    #: What to do when elements of a batch have different shapes (the end of :meth:`collate`'s error).
    collate_hint = "Add an item transform that gives every item the same size (e.g. Resize for images)."

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Batch the encoded elements of several samples (default: stack them)."""
        try:
            return torch.stack(xs)
        except (RuntimeError, TypeError) as e:
            tensors = [x for x in xs if isinstance(x, torch.Tensor)]
            dtypes = sorted({str(x.dtype).removeprefix("torch.") for x in tensors})
            if len(dtypes) > 1:
                raise DataError(
                    f"Cannot batch the {self.kind!r} elements: their dtypes differ ({dtypes}). The block's `encode` "
                    "must give every item the same dtype (e.g. convert 16-bit pixels to uint8)."
                ) from e
            shapes = sorted({tuple(x.shape) for x in tensors})
            raise DataError(
                f"Cannot batch the {self.kind!r} elements: their shapes differ ({shapes[:4]}). {self.collate_hint}"
            ) from e

    def decode(self, x: torch.Tensor) -> Any:
        """One element of a (CPU) batch -> a human value."""
        fn = getattr(self, "_decode_fn", None)
        return fn(x) if fn is not None else x

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        """Draw a decoded value on a matplotlib Axes (default: its text in the middle of the axes)."""
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        ax.text(0.5, 0.5, _short(value, 40), ha="center", va="center", wrap=True)
        ax.axis("off")

    @property
    def loss_func(self) -> nn.Module | None:
        """The default loss when this block is the target (``None``: the user must pass one)."""
        return getattr(self, "_loss_func", None)

    @property
    def n_out(self) -> int | None:
        """How many outputs the model needs for this target (``None``: unknown)."""
        return getattr(self, "_n_out", None)

    # -- export -------------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        """The kind and n_out (custom functions cannot be exported; subclass and register instead)."""
        return {"kind": self.kind, "n_out": self.n_out}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> TransformBlock:
        return cls(kind=data.get("kind"), n_out=data.get("n_out"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kind={self.kind!r})"


def _title(ax: Any, text: str, **kwargs: Any) -> None:
    """Set a title; a second label on the same axes goes on a new line."""
    old = ax.get_title()
    ax.set_title(f"{old}\n{text}" if old else text, **kwargs)


def _sorted_unique(values: Sequence[Any]) -> list[Any]:
    uniq = list(dict.fromkeys(values))
    try:
        return sorted(uniq)
    except TypeError:  # mixed types: sort by their text
        return sorted(uniq, key=str)


@register_recipe()
class CategoryBlock(TransformBlock):
    """A single label per item, encoded as the index of the label in `vocab`.

    Args:
        vocab: the labels, in order; ``None`` learns them from the training labels.
        sort: sort the learned labels (otherwise the order of first appearance).
        add_na: put ``"#na#"`` first in the vocabulary, and encode any unknown or missing label as it.

    Labels are stored as text (``vocab`` is a list of str, so it can be exported as JSON): the label
    ``3`` and the label ``"3"`` are the same class.
    """

    kind = "category"

    def __init__(self, vocab: Sequence[Any] | None = None, sort: bool = True, add_na: bool = False) -> None:
        super().__init__()
        self.sort, self.add_na = sort, add_na
        self.vocab: list[str] | None = None
        self._o2i: dict[str, int] = {}
        self._fixed = vocab is not None  # a given vocab is kept; a learned one is relearned by each setup
        if vocab is not None:
            self._set_vocab([str(v) for v in vocab])

    def _set_vocab(self, vocab: list[str]) -> None:
        if self.add_na and (not vocab or vocab[0] != _NA):
            vocab = [_NA, *vocab]
        if len(set(vocab)) != len(vocab):
            raise ConfigError(expected("labels without duplicates", "vocab", vocab[:20]))
        self.vocab = vocab
        self._o2i = {v: i for i, v in enumerate(vocab)}

    def setup(self, train_values: Sequence[Any]) -> None:
        if self._fixed:
            return
        labels = [v for v in train_values if not _is_missing(v)]
        if not labels:
            raise DataError("CategoryBlock found no training label: check `get_y` and the splitter.")
        uniq = _sorted_unique(labels) if self.sort else list(dict.fromkeys(labels))
        self._set_vocab([str(v) for v in uniq])

    def _index(self, value: Any) -> int:
        if self.vocab is None:
            raise DataError("This CategoryBlock has no vocab yet: call setup(train_labels) or pass vocab=[...].")
        idx = None if _is_missing(value) else self._o2i.get(str(value))
        if idx is None:
            if self.add_na:
                return 0
            shown = self.vocab if len(self.vocab) <= 20 else [*self.vocab[:20], "..."]
            if _is_missing(value):
                err = DataError(
                    f"The label is missing ({value!r}). Fill in or drop the items without a label (e.g. "
                    "df.dropna(subset=[label_column])), or use CategoryBlock(add_na=True) to map missing labels "
                    "to '#na#'."
                )
                err.new_item_message = f"The label is missing ({value!r}): give every item a label."
                raise err
            if self._fixed:
                err = DataError(
                    f"The label {value!r} is not in the vocabulary given (vocab={shown}). Add it to `vocab`, or "
                    "use CategoryBlock(add_na=True) to map unknown labels to '#na#'."
                )
            else:
                err = DataError(
                    f"The label {value!r} is not in the vocabulary learned from the training labels ({shown}). "
                    "Every class needs at least one training item: use a splitter that keeps every class in "
                    "training (e.g. TrainTestSplitter(stratify=labels)), pass CategoryBlock(vocab=[...]), or "
                    "CategoryBlock(add_na=True) to map unknown labels to '#na#'."
                )
            # What Datasets over new items (test_dl with labels) say instead: no split is involved there.
            err.new_item_message = (
                f"The label {value!r} is not one of the classes this model knows ({shown}). Check the labels of "
                "these items, or leave out the items of classes the model was not trained on."
            )
            raise err
        return idx

    def validate(self, value: Any) -> None:
        self._index(value)

    def encode(self, value: Any) -> torch.Tensor:
        return torch.tensor(self._index(value), dtype=torch.long)  # ()

    def decode(self, x: torch.Tensor) -> str:
        return self.vocab[int(x)]

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        _title(ax, str(value), **kwargs)

    @property
    def loss_func(self) -> nn.Module:
        from ember.losses import CrossEntropyLossFlat

        return CrossEntropyLossFlat()

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) if self.vocab is not None else None

    def to_recipe(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "sort": self.sort, "add_na": self.add_na}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> CategoryBlock:
        return cls(vocab=data.get("vocab"), sort=data.get("sort", True), add_na=data.get("add_na", False))

    def __repr__(self) -> str:
        n = len(self.vocab) if self.vocab is not None else "?"
        return f"CategoryBlock({n} classes)"


@register_recipe()
class MultiCategoryBlock(TransformBlock):
    """Several labels per item (lists, or strings split on `label_delim`), encoded as a multi-hot float vector.

    Args:
        encoded: the values are already multi-hot vectors (one 0/1 per class); then `vocab` names the
            classes (default ``"0"``, ``"1"``, …).
        vocab: the labels; ``None`` learns them (sorted) from the training labels.
        label_delim: split string values on this delimiter (``"dog cat"`` with ``" "``).
    """

    kind = "multicategory"

    def __init__(
        self, encoded: bool = False, vocab: Sequence[Any] | None = None, label_delim: str | None = None
    ) -> None:
        super().__init__()
        self.encoded, self.label_delim = encoded, label_delim
        self.vocab: list[str] | None = [str(v) for v in vocab] if vocab is not None else None
        self._o2i = {v: i for i, v in enumerate(self.vocab)} if self.vocab is not None else {}
        self._fixed = vocab is not None

    def _labels(self, value: Any) -> list[str]:
        if _is_missing(value) or (isinstance(value, str) and value == ""):
            return []
        if isinstance(value, str):
            return [v for v in value.split(self.label_delim)] if self.label_delim is not None else [value]
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        try:
            return [str(v) for v in value]
        except TypeError:
            return [str(value)]

    def setup(self, train_values: Sequence[Any]) -> None:
        if self._fixed:
            return
        if self.encoded:
            first = next(iter(train_values), None)
            if first is None:
                raise DataError("MultiCategoryBlock(encoded=True) found no training value to size its vocab.")
            self.vocab = [str(i) for i in range(len(first))]
        else:
            labels = [lab for v in train_values for lab in self._labels(v)]
            if not labels:
                raise DataError("MultiCategoryBlock found no training label: check `get_y` and `label_delim`.")
            self.vocab = [str(v) for v in _sorted_unique(labels)]
        self._o2i = {v: i for i, v in enumerate(self.vocab)}

    def validate(self, value: Any) -> None:
        self.encode(value)

    def encode(self, value: Any) -> torch.Tensor:
        if self.vocab is None:
            raise DataError("This MultiCategoryBlock has no vocab yet: call setup(train_labels) or pass vocab=[...].")
        if self.encoded:
            x = torch.as_tensor(value, dtype=torch.float32).reshape(-1)  # (n_classes,)
            if x.numel() != len(self.vocab):
                raise DataError(expected(f"a vector of {len(self.vocab)} values", "value", _short(value)))
            return x
        x = torch.zeros(len(self.vocab), dtype=torch.float32)  # (n_classes,)
        for lab in self._labels(value):
            idx = self._o2i.get(lab)
            if idx is None:
                err = DataError(
                    f"The label {lab!r} is not in the vocabulary learned from the training labels "
                    f"({self.vocab[:20]}). Use a splitter that keeps every label in training, or pass "
                    "MultiCategoryBlock(vocab=[...])."
                    if not self._fixed
                    else f"The label {lab!r} is not in the vocabulary given (vocab={self.vocab[:20]}). Add it to "
                    "`vocab`."
                )
                err.new_item_message = (
                    f"The label {lab!r} is not one of the labels this model knows ({self.vocab[:20]}). Check the "
                    "labels of these items."
                )
                raise err
            x[idx] = 1.0
        return x

    def decode(self, x: torch.Tensor) -> list[str]:
        return [self.vocab[i] for i in torch.nonzero(x > 0.5).flatten().tolist()]

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        _title(ax, ";".join(str(v) for v in value), **kwargs)

    @property
    def loss_func(self) -> nn.Module:
        from ember.losses import BCEWithLogitsLossFlat

        return BCEWithLogitsLossFlat()

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) if self.vocab is not None else None

    def to_recipe(self) -> dict[str, Any]:
        return {"encoded": self.encoded, "vocab": self.vocab, "label_delim": self.label_delim}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> MultiCategoryBlock:
        return cls(encoded=data.get("encoded", False), vocab=data.get("vocab"), label_delim=data.get("label_delim"))

    def __repr__(self) -> str:
        n = len(self.vocab) if self.vocab is not None else "?"
        return f"MultiCategoryBlock({n} labels)"


@register_recipe()
class RegressionBlock(TransformBlock):
    """Float targets: one number per item (a scalar tensor) or a vector of `n_out` numbers.

    Args:
        n_out: the number of values per item; ``None`` reads it from the first training value.
    """

    kind = "regression"

    def __init__(self, n_out: int | None = None) -> None:
        super().__init__()
        if n_out is not None and (not isinstance(n_out, int) or n_out < 1):
            raise ConfigError(expected("a positive int or None", "n_out", n_out))
        self._n_out, self._fixed = n_out, n_out is not None

    def setup(self, train_values: Sequence[Any]) -> None:
        if not self._fixed:
            self._n_out = None
            first = next(iter(train_values), None)
            if first is not None:
                self._n_out = int(self.encode(first).numel())

    def encode(self, value: Any) -> torch.Tensor:
        try:
            if isinstance(value, str):
                value = [float(v) for v in value.split()] if " " in value.strip() else float(value)
            x = torch.as_tensor(value, dtype=torch.float32)  # () or (n_out,)
        except (TypeError, ValueError, RuntimeError) as e:
            raise DataError(expected("a number or a list of numbers", "value", _short(value))) from e
        if x.ndim > 1:
            x = x.flatten()
        if self._n_out is not None and x.numel() != self._n_out:
            raise DataError(expected(f"{self._n_out} value(s), as in training", "value", _short(value)))
        return x

    def decode(self, x: torch.Tensor) -> float | list[float]:
        return float(x) if x.ndim == 0 else [float(v) for v in x.tolist()]

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        text = f"{value:.3g}" if isinstance(value, float) else ", ".join(f"{v:.3g}" for v in value)
        _title(ax, text, **kwargs)

    @property
    def loss_func(self) -> nn.Module:
        from ember.losses import MSELossFlat

        return MSELossFlat()

    @property
    def n_out(self) -> int | None:
        return self._n_out

    def to_recipe(self) -> dict[str, Any]:
        return {"n_out": self._n_out}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> RegressionBlock:
        return cls(n_out=data.get("n_out"))

    def __repr__(self) -> str:
        return f"RegressionBlock(n_out={self._n_out})"


# ------------------------------------------------------------------------------------------ DataBlock
def _merge_tfms(defaults: Sequence[Any], user: Sequence[Any] | Any | None) -> list[Any]:
    """Blocks' default transforms, then the user's; a user transform replaces a default of the same type."""
    if user is None:
        user = []
    elif not isinstance(user, (list, tuple)):
        user = [user]
    user_types = {type(t) for t in user}
    return [t for t in defaults if type(t) not in user_types] + list(user)


def fresh_copies(objs: Sequence[Any]) -> list[Any]:
    """Deep copies of blocks or transforms, so that state learned by one set of loaders (a vocabulary, normalization
    statistics) is never shared with another; an object that cannot be copied is kept as it is."""
    out = []
    for obj in objs:
        try:
            out.append(copy.deepcopy(obj))
        except Exception:  # e.g. a transform holding a handle or a lock: shared, as before
            out.append(obj)
    return out


def _getter_list(getter: Any, n: int, name: str) -> list[Any]:
    if isinstance(getter, (list, tuple)):
        if len(getter) != n:
            raise ConfigError(expected(f"one function per block it reads ({n})", f"len({name})", len(getter)))
        return list(getter)
    return [getter] * n


class DataBlock:
    """A recipe for turning a source (a folder, a DataFrame) into :class:`~ember.data.loaders.DataLoaders`.

    Args:
        blocks: one block per sample element, inputs first (classes or instances: ``ImageBlock`` or
            ``ImageBlock(mode="L")``).
        get_items: ``source -> items`` (e.g. :func:`~ember.data.items.get_image_files`); ``None`` takes a
            DataFrame's rows or a list as they are.
        splitter: ``items -> (train_idx, valid_idx)``; default ``RandomSplitter(valid_pct=0.2)``.
        get_x: ``item -> raw input`` (or a list, one per input block); ``None``: the item itself.
        get_y: ``item -> raw target`` (or a list, one per target block); ``None``: the item itself.
        item_tfms: transforms run on each sample on the CPU, after the blocks' own item transforms.
        batch_tfms: transforms run on each batch on the device, after the blocks' own batch transforms.
        n_inp: how many leading blocks are inputs (default: 1 with two blocks, else all but the last).

    >>> dblock = DataBlock(                                                 # doctest: +SKIP
    ...     blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
    ...     splitter=GrandparentSplitter("training", "testing"), get_y=parent_label)
    >>> dls = dblock.dataloaders(path, bs=64)                               # doctest: +SKIP
    """

    def __init__(
        self,
        blocks: Sequence[Any],
        get_items: Callable[[Any], Any] | None = None,
        splitter: Callable[[Any], tuple[Sequence[int], Sequence[int]]] | None = None,
        get_x: Callable[[Any], Any] | Sequence[Callable[[Any], Any] | None] | None = None,
        get_y: Callable[[Any], Any] | Sequence[Callable[[Any], Any] | None] | None = None,
        item_tfms: Sequence[Any] | Any | None = None,
        batch_tfms: Sequence[Any] | Any | None = None,
        n_inp: int | None = None,
    ) -> None:
        from ember.data.items import RandomSplitter

        if isinstance(blocks, (type, TransformBlock)) or not isinstance(blocks, (list, tuple)) or not blocks:
            raise ConfigError(expected("a list of blocks, e.g. (ImageBlock, CategoryBlock)", "blocks", blocks))
        self.blocks = [b() if isinstance(b, type) else b for b in blocks]
        for b in self.blocks:
            if not all(hasattr(b, m) for m in ("encode", "decode", "collate", "kind")):
                raise ConfigError(expected("blocks (with kind, encode, decode, collate)", "blocks", b))
        n = len(self.blocks)
        if n_inp is None:
            n_inp = 1 if n <= 2 else n - 1
        if not isinstance(n_inp, int) or not 1 <= n_inp <= n:
            raise ConfigError(expected(f"an int between 1 and {n}", "n_inp", n_inp))
        self.n_inp = n_inp
        for name, f in (("get_items", get_items), ("splitter", splitter)):
            if f is not None and not callable(f):
                raise ConfigError(expected("a function", name, f))
        self.get_items = get_items
        self.splitter = splitter if splitter is not None else RandomSplitter(valid_pct=0.2)
        self.get_x, self.get_y = get_x, get_y
        self.getters = _getter_list(get_x, n_inp, "get_x") + _getter_list(get_y, n - n_inp, "get_y")
        self.item_tfms = _merge_tfms([t for b in self.blocks for t in getattr(b, "item_tfms", None) or []], item_tfms)
        self.batch_tfms = _merge_tfms(
            [t for b in self.blocks for t in getattr(b, "batch_tfms", None) or []], batch_tfms
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.kind for b in self.blocks)

    def _items(self, source: Any) -> Any:
        if self.get_items is not None:
            items = self.get_items(source)
        elif hasattr(source, "iloc") and hasattr(source, "columns"):
            items = source
        elif isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            raise ConfigError(
                "This DataBlock has no `get_items`, so it cannot find items in a path. "
                "Pass get_items=get_image_files (or get_files), or pass a list / DataFrame of items."
            )
        else:
            items = list(source)
        if hasattr(items, "iloc") and hasattr(items, "columns"):
            items = items.reset_index(drop=True)
        if len(items) == 0:
            raise DataError(f"`get_items` found no items in {source!r:.200}: check the path and the extensions.")
        return items

    def datasets(self, source: Any, cache: bool | None = None) -> Any:
        """Find the items in `source`, split them, set the blocks up, and return :class:`~ember.data.datasets.Datasets`.

        Each call works on its own copies of the blocks: what they learn here (a vocabulary, the codes of a mask)
        never changes Datasets or loaders made earlier from this DataBlock.

        Args:
            cache: keep encoded samples in memory (``None``: when they fit, see ``ember.data.datasets.cache_budget``).
        """
        from ember.data.datasets import Datasets

        items = self._items(source)
        splits = self.splitter(items)
        return Datasets(
            items,
            fresh_copies(self.blocks),
            getters=self.getters,
            n_inp=self.n_inp,
            item_tfms=self.item_tfms,
            splits=splits,
            cache=cache,
        )

    def dataloaders(
        self,
        source: Any,
        bs: int = 64,
        num_workers: int | None = None,
        device: Any = None,
        cache: bool | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Datasets, then loaders: the training loader shuffles and drops the last partial batch.

        When the data is cached, every item is encoded now (with a thread pool), so the first epoch is as
        fast as the others. The validation loader uses the same `bs`, in order, keeping every item.

        The loaders get their own copies of the blocks and batch transforms: a ``Normalize()`` fitted on these
        loaders' training data is not the one in ``batch_tfms``, so other loaders made from this DataBlock (another
        folder, a sample) learn their own statistics.

        Args:
            num_workers: ``None``: 0 when cached (workers would only add the cost of sending tensors between
                processes), else ``min(8, cpu_count)``.
            device: where batches go (default: CUDA when available).
            kwargs: passed to :class:`torch.utils.data.DataLoader`.
        """
        from ember.data.loaders import DataLoaders, check_partial_n, check_random_loader_args, train_weights

        # Weighted or partial loaders: bad arguments are reported before the cache is filled (minutes on large data).
        check_random_loader_args(kwargs.get("wgts"), kwargs.get("partial_n"), shuffle, kwargs)
        dsets = self.datasets(source, cache=cache)
        if kwargs.get("wgts") is not None:
            train_idx = dsets.splits[0]
            train_weights(kwargs["wgts"], len(train_idx), (dsets.n_source, dsets.source_positions(train_idx)))
        if kwargs.get("partial_n") is not None:
            check_partial_n(kwargs["partial_n"], len(dsets.splits[0]))
        if dsets.cache:
            dsets.fill_cache(idxs=dsets.splits[0] + dsets.splits[1])
        return DataLoaders.from_dsets(
            dsets,
            bs=bs,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=num_workers,
            device=device,
            batch_tfms=fresh_copies(self.batch_tfms),
            **kwargs,
        )

    def weighted_dataloaders(self, source: Any, wgts: Sequence[float] | Any, bs: int = 64, **kwargs: Any) -> Any:
        """Like :meth:`dataloaders`, but the training loader samples items in proportion to `wgts`.

        Each epoch it draws as many items as the training set has, with replacement, each with probability
        proportional to its weight (weight 0: never drawn); ``set_seed`` before building the loaders repeats the
        draws. The validation loader is unchanged.

        Args:
            wgts: non-negative weights, one per item that `get_items` finds in `source` (as the splitter sees
                them; the training items' are used), or one per training item.
            kwargs: as for :meth:`dataloaders`.

        Raises:
            ConfigError: no weights (None), weights of another length, negative or not finite, or zero on every
                training item.
        """
        from ember.data.loaders import require_arg

        require_arg(wgts, "wgts", "one weight per item")
        return self.dataloaders(source, bs=bs, wgts=wgts, **kwargs)

    def partial_dataloaders(self, source: Any, partial_n: int, bs: int = 64, **kwargs: Any) -> Any:
        """Like :meth:`dataloaders`, but each epoch the training loader reads a fresh random choice of `partial_n`
        distinct training items (a quick run on a large dataset). The validation loader is unchanged.

        With ``drop_last`` (the default) and `partial_n` of at least `bs`, an epoch reads whole batches only:
        ``partial_n=15, bs=10`` reads 10 items.

        Raises:
            ConfigError: `partial_n` is not a positive int.
        """
        from ember.data.loaders import require_arg

        require_arg(partial_n, "partial_n", "a positive int (the training items read each epoch)")
        return self.dataloaders(source, bs=bs, partial_n=partial_n, **kwargs)

    def summary(self, source: Any, bs: int = 4, device: Any = "cpu") -> None:
        """Walk one sample (and one small batch) through every step, printing what each step produced.

        When a step fails, says which step, on which item and why, and returns normally.
        """
        from ember.data.show import datablock_summary

        datablock_summary(self, source, bs=bs, device=device)

    def __repr__(self) -> str:
        blocks = ", ".join(repr(b) for b in self.blocks)
        return f"DataBlock(blocks=[{blocks}], n_inp={self.n_inp}, splitter={self.splitter!r})"
