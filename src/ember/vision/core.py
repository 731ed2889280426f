"""Images as plain tensors: reading files, the image and keypoint blocks, and drawing an image.

An image travels through ember as a ``uint8`` tensor of shape ``(C, H, W)`` until the batch
transforms turn it into floats on the device (:class:`~ember.vision.augment.IntToFloat`). Files are
decoded with torchvision's decoders (libjpeg-turbo, libpng, libwebp …), which are several times faster
than Pillow; what they cannot read (BMP, TIFF, …) goes through Pillow. A file neither can read is
reported by name.

Keypoints are ``float`` tensors of shape ``(N, 2)`` holding ``(x, y)``. They are read in pixels, follow
the item transforms in pixels, and are scaled to ``[-1, 1]`` by the image size (``-1`` the left/top edge,
``+1`` the right/bottom edge, the convention of ``torch.nn.functional.grid_sample``) by
:class:`PointScaler`, which :class:`PointBlock` adds to the item transforms.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.block import TransformBlock
from ember.data.transform import Transform

__all__ = [
    "IMAGE_MODES",
    "load_image",
    "image_to_tensor",
    "ImageBlock",
    "PointBlock",
    "PointScaler",
    "show_image",
    "show_points",
]

IMAGE_MODES = ("RGB", "L")
_CHANNELS = {"RGB": 3, "L": 1}
# Suffixes torchvision decodes itself; anything else goes straight to Pillow.
_TV_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})


def _check_mode(mode: str) -> str:
    if mode not in IMAGE_MODES:
        raise ConfigError(expected("an image mode", "mode", mode, IMAGE_MODES))
    return mode


# torchvision 0.29 warns on every decode that TorchCodec will take these decoders over; they work, and ember
# falls back to Pillow if they ever go, so the notice is silenced (this message only), once.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities", category=DeprecationWarning)


def _decode_torchvision(path: Path, mode: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    read_mode = ImageReadMode.RGB if mode == "RGB" else ImageReadMode.GRAY
    return decode_image(str(path), mode=read_mode, apply_exif_orientation=True)  # (C, H, W) uint8


def _decode_pillow(source: Any, mode: str) -> torch.Tensor:
    from PIL import Image, ImageOps

    with Image.open(source) as im:
        im = ImageOps.exif_transpose(im)
        return pil_to_tensor(im, mode)


def pil_to_tensor(im: Any, mode: str = "RGB") -> torch.Tensor:
    """A PIL image as a ``uint8`` tensor ``(C, H, W)`` in `mode` ("RGB" or "L")."""
    arr = np.asarray(im.convert(mode))  # (H, W) or (H, W, C)
    t = torch.from_numpy(arr.copy())
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1).contiguous()


def load_image(path: str | os.PathLike, mode: str = "RGB") -> torch.Tensor:
    """Read an image file as a ``uint8`` tensor ``(C, H, W)`` (3 channels for "RGB", 1 for "L").

    EXIF orientation is applied, so photos come out the way up they were taken.

    Raises:
        DataError: the file is missing, or neither torchvision nor Pillow can decode it (the message
            names the file).
    """
    _check_mode(mode)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Cannot read the image {path}: no such file.")
    errors = []
    if path.suffix.lower() in _TV_SUFFIXES:
        try:
            return _decode_torchvision(path, mode)
        except (RuntimeError, ValueError) as e:  # a format torchvision reads only partly, or a broken file
            errors.append(f"torchvision: {e}")
    try:
        return _decode_pillow(path, mode)
    except Exception as e:  # Pillow raises many kinds (UnidentifiedImageError, OSError, SyntaxError …)
        errors.append(f"Pillow: {type(e).__name__}: {e}")
    raise DataError(
        f"Cannot decode the image {path}: it is corrupt or not an image ({'; '.join(errors)}). "
        "Remove or replace it; `verify_images` lists every broken file of a folder."
    )


def image_to_tensor(value: Any, mode: str = "RGB") -> torch.Tensor:
    """Anything that is an image (a path, a PIL image, bytes, an array or a tensor) as ``uint8 (C, H, W)``.

    Arrays are read as ``(H, W)`` or ``(H, W, C)``; tensors as ``(H, W)`` or ``(C, H, W)``. Float arrays
    and tensors are taken to be in ``[0, 1]``.

    Raises:
        DataError: for a value that is not an image, or a file that cannot be read.
    """
    n_ch = _CHANNELS[_check_mode(mode)]
    if isinstance(value, (str, os.PathLike)):
        return load_image(value, mode)
    if isinstance(value, (bytes, bytearray)):
        try:
            return _decode_pillow(io.BytesIO(value), mode)
        except Exception as e:
            raise DataError(f"Cannot decode the image bytes given: {type(e).__name__}: {e}") from e
    if hasattr(value, "convert") and hasattr(value, "size"):  # a PIL image, without importing PIL
        return pil_to_tensor(value, mode)
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
        if value.ndim == 3:
            value = value.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
    if not isinstance(value, torch.Tensor):
        raise DataError(
            expected("an image (a path, a PIL image, bytes, an array or a tensor)", "image", type(value).__name__)
        )
    x = value if value.ndim == 3 else value[None] if value.ndim == 2 else None
    if x is None:
        raise DataError(expected("an image of shape (H, W) or (C, H, W)", "image.shape", tuple(value.shape)))
    if x.is_floating_point():
        x = (x.clamp(0, 1) * 255).round()
    x = x.to(torch.uint8)
    return _to_channels(x, n_ch)


def _to_channels(x: torch.Tensor, n_ch: int) -> torch.Tensor:
    """Convert ``(C, H, W)`` uint8 to `n_ch` channels (grey <-> RGB, dropping alpha)."""
    c = x.shape[0]
    if c == n_ch:
        return x
    if n_ch == 3 and c == 1:
        return x.expand(3, -1, -1).contiguous()
    if n_ch == 3 and c == 4:
        return x[:3].contiguous()
    if n_ch == 1 and c in (3, 4):
        # ITU-R 601-2 luma, the weights Pillow's "L" conversion uses
        w = torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)
        return (x[:3].float() * w).sum(0, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(expected(f"an image with 1, 3 or 4 channels to make {n_ch}", "channels", c))


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


def show_points(points: torch.Tensor, ax: Any, size: tuple[int, int] | None = None, **kwargs: Any) -> Any:
    """Draw keypoints scaled to [-1, 1] over the image already on `ax` (or an image of `size` ``(H, W)``)."""
    if size is None:
        if not ax.images:
            raise ConfigError("show_points needs the image drawn first on `ax`, or `size=(H, W)`.")
        size = ax.images[0].get_array().shape[:2]
    h, w = size
    p = points.detach().cpu().float().reshape(-1, 2)
    # back from [-1, 1] to pixel coordinates; imshow puts pixel centres on integers, hence the -0.5
    xs = (p[:, 0] + 1) * w / 2 - 0.5
    ys = (p[:, 1] + 1) * h / 2 - 0.5
    kwargs.setdefault("s", 12)
    kwargs.setdefault("c", "tab:red")
    kwargs.setdefault("marker", "x")
    ax.scatter(xs.numpy(), ys.numpy(), **kwargs)
    return ax


@register_recipe()
class ImageBlock(TransformBlock):
    """An image input (or target): files, PIL images or arrays become ``uint8 (C, H, W)`` tensors.

    Contributes :class:`~ember.vision.augment.IntToFloat` to the batch transforms, so the model sees
    floats in [0, 1] (then whatever normalization follows).

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

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        sizes = {tuple(x.shape) for x in xs}
        if len(sizes) > 1:
            raise DataError(
                f"Cannot batch images of different sizes (found {sorted(sizes)[:4]}…). "
                "Add an item transform that gives every image the same size, e.g. item_tfms=[Resize(224)]."
            )
        return torch.stack(xs)  # (B, C, H, W)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """One image of a batch as a CPU tensor ``(C, H, W)``, uint8 or float in [0, 1]."""
        return x.detach().cpu()

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        show_image(value, ax=ax, **kwargs)

    @property
    def loss_func(self) -> None:
        return None

    @property
    def n_out(self) -> None:
        return None

    def to_recipe(self) -> dict[str, Any]:
        return {"mode": self.mode}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> ImageBlock:
        return cls(**data)

    def __repr__(self) -> str:
        return f"ImageBlock(mode={self.mode!r})"


@register_recipe()
class PointScaler(Transform):
    """Item transform: scale keypoints from pixels to [-1, 1] by the size of the sample's image.

    Runs last among the item transforms (``order = 100``), after every resize and crop, so that the
    image it measures is the one the model sees.
    """

    order = 100
    deterministic = True

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        # the size stays local (not on self): datasets fill their cache from several threads at once
        size = next((x.shape[-2:] for x, kind in zip(sample, kinds) if kind == "image"), None)
        if "points" not in kinds:
            return sample
        if size is None:
            raise DataError("Keypoints need an image in the same sample to be scaled (none was found).")
        h, w = size
        out = []
        for x, kind in zip(sample, kinds):
            if kind == "points":
                x = x * torch.tensor([2.0 / w, 2.0 / h], dtype=x.dtype) - 1  # (N, 2) in [-1, 1]
            out.append(x)
        return tuple(out)

    def to_recipe(self) -> dict[str, Any]:
        return {}


@register_recipe()
class PointBlock(TransformBlock):
    """Keypoints: ``(N, 2)`` pixel coordinates ``(x, y)`` in, scaled to [-1, 1] by the image size.

    A value is anything ``torch.as_tensor`` turns into ``N * 2`` numbers (a list of pairs, an array).
    The default loss is the mean squared error over the flattened coordinates.
    """

    kind = "points"

    def __init__(self) -> None:
        self.item_tfms = [PointScaler()]
        self.batch_tfms = []
        self._n_points: int | None = None

    def setup(self, train_values: Sequence[Any]) -> None:
        if train_values:
            self._n_points = int(self.encode(train_values[0]).shape[0])

    def encode(self, value: Any) -> torch.Tensor:
        try:
            p = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise DataError(expected("keypoints: pairs of numbers (x, y)", "points", value)) from e
        if p.numel() % 2:
            raise DataError(expected("an even count of numbers (x, y pairs)", "points", value))
        return p.reshape(-1, 2)  # (N, 2) in pixels

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        counts = {x.shape[0] for x in xs}
        if len(counts) > 1:
            raise DataError(f"Cannot batch samples with different numbers of keypoints: {sorted(counts)}.")
        return torch.stack(xs)  # (B, N, 2)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().cpu().float().reshape(-1, 2)

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        show_points(value, ax, **kwargs)

    @property
    def loss_func(self) -> Any:
        from ember.losses import MSELossFlat

        return MSELossFlat()

    @property
    def n_out(self) -> int | None:
        return None if self._n_points is None else self._n_points * 2

    def to_recipe(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> PointBlock:
        return cls()

    def __repr__(self) -> str:
        return "PointBlock()"
