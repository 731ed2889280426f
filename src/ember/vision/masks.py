"""Segmentation masks: reading them as class ids, the mask block, and drawing a mask.

Segmentation masks are integer tensors of shape ``(H, W)`` holding one class id per pixel (an index into
the codes of :class:`MaskBlock`); batches of them are ``int64 (B, H, W)``. The item and batch transforms
resize and warp them with the image's geometry but with nearest-neighbour sampling, so a pixel is always
one of the class ids.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.block import TransformBlock

__all__ = ["MaskBlock", "load_mask", "mask_to_tensor", "show_mask"]


def _pil_mask(im: Any, source: str) -> np.ndarray:
    """The class ids of a PIL image ``(H, W)``: pixel values for modes 1/L/P/I, the first band of LA/PA, and
    grey RGB(A) (all channels equal); a coloured mask is refused."""
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=np.uint8)
    if mode in ("L", "P") or mode.startswith("I"):
        return np.asarray(im)
    if mode in ("LA", "PA"):
        return np.asarray(im.getchannel(0))
    if mode in ("RGB", "RGBA"):
        arr = np.asarray(im)[..., :3]  # (H, W, 3)
        if (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
            return arr[..., 0]
        raise DataError(
            f"The mask {source} is a colour image (mode {mode}), not one class id per pixel. Save masks in mode "
            "'L' or 'P' (pixel value = class index), or convert each colour to its class index first."
        )
    raise DataError(
        f"The mask {source} has the image mode {mode!r}; a mask needs integer class ids (modes 'L', 'P' or 'I')."
    )


def _compact_ids(x: torch.Tensor, source: str) -> torch.Tensor:
    """Class ids ``(H, W)`` as uint8 when they fit (a quarter of the memory in the cache), else int64."""
    if x.dtype == torch.bool:
        return x.to(torch.uint8)
    if x.is_floating_point():
        if not bool((x == x.round()).all()):
            raise DataError(f"The mask {source} holds fractional values; a mask holds whole class ids.")
    elif x.dtype == torch.uint8:
        return x
    if x.numel() == 0:
        return x.to(torch.uint8)
    lo, hi = (float(v) for v in torch.aminmax(x))
    if lo < 0:
        raise DataError(f"The mask {source} holds the negative value {int(lo)}; class ids start at 0.")
    return x.to(torch.uint8 if hi < 256 else torch.int64)


def _torch_friendly(arr: np.ndarray) -> np.ndarray:
    """Bools as uint8 and unsigned ints wider than a byte as int64 (torch handles uint16/uint32 poorly)."""
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind == "u" and arr.dtype != np.uint8:
        arr = arr.astype(np.int64)
    if not arr.flags.writeable:  # Pillow's arrays are read-only views
        arr = arr.copy()
    return np.ascontiguousarray(arr)


def _ids_from_array(arr: np.ndarray, source: str) -> torch.Tensor:
    return _compact_ids(torch.from_numpy(_torch_friendly(arr)), source)


def load_mask(path: str | os.PathLike) -> torch.Tensor:
    """Read a mask file (a PNG whose pixel values are class ids, mode "L" or "P") as an ``(H, W)`` tensor.

    The tensor is ``uint8`` when every id is below 256, ``int64`` otherwise.

    Raises:
        DataError: the file is missing, cannot be decoded, or holds colours rather than class ids (the
            message names the file).
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DataError(f"Cannot read the mask {path}: no such file.")
    try:
        with Image.open(path) as im:
            arr = _pil_mask(im, str(path))
    except DataError:
        raise
    except Exception as e:  # Pillow raises many kinds (UnidentifiedImageError, OSError, SyntaxError …)
        raise DataError(f"Cannot decode the mask {path}: {type(e).__name__}: {e}") from e
    return _ids_from_array(arr, str(path))


def mask_to_tensor(value: Any) -> torch.Tensor:
    """A mask (a path, a PIL image, an ``(H, W)`` integer array or tensor) as class ids ``(H, W)``.

    ``(1, H, W)`` and ``(H, W, 1)`` are accepted too. The result is ``uint8`` when every id is below 256, else
    ``int64``; the ids are not checked against any codes here (that is :meth:`MaskBlock.encode`'s job).

    Raises:
        DataError: for a value that is not a mask (the message names the file for a path).
    """
    if isinstance(value, (str, os.PathLike)):
        return load_mask(value)
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image, without importing PIL
        return _ids_from_array(_pil_mask(value, "given"), "given")
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(_torch_friendly(value))
    if not isinstance(value, torch.Tensor):
        raise DataError(expected("a mask (a path, a PIL image, an array or a tensor)", "mask", type(value).__name__))
    x = value.detach().cpu()
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    elif x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 2:
        raise DataError(expected("a mask of shape (H, W)", "mask.shape", tuple(value.shape)))
    return _compact_ids(x, f"of shape {tuple(x.shape)}")


def show_mask(
    mask: Any,
    ax: Any = None,
    n_codes: int | None = None,
    alpha: float | None = None,
    cmap: str = "tab20",
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
    **kwargs: Any,
) -> Any:
    """Draw a mask of class ids ``(H, W)`` on `ax`: half transparent over an image already drawn there, else alone.

    Args:
        n_codes: the number of classes, so that a class has the same colour in every mask (default: from
            the largest id in this mask).
        alpha: the mask's opacity (default 0.5 over an image, 1 alone).

    Returns:
        The matplotlib Axes drawn on (a new figure's when `ax` is None).
    """
    import matplotlib.pyplot as plt

    m = mask_to_tensor(mask).long()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (3, 3))
    over = bool(ax.images)
    if alpha is None:
        alpha = 0.5 if over else 1.0
    vmax = max(1, (n_codes - 1) if n_codes else int(m.max()) if m.numel() else 1)
    kwargs.setdefault("interpolation", "nearest")
    if over:
        kwargs.setdefault("extent", ax.images[0].get_extent())  # on the image's pixels, whatever the mask's size
    ax.imshow(m.numpy(), cmap=cmap, vmin=0, vmax=vmax, alpha=alpha, **kwargs)
    ax.axis("off")
    if title is not None:
        ax.set_title(title)
    return ax


@register_recipe()
class MaskBlock(TransformBlock):
    """A segmentation mask: one class id per pixel, an index into `codes`.

    A value is a mask file (a PNG whose pixel values are the class ids, mode "L" or "P"), a PIL image, or
    an ``(H, W)`` integer array or tensor. It is encoded as ``(H, W)`` class ids (``uint8`` when they fit)
    and batched as ``int64 (B, H, W)``. Item and batch transforms move masks with their image but sample
    them with nearest neighbour (ids stay ids); lighting and normalization leave them alone.

    As the target, the block gives ``dls.vocab`` (the codes), ``dls.c`` (the number of codes, the model's
    output channels) and the loss ``CrossEntropyLossFlat(axis=1)`` for ``(B, C, H, W)`` scores.

    Args:
        codes: the class names, class id ``i`` being ``codes[i]`` (e.g. ``["background", "road", …]``);
            ``None`` reads every training mask once to find the largest id and names the classes "0", "1", ….

    Raises:
        DataError: (when encoding) a mask holds an id with no code; the message names the file.

    >>> DataBlock(blocks=(ImageBlock, MaskBlock(codes)), get_y=label_func, ...)   # doctest: +SKIP
    """

    kind = "mask"

    def __init__(self, codes: Sequence[Any] | None = None) -> None:
        self.item_tfms = []
        self.batch_tfms = []
        self._fixed = codes is not None  # given codes are kept; learned ones are relearned by each setup
        self.codes: list[str] | None = self._check_codes(codes) if codes is not None else None

    @staticmethod
    def _check_codes(codes: Any) -> list[str]:
        if isinstance(codes, (str, bytes)) or not hasattr(codes, "__iter__"):
            raise ConfigError(
                expected(
                    "a list of class names",
                    "codes",
                    codes,
                    hint="Read a file of names with `(path / 'codes.txt').read_text().split()`.",
                )
            )
        out = [str(c) for c in codes]
        if not out:
            raise ConfigError(expected("at least one class name", "codes", codes))
        if len(set(out)) != len(out):
            raise ConfigError(expected("class names without duplicates", "codes", out[:20]))
        return out

    @property
    def vocab(self) -> list[str] | None:
        """The codes (so that ``dls.vocab`` names the classes)."""
        return self.codes

    def setup(self, train_values: Sequence[Any]) -> None:
        """Without codes, read the training masks to find the number of classes."""
        if self._fixed:
            return
        values = list(train_values)
        if not values:
            raise DataError("MaskBlock found no training mask: check `get_y` and the splitter.")
        if len(values) < 32:
            highest = max(map(_max_id, values))
        else:  # the PNG decoder releases the GIL: threads overlap the reads
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
                highest = max(pool.map(_max_id, values))
        self.codes = [str(i) for i in range(highest + 1)]

    def validate(self, value: Any) -> None:
        """A mask file must exist (checked for every item before training; the ids are checked on encoding)."""
        if isinstance(value, (str, os.PathLike)) and not Path(value).is_file():
            raise DataError(f"No mask file {value}: check the function that gives each image its mask (`get_y`).")

    def encode(self, value: Any) -> torch.Tensor:
        if self.codes is None:
            raise DataError("This MaskBlock has no codes yet: call setup(train_masks) or pass codes=[...].")
        x = mask_to_tensor(value)  # (H, W) uint8 or int64
        n = len(self.codes)
        if x.numel() and (x.dtype != torch.uint8 or n < 256):
            highest = int(x.max())
            if highest >= n:
                source = str(value) if isinstance(value, (str, os.PathLike)) else f"of shape {tuple(x.shape)}"
                shown = self.codes if n <= 20 else [*self.codes[:20], "..."]
                raise DataError(
                    f"The mask {source} holds the class id {highest}, but there are only {n} codes "
                    f"(ids 0 to {n - 1}: {shown}). Pass a name for every class id in `codes`."
                )
        return x

    collate_hint = (
        "Masks of different sizes: add an item transform that gives every image and mask one size, e.g. Resize(224)."
    )

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return super().collate(xs).to(torch.int64)  # (B, H, W); stacking promotes uint8 and int64 cache entries

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """One mask of a batch (or a prediction's class ids) as an ``int64 (H, W)`` CPU tensor."""
        return x.detach().cpu().to(torch.int64)

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        """Draw the mask over the image already on `ax` (half transparent), each class in its own colour."""
        kwargs.setdefault("n_codes", len(self.codes) if self.codes else None)
        show_mask(value, ax=ax, **kwargs)

    @property
    def loss_func(self) -> Any:
        from ember.losses import CrossEntropyLossFlat

        return CrossEntropyLossFlat(axis=1)

    @property
    def n_out(self) -> int | None:
        return len(self.codes) if self.codes is not None else None

    def to_recipe(self) -> dict[str, Any]:
        return {"codes": self.codes}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> MaskBlock:
        return cls(codes=data.get("codes"))

    def __repr__(self) -> str:
        n = len(self.codes) if self.codes is not None else "?"
        return f"MaskBlock({n} codes)"


def _max_id(value: Any) -> int:
    x = mask_to_tensor(value)
    return int(x.max()) if x.numel() else 0
