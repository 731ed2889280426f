"""Training pairs for image restoration: :func:`degrade_images` writes a damaged copy of every image of a folder.

A restoration (or super-resolution) model learns to turn a damaged image back into its original, so it
trains on pairs: the damaged copy as the input, the original as the target. Any folder of good images gives
such pairs once each image has a copy made smaller, compressed hard as a JPEG and, optionally, scribbled on
(a number drawn somewhere, which the model learns to paint out).

>>> degrade_images(path / "images", path / "degraded", size=96, quality=(10, 70))   # doctest: +SKIP
>>> dblock = DataBlock(blocks=(ImageBlock, ImageBlock), get_items=get_image_files,   # doctest: +SKIP
...                    get_y=lambda p: path / "images" / p.relative_to(path / "degraded"),
...                    item_tfms=Resize(128), batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)])
"""

from __future__ import annotations

import io
import os
import random
from functools import partial
from pathlib import Path
from typing import Any

from ember.core.errors import ConfigError, DataError, expected
from ember.core.parallel import parallel
from ember.data.items import get_image_files

__all__ = ["degrade_images"]

_JPEG_SUFFIXES = (".jpg", ".jpeg")


def _check_quality(quality: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """`quality` as an inclusive ``(low, high)`` range of JPEG qualities, or None for no compression."""
    if quality is None:
        return None
    if isinstance(quality, int) and not isinstance(quality, bool):
        pair: tuple = (quality, quality)
    else:
        pair = tuple(quality) if isinstance(quality, (list, tuple)) else ()
    ok = (
        len(pair) == 2
        and all(isinstance(q, int) and not isinstance(q, bool) and 1 <= q <= 95 for q in pair)
        and pair[0] <= pair[1]
    )
    if not ok:
        raise ConfigError(expected("a JPEG quality in 1..95, a (low, high) range of them, or None", "quality", quality))
    return (int(pair[0]), int(pair[1]))


def _draw_number(im: Any, rng: random.Random) -> Any:
    """Write a random number from 0 to 99 at a random place, in a size that suits `im` and a random colour that
    stands out from what is under it (light on dark, dark on light)."""
    from PIL import ImageDraw, ImageFont, ImageStat

    w, h = im.size
    font_size = max(6, min(w, h) // 4)
    try:
        font: Any = ImageFont.load_default(size=font_size)  # a scalable font (Pillow with FreeType)
    except (TypeError, OSError):  # an old Pillow or no FreeType: the small bitmap font
        font = ImageFont.load_default()
    x = rng.randint(0, max(0, w - font_size))
    y = rng.randint(0, max(0, h - font_size))
    under = ImageStat.Stat(im.convert("L").crop((x, y, min(w, x + font_size), min(h, y + font_size)))).mean[0]
    lo, hi = (0, 80) if under > 127 else (175, 255)
    draw = ImageDraw.Draw(im)
    grey = rng.randint(lo, hi)
    colour = grey if im.mode == "L" else (grey, rng.randint(lo, hi), rng.randint(lo, hi))
    draw.text((x, y), str(rng.randint(0, 99)), fill=colour, font=font)
    return im


def _degrade_one(
    job: tuple[Path, Path, int], size: int | None, quality: tuple[int, int] | None, draw_number: bool
) -> Path:
    """Write the damaged copy of one image (see :func:`degrade_images`); returns its path."""
    from PIL import Image, ImageOps

    src, dst, seed = job
    rng = random.Random(seed)
    try:
        with Image.open(src) as img:
            im = ImageOps.exif_transpose(img)
            im = im.convert("L" if im.mode in ("L", "LA", "I", "I;16", "1") else "RGB")  # JPEG takes L or RGB
    except Exception as e:  # Pillow raises many kinds (UnidentifiedImageError, OSError, SyntaxError …)
        raise DataError(f"Cannot read the image {src}: {type(e).__name__}: {e}") from e
    if size is not None and max(im.size) > size:
        scale = size / max(im.size)
        new = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(new, Image.Resampling.BILINEAR)
    if draw_number:
        im = _draw_number(im, rng)
    dst.parent.mkdir(parents=True, exist_ok=True)
    q = rng.randint(*quality) if quality is not None else None
    if q is not None and dst.suffix.lower() in _JPEG_SUFFIXES:
        im.save(dst, format="JPEG", quality=q)
        return dst
    if q is not None:  # compress in memory, then keep the damage losslessly in the file's own format
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=q)
        buf.seek(0)
        with Image.open(buf) as jpeg:
            im = jpeg.copy()
    im.save(dst)
    return dst


def degrade_images(
    src_folder: str | os.PathLike,
    dest_folder: str | os.PathLike,
    size: int | None = 96,
    quality: int | tuple[int, int] | None = (10, 70),
    draw_number: bool = False,
    n_workers: int | None = None,
    seed: int = 0,
    recurse: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Write a damaged copy of every image under `src_folder` to `dest_folder`: the inputs of restoration pairs.

    Each copy is made smaller, optionally gets a random number drawn on it, and is compressed as a JPEG at a
    random quality. The folder structure and the file names are kept (``src/a/b.png`` -> ``dest/a/b.png``), so
    the original of an input ``p`` is ``src_folder / p.relative_to(dest_folder)``. A JPEG file is saved at the
    drawn quality; another format is compressed in memory and saved losslessly, artefacts included. The
    damage is random but reproducible: it depends on `seed` and the file's place in the sorted list only.

    Args:
        size: the longer side of the copies in pixels (the aspect ratio is kept; smaller images are not
            enlarged); ``None`` keeps the size.
        quality: the JPEG quality (1 to 95; lower is worse): an int, an inclusive ``(low, high)`` range drawn
            per image, or ``None`` for no compression.
        draw_number: write a random number (0 to 99) at a random place.
        n_workers: worker processes; ``None`` uses every core, ``0`` runs in this process.
        seed: the seed of the random draws.
        recurse: include subfolders.
        progress: draw a progress bar (in a terminal or a notebook).

    Returns:
        The files written, in sorted source order.

    Raises:
        ConfigError: a bad `size` or `quality`, a missing `src_folder`, or `dest_folder` equal to it.
        EmberError: an image could not be read or written (the message names it).
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ConfigError(expected("a positive int or None", "size", size))
    q_range = _check_quality(quality)
    src_root, dst_root = Path(src_folder), Path(dest_folder)
    if not src_root.is_dir():
        raise ConfigError(expected("an existing folder of images", "src_folder", str(src_root)))
    if dst_root.resolve() == src_root.resolve():
        raise ConfigError(
            expected("a folder other than src_folder", "dest_folder", str(dst_root), hint="The originals are kept.")
        )
    files = [f for f in get_image_files(src_root, recurse=recurse) if dst_root.resolve() not in f.resolve().parents]
    jobs = [(f, dst_root / f.relative_to(src_root), seed * 1_000_003 + i) for i, f in enumerate(files)]
    fn = partial(_degrade_one, size=size, quality=q_range, draw_number=draw_number)
    return parallel(fn, jobs, n_workers=n_workers, progress=progress, desc="degrade_images")
