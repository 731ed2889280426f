"""Augmentation: item flips on ``uint8`` samples (CPU) and batch augmentation on the device.

The item transforms that size images (:class:`Resize`, :class:`RandomResizedCrop`, :class:`RandomCrop`,
:class:`CropPad`, :func:`rand_pad`) live in :mod:`ember.vision.resize` and are importable from here too.
:class:`FlipItem` and :class:`DihedralItem` flip one sample on the CPU (exact pixel moves).

Batch transforms (a whole batch, on the device, after the move): :class:`IntToFloat`; the geometric ones
(:class:`AffineWarp`, the fused flip, rotation, zoom and warp of :func:`aug_transforms`, and the single effects
:class:`Flip`, :class:`Dihedral`, :class:`Rotate`, :class:`Zoom`, :class:`Warp`), each **one** projective matrix
per image and **one** ``grid_sample`` per batch (none at all when every image is only flipped or turned by
quarter turns); the colour ones (:class:`Lighting`, :class:`Brightness`, :class:`Contrast`, :class:`Saturation`,
:class:`Hue`); :class:`Normalize`; and :class:`RandomErasing`, which runs after it.

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
from ember.vision.resize import (
    PAD_MODES,
    RESIZE_METHODS,
    CropPad,
    RandomCrop,
    RandomResizedCrop,
    Resize,
    _check_pad_mode,
    _size2,
    rand_pad,
)
from ember.vision.resize import crop_pad as crop_pad  # kept importable from here

__all__ = [
    "PAD_MODES",
    "RESIZE_METHODS",
    "Resize",
    "RandomResizedCrop",
    "RandomCrop",
    "CropPad",
    "rand_pad",
    "FlipItem",
    "DihedralItem",
    "IntToFloat",
    "AffineWarp",
    "Flip",
    "Dihedral",
    "Rotate",
    "Zoom",
    "Warp",
    "Lighting",
    "Brightness",
    "Contrast",
    "Saturation",
    "Hue",
    "aug_transforms",
    "Normalize",
    "RandomErasing",
    "imagenet_stats",
    "mnist_stats",
    "cifar_stats",
]

imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
mnist_stats = ([0.1307], [0.3081])
cifar_stats = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.261])

_MODES = ("bilinear", "nearest", "bicubic")


def _uniform(n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.empty(n).uniform_(lo, hi)


def _bernoulli(n: int, p: float) -> torch.Tensor:
    return torch.rand(n) < p


def _check_p(p: float, name: str = "p") -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ConfigError(expected("a probability in [0, 1]", name, p))
    return float(p)


def _check_fraction(value: float, name: str) -> float:
    """A value in [0, 1): the largest change of a colour effect."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigError(expected("a value in [0, 1)", name, value))
    return float(value)


# ------------------------------------------------------------------------------------------------------------
# item transforms: flips and quarter turns of one sample
# ------------------------------------------------------------------------------------------------------------


def _symmetry_item(x: torch.Tensor, kind: str, k: int, size: tuple[int, int]) -> torch.Tensor:
    """`x` moved by the symmetry `k` of the square: bit 4 swaps the axes (a transpose), then bit 1 flips
    left-right and bit 2 top-bottom. Points ``(N, 2)`` are ``(x, y)`` pixels of an image of `size` ``(H, W)``."""
    if kind in ("image", "mask"):
        if k & 4:
            x = x.transpose(-1, -2).contiguous()
        if k & 1:
            x = x.flip(-1)
        if k & 2:
            x = x.flip(-2)
        return x
    if kind == "points":
        h, w = size
        if k & 4:
            x, (h, w) = x.flip(-1), (w, h)  # (x, y) -> (y, x)
        if k & 1:
            x = torch.stack([w - x[..., 0], x[..., 1]], -1)
        if k & 2:
            x = torch.stack([x[..., 0], h - x[..., 1]], -1)
        return x
    return x


class _ItemSymmetry(Transform):
    """Base of the item flips: :meth:`_draw` picks a symmetry per sample, applied to every image, mask and points.

    They run after the resizes and crops (``order = 20``), so the datasets still cache the resized images, and
    before the keypoints are scaled to [-1, 1]. Training only.
    """

    order = 20
    split_idx = 0

    def __init__(self, p: float = 0.5) -> None:
        self.p = _check_p(p)

    def _draw(self, square: bool) -> int:
        raise NotImplementedError

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        # The draw stays local, not on self: datasets fill their cache from several threads at once.
        if split != 0:
            return sample
        sizes = [(int(x.shape[-2]), int(x.shape[-1])) for x, kind in zip(sample, kinds) if kind in ("image", "mask")]
        if not sizes:
            return sample
        k = self._draw(all(h == w for h, w in sizes))
        if k == 0:
            return sample
        return tuple(_symmetry_item(x, kind, k, sizes[0]) for x, kind in zip(sample, kinds))

    def to_recipe(self) -> dict[str, Any]:
        return {"p": self.p}


@register_recipe()
class FlipItem(_ItemSymmetry):
    """Item augmentation: flip a sample left-right with probability `p` (training only; exact, on the CPU).

    Masks flip with the image and keypoints (pixels) move with it.

    >>> item_tfms = [Resize(224), FlipItem(0.5)]
    """

    def _draw(self, square: bool) -> int:
        return 1 if float(torch.rand(())) < self.p else 0


@register_recipe()
class DihedralItem(_ItemSymmetry):
    """Item augmentation: with probability `p`, one of the 8 symmetries of the square (flips and quarter turns),
    drawn uniformly (the identity among them). Training only; exact pixel moves on the CPU.

    A sample with a non-square image or mask only gets the 4 symmetries that keep its shape (the identity,
    the two flips and the half turn), so that the samples can still be batched.
    """

    def _draw(self, square: bool) -> int:
        if float(torch.rand(())) >= self.p:
            return 0
        return int(torch.randint(0, 8 if square else 4, ()))


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


def _eye(n: int) -> torch.Tensor:
    return torch.eye(3).repeat(n, 1, 1)  # (n, 3, 3)


def _flip_mats(n: int, p_lr: float, p_ud: float) -> torch.Tensor:
    """Left-right flips with probability `p_lr` and top-bottom ones with `p_ud` (nothing is drawn for 0)."""
    mats = _eye(n)
    if p_lr > 0:
        mats[:, 0, 0] = torch.where(_bernoulli(n, p_lr), -1.0, 1.0)
    if p_ud > 0:
        mats[:, 1, 1] = torch.where(_bernoulli(n, p_ud), -1.0, 1.0)
    return mats


def _dihedral_mats(n: int, p: float, square: bool) -> torch.Tensor:
    """With probability `p`, one of the 8 symmetries of the square drawn uniformly (only the 4 that keep the
    axes when the image is not square): signed permutation matrices."""
    k = torch.randint(0, 8 if square else 4, (n,)) * _bernoulli(n, p)  # 0 is the identity
    sx = torch.where(k & 1 > 0, -1.0, 1.0)
    sy = torch.where(k & 2 > 0, -1.0, 1.0)
    swap = k & 4 > 0
    mats = _eye(n)
    mats[:, 0, 0], mats[:, 0, 1] = torch.where(swap, 0.0, sx), torch.where(swap, sx, 0.0)
    mats[:, 1, 0], mats[:, 1, 1] = torch.where(swap, sy, 0.0), torch.where(swap, 0.0, sy)
    return mats


def _rotate_mats(n: int, max_deg: float, p: float, in_size: tuple[int, int]) -> torch.Tensor:
    """Rotations of up to `max_deg` degrees either way with probability `p`, made in pixel-proportional
    coordinates so that non-square images rotate rigidly."""
    h, w = in_size
    theta = _uniform(n, -max_deg, max_deg) * math.pi / 180 * _bernoulli(n, p)
    cos, sin = theta.cos(), theta.sin()
    mats = _eye(n)
    mats[:, 0, 0], mats[:, 0, 1] = cos, -sin * h / w
    mats[:, 1, 0], mats[:, 1, 1] = sin * w / h, cos
    return mats


def _zoom_mats(n: int, min_zoom: float, max_zoom: float, p: float) -> torch.Tensor:
    """Zooms ``z`` in ``[min_zoom, max_zoom]`` with probability `p`: a window ``1/z`` as large is sampled, at a
    random place that keeps it inside the image."""
    z = torch.where(_bernoulli(n, p), _uniform(n, min_zoom, max_zoom), torch.ones(n))
    mats = _eye(n)
    mats[:, 0, 0] = mats[:, 1, 1] = 1 / z
    mats[:, 0, 2] = (1 - 1 / z) * _uniform(n, -1, 1)
    mats[:, 1, 2] = (1 - 1 / z) * _uniform(n, -1, 1)
    return mats


def _warp_mats(n: int, magnitude: float, p: float) -> torch.Tensor:
    """Perspective warps with probability `p`: the bottom row of the matrix tilts the sampling plane."""
    on = _bernoulli(n, p)
    mats = _eye(n)
    mats[:, 2, 0] = _uniform(n, -magnitude, magnitude) * on
    mats[:, 2, 1] = _uniform(n, -magnitude, magnitude) * on
    return mats


def _crop_mats(n: int, min_scale: float, ratio: tuple[float, float], in_size: tuple[int, int]) -> torch.Tensor:
    """Random-resized crops: a window of ``min_scale..1`` of the area, aspect ratio in `ratio`, at a random place."""
    h, w = in_size
    area = _uniform(n, min_scale, 1.0)
    r = _uniform(n, math.log(ratio[0]), math.log(ratio[1])).exp() * (h / w)  # width/height, in [-1, 1]
    sx, sy = (area * r).sqrt().clamp(max=1.0), (area / r).sqrt().clamp(max=1.0)
    mats = _eye(n)
    mats[:, 0, 0], mats[:, 1, 1] = sx, sy
    mats[:, 0, 2], mats[:, 1, 2] = (1 - sx) * _uniform(n, -1, 1), (1 - sy) * _uniform(n, -1, 1)
    return mats


def _symmetries(mats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """For matrices that only flip and swap the axes (symmetries of the square), the per-image ``(swap, flip_rows,
    flip_cols)`` that move the pixels exactly (swap first, then the flips); ``None`` for any other matrix."""
    a = mats[:, :2, :2]  # (n, 2, 2)
    if not (
        bool(((a == 0) | (a.abs() == 1)).all())
        and bool((a.abs().sum(2) == 1).all())
        and bool((mats[:, :2, 2] == 0).all())
        and torch.equal(mats[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(len(mats), 3))
    ):
        return None
    swap = a[:, 0, 0] == 0
    # Output (u, v) samples the input at M (u, v). Without a swap that is (sx u, sy v): flip where the sign is
    # negative. With one it is (a v, b u), so out[i, j] = in.T[a i, b j]: the transpose, then flips by a and b.
    flip_rows = torch.where(swap, a[:, 0, 1] < 0, a[:, 1, 1] < 0)
    flip_cols = torch.where(swap, a[:, 1, 0] < 0, a[:, 0, 0] < 0)
    return swap, flip_rows, flip_cols


class _AffineCore(Transform):
    """The shared core of the geometric batch transforms: :meth:`draw_matrices` gives one ``3 x 3`` projective
    matrix per image (output coordinates in ``[-1, 1]`` -> input coordinates); images, masks and keypoints are
    moved by it. Subclasses give the matrices and their recipe.

    When every matrix is a flip or a quarter turn and the size does not change, the pixels are moved exactly
    by indexing (no interpolation, no ``grid_sample``). Training only; in validation only a `size` change (if
    any) is applied.
    """

    order = 30

    def _init_sampling(self, size: int | Sequence[int] | None, mode: str, pad_mode: str) -> None:
        if mode not in _MODES:
            raise ConfigError(expected("an interpolation mode", "mode", mode, _MODES))
        self.size = _size2(size) if size is not None else None
        self.mode, self.pad_mode = mode, _check_pad_mode(pad_mode)
        self._grids: dict[tuple, torch.Tensor] = {}

    def _sampling_recipe(self) -> dict[str, Any]:
        return {
            "size": list(self.size) if self.size is not None else None,
            "mode": self.mode,
            "pad_mode": self.pad_mode,
        }

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        """``n`` random sampling matrices ``(n, 3, 3)`` (output coords -> input coords), on the CPU."""
        raise NotImplementedError

    def before_call(self, sample: tuple, kinds: Sequence[str], split: int) -> None:
        self._mat = self._exact = None
        spatial = [x for x, kind in zip(sample, kinds) if kind in ("image", "mask")]
        if not spatial:
            return
        x = spatial[0]
        n, in_size = x.shape[0], (int(x.shape[-2]), int(x.shape[-1]))
        mats = self.draw_matrices(n, in_size) if split == 0 else _eye(n)
        same_size = all(self._out_for(s) == tuple(s.shape[-2:]) for s in spatial)
        if same_size and torch.equal(mats, _eye(n)):
            return  # nothing moves: skip the resampling (the check is on the CPU)
        self._mat = mats
        self._device = x.device
        if same_size:
            moves = _symmetries(mats)
            square = all(s.shape[-2] == s.shape[-1] for s in spatial)
            if moves is not None and (square or not bool(moves[0].any())):
                self._exact = moves

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

    def _move_exact(self, x: torch.Tensor) -> torch.Tensor:
        """`x` ``(B, ..., H, W)`` with each image's axes swapped and flipped as drawn: exact pixel moves."""
        swap, flip_rows, flip_cols = self._exact
        shape = (-1,) + (1,) * (x.ndim - 1)
        if bool(swap.any()):
            x = torch.where(swap.to(x.device, non_blocking=True).view(shape), x.transpose(-1, -2), x)
        if bool(flip_rows.any()):
            x = torch.where(flip_rows.to(x.device, non_blocking=True).view(shape), x.flip(-2), x)
        if bool(flip_cols.any()):
            x = torch.where(flip_cols.to(x.device, non_blocking=True).view(shape), x.flip(-1), x)
        return x

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self._mat is None:
            return x
        if not x.is_floating_point():
            raise DataError(f"{type(self).__name__} needs float images: put IntToFloat before it (ImageBlock adds it).")
        if self._exact is not None:
            return self._move_exact(x)
        grid = self._grid(x.shape[0], self._out_for(x)).to(x.dtype)
        return F.grid_sample(x, grid, mode=self.mode, padding_mode=self.pad_mode, align_corners=False)

    def encode_mask(self, x: torch.Tensor) -> torch.Tensor:
        if self._mat is None:
            return x
        if self._exact is not None:
            return self._move_exact(x)
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
        # a symmetry's inverse is its transpose (exact); any other matrix is inverted
        inv = self._mat.transpose(1, 2) if self._exact is not None else torch.linalg.inv(self._mat)
        inv = inv.to(p.device, p.dtype, non_blocking=True)  # (B, 3, 3)
        hom = torch.cat([p, torch.ones_like(p[..., :1])], -1)  # (B, N, 3)
        moved = hom @ inv.transpose(1, 2)
        return moved[..., :2] / moved[..., 2:]  # (B, N, 2)

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> _AffineCore:
        data = dict(data)
        if data.get("size") is not None:
            data["size"] = tuple(data["size"])
        if data.get("ratio") is not None:
            data["ratio"] = tuple(data["ratio"])
        return cls(**data)


@register_recipe()
class AffineWarp(_AffineCore):
    """Batch augmentation: per-image flip, rotation, zoom and perspective warp, in one ``grid_sample``.

    The random draws of each image are composed into one ``3 x 3`` projective matrix that maps output
    coordinates (in ``[-1, 1]``) to the coordinates sampled in the input; the whole batch is then
    resampled at once. Images are sampled bilinearly (`mode`), masks with nearest neighbour (they keep
    their class ids) and keypoints (in ``[-1, 1]``) are moved by the inverse matrix, so they stay on
    the pixels they mark. The parameters are drawn on the CPU, so the device never waits. A batch whose
    images are only flipped is moved exactly, without resampling.

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
        self.p_affine = _check_p(p_affine, "p_affine")
        if not 0 < min_zoom <= max_zoom:
            raise ConfigError(expected(f"a positive zoom <= max_zoom={max_zoom}", "min_zoom", min_zoom))
        self.do_flip, self.flip_vert = bool(do_flip), bool(flip_vert)
        self.max_rotate, self.min_zoom, self.max_zoom = float(max_rotate), float(min_zoom), float(max_zoom)
        self.max_warp = float(max_warp)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        """``n`` random sampling matrices ``(n, 3, 3)`` (output coords -> input coords), on the CPU."""
        p = self.p_affine
        flip = _flip_mats(n, 0.5 if self.do_flip else 0.0, 0.5 if self.flip_vert else 0.0)
        rot = _rotate_mats(n, self.max_rotate, p, in_size)
        zoom = _zoom_mats(n, self.min_zoom, self.max_zoom, p)
        warp = _warp_mats(n, self.max_warp, p)
        mats = zoom @ rot @ flip @ warp  # (n, 3, 3)
        if self.min_scale < 1:
            mats = _crop_mats(n, self.min_scale, self.ratio, in_size) @ mats
        return mats

    def to_recipe(self) -> dict[str, Any]:
        return {
            "do_flip": self.do_flip,
            "flip_vert": self.flip_vert,
            "max_rotate": self.max_rotate,
            "min_zoom": self.min_zoom,
            "max_zoom": self.max_zoom,
            "max_warp": self.max_warp,
            "p_affine": self.p_affine,
            **self._sampling_recipe(),
            "min_scale": self.min_scale,
            "ratio": list(self.ratio),
        }


@register_recipe()
class Flip(_AffineCore):
    """Batch augmentation: flip each image left-right with probability `p` (training only).

    An exact pixel move, no resampling (unless `size` asks for one); masks and keypoints move with the image.
    The single-effect form of :class:`AffineWarp`'s `do_flip`; `size`, `mode` and `pad_mode` are as there.
    """

    def __init__(
        self,
        p: float = 0.5,
        *,
        size: int | Sequence[int] | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
    ) -> None:
        self.p = _check_p(p)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        return _flip_mats(n, self.p, 0.0)

    def to_recipe(self) -> dict[str, Any]:
        return {"p": self.p, **self._sampling_recipe()}


@register_recipe()
class Dihedral(_AffineCore):
    """Batch augmentation: with probability `p`, one of the 8 symmetries of the square (flips and quarter turns)
    per image, drawn uniformly (the identity among them). Training only.

    Exact pixel moves, no interpolation; masks and keypoints move with the image. Non-square images only get the
    4 symmetries that keep their shape (the identity, the two flips and the half turn). `size`, `mode` and
    `pad_mode` are as in :class:`AffineWarp`.
    """

    def __init__(
        self,
        p: float = 0.5,
        *,
        size: int | Sequence[int] | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
    ) -> None:
        self.p = _check_p(p)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        return _dihedral_mats(n, self.p, in_size[0] == in_size[1])

    def to_recipe(self) -> dict[str, Any]:
        return {"p": self.p, **self._sampling_recipe()}


@register_recipe()
class Rotate(_AffineCore):
    """Batch augmentation: with probability `p`, rotate each image by an angle drawn uniformly in
    ``[-max_deg, max_deg]`` degrees (training only). Masks keep their class ids; keypoints turn with the image.

    The single-effect form of :class:`AffineWarp`'s rotation; `size`, `mode` and `pad_mode` are as there.
    """

    def __init__(
        self,
        max_deg: float = 10.0,
        p: float = 0.5,
        *,
        size: int | Sequence[int] | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
    ) -> None:
        if isinstance(max_deg, bool) or not isinstance(max_deg, (int, float)) or max_deg < 0:
            raise ConfigError(expected("a non-negative angle in degrees", "max_deg", max_deg))
        self.max_deg, self.p = float(max_deg), _check_p(p)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        return _rotate_mats(n, self.max_deg, self.p, in_size)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_deg": self.max_deg, "p": self.p, **self._sampling_recipe()}


@register_recipe()
class Zoom(_AffineCore):
    """Batch augmentation: with probability `p`, zoom each image by a factor drawn uniformly in ``[min_zoom,
    max_zoom]`` (above 1 zooms in, below 1 zooms out), centred at a random place (training only).

    The single-effect form of :class:`AffineWarp`'s zoom; `size`, `mode` and `pad_mode` are as there.
    """

    def __init__(
        self,
        min_zoom: float = 1.0,
        max_zoom: float = 1.1,
        p: float = 0.5,
        *,
        size: int | Sequence[int] | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
    ) -> None:
        if not 0 < min_zoom <= max_zoom:
            raise ConfigError(expected(f"a positive zoom <= max_zoom={max_zoom}", "min_zoom", min_zoom))
        self.min_zoom, self.max_zoom, self.p = float(min_zoom), float(max_zoom), _check_p(p)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        return _zoom_mats(n, self.min_zoom, self.max_zoom, self.p)

    def to_recipe(self) -> dict[str, Any]:
        return {"min_zoom": self.min_zoom, "max_zoom": self.max_zoom, "p": self.p, **self._sampling_recipe()}


@register_recipe()
class Warp(_AffineCore):
    """Batch augmentation: with probability `p`, a perspective warp of each image (training only).

    The two perspective coefficients are drawn uniformly in ``[-magnitude, magnitude]`` (0.2 tilts an edge by
    about 20%); straight lines stay straight. The single-effect form of :class:`AffineWarp`'s `max_warp`;
    `size`, `mode` and `pad_mode` are as there.
    """

    def __init__(
        self,
        magnitude: float = 0.2,
        p: float = 0.5,
        *,
        size: int | Sequence[int] | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
    ) -> None:
        if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)) or not 0 <= magnitude < 0.5:
            raise ConfigError(
                expected("a value in [0, 0.5)", "magnitude", magnitude, hint="At 0.5 a corner is sent to infinity.")
            )
        self.magnitude, self.p = float(magnitude), _check_p(p)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        return _warp_mats(n, self.magnitude, self.p)

    def to_recipe(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude, "p": self.p, **self._sampling_recipe()}


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


def _logit(x: torch.Tensor) -> torch.Tensor:
    """Logits of pixel values, clamped away from 0 and 1 (the lighting transforms work in this space)."""
    return torch.logit(x.clamp(1e-4, 1 - 1e-4))


def _log_uniform_factor(n: int, m: float) -> torch.Tensor:
    """Factors log-uniform in ``[1 - m, 1 / (1 - m)]``: as likely to halve an effect as to double it."""
    low = math.log(1 - m)
    return _uniform(n, low, -low).exp()


_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B in the grey level


def _rgb_to_hsv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue (in turns, [0, 1)), saturation and value of RGB images ``(B, 3, H, W)``, each ``(B, H, W)``."""
    r, g, b = x.unbind(1)
    v, top = x.max(1)  # the largest channel and which one it is
    chroma = v - x.min(1).values
    c = torch.where(chroma > 0, chroma, torch.ones_like(chroma))  # grey pixels: hue 0, no division by 0
    sextant = torch.where(top == 0, ((g - b) / c) % 6, torch.where(top == 1, (b - r) / c + 2, (r - g) / c + 4))
    h = torch.where(chroma > 0, sextant / 6, torch.zeros_like(sextant))
    s = torch.where(v > 0, chroma / torch.where(v > 0, v, torch.ones_like(v)), torch.zeros_like(v))
    return h, s, v


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """RGB images ``(B, 3, H, W)`` from hue (in turns), saturation and value, each ``(B, H, W)``."""
    # Each channel is v less a share of the chroma that is a trapezoid of the hue: full on the far side of the
    # colour wheel, none near the channel's own colour (red at 0, green at 1/3, blue at 2/3 of a turn).
    offsets = torch.tensor([5.0, 3.0, 1.0], device=h.device, dtype=h.dtype).view(1, 3, 1, 1)
    k = (offsets + h[:, None] * 6) % 6  # (B, 3, H, W)
    share = torch.minimum(k, 4 - k).clamp(0, 1)
    return v[:, None] * (1 - s[:, None] * share)


class _ColourEffect(Transform):
    """Base of the single colour effects: :meth:`draw` gives one change per image, :meth:`adjust` applies it.

    Training only, on float images in [0, 1] (``order = 40``, like :class:`Lighting`: after the geometry, before
    :class:`Normalize`); masks and keypoints are left alone. Every image of a sample (an input and an image
    target) gets the same change.
    """

    order = 40
    split_idx = 0
    neutral = 0.0  # the change that leaves an image as it is
    rgb_only = False

    def draw(self, n: int) -> torch.Tensor:
        """One change per image ``(n,)`` on the CPU, `neutral` for the images left alone."""
        raise NotImplementedError

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        """Images `x` ``(B, C, H, W)`` with the changes ``(B,)`` applied (on `x`'s device)."""
        raise NotImplementedError

    def before_call(self, sample: tuple, kinds: Sequence[str], split: int) -> None:
        self._change = None
        image = next((x for x, kind in zip(sample, kinds) if kind == "image"), None)
        if image is not None:
            change = self.draw(image.shape[0])
            if bool((change != self.neutral).any()):  # on the CPU: no device sync
                self._change = change

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self._change is None or (self.rgb_only and (x.ndim != 4 or x.shape[1] != 3)):
            return x
        if not x.is_floating_point():
            raise DataError(f"{type(self).__name__} needs float images: put IntToFloat before it (ImageBlock adds it).")
        return self.adjust(x, self._change.to(x.device, x.dtype, non_blocking=True))


@register_recipe()
class Brightness(_ColourEffect):
    """Batch augmentation: with probability `p`, change each image's brightness in logit space (training only).

    A pixel value ``v`` becomes ``sigmoid(logit(v) + logit(b))`` with ``b`` drawn uniformly in ``0.5 ± max_lighting
    / 2``: ``b = 0.5`` leaves the image as it is, and values stay in [0, 1] without clipping. The brightness half
    of :class:`Lighting`, as fastai's ``Brightness``.
    """

    neutral = 0.5

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = _check_fraction(max_lighting, "max_lighting"), _check_p(p)

    def draw(self, n: int) -> torch.Tensor:
        m = self.max_lighting
        return torch.where(_bernoulli(n, self.p), _uniform(n, 0.5 * (1 - m), 0.5 * (1 + m)), torch.full((n,), 0.5))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_logit(x) + torch.logit(change).view(-1, 1, 1, 1))  # (B, C, H, W)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


@register_recipe()
class Contrast(_ColourEffect):
    """Batch augmentation: with probability `p`, change each image's contrast in logit space (training only).

    A pixel value ``v`` becomes ``sigmoid(c * logit(v))`` with ``c`` log-uniform in ``[1 - max_lighting,
    1 / (1 - max_lighting)]``. The contrast half of :class:`Lighting`, as fastai's ``Contrast``.
    """

    neutral = 1.0

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = _check_fraction(max_lighting, "max_lighting"), _check_p(p)

    def draw(self, n: int) -> torch.Tensor:
        return torch.where(_bernoulli(n, self.p), _log_uniform_factor(n, self.max_lighting), torch.ones(n))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_logit(x) * change.view(-1, 1, 1, 1))  # (B, C, H, W)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


@register_recipe()
class Saturation(_ColourEffect):
    """Batch augmentation: with probability `p`, change each RGB image's saturation (training only).

    In logit space, each pixel moves away from (factor above 1) or towards (below 1) its grey level, the
    BT.601 weighted mean of its channels, by a factor log-uniform in ``[1 - max_lighting, 1 / (1 -
    max_lighting)]``; a factor of 0 would give grey. As fastai's ``Saturation``. Grey images are left alone.
    """

    neutral = 1.0
    rgb_only = True

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = _check_fraction(max_lighting, "max_lighting"), _check_p(p)

    def draw(self, n: int) -> torch.Tensor:
        return torch.where(_bernoulli(n, self.p), _log_uniform_factor(n, self.max_lighting), torch.ones(n))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        logits = _logit(x)  # (B, 3, H, W)
        luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        grey = (logits * luma).sum(1, keepdim=True)  # (B, 1, H, W)
        return torch.sigmoid(grey + change.view(-1, 1, 1, 1) * (logits - grey))

    def to_recipe(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


@register_recipe()
class Hue(_ColourEffect):
    """Batch augmentation: with probability `p`, turn each RGB image's hue (training only).

    The hue moves round the colour wheel by ``f - 1`` turns, ``f`` log-uniform in ``[1 - max_hue, 1 / (1 -
    max_hue)]`` (so between ``-max_hue`` and ``max_hue / (1 - max_hue)``, as fastai's ``Hue`` draws it);
    saturation and value are kept. Grey pixels and grey images are left alone.
    """

    rgb_only = True

    def __init__(self, max_hue: float = 0.1, p: float = 0.75) -> None:
        self.max_hue, self.p = _check_fraction(max_hue, "max_hue"), _check_p(p)

    def draw(self, n: int) -> torch.Tensor:
        return torch.where(_bernoulli(n, self.p), _log_uniform_factor(n, self.max_hue) - 1, torch.zeros(n))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        h, s, v = _rgb_to_hsv(x)  # each (B, H, W)
        return _hsv_to_rgb((h + change.view(-1, 1, 1)) % 1, s, v)  # (B, 3, H, W)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_hue": self.max_hue, "p": self.p}


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


@register_recipe()
class RandomErasing(Transform):
    """Batch augmentation: with probability `p`, replace random rectangles of each image by normal noise.

    Each erased image gets between 1 and `max_count` rectangles (the count drawn uniformly); each covers a
    fraction drawn uniformly in ``[sl, sh]`` of the image's area divided by the count, with an aspect ratio
    (height / width) log-uniform in ``[min_aspect, 1 / min_aspect]``, at a random place inside the image. The
    noise is ``N(0, 1)``, like the pixels after :class:`Normalize`, which it follows (``order = 100``).

    Training only, vectorized over the batch on the device, each image drawn on its own. Masks and keypoints
    are left alone; every image of a sample (an input and an image target) is erased at the same place with the
    same noise, so a pair stays a pair.

    >>> batch_tfms = [*aug_transforms(), Normalize.from_stats(*imagenet_stats), RandomErasing(p=0.5)]
    """

    order = 100
    split_idx = 0

    def __init__(
        self, p: float = 0.5, sl: float = 0.0, sh: float = 0.3, min_aspect: float = 0.3, max_count: int = 1
    ) -> None:
        self.p = _check_p(p)
        if not (isinstance(sh, (int, float)) and 0 <= sh <= 1):
            raise ConfigError(expected("a fraction of the area in [0, 1]", "sh", sh))
        if not (isinstance(sl, (int, float)) and 0 <= sl <= sh):
            raise ConfigError(expected(f"a fraction of the area in [0, sh={sh}]", "sl", sl))
        if not (isinstance(min_aspect, (int, float)) and 0 < min_aspect <= 1):
            raise ConfigError(expected("a ratio in (0, 1]", "min_aspect", min_aspect))
        if isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1:
            raise ConfigError(expected("a positive int", "max_count", max_count))
        self.sl, self.sh, self.min_aspect, self.max_count = float(sl), float(sh), float(min_aspect), max_count

    def draw_boxes(self, n: int, h: int, w: int) -> torch.Tensor:
        """``(n, max_count, 4)`` rectangles ``(top, left, height, width)`` in pixels of an ``h x w`` image, on the
        CPU; the ones not drawn have no height."""
        k = self.max_count
        on = _bernoulli(n, self.p)
        count = torch.randint(1, k + 1, (n, 1))  # (n, 1)
        used = on[:, None] & (torch.arange(k) < count)  # (n, k)
        area = torch.empty(n, k).uniform_(self.sl, self.sh) * (h * w) / count
        log_r = -math.log(self.min_aspect)
        aspect = torch.empty(n, k).uniform_(-log_r, log_r).exp()  # height / width
        bh = (area * aspect).sqrt().round().clamp(max=h).long() * used
        bw = (area / aspect).sqrt().round().clamp(max=w).long()
        top = (torch.rand(n, k) * (h - bh + 1)).long()  # uniform in 0 .. h - bh
        left = (torch.rand(n, k) * (w - bw + 1)).long()
        return torch.stack([top, left, bh, bw], -1)

    def before_call(self, sample: tuple, kinds: Sequence[str], split: int) -> None:
        self._boxes, self._noise = None, {}
        image = next((x for x, kind in zip(sample, kinds) if kind == "image"), None)
        if image is None:
            return
        self._ref = (int(image.shape[-2]), int(image.shape[-1]))
        boxes = self.draw_boxes(image.shape[0], *self._ref)
        if bool(((boxes[..., 2] > 0) & (boxes[..., 3] > 0)).any()):  # on the CPU: no device sync
            self._boxes = boxes

    def _mask(self, n: int, size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``(n, H, W)`` True inside a drawn rectangle, for images of `size` (rectangles scaled from the first)."""
        boxes = self._boxes.float()
        if size != self._ref:
            boxes = boxes * torch.tensor([size[0] / self._ref[0], size[1] / self._ref[1]]).repeat(2)
        top, left, bh, bw = boxes.round().long().to(device, non_blocking=True).unbind(-1)  # each (n, k)
        rows = torch.arange(size[0], device=device)
        cols = torch.arange(size[1], device=device)
        in_rows = (rows >= top[..., None]) & (rows < (top + bh)[..., None])  # (n, k, H)
        in_cols = (cols >= left[..., None]) & (cols < (left + bw)[..., None])  # (n, k, W)
        return (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (n, H, W)

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        out = super().__call__(sample, kinds, split)
        self._noise = {}  # the noise is not kept between batches
        return out

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if self._boxes is None:
            return x
        if not x.is_floating_point():
            raise DataError("RandomErasing needs float images: put it after IntToFloat and Normalize.")
        key = (tuple(x.shape), x.device, x.dtype)
        if key not in self._noise:
            self._noise[key] = torch.randn_like(x)  # (B, C, H, W); images of one shape share it
        mask = self._mask(x.shape[0], (int(x.shape[-2]), int(x.shape[-1])), x.device)
        return torch.where(mask[:, None], self._noise[key], x)

    def to_recipe(self) -> dict[str, Any]:
        return {"p": self.p, "sl": self.sl, "sh": self.sh, "min_aspect": self.min_aspect, "max_count": self.max_count}
