"""Colour augmentation of a batch on the device: lighting, brightness, contrast, saturation and hue.

:class:`Lighting` changes brightness and contrast together (the one :func:`~ember.vision.augment.aug_transforms`
adds); :class:`Brightness`, :class:`Contrast`, :class:`Saturation` and :class:`Hue` are the single effects. All
work on float images in [0, 1] after the geometry and before :class:`~ember.vision.augment.Normalize`
(``order = 40``), training only, with one change drawn per image on the CPU; masks and keypoints are left alone.
Brightness, contrast and saturation work in logit space, so values stay in [0, 1] without clipping.

All of them are importable from :mod:`ember.vision.augment` too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.transform import Transform
from ember.vision._draws import _bernoulli, _check_p, _is_number, _uniform

__all__ = [
    "Lighting",
    "Brightness",
    "Contrast",
    "Saturation",
    "Hue",
]


def _check_fraction(value: float, name: str) -> float:
    """A value in [0, 1): the largest change of a colour effect."""
    if not _is_number(value) or not 0 <= value < 1:
        raise ConfigError(expected("a value in [0, 1)", name, value))
    return float(value)


def _logit(x: torch.Tensor) -> torch.Tensor:
    """Logits of pixel values, clamped away from 0 and 1 (the lighting transforms work in this space)."""
    return torch.logit(x.clamp(1e-4, 1 - 1e-4))


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
        self.max_lighting, self.p = _check_fraction(max_lighting, "max_lighting"), _check_p(p)

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
        return torch.sigmoid(_logit(x) * c + b)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


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


class _LightingEffect(_ColourEffect):
    """Base of the colour effects whose strength is one `max_lighting` in [0, 1), applied with probability `p`."""

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = _check_fraction(max_lighting, "max_lighting"), _check_p(p)

    def to_recipe(self) -> dict[str, Any]:
        return {"max_lighting": self.max_lighting, "p": self.p}


@register_recipe()
class Brightness(_LightingEffect):
    """Batch augmentation: with probability `p`, change each image's brightness in logit space (training only).

    A pixel value ``v`` becomes ``sigmoid(logit(v) + logit(b))`` with ``b`` drawn uniformly in ``0.5 ± max_lighting
    / 2``: ``b = 0.5`` leaves the image as it is, and values stay in [0, 1] without clipping. The brightness half
    of :class:`Lighting`, as fastai's ``Brightness``.
    """

    neutral = 0.5

    def draw(self, n: int) -> torch.Tensor:
        m = self.max_lighting
        return torch.where(_bernoulli(n, self.p), _uniform(n, 0.5 * (1 - m), 0.5 * (1 + m)), torch.full((n,), 0.5))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_logit(x) + torch.logit(change).view(-1, 1, 1, 1))  # (B, C, H, W)


@register_recipe()
class Contrast(_LightingEffect):
    """Batch augmentation: with probability `p`, change each image's contrast in logit space (training only).

    A pixel value ``v`` becomes ``sigmoid(c * logit(v))`` with ``c`` log-uniform in ``[1 - max_lighting,
    1 / (1 - max_lighting)]``. The contrast half of :class:`Lighting`, as fastai's ``Contrast``.
    """

    neutral = 1.0

    def draw(self, n: int) -> torch.Tensor:
        return torch.where(_bernoulli(n, self.p), _log_uniform_factor(n, self.max_lighting), torch.ones(n))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_logit(x) * change.view(-1, 1, 1, 1))  # (B, C, H, W)


@register_recipe()
class Saturation(_LightingEffect):
    """Batch augmentation: with probability `p`, change each RGB image's saturation (training only).

    In logit space, each pixel moves away from (factor above 1) or towards (below 1) its grey level, the
    BT.601 weighted mean of its channels, by a factor log-uniform in ``[1 - max_lighting, 1 / (1 -
    max_lighting)]``; a factor of 0 would give grey. As fastai's ``Saturation``. Grey images are left alone.
    """

    neutral = 1.0
    rgb_only = True

    def draw(self, n: int) -> torch.Tensor:
        return torch.where(_bernoulli(n, self.p), _log_uniform_factor(n, self.max_lighting), torch.ones(n))

    def adjust(self, x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
        logits = _logit(x)  # (B, 3, H, W)
        luma = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        grey = (logits * luma).sum(1, keepdim=True)  # (B, 1, H, W)
        return torch.sigmoid(grey + change.view(-1, 1, 1, 1) * (logits - grey))


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
