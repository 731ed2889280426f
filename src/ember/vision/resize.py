"""Item transforms that size images so they can be batched: a crop box in the source, then a resize.

:class:`Resize`, :class:`RandomResizedCrop`, :class:`RandomCrop`, :class:`CropPad` and :func:`rand_pad` run on
one ``uint8`` sample on the CPU (in the Dataset). Each one is a crop box in the source image (which may reach
outside it: that part is padded) followed by a resize, so images are resized bilinearly with antialiasing, masks
(kind ``"mask"``) with nearest neighbour, and keypoints (kind ``"points"``, in pixels at this stage) and bounding
boxes (kind ``"bbox"``, moved as their two corners) move with them. A box that leaves the window is clipped later,
by :class:`~ember.vision.bbox.BBoxScaler`.

Transforms never change their input in place: the datasets may cache what came before them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.transform import Transform
from ember.vision._draws import _is_number

__all__ = [
    "PAD_MODES",
    "RESIZE_METHODS",
    "Resize",
    "RandomResizedCrop",
    "RandomCrop",
    "CropPad",
    "rand_pad",
]

PAD_MODES = ("reflection", "zeros", "border")
RESIZE_METHODS = ("crop", "squish", "pad")


def _size2(size: int | Sequence[int], name: str = "size") -> tuple[int, int]:
    """``size`` as ``(height, width)``: an int is a square."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return (size, size)
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size):
        return (int(size[0]), int(size[1]))
    raise ConfigError(expected("a positive int or a (height, width) pair", name, size))


def _check_pad_mode(pad_mode: str) -> str:
    if pad_mode not in PAD_MODES:
        raise ConfigError(expected("a padding mode", "pad_mode", pad_mode, PAD_MODES))
    return pad_mode


# ------------------------------------------------------------------------------------------------------------
# item transforms: a crop box (possibly reaching outside the image) then a resize
# ------------------------------------------------------------------------------------------------------------


def _index(n: int, start: int, length: int, pad_mode: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Source indices for positions ``start .. start+length-1`` of an axis of size `n`, and (for zero padding)
    a 0/1 mask of the positions that fall inside."""
    pos = torch.arange(start, start + length)
    if pad_mode == "reflection" and n > 1:
        period = 2 * (n - 1)
        pos = pos.remainder(period)
        pos = torch.where(pos > n - 1, period - pos, pos)  # mirror without repeating the edge pixel
        return pos, None
    inside = (pos >= 0) & (pos < n)
    pos = pos.clamp(0, n - 1)
    return pos, (inside if pad_mode == "zeros" else None)


def crop_pad(x: torch.Tensor, top: int, left: int, h: int, w: int, pad_mode: str = "zeros") -> torch.Tensor:
    """The ``h x w`` window at ``(top, left)`` of ``x (..., H, W)``; parts outside the image are padded."""
    H, W = x.shape[-2:]
    if top >= 0 and left >= 0 and top + h <= H and left + w <= W:
        return x[..., top : top + h, left : left + w]
    if pad_mode == "zeros":
        # The overlap with the image, then zeros around it: a slice and one F.pad (5x faster than gathering).
        t0, t1, l0, l1 = max(top, 0), min(top + h, H), max(left, 0), min(left + w, W)
        if t0 < t1 and l0 < l1:
            inner = x[..., t0:t1, l0:l1]
            return F.pad(inner, (l0 - left, left + w - l1, t0 - top, top + h - t1))  # (..., h, w)
    rows, row_in = _index(H, top, h, pad_mode)
    cols, col_in = _index(W, left, w, pad_mode)
    out = x.index_select(-2, rows).index_select(-1, cols)  # (..., h, w)
    if row_in is not None:
        keep = row_in[:, None] & col_in[None, :]  # (h, w)
        out = out * keep.to(out.dtype)
    return out


def _resize_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear antialiased resize of ``(C, H, W)`` (uint8 or float), keeping the dtype."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def _resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``(..., H, W)`` of any dtype (a mask keeps its class ids)."""
    H, W = x.shape[-2:]
    if (H, W) == size:
        return x
    rows = ((torch.arange(size[0]) + 0.5) * H / size[0]).long().clamp(max=H - 1)
    cols = ((torch.arange(size[1]) + 0.5) * W / size[1]).long().clamp(max=W - 1)
    return x.index_select(-2, rows).index_select(-1, cols)


class _CropResize(Transform):
    """Base of the item transforms: :meth:`_box` picks a window of the source; it is resized to `_out`.

    The window is drawn on the sample's first image (or mask); another image of another size (a small input
    and its large target) is cut at the same place relative to its size.
    """

    order = 10
    pad_mode = "reflection"

    def _box(self, h: int, w: int, split: int) -> tuple[int, int, int, int, tuple[int, int]]:
        """``(top, left, box_h, box_w, out_size)`` for a source of size ``h x w``."""
        raise NotImplementedError

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        # The plan is local, not kept on self: datasets fill their cache from several threads at once.
        if self.split_idx is not None and self.split_idx != split:
            return sample
        plan = ref = None
        for x, kind in zip(sample, kinds):
            if kind in ("image", "mask"):
                ref = (int(x.shape[-2]), int(x.shape[-1]))
                plan = self._box(*ref, split)
                break
        if plan is None:
            return sample
        if "mask" in kinds:
            # One crop box serves every element: a mask of another size than its image would be cut elsewhere.
            sizes = [(kind, *x.shape[-2:]) for x, kind in zip(sample, kinds) if kind in ("image", "mask")]
            if len({s[1:] for s in sizes}) > 1:
                shown = ", ".join(f"{kind} {h}x{w}" for kind, h, w in sizes)
                raise DataError(
                    f"The image and its mask differ in size ({shown}; height x width): a mask needs one class id "
                    "per pixel of its image."
                )
        out = []
        for x, kind in zip(sample, kinds):
            size = (int(x.shape[-2]), int(x.shape[-1])) if kind == "image" else ref
            # Another image of another size (a low-resolution input and its full-size target) gets the same
            # window relative to its size, so the pair stays aligned.
            out.append(self._apply(x, kind, plan if size == ref else _scale_plan(plan, ref, size)))
        return tuple(out)

    def _apply(self, x: torch.Tensor, kind: str, plan: tuple) -> torch.Tensor:
        top, left, h, w, out = plan
        if kind == "image":
            return _resize_image(crop_pad(x, top, left, h, w, self.pad_mode), out)  # (C, *out)
        if kind == "mask":
            return _resize_nearest(crop_pad(x, top, left, h, w, self.pad_mode), out)  # (..., *out)
        if kind in ("points", "bbox"):
            shift = torch.tensor([left, top], dtype=x.dtype)
            scale = torch.tensor([out[1] / w, out[0] / h], dtype=x.dtype)
            # a box [x0, y0, x1, y1] moves as its two corners; the scale is positive, so they stay in order
            corners = x.reshape(-1, 2)  # (N, 2), or (2N, 2) for boxes
            return ((corners - shift) * scale).reshape(x.shape)  # pixels of the output
        return x


def _scale_plan(plan: tuple, ref: tuple[int, int], size: tuple[int, int]) -> tuple:
    """A crop plan drawn for an image of size `ref` moved to an image of `size`: the same window in relative terms."""
    top, left, h, w, out = plan
    sy, sx = size[0] / ref[0], size[1] / ref[1]
    return round(top * sy), round(left * sx), max(1, round(h * sy)), max(1, round(w * sx)), out


def _center(n: int, m: int) -> int:
    """Offset of a centred window of size `m` in an axis of size `n` (negative when it overhangs)."""
    return (n - m) // 2


@register_recipe()
class Resize(_CropResize):
    """Give every image the same size.

    Args:
        size: an int (square) or ``(height, width)``.
        method: ``"crop"``: scale so the image covers the target, then take the centre; ``"squish"``:
            stretch to the target (keeps everything, changes the aspect ratio); ``"pad"``: scale so the
            image fits inside, then pad the rest with `pad_mode`.
        pad_mode: ``"reflection"``, ``"zeros"`` or ``"border"`` (repeat the edge pixels).

    Resize is deterministic (always the centre, also in training), so the datasets can cache its
    output; random framing comes from :class:`RandomResizedCrop` or :func:`aug_transforms`.
    """

    deterministic = True

    def __init__(self, size: int | Sequence[int], method: str = "crop", pad_mode: str = "reflection") -> None:
        self.size = _size2(size)
        if method not in RESIZE_METHODS:
            raise ConfigError(expected("a resize method", "method", method, RESIZE_METHODS))
        self.method = method
        self.pad_mode = _check_pad_mode(pad_mode)

    def _box(self, h: int, w: int, split: int) -> tuple[int, int, int, int, tuple[int, int]]:
        oh, ow = self.size
        if self.method == "squish":
            return 0, 0, h, w, self.size
        # "crop" covers the target (the larger scale), "pad" fits inside it (the smaller one)
        pick = max if self.method == "crop" else min
        scale = pick(oh / h, ow / w)
        bh, bw = max(1, round(oh / scale)), max(1, round(ow / scale))
        return _center(h, bh), _center(w, bw), bh, bw, self.size

    def to_recipe(self) -> dict[str, Any]:
        return {"size": list(self.size), "method": self.method, "pad_mode": self.pad_mode}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Resize:
        return cls(tuple(data["size"]), data.get("method", "crop"), data.get("pad_mode", "reflection"))


@register_recipe()
class RandomResizedCrop(_CropResize):
    """Training: a random window of ``min_scale..1`` of the area and an aspect ratio in `ratio`, resized to
    `size`. Validation: the largest centred window with the target's aspect ratio, resized.

    Args:
        size: an int (square) or ``(height, width)``.
        min_scale: the smallest fraction of the image's area a crop may cover.
        ratio: the range of aspect ratios (width / height) of the crops, sampled log-uniformly.
        val_xtra: in validation, a fraction in [0, 1) of extra border around the centre window (0 = none): the
            window grows by ``1 / (1 - val_xtra)``, within the image.

    Raises:
        ConfigError: an argument is out of range or not a number.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        min_scale: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        val_xtra: float = 0.0,
    ) -> None:
        self.size = _size2(size)
        if not _is_number(min_scale) or not 0 < min_scale <= 1:
            raise ConfigError(expected("a fraction in (0, 1]", "min_scale", min_scale))
        pair = isinstance(ratio, Sequence) and len(ratio) == 2 and all(_is_number(r) for r in ratio)
        if not (pair and 0 < ratio[0] <= ratio[1] < math.inf):
            raise ConfigError(expected("a (low, high) pair of positive ratios", "ratio", ratio))
        if not _is_number(val_xtra) or not 0 <= val_xtra < 1:
            raise ConfigError(expected("a fraction in [0, 1)", "val_xtra", val_xtra))
        self.min_scale, self.ratio = float(min_scale), (float(ratio[0]), float(ratio[1]))
        self.val_xtra = float(val_xtra)

    def _box(self, h: int, w: int, split: int) -> tuple[int, int, int, int, tuple[int, int]]:
        if split == 0:
            area = h * w
            log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
            for _ in range(10):
                target = area * float(torch.empty(()).uniform_(self.min_scale, 1.0))
                r = math.exp(float(torch.empty(()).uniform_(log_lo, log_hi)))
                bw, bh = round(math.sqrt(target * r)), round(math.sqrt(target / r))
                if 0 < bw <= w and 0 < bh <= h:
                    top = int(torch.randint(0, h - bh + 1, ()))
                    left = int(torch.randint(0, w - bw + 1, ()))
                    return top, left, bh, bw, self.size
        # validation, or no random window fitted: the largest centred window with the target's ratio
        oh, ow = self.size
        scale = max(oh / h, ow / w) * (1 - self.val_xtra)
        bh, bw = min(h, max(1, round(oh / scale))), min(w, max(1, round(ow / scale)))
        return _center(h, bh), _center(w, bw), bh, bw, self.size

    def to_recipe(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "min_scale": self.min_scale,
            "ratio": list(self.ratio),
            "val_xtra": self.val_xtra,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> RandomResizedCrop:
        return cls(tuple(data["size"]), data["min_scale"], tuple(data["ratio"]), data.get("val_xtra", 0.0))


@register_recipe()
class CropPad(_CropResize):
    """Centre-crop (or pad, where the image is smaller) to `size`, without resizing.

    Args:
        size: an int (square) or ``(height, width)``.
        pad_mode: ``"zeros"``, ``"reflection"`` or ``"border"``.
    """

    deterministic = True

    def __init__(self, size: int | Sequence[int], pad_mode: str = "zeros") -> None:
        self.size = _size2(size)
        self.pad_mode = _check_pad_mode(pad_mode)

    def _box(self, h: int, w: int, split: int) -> tuple[int, int, int, int, tuple[int, int]]:
        oh, ow = self.size
        return _center(h, oh), _center(w, ow), oh, ow, self.size

    def to_recipe(self) -> dict[str, Any]:
        return {"size": list(self.size), "pad_mode": self.pad_mode}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> CropPad:
        return cls(tuple(data["size"]), data.get("pad_mode", "zeros"))


@register_recipe()
class RandomCrop(_CropResize):
    """Training: a random `size` window (padded with `pad_mode` where the image is smaller), which may also
    overhang the image by up to `pad` pixels on every side (random padding). Validation: the centre window."""

    def __init__(self, size: int | Sequence[int], pad_mode: str = "zeros", pad: int = 0) -> None:
        self.size = _size2(size)
        self.pad_mode = _check_pad_mode(pad_mode)
        if not isinstance(pad, int) or pad < 0:
            raise ConfigError(expected("a non-negative int", "pad", pad))
        self.pad = pad

    def _box(self, h: int, w: int, split: int) -> tuple[int, int, int, int, tuple[int, int]]:
        oh, ow = self.size
        if split != 0:
            return _center(h, oh), _center(w, ow), oh, ow, self.size
        # Offsets range between the two extremes whether the window is smaller or larger than the image,
        # widened by `pad` on both sides: the same as padding by `pad` first, in one crop.
        lo_t, hi_t = sorted((0, h - oh))
        lo_l, hi_l = sorted((0, w - ow))
        top = int(torch.randint(lo_t - self.pad, hi_t + self.pad + 1, ()))
        left = int(torch.randint(lo_l - self.pad, hi_l + self.pad + 1, ()))
        return top, left, oh, ow, self.size

    def to_recipe(self) -> dict[str, Any]:
        return {"size": list(self.size), "pad_mode": self.pad_mode, "pad": self.pad}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> RandomCrop:
        return cls(tuple(data["size"]), data.get("pad_mode", "zeros"), data.get("pad", 0))


def rand_pad(pad: int, size: int | Sequence[int], pad_mode: str = "zeros") -> list[Transform]:
    """Random padding: pad by `pad` pixels all round, then crop `size` at a random place (training only).

    Returns ``[RandomCrop(size, pad=pad)]``: one crop whose window may overhang the image by `pad` pixels. In
    validation it is the centre `size` window, which for images already of that size is the image itself.

    >>> item_tfms = rand_pad(2, 28)   # MNIST digits shifted by up to 2 pixels
    """
    if not isinstance(pad, int) or pad < 0:
        raise ConfigError(expected("a non-negative int", "pad", pad))
    h, w = _size2(size)
    return [RandomCrop((h, w), pad_mode=pad_mode, pad=pad)]
