"""Images as plain tensors: reading files, the image and keypoint blocks, and drawing an image.

An image travels through ember as a ``uint8`` tensor of shape ``(C, H, W)`` until the batch
transforms turn it into floats on the device (:class:`~ember.vision.augment.IntToFloat`). Files are
decoded with torchvision's decoders (libjpeg-turbo, libpng, libwebp …), which are several times faster
than Pillow; what they cannot read (BMP, TIFF, …) goes through Pillow. A file neither can read is
reported by name.

Segmentation masks are integer tensors of shape ``(H, W)`` holding one class id per pixel (an index into
the codes of :class:`MaskBlock`); batches of them are ``int64 (B, H, W)``. The item and batch transforms
resize and warp them with the image's geometry but with nearest-neighbour sampling, so a pixel is always
one of the class ids.

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


# ------------------------------------------------------------------------------------------------------------
# segmentation masks
# ------------------------------------------------------------------------------------------------------------


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
