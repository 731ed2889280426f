"""Augmentation: the standard batch pipeline (:func:`aug_transforms`), pixel scaling and normalization.

This module holds :class:`IntToFloat` (``uint8`` images to floats in [0, 1]), :func:`aug_transforms` (one fused
:class:`AffineWarp` and a :class:`Lighting`), :class:`Normalize` with the usual statistics (`imagenet_stats`,
`mnist_stats`, `cifar_stats`), and :class:`RandomErasing`, which runs after it. Every augmentation is importable
from here; the families live by concept:

- :mod:`ember.vision.resize`: the item transforms that size images (:class:`Resize`, :class:`RandomResizedCrop`,
  :class:`RandomCrop`, :class:`CropPad`, :func:`rand_pad`);
- :mod:`ember.vision.affine`: the item flips (:class:`FlipItem`, :class:`DihedralItem`) and the geometric batch
  transforms (:class:`AffineWarp`, :class:`Flip`, :class:`Dihedral`, :class:`Rotate`, :class:`Zoom`,
  :class:`Warp`), one projective matrix per image and one ``grid_sample`` per batch;
- :mod:`ember.vision.colour`: the colour batch transforms (:class:`Lighting`, :class:`Brightness`,
  :class:`Contrast`, :class:`Saturation`, :class:`Hue`).

Transforms never change their input in place: the datasets may cache what came before them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.transform import Transform
from ember.vision._draws import _bernoulli, _check_p, _is_number
from ember.vision.affine import (
    AffineWarp,
    Dihedral,
    DihedralItem,
    Flip,
    FlipItem,
    Rotate,
    Warp,
    Zoom,
    _check_warp,
)
from ember.vision.colour import Brightness, Contrast, Hue, Lighting, Saturation
from ember.vision.resize import (
    PAD_MODES,
    RESIZE_METHODS,
    CropPad,
    RandomCrop,
    RandomResizedCrop,
    Resize,
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

    Raises:
        ConfigError: an argument is out of range, e.g. a `mult` that takes ``max_warp * mult`` to 0.5 or more (where
            a corner of the image is sent to infinity).

    >>> batch_tfms = [*aug_transforms(), Normalize.from_stats(*imagenet_stats)]
    """
    if not _is_number(mult) or not 0 <= mult < math.inf:
        raise ConfigError(expected("a non-negative number", "mult", mult))
    if _check_warp(max_warp, "max_warp") * mult >= 0.5:
        raise ConfigError(
            expected(
                f"below {0.5 / max_warp:.4g} with max_warp={max_warp}, so that max_warp * mult stays below 0.5",
                "mult",
                mult,
                hint="At a perspective coefficient of 0.5 a corner is sent to infinity. Lower `max_warp` (or set it "
                "to 0) to make the other augmentations stronger.",
            )
        )
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
        if not (_is_number(sh) and 0 <= sh <= 1):
            raise ConfigError(expected("a fraction of the area in [0, 1]", "sh", sh))
        if not (_is_number(sl) and 0 <= sl <= sh):
            raise ConfigError(expected(f"a fraction of the area in [0, sh={sh}]", "sl", sl))
        if not (_is_number(min_aspect) and 0 < min_aspect <= 1):
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
