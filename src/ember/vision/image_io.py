"""Reading and writing image files, and turning any image value into a ``uint8 (C, H, W)`` tensor.

An image travels through ember as a ``uint8`` tensor of shape ``(C, H, W)`` until the batch
transforms turn it into floats on the device (:class:`~ember.vision.augment.IntToFloat`). Files are
decoded with torchvision's decoders (libjpeg-turbo, libpng, libwebp …), which are several times faster
than Pillow; what they cannot read (BMP, TIFF, …) goes through Pillow. A file neither can read is
reported by name.

This module holds :func:`load_image`, :func:`image_to_tensor` (paths, PIL images, bytes, arrays and tensors),
:func:`pil_to_tensor` and :func:`save_image`, with the image modes (``IMAGE_MODES``) they accept.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected

__all__ = ["IMAGE_MODES", "load_image", "image_to_tensor", "pil_to_tensor", "save_image"]

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


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Pixels of a deeper format (16-bit PNG) scaled to ``uint8``: the top 8 bits of each value."""
    if x.dtype == torch.uint8:
        return x
    if x.is_floating_point():
        return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    bits = {torch.uint16: 16, torch.int16: 16, torch.int32: 32, torch.uint32: 32}.get(x.dtype, 16)
    if bits == 32 and int(x.max()) <= 65535:  # 16-bit values held in 32-bit integers (Pillow's mode "I")
        bits = 16
    return (x.to(torch.int64) >> (bits - 8)).clamp(0, 255).to(torch.uint8)


def _webp_orientation(path: Path) -> int:
    """The EXIF orientation of a WebP file (1 when none), read from its header without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:
        return 1


def _decode_torchvision(path: Path, mode: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    # WebP has no grey decoding (torchvision would warn and give colour): it is read as RGB and converted below
    grey = mode == "L" and path.suffix.lower() != ".webp"
    read_mode = ImageReadMode.GRAY if grey else ImageReadMode.RGB
    x = decode_image(str(path), mode=read_mode, apply_exif_orientation=True)  # (C, H, W), uint8 or uint16
    if x.ndim == 4:  # an animated GIF: its first frame
        x = x[0]
    # 16-bit PNGs come as uint16; the WebP and GIF decoders ignore the GRAY mode (3 or 4 channels)
    return _to_channels(_to_uint8(x), _CHANNELS[mode])


def _decode_pillow(source: Any, mode: str) -> torch.Tensor:
    from PIL import Image, ImageOps

    with Image.open(source) as im:
        im = ImageOps.exif_transpose(im)
        return pil_to_tensor(im, mode)


def pil_to_tensor(im: Any, mode: str = "RGB") -> torch.Tensor:
    """A PIL image as a ``uint8`` tensor ``(C, H, W)`` in `mode` ("RGB" or "L"); 16-bit images are scaled to 8 bits."""
    if im.mode.startswith("I;16") or im.mode == "I":
        deep = torch.from_numpy(np.asarray(im).astype(np.int64))  # (H, W): Pillow's "L" conversion would clip
        return _to_channels(_to_uint8(deep.to(torch.int32))[None], _CHANNELS[mode])
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
    suffix = path.suffix.lower()
    # torchvision applies the EXIF orientation of JPEG and PNG files only: a turned WebP photo goes to Pillow
    if suffix in _TV_SUFFIXES and not (suffix == ".webp" and _webp_orientation(path) != 1):
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
    deep = False  # 16-bit pixels, scaled to 8 bits below
    if isinstance(value, np.ndarray):
        if value.dtype == np.uint16:
            value, deep = value.astype(np.int32), True
        # a read-only array (np.asarray of a PIL image) is copied: torch warns on arrays it cannot write
        value = torch.from_numpy(value.copy() if not value.flags.writeable else np.ascontiguousarray(value))
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
    elif deep or x.dtype == torch.uint16:
        x = (x.to(torch.int64) >> 8).clamp(0, 255)
    x = x.to(torch.uint8)
    return _to_channels(x, n_ch)


def save_image(image: Any, path: str | os.PathLike, quality: int = 95) -> Path:
    """Write an image to `path`, in the format of its extension; missing folders are made. Returns the path.

    `image` is a tensor ``(C, H, W)`` or ``(H, W)`` (on any device), an array ``(H, W, C)`` or ``(H, W)``, or a PIL
    image. Floats must be in [0, 1] (undo a normalization first); ``uint8`` is written as it is, ``uint16`` grey as
    16-bit (PNG, TIFF), other integers when they fit in 0..255, booleans as black and white. One channel is written
    as grey, three as RGB, four as RGBA (JPEG has no alpha: it is dropped there). This is how predictions of an
    image-to-image model become files: ``save_image(learn.predict(item)[0], out / item.name)``.

    Raises:
        DataError: for a value that is not an image, values out of range, or a file that cannot be written.
    """
    from PIL import Image

    path = Path(path)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    if hasattr(image, "convert") and hasattr(image, "size") and not isinstance(image, (torch.Tensor, np.ndarray)):
        pil = image  # a PIL image
    else:
        pil = Image.fromarray(_image_array(image), mode=None)
    if jpeg and pil.mode in ("I;16", "I"):
        pil = Image.fromarray((np.asarray(pil).astype(np.uint32) >> 8).astype(np.uint8))  # 16 -> 8 bits, scaled
    if jpeg and pil.mode not in ("L", "RGB"):
        pil = pil.convert("RGB")  # JPEG holds neither alpha nor 16 bits
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        pil.save(path, quality=quality) if jpeg else pil.save(path)
    except (ValueError, OSError, KeyError) as e:
        raise DataError(f"Cannot write the image {path}: {type(e).__name__}: {e}") from e
    return path


def _image_array(image: Any) -> np.ndarray:
    """An image tensor or array as a ``(H, W)`` or ``(H, W, C)`` uint8 (or grey uint16) array for Pillow."""
    if isinstance(image, torch.Tensor):
        x = image.detach().cpu()
        if x.is_floating_point():
            x = x.float()  # numpy has no bfloat16
        if x.ndim == 3:
            x = x.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        arr = x.numpy()
    elif isinstance(image, np.ndarray):
        arr = image
    else:
        raise DataError(expected("an image (a tensor, an array or a PIL image)", "image", type(image).__name__))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise DataError(
            expected("an image (C, H, W) tensor or (H, W, C) array with 1, 3 or 4 channels", "image.shape", arr.shape)
        )
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo < -1e-3 or hi > 1 + 1e-3 or np.isnan(arr).any():
            raise DataError(
                f"Float images are written from [0, 1]; this one spans [{lo:.3g}, {hi:.3g}]. Undo the normalization "
                "(or divide by 255) first."
            )
        return np.ascontiguousarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8))
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(expected("float, integer or boolean pixels", "image.dtype", arr.dtype))
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= 255:
        return np.ascontiguousarray(arr.astype(np.uint8))
    if lo >= 0 and hi <= 65535 and arr.ndim == 2:
        return np.ascontiguousarray(arr.astype(np.uint16))  # grey 16-bit
    raise DataError(
        f"Integer pixels from {lo} to {hi} fit neither 8 bits nor (grey only) 16 bits; scale them to 0..255 first."
    )


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
