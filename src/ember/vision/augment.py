"""Image transforms: item transforms on ``uint8`` tensors (CPU) and batch augmentation on the device.

Item transforms (one sample, in the Dataset) size the images so they can be batched: :class:`Resize`,
:class:`RandomResizedCrop`, :class:`RandomCrop`, :class:`CropPad` and :func:`rand_pad`. Each one is a
crop box in the source image (which may reach outside it: that part is padded) followed by a resize, so
images are resized bilinearly with antialiasing, masks (kind ``"mask"``) with nearest neighbour, and
keypoints (kind ``"points"``, in pixels at this stage) move with them.

Batch transforms (a whole batch, on the device, after the move): :class:`IntToFloat`, the augmentations
of :func:`aug_transforms` (flip, rotation, zoom and warp fused into **one** projective matrix per image
and **one** ``grid_sample`` per batch, then lighting), and :class:`Normalize`.

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

__all__ = [
    "PAD_MODES",
    "RESIZE_METHODS",
    "Resize",
    "RandomResizedCrop",
    "RandomCrop",
    "CropPad",
    "rand_pad",
    "IntToFloat",
    "AffineWarp",
    "Lighting",
    "aug_transforms",
    "Normalize",
    "imagenet_stats",
    "mnist_stats",
    "cifar_stats",
]

PAD_MODES = ("reflection", "zeros", "border")
RESIZE_METHODS = ("crop", "squish", "pad")

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
mnist_stats = ([0.1307], [0.3081])
cifar_stats = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])


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
        if kind == "points":
            shift = torch.tensor([left, top], dtype=x.dtype)
            scale = torch.tensor([out[1] / w, out[0] / h], dtype=x.dtype)
            return (x - shift) * scale  # (N, 2) pixels of the output
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
        val_xtra: in validation, keep this fraction of extra border around the centre window (0 = none).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        min_scale: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        val_xtra: float = 0.0,
    ) -> None:
        self.size = _size2(size)
        if not 0 < min_scale <= 1:
            raise ConfigError(expected("a fraction in (0, 1]", "min_scale", min_scale))
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ConfigError(expected("a (low, high) pair of positive ratios", "ratio", ratio))
        self.min_scale, self.ratio, self.val_xtra = float(min_scale), (float(ratio[0]), float(ratio[1])), val_xtra

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


# ------------------------------------------------------------------------------------------------------------
# batch transforms
# ------------------------------------------------------------------------------------------------------------


@register_recipe()
class IntToFloat(Transform):
    """Batch transform: ``uint8`` images become ``float32`` in [0, 1] (other kinds are left alone)."""

    order = 10

    def __init__(self, div: float = 255.0) -> None:
        self.div = float(div)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            return x
        return x.to(torch.float32).div_(self.div)  # (B, C, H, W)

    def to_recipe(self) -> dict[str, Any]:
        return {"div": self.div}


def _uniform(n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.empty(n).uniform_(lo, hi)


def _bernoulli(n: int, p: float) -> torch.Tensor:
    return torch.rand(n) < p


@register_recipe()
class AffineWarp(Transform):
    """Batch augmentation: per-image flip, rotation, zoom and perspective warp, in one ``grid_sample``.

    The random draws of each image are composed into one ``3 x 3`` projective matrix that maps output
    coordinates (in ``[-1, 1]``) to the coordinates sampled in the input; the whole batch is then
    resampled at once. Images are sampled bilinearly (`mode`), masks with nearest neighbour (they keep
    their class ids) and keypoints (in ``[-1, 1]``) are moved by the inverse matrix, so they stay on
    the pixels they mark. The parameters are drawn on the CPU, so the device never waits.

    Training only; in validation only a `size` change (if any) is applied. Without `size`, every image
    keeps its own size (an input and a target of different sizes are warped alike).

    Args:
        do_flip: flip left-right with probability 0.5.
        flip_vert: also flip top-bottom with probability 0.5 (for images with no natural up).
        max_rotate: the largest rotation, in degrees.
        min_zoom: the smallest zoom (below 1 zooms out).
        max_zoom: the largest zoom.
        max_warp: the largest perspective coefficient (0.2 tilts an edge by about 20%).
        p_affine: the probability of each of rotation, zoom and warp, per image.
        size: resample to this size (int or ``(height, width)``); ``None`` keeps the input size.
        mode: interpolation of images: ``"bilinear"``, ``"nearest"`` or ``"bicubic"``.
        pad_mode: what is sampled outside the image: ``"reflection"``, ``"zeros"`` or ``"border"``.
        min_scale: below 1, also a random-resized crop (training only): each image is sampled from a window
            covering ``min_scale..1`` of its area, with an aspect ratio in `ratio`, at a random place, folded
            into the same matrix (fastai's ``RandomResizedCropGPU``; give a `size` for the output).
        ratio: the range of the crop's aspect ratios (width / height), sampled log-uniformly.
    """

    order = 30

    def __init__(
        self,
        do_flip: bool = True,
        flip_vert: bool = False,
        max_rotate: float = 10.0,
        min_zoom: float = 1.0,
        max_zoom: float = 1.1,
        max_warp: float = 0.2,
        p_affine: float = 0.75,
        size: int | Sequence[int] | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
        min_scale: float = 1.0,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if not 0 < min_scale <= 1:
            raise ConfigError(expected("a fraction in (0, 1]", "min_scale", min_scale))
        if not (len(ratio) == 2 and 0 < ratio[0] <= ratio[1]):
            raise ConfigError(expected("a (low, high) pair of positive ratios", "ratio", ratio))
        self.min_scale, self.ratio = float(min_scale), (float(ratio[0]), float(ratio[1]))
        if not 0 <= p_affine <= 1:
            raise ConfigError(expected("a probability in [0, 1]", "p_affine", p_affine))
        if not 0 < min_zoom <= max_zoom:
            raise ConfigError(expected(f"a positive zoom <= max_zoom={max_zoom}", "min_zoom", min_zoom))
        if mode not in ("bilinear", "nearest", "bicubic"):
            raise ConfigError(expected("an interpolation mode", "mode", mode, ("bilinear", "nearest", "bicubic")))
        self.do_flip, self.flip_vert = bool(do_flip), bool(flip_vert)
        self.max_rotate, self.min_zoom, self.max_zoom = float(max_rotate), float(min_zoom), float(max_zoom)
        self.max_warp, self.p_affine = float(max_warp), float(p_affine)
        self.size = _size2(size) if size is not None else None
        self.mode, self.pad_mode = mode, _check_pad_mode(pad_mode)
        self._grids: dict[tuple, torch.Tensor] = {}

    # -- the matrices --------------------------------------------------------------------------------
    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        """``n`` random sampling matrices ``(n, 3, 3)`` (output coords -> input coords), on the CPU."""
        h, w = in_size
        eye = torch.eye(3).repeat(n, 1, 1)  # (n, 3, 3)
        flip = eye.clone()
        if self.do_flip:
            flip[:, 0, 0] = torch.where(_bernoulli(n, 0.5), -1.0, 1.0)
        if self.flip_vert:
            flip[:, 1, 1] = torch.where(_bernoulli(n, 0.5), -1.0, 1.0)
        p = self.p_affine
        # rotation, made in pixel-proportional coordinates so that non-square images rotate rigidly
        theta = _uniform(n, -self.max_rotate, self.max_rotate) * math.pi / 180 * _bernoulli(n, p)
        cos, sin = theta.cos(), theta.sin()
        rot = eye.clone()
        rot[:, 0, 0], rot[:, 0, 1] = cos, -sin * h / w
        rot[:, 1, 0], rot[:, 1, 1] = sin * w / h, cos
        # zoom z > 1 samples a window 1/z as large, at a random place that keeps it inside the image
        z = torch.where(_bernoulli(n, p), _uniform(n, self.min_zoom, self.max_zoom), torch.ones(n))
        zoom = eye.clone()
        zoom[:, 0, 0] = zoom[:, 1, 1] = 1 / z
        zoom[:, 0, 2] = (1 - 1 / z) * _uniform(n, -1, 1)
        zoom[:, 1, 2] = (1 - 1 / z) * _uniform(n, -1, 1)
        # perspective: the bottom row of the matrix tilts the sampling plane
        warp = eye.clone()
        on = _bernoulli(n, p)
        warp[:, 2, 0] = _uniform(n, -self.max_warp, self.max_warp) * on
        warp[:, 2, 1] = _uniform(n, -self.max_warp, self.max_warp) * on
        mats = zoom @ rot @ flip @ warp  # (n, 3, 3)
        if self.min_scale < 1:
            # a random-resized crop: a window of min_scale..1 of the area, aspect ratio in `ratio`, at a random place
            area = _uniform(n, self.min_scale, 1.0)
            r = _uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1])).exp() * (
                h / w
            )  # width/height, in [-1, 1]
            sx, sy = (area * r).sqrt().clamp(max=1.0), (area / r).sqrt().clamp(max=1.0)
            crop = eye.clone()
            crop[:, 0, 0], crop[:, 1, 1] = sx, sy
            crop[:, 0, 2], crop[:, 1, 2] = (1 - sx) * _uniform(n, -1, 1), (1 - sy) * _uniform(n, -1, 1)
            mats = crop @ mats
        return mats

    def before_call(self, sample: tuple, kinds: Sequence[str], split: int) -> None:
        self._mat = self._inv = None
        spatial = [x for x, kind in zip(sample, kinds) if kind in ("image", "mask")]
        if not spatial:
            return
        x = spatial[0]
        n, in_size = x.shape[0], tuple(x.shape[-2:])
        mats = self.draw_matrices(n, in_size) if split == 0 else torch.eye(3).repeat(n, 1, 1)
        same_size = all(self._out_for(s) == tuple(s.shape[-2:]) for s in spatial)
        if same_size and torch.equal(mats, torch.eye(3).expand_as(mats)):
            return  # nothing moves: skip the resampling (the check is on the CPU)
        self._mat = mats
        self._device = x.device

    def _out_for(self, x: torch.Tensor) -> tuple[int, int]:
        """The output size of `x`: `size`, else its own (an input and a target of another size keep theirs)."""
        return self.size or (int(x.shape[-2]), int(x.shape[-1]))

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        if split != 0 and self.size is None:
            return sample
        return super().__call__(sample, kinds, split)

    def _grid(self, n: int, out_size: tuple[int, int]) -> torch.Tensor:
        """The sampling grid ``(n, H_out, W_out, 2)`` for the matrices drawn in :meth:`before_call`."""
        oh, ow = out_size
        key = (oh, ow, str(self._device))
        base = self._grids.get(key)
        if base is None:
            # pixel centres in [-1, 1] (align_corners=False), homogeneous
            ys = (torch.arange(oh, dtype=torch.float32) * 2 + 1) / oh - 1
            xs = (torch.arange(ow, dtype=torch.float32) * 2 + 1) / ow - 1
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            base = torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, oh * ow, 3).to(self._device)
            if len(self._grids) >= 4:  # a few sizes (an input and its target) at most; stale ones go
                self._grids = {}
            self._grids[key] = base
        mat = self._mat.to(self._device, non_blocking=True)  # (n, 3, 3)
        pts = base @ mat.transpose(1, 2)  # (n, H*W, 3)
        grid = pts[..., :2] / pts[..., 2:].clamp(min=1e-6)
        return grid.reshape(n, oh, ow, 2)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self._mat is None:
            return x
        if not x.is_floating_point():
            raise DataError("AffineWarp needs float images: put IntToFloat before it (ImageBlock adds it).")
        grid = self._grid(x.shape[0], self._out_for(x)).to(x.dtype)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.pad_mode, align_corners=False)

    def encode_mask(self, x: torch.Tensor) -> torch.Tensor:
        if self._mat is None:
            return x
        squeeze = x.ndim == 3  # (B, H, W) -> (B, 1, H, W)
        m = (x[:, None] if squeeze else x).float()
        out = F.grid_sample(
            m, self._grid(x.shape[0], self._out_for(x)), mode="nearest", padding_mode=self.pad_mode, align_corners=False
        )
        out = out.round().to(x.dtype)
        return out[:, 0] if squeeze else out

    def encode_points(self, p: torch.Tensor) -> torch.Tensor:
        if self._mat is None:
            return p
        inv = torch.linalg.inv(self._mat).to(p.device, p.dtype, non_blocking=True)  # (B, 3, 3)
        hom = torch.cat([p, torch.ones_like(p[..., :1])], -1)  # (B, N, 3)
        moved = hom @ inv.transpose(1, 2)
        return moved[..., :2] / moved[..., 2:]  # (B, N, 2)

    def to_recipe(self) -> dict[str, Any]:
        return {
            "do_flip": self.do_flip,
            "flip_vert": self.flip_vert,
            "max_rotate": self.max_rotate,
            "min_zoom": self.min_zoom,
            "max_zoom": self.max_zoom,
            "max_warp": self.max_warp,
            "p_affine": self.p_affine,
            "size": list(self.size) if self.size is not None else None,
            "mode": self.mode,
            "pad_mode": self.pad_mode,
            "min_scale": self.min_scale,
            "ratio": list(self.ratio),
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> AffineWarp:
        data = dict(data)
        if data.get("size") is not None:
            data["size"] = tuple(data["size"])
        if data.get("ratio") is not None:
            data["ratio"] = tuple(data["ratio"])
        return cls(**data)


@register_recipe()
class Lighting(Transform):
    """Batch augmentation: random brightness and contrast per image, in logit space (training only).

    A pixel value ``v`` in [0, 1] becomes ``sigmoid(c * logit(v) + b)``: ``b`` (brightness) is the logit of
    a draw from ``0.5 ± max_lighting/2`` and ``c`` (contrast) is log-uniform in ``[1 - max_lighting,
    1 / (1 - max_lighting)]``. Working in logits keeps values inside [0, 1] without clipping.
    """

    order = 40
    split_idx = 0

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        if not 0 <= max_lighting < 1:
            raise ConfigError(expected("a value in [0, 1)", "max_lighting", max_lighting))
        if not 0 <= p <= 1:
            raise ConfigError(expected("a probability in [0, 1]", "p", p))
        self.max_lighting, self.p = float(max_lighting), float(p)

    def before_call(self, sample: tuple, kinds: Sequence[str], split: int) -> None:
        self._params = None
        for x, kind in zip(sample, kinds):
            if kind == "image":
                n, m = x.shape[0], self.max_lighting
                on = _bernoulli(n, self.p)
                bright = torch.logit(_uniform(n, 0.5 * (1 - m), 0.5 * (1 + m))) * on
                log_c = math.log(1 - m) if m > 0 else 0.0
                contrast = torch.where(on, _uniform(n, log_c, -log_c).exp(), torch.ones(n))
                self._params = (bright, contrast)
                return

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self._params is None or self.max_lighting == 0:
            return x
        shape = (-1,) + (1,) * (x.ndim - 1)
        b, c = (t.to(x.device, x.dtype, non_blocking=True).view(shape) for t in self._params)
        return torch.sigmoid(torch.logit(x.clamp(1e-4, 1 - 1e-4)) * c + b)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


def aug_transforms(
    mult: float = 1.0,
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    min_zoom: float = 1.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    xtra_tfms: Sequence[Transform] | None = None,
    size: int | Sequence[int] | None = None,
    mode: str = "bilinear",
    pad_mode: str = "reflection",
    min_scale: float = 1.0,
) -> list[Transform]:
    """The standard batch augmentations: one fused :class:`AffineWarp` and a :class:`Lighting`.

    Args:
        mult: multiplies `max_rotate`, `max_lighting` and `max_warp` (stronger or gentler augmentation).
        min_scale: below 1, a random-resized crop of ``min_scale..1`` of each image's area, folded into the warp
            (fastbook's presizing: ``item_tfms=Resize(460), batch_tfms=aug_transforms(size=224, min_scale=0.75)``).

    Returns:
        A list of batch transforms for ``DataBlock(batch_tfms=...)``, plus `xtra_tfms` at the end.

    >>> batch_tfms = [*aug_transforms(), Normalize.from_stats(*imagenet_stats)]
    """
    tfms: list[Transform] = [
        AffineWarp(
            do_flip=do_flip,
            flip_vert=flip_vert,
            max_rotate=max_rotate * mult,
            min_zoom=min_zoom,
            max_zoom=max_zoom,
            max_warp=max_warp * mult,
            p_affine=p_affine,
            size=size,
            mode=mode,
            pad_mode=pad_mode,
            min_scale=min_scale,
        )
    ]
    if max_lighting > 0 and p_lighting > 0:
        tfms.append(Lighting(min(max_lighting * mult, 0.99), p=p_lighting))
    return tfms + list(xtra_tfms or [])


@register_recipe()
class Normalize(Transform):
    """Batch transform: ``(x - mean) / std`` per channel for images; :meth:`decode` undoes it for display.

    Args:
        mean: per-channel means (a list); ``None`` computes them from the first *training* batch (the first
            step of training, ``dls.one_batch()``, or the batch the loaders draw from ``dls.train`` when a
            validation, test or inference batch is needed first) and then keeps them fixed. Validation and
            inference batches never set them. Call :meth:`setup_from_batch` to choose the batch yourself.
        std: per-channel standard deviations; computed with `mean` when ``None``.
        axes: the batch axes the statistics are taken over: ``(0, 2, 3)`` gives one per channel.

    >>> norm = Normalize.from_stats(*imagenet_stats)
    """

    order = 99

    def __init__(
        self,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        axes: Sequence[int] = (0, 2, 3),
    ) -> None:
        if (mean is None) != (std is None):
            raise ConfigError("Pass both `mean` and `std` to Normalize, or neither (to compute them from a batch).")
        self.axes = tuple(axes)
        self.mean = self.std = None
        if mean is not None:
            self.mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
            self.std = torch.as_tensor(std, dtype=torch.float32).flatten()
            if self.mean.shape != self.std.shape:
                raise ConfigError(expected(f"{self.mean.numel()} values like `mean`", "std", std))
            if bool((self.std <= 0).any()):
                raise ConfigError(expected("positive standard deviations", "std", std))
        self._on: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_stats(cls, mean: Sequence[float], std: Sequence[float], axes: Sequence[int] = (0, 2, 3)) -> Normalize:
        """Normalize with known statistics, e.g. ``Normalize.from_stats(*imagenet_stats)``."""
        return cls(mean, std, axes)

    @property
    def ready(self) -> bool:
        """Whether the statistics are known."""
        return self.mean is not None

    def setup_from_batch(self, x: torch.Tensor) -> Normalize:
        """Compute and keep the statistics of the float images `x` ``(B, C, H, W)``; returns self."""
        if not x.is_floating_point():
            x = x.float() / 255
        x = x.detach().float()
        self.mean = x.mean(dim=self.axes).flatten().cpu()
        self.std = x.std(dim=self.axes).flatten().clamp(min=1e-7).cpu()
        self._on = {}
        return self

    def _stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # broadcast over the reduced axes: (1, C, 1, 1) for the default axes
        shape = tuple(1 if i in self.axes else x.shape[i] for i in range(x.ndim))
        key = (x.device, x.dtype, shape)
        stats = self._on.get(key)
        if stats is None:
            if math.prod(shape) != self.mean.numel():
                raise DataError(
                    f"Normalize has statistics for {self.mean.numel()} channel(s) but the images have shape "
                    f"{tuple(x.shape)}. Use stats with one value per channel (e.g. mnist_stats for grey images)."
                )
            stats = (self.mean.view(shape).to(x.device, x.dtype), self.std.view(shape).to(x.device, x.dtype))
            self._on[key] = stats
        return stats

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        if self.mean is None:
            image = next((x for x, kind in zip(sample, kinds) if kind == "image"), None)
            if image is not None:
                if split != 0:
                    raise DataError(
                        "Normalize() has no statistics yet, and they are only taken from a training batch, never "
                        "from validation or inference data. Build the loaders with training data (then "
                        "`dls.train.one_batch()` sets them), or pass known ones: Normalize.from_stats(mean, std). "
                        "A learner loaded from a file without them must be exported again from loaders that have "
                        "training data."
                    )
                self.setup_from_batch(image)
        return super().__call__(sample, kinds, split)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def decode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        mean, std = self._stats(x)
        return x * std + mean

    def as_module(self) -> Any:
        """This normalization as a module (``learn.export_onnx`` bakes it into the graph).

        Raises:
            DataError: the statistics are not known yet (draw a training batch first: ``dls.train.one_batch()``).
        """
        from ember.learner.onnx import Normalization

        if self.mean is None:
            raise DataError(
                "Normalize() has no statistics yet: draw a training batch first (dls.train.one_batch()) or pass "
                "known ones with Normalize.from_stats(mean, std)."
            )
        if self.axes != (0, 2, 3):
            raise ConfigError(
                f"Only per-channel statistics (axes=(0, 2, 3)) can be exported as a module; this Normalize has "
                f"axes={self.axes}."
            )
        return Normalization(self.mean, self.std)

    def to_recipe(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist() if self.mean is not None else None,
            "std": self.std.tolist() if self.std is not None else None,
            "axes": list(self.axes),
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> Normalize:
        return cls(data.get("mean"), data.get("std"), tuple(data.get("axes", (0, 2, 3))))

    def __repr__(self) -> str:
        if self.mean is None:
            return "Normalize(stats from the first batch)"
        mean, std = (", ".join(f"{v:.4g}" for v in t.tolist()) for t in (self.mean, self.std))
        return f"Normalize(mean=[{mean}], std=[{std}])"
