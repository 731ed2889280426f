"""Geometric augmentation: flips and quarter turns of one sample, and affine/projective warps of a batch.

:class:`FlipItem` and :class:`DihedralItem` are item transforms: they flip or turn one ``uint8`` sample on the
CPU (exact pixel moves), after the resizes of :mod:`ember.vision.resize`.

The batch transforms run on the device after :class:`~ember.vision.augment.IntToFloat`: :class:`AffineWarp`
(the fused flip, rotation, zoom, warp and optional random-resized crop of
:func:`~ember.vision.augment.aug_transforms`) and the single effects :class:`Flip`, :class:`Dihedral`,
:class:`Rotate`, :class:`Zoom` and :class:`Warp`. Each draws **one** projective matrix per image and makes
**one** ``grid_sample`` per batch (none at all when every image is only flipped or turned by quarter turns);
images are sampled with `mode`, masks with nearest neighbour, and keypoints move by the same matrix. Bounding boxes
(kind ``"bbox"``) move as their four corners and become the axis-aligned box that encloses them, clipped to the
image; a box left with no area is zeroed and its label (kind ``"bbox_label"``) set to 0, the padding class.

All of them are importable from :mod:`ember.vision.augment` too. Transforms never change their input in place:
the datasets may cache what came before them.
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
from ember.vision._draws import _bernoulli, _check_p, _is_number, _uniform
from ember.vision.resize import _check_pad_mode, _size2

__all__ = [
    "FlipItem",
    "DihedralItem",
    "AffineWarp",
    "Flip",
    "Dihedral",
    "Rotate",
    "Zoom",
    "Warp",
]

_MODES = ("bilinear", "nearest", "bicubic")


# ------------------------------------------------------------------------------------------------------------
# item transforms: flips and quarter turns of one sample
# ------------------------------------------------------------------------------------------------------------


def _symmetry_item(x: torch.Tensor, kind: str, k: int, size: tuple[int, int]) -> torch.Tensor:
    """`x` moved by the symmetry `k` of the square: bit 4 swaps the axes (a transpose), then bit 1 flips
    left-right and bit 2 top-bottom. Points ``(N, 2)`` are ``(x, y)`` pixels of an image of `size` ``(H, W)``;
    boxes ``(N, 4)`` are ``[x0, y0, x1, y1]`` pixels, moved exactly as their corners."""
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
    if kind == "bbox":
        corners = _symmetry_item(x.reshape(-1, 2), "points", k, size).reshape(-1, 2, 2)  # (N, 2 corners, 2)
        return torch.cat([corners.amin(1), corners.amax(1)], -1)  # (N, 4): a flip swaps x0 and x1
    return x


class _ItemSymmetry(Transform):
    """Base of the item flips: :meth:`_draw` picks a symmetry per sample, applied to every image, mask, points
    and boxes.

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
# batch transforms: one projective matrix per image
# ------------------------------------------------------------------------------------------------------------


def _check_angle(value: float, name: str) -> float:
    """A largest rotation in degrees: a finite number >= 0."""
    if not _is_number(value) or not 0 <= value < math.inf:
        raise ConfigError(expected("a non-negative angle in degrees", name, value))
    return float(value)


def _check_zooms(min_zoom: float, max_zoom: float) -> tuple[float, float]:
    """The zoom range: finite positive numbers, ``min_zoom <= max_zoom``."""
    if not _is_number(max_zoom) or not 0 < max_zoom < math.inf:
        raise ConfigError(expected("a positive zoom", "max_zoom", max_zoom))
    if not _is_number(min_zoom) or not 0 < min_zoom <= max_zoom:
        raise ConfigError(expected(f"a positive zoom <= max_zoom={max_zoom}", "min_zoom", min_zoom))
    return float(min_zoom), float(max_zoom)


def _check_warp(value: float, name: str) -> float:
    """A largest perspective coefficient: in [0, 0.5). At 0.5 the projective denominator of a corner reaches 0;
    beyond it, part of the image folds over."""
    if not _is_number(value) or not 0 <= value < 0.5:
        raise ConfigError(expected("a value in [0, 0.5)", name, value, hint="At 0.5 a corner is sent to infinity."))
    return float(value)


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


def _empty(box: torch.Tensor) -> torch.Tensor:
    """``(..., N)`` True where a box ``[x0, y0, x1, y1]`` has no area."""
    return (box[..., 2] <= box[..., 0]) | (box[..., 3] <= box[..., 1])


def _drop_labels_of_empty_boxes(batch: tuple, kinds: Sequence[str]) -> tuple:
    """The label of every box with no area set to 0 (padding): the i-th ``"bbox"`` element goes with the i-th
    ``"bbox_label"`` one."""
    boxes = [x for x, kind in zip(batch, kinds) if kind == "bbox"]
    out, i = [], 0
    for x, kind in zip(batch, kinds):
        if kind == "bbox_label" and i < len(boxes):
            empty = _empty(boxes[i])  # (B, N)
            if empty.shape != x.shape:
                raise DataError(
                    f"The boxes {tuple(boxes[i].shape)} and their labels {tuple(x.shape)} do not match: every box "
                    "needs one label (pad both with BBoxBlock and BBoxLblBlock)."
                )
            x = x.masked_fill(empty, 0)
            i += 1
        out.append(x)
    return tuple(out)


class _AffineCore(Transform):
    """The shared core of the geometric batch transforms: :meth:`draw_matrices` gives one ``3 x 3`` projective
    matrix per image (output coordinates in ``[-1, 1]`` -> input coordinates); images, masks, keypoints and boxes
    are moved by it (a box becomes the clipped box enclosing its moved corners). Subclasses give the matrices and
    their recipe.

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
        out = super().__call__(sample, kinds, split)
        if getattr(self, "_mat", None) is not None and "bbox" in kinds and "bbox_label" in kinds:
            out = _drop_labels_of_empty_boxes(out, kinds)
        return out

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

    def encode_bbox(self, b: torch.Tensor) -> torch.Tensor:
        if self._mat is None:
            return b
        x0, y0, x1, y1 = b.unbind(-1)  # each (B, N)
        corners = torch.stack([x0, y0, x1, y0, x0, y1, x1, y1], -1).reshape(b.shape[0], -1, 2)  # (B, 4N, 2)
        moved = self.encode_points(corners).reshape(*b.shape[:2], 4, 2)  # (B, N, 4 corners, 2)
        # the enclosing axis-aligned box, clipped to the image
        box = torch.cat([moved.amin(2), moved.amax(2)], -1).clamp(-1, 1)  # (B, N, 4)
        return box.masked_fill(_empty(box)[..., None], 0.0)  # boxes left with no area (and padding) are zeros

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
        max_warp: the largest perspective coefficient, in [0, 0.5) (0.2 tilts an edge by about 20%; at 0.5 a
            corner is sent to infinity).
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
        if not _is_number(min_scale) or not 0 < min_scale <= 1:
            raise ConfigError(expected("a fraction in (0, 1]", "min_scale", min_scale))
        pair = isinstance(ratio, Sequence) and len(ratio) == 2 and all(_is_number(r) for r in ratio)
        if not (pair and 0 < ratio[0] <= ratio[1] < math.inf):
            raise ConfigError(expected("a (low, high) pair of positive ratios", "ratio", ratio))
        self.min_scale, self.ratio = float(min_scale), (float(ratio[0]), float(ratio[1]))
        self.p_affine = _check_p(p_affine, "p_affine")
        self.do_flip, self.flip_vert = bool(do_flip), bool(flip_vert)
        self.max_rotate = _check_angle(max_rotate, "max_rotate")
        self.min_zoom, self.max_zoom = _check_zooms(min_zoom, max_zoom)
        self.max_warp = _check_warp(max_warp, "max_warp")
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
        self.max_deg, self.p = _check_angle(max_deg, "max_deg"), _check_p(p)
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
        self.min_zoom, self.max_zoom = _check_zooms(min_zoom, max_zoom)
        self.p = _check_p(p)
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
        self.magnitude, self.p = _check_warp(magnitude, "magnitude"), _check_p(p)
        self._init_sampling(size, mode, pad_mode)

    def draw_matrices(self, n: int, in_size: tuple[int, int]) -> torch.Tensor:
        return _warp_mats(n, self.magnitude, self.p)

    def to_recipe(self) -> dict[str, Any]:
        return {"magnitude": self.magnitude, "p": self.p, **self._sampling_recipe()}
