"""`Transform`: the base of item and batch transforms, which act by the kind of each element.

A sample (or a batch) is a plain tuple; the blocks say what each element is, as a tuple of *kinds*
(``("image", "category")``, ``("image", "mask")``, ``("image", "points")``, …). A transform handles
some kinds and leaves the others as they are: a resize scales an image bilinearly, a mask with
nearest-neighbour and points by the same factor. Subclasses implement ``encode_<kind>`` methods;
when several elements must share random parameters (the same crop for an image and its mask), the
transform draws them once in :meth:`before_call` and reads them in each ``encode_<kind>``.

Attributes:
    split_idx: ``None`` applies everywhere, ``0`` to training data only (augmentation), ``1`` to
        validation only.
    order: transforms of one list run in increasing `order`.
    deterministic: ``True`` when the transform always gives the same output for the same input (a
        resize, not a random crop). An item transform that is deterministic and has ``split_idx is
        None`` can be cached: :class:`~ember.data.datasets.Datasets` store the result of the blocks'
        encoding followed by the leading run of such transforms, so that decoding and resizing happen
        once rather than every epoch. Transforms that run after the cache must not change their
        input in place (they would change the cached tensors).

Decoding: :meth:`Transform.decode` undoes a batch transform for display (``decode_<kind>`` methods,
e.g. a normalization multiplies the standard deviation back in). Loaders call the batch transforms'
``decode`` in reverse order before the blocks decode each element.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Transform", "apply_tfms", "FuncTransform", "as_transform"]


class Transform:
    """Base of ember's transforms (see the module docstring)."""

    split_idx: int | None = None
    order: int = 0
    deterministic: bool = False

    def before_call(self, sample: tuple, kinds: Sequence[str], split: int) -> None:
        """Draw the random parameters shared by every element of this sample/batch (default: nothing)."""

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        if self.split_idx is not None and self.split_idx != split:
            return sample
        self.before_call(sample, kinds, split)
        out = []
        for x, kind in zip(sample, kinds):
            f = getattr(self, f"encode_{kind}", None)
            out.append(f(x) if f is not None else x)
        return tuple(out)

    def decode(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        """Undo this transform for display, element by element, with ``decode_<kind>`` methods (default: unchanged)."""
        out = []
        for x, kind in zip(batch, kinds):
            f = getattr(self, f"decode_{kind}", None)
            out.append(f(x) if f is not None else x)
        return tuple(out)

    def to_recipe(self) -> dict[str, Any]:
        """Constructor arguments, for export (subclasses that are needed at inference override this)."""
        return {}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Transform:
        return cls(**data)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.to_recipe().items())
        return f"{type(self).__name__}({args})"


class FuncTransform(Transform):
    """A plain function ``sample -> sample`` (or ``batch -> batch``) used as a transform of every kind."""

    def __init__(self, func: Callable[[tuple], tuple], split_idx: int | None = None) -> None:
        self.func = func
        self.split_idx = split_idx

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        if self.split_idx is not None and self.split_idx != split:
            return sample
        return self.func(sample)

    def decode(self, batch: tuple, kinds: Sequence[str]) -> tuple:
        """A plain function cannot be undone: the batch is returned unchanged."""
        return batch

    def __repr__(self) -> str:
        return f"FuncTransform({getattr(self.func, '__name__', self.func)!r})"


def as_transform(tfm: Transform | Callable[[tuple], tuple]) -> Transform:
    """A Transform as it is; a plain callable wrapped in :class:`FuncTransform`."""
    return tfm if isinstance(tfm, Transform) else FuncTransform(tfm)


def apply_tfms(tfms: Sequence[Transform], sample: tuple, kinds: Sequence[str], split: int) -> tuple:
    """Apply transforms in order (they are expected to be sorted by `order` already)."""
    for t in tfms:
        sample = t(sample, kinds, split)
    return sample
