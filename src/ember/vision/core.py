"""Images as plain tensors: the image block and drawing images (image I/O, keypoints and masks re-exported).

An image travels through ember as a ``uint8`` tensor of shape ``(C, H, W)`` until the batch
transforms turn it into floats on the device (:class:`~ember.vision.augment.IntToFloat`). This module
holds :class:`ImageBlock` and the functions that draw images (:func:`show_image`, :func:`show_images`);
the rest lives by concept, and every name stays importable from here:

- :mod:`ember.vision.image_io`: reading and writing image files, and any image value as a tensor
  (:func:`load_image`, :func:`image_to_tensor`, :func:`save_image`);
- :mod:`ember.vision.keypoints`: keypoints ``(N, 2)`` (:class:`PointBlock`, :class:`PointScaler`,
  :func:`show_points`);
- :mod:`ember.vision.masks`: segmentation masks of class ids ``(H, W)`` (:class:`MaskBlock`,
  :func:`load_mask`, :func:`mask_to_tensor`, :func:`show_mask`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ember.core.errors import ConfigError, expected
from ember.core.recipe import register_recipe
from ember.data.block import TransformBlock
from ember.vision.image_io import (
    _CHANNELS,
    IMAGE_MODES,
    _check_mode,
    image_to_tensor,
    load_image,
    pil_to_tensor,  # noqa: F401  (kept importable from here)
    save_image,
)
from ember.vision.keypoints import PointBlock, PointScaler, show_points
from ember.vision.masks import MaskBlock, load_mask, mask_to_tensor, show_mask

__all__ = [
    "IMAGE_MODES",
    "load_image",
    "image_to_tensor",
    "save_image",
    "ImageBlock",
    "PointBlock",
    "PointScaler",
    "MaskBlock",
    "load_mask",
    "mask_to_tensor",
    "show_image",
    "show_images",
    "show_points",
    "show_mask",
]


def _as_display(x: torch.Tensor) -> torch.Tensor:
    """An image tensor ``(C, H, W)`` (uint8, or float in [0, 1]) as ``(H, W[, C])`` float in [0, 1] for imshow."""
    x = x.detach().cpu()
    x = x.float() / 255 if not x.is_floating_point() else x.float()
    x = x.clamp(0, 1)
    return x[0] if x.shape[0] == 1 else x[:3].permute(1, 2, 0)


def show_image(
    im: Any, ax: Any = None, figsize: tuple[float, float] | None = None, title: str | None = None, **kwargs: Any
) -> Any:
    """Draw an image (tensor ``(C, H, W)`` uint8 or float in [0, 1], array, PIL image or path) on `ax`.

    Returns:
        The matplotlib Axes drawn on (a new figure's when `ax` is None).
    """
    import matplotlib.pyplot as plt

    if not isinstance(im, torch.Tensor) or im.ndim != 3:
        im = image_to_tensor(im, "RGB" if not (isinstance(im, torch.Tensor) and im.ndim == 2) else "L")
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (3, 3))
    x = _as_display(im)
    if x.ndim == 2:
        kwargs.setdefault("cmap", "gray")
        kwargs.setdefault("vmin", 0.0)
        kwargs.setdefault("vmax", 1.0)
    ax.imshow(x.numpy(), **kwargs)
    ax.axis("off")
    if title is not None:
        ax.set_title(title)
    return ax


_SHOW_IMAGES_ARGS = ("ims", "nrows", "ncols", "titles", "figsize", "fname")


def show_images(
    ims: Sequence[Any],
    nrows: int | None = None,
    ncols: int | None = None,
    titles: Sequence[str | None] | None = None,
    figsize: tuple[float, float] | None = None,
    fname: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Any:
    """Draw several images in a grid, each as :func:`show_image` draws one (tensors, arrays, PIL images, paths).

    Args:
        nrows, ncols: the grid (default: as square as possible).
        titles: one title per image (None for none).
        fname: also save the figure there.
        **kwargs: passed to matplotlib's ``imshow`` (e.g. ``cmap``, ``alpha``, ``interpolation``).

    Returns:
        The matplotlib Figure.

    Raises:
        ConfigError: no images, a count of `titles` other than one per image, a grid too small, or a keyword that
            ``imshow`` does not take.
    """
    from ember.data.show import _finish, check_show_kwargs, get_grid

    check_show_kwargs("show_images", kwargs, [ImageBlock], 1, _SHOW_IMAGES_ARGS)
    ims = list(ims)
    if not ims:
        raise ConfigError("show_images received no images: pass a list of at least one image.")
    if titles is not None and len(titles) != len(ims):
        raise ConfigError(expected(f"{len(ims)} titles, one per image", "titles", f"{len(titles)} titles"))
    axs = get_grid(len(ims), nrows, ncols, figsize=figsize)
    for i, (im, ax) in enumerate(zip(ims, axs)):
        show_image(im, ax=ax, title=None if titles is None else titles[i], **kwargs)
    return _finish(axs[0].figure, fname)


@register_recipe()
class ImageBlock(TransformBlock):
    """An image input (or target): files, PIL images or arrays become ``uint8 (C, H, W)`` tensors.

    Contributes :class:`~ember.vision.augment.IntToFloat` to the batch transforms, so the model sees
    floats in [0, 1] (then whatever normalization follows).

    As the target (image-to-image regression: restoration, super-resolution), the block gives ``dls.c``
    (its channels, the model's output channels) and the loss ``MSELossFlat()``. The batch transforms treat
    the target as they treat the input: the same geometry, the same lighting, the same normalization, so
    a pair stays a pair.

    Args:
        mode: "RGB" (3 channels) or "L" (grey, 1 channel).

    >>> DataBlock(blocks=(ImageBlock(mode="L"), CategoryBlock), ...)   # doctest: +SKIP
    """

    kind = "image"

    def __init__(self, mode: str = "RGB") -> None:
        from ember.vision.augment import IntToFloat

        self.mode = _check_mode(mode)
        self.item_tfms = []
        self.batch_tfms = [IntToFloat()]

    @property
    def n_channels(self) -> int:
        return _CHANNELS[self.mode]

    def setup(self, train_values: Sequence[Any]) -> None:
        """Images learn nothing from the training data."""

    def encode(self, value: Any) -> torch.Tensor:
        return image_to_tensor(value, self.mode)

    collate_hint = "Images of different sizes: add an item transform that gives them one size, e.g. Resize(224)."

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """One image of a batch (or a predicted one) as a CPU tensor ``(C, H, W)``: uint8, or float32 in [0, 1].

        Floats are clipped to [0, 1]: a prediction (or a normalization undone) may overshoot a little.
        """
        x = x.detach().cpu()
        return x.float().clamp(0, 1) if x.is_floating_point() else x

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        show_image(value, ax=ax, **kwargs)

    @property
    def loss_func(self) -> Any:
        """As a target: the mean squared error over every pixel and channel."""
        from ember.losses import MSELossFlat

        return MSELossFlat()

    @property
    def n_out(self) -> int:
        """As a target: the model's output channels (3 for "RGB", 1 for "L")."""
        return self.n_channels

    def to_recipe(self) -> dict[str, Any]:
        return {"mode": self.mode}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> ImageBlock:
        return cls(**data)

    def __repr__(self) -> str:
        return f"ImageBlock(mode={self.mode!r})"
