"""Medical images: DICOM files read in the modality's units (Hounsfield units for CT) and windowed for a model.

A CT slice holds 12 to 16 bits per pixel: about -1000 (air) to +3000 (dense bone) Hounsfield units once the file's
``RescaleSlope`` and ``RescaleIntercept`` are applied. A model sees a few of those thousands of values at a time,
through a *window* (a width and a level, in the units of the modality): :func:`windowed` maps
``level - width / 2 .. level + width / 2`` to ``[0, 1]`` and clips the rest, :data:`dicom_windows` holds the usual
presets, and :func:`hist_scaled` spreads the values by their histogram instead. :class:`DicomBlock` does this for
each file of a :class:`~ember.data.block.DataBlock`, so DICOM files train, show, export and predict like any image.

Needs the optional extra pydicom: ``pip install 'ember[medical]'``. Importing this module does not import pydicom;
the functions that read files do, and say how to install it when it is missing.

>>> from ember.medical import DicomBlock, dicom_windows, get_dicom_files   # doctest: +SKIP
>>> dblock = DataBlock(blocks=(DicomBlock(window=dicom_windows.brain), CategoryBlock),
...                    get_items=get_dicom_files, get_y=parent_label)     # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
import numbers
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, EmberError, expected
from ember.core.parallel import parallel
from ember.core.recipe import register_recipe
from ember.data.items import get_files
from ember.vision.core import ImageBlock

__all__ = [
    "DICOM_EXTENSIONS",
    "get_dicom_files",
    "dcmread",
    "dicom_pixels",
    "dicom_windows",
    "windowed",
    "freqhist_bins",
    "hist_scaled",
    "dicom_metadata",
    "DicomBlock",
]

DICOM_EXTENSIONS = (".dcm", ".dicom", ".dc3", ".ima")
_PIXEL_DATA = 0x7FE00010  # the (7FE0,0010) PixelData tag


class _DicomWindows(NamedTuple):
    """CT windows as ``(width, level)`` in Hounsfield units (the presets radiologists use; radiopaedia.org)."""

    brain: tuple[int, int] = (80, 40)
    subdural: tuple[int, int] = (254, 100)
    stroke: tuple[int, int] = (8, 32)
    brain_bone: tuple[int, int] = (2800, 600)
    brain_soft: tuple[int, int] = (375, 40)
    lungs: tuple[int, int] = (1500, -600)
    mediastinum: tuple[int, int] = (350, 50)
    abdomen_soft: tuple[int, int] = (400, 50)
    liver: tuple[int, int] = (150, 30)
    spine_soft: tuple[int, int] = (250, 50)
    spine_bone: tuple[int, int] = (1800, 400)


#: The usual CT windows, ``(width, level)`` in Hounsfield units: ``dicom_windows.brain == (80, 40)``; every preset
#: is listed by ``dicom_windows._asdict()``. The values are fastai's. Read-only (a named tuple).
dicom_windows = _DicomWindows()


def _import_pydicom() -> Any:
    try:
        import pydicom
    except ImportError as e:
        raise ConfigError(
            "Reading DICOM files needs the pydicom package, which is not installed. Run `pip install 'ember[medical]'`."
        ) from e
    return pydicom


def get_dicom_files(
    path: str | os.PathLike, recurse: bool = True, folders: Iterable[str] | str | None = None
) -> list[Path]:
    """Every DICOM file (by suffix: .dcm, .dicom, .dc3, .ima, any case) under `path`, sorted.

    Args:
        recurse: also search sub-folders.
        folders: only search these sub-folders of `path`.

    Raises:
        DataError: `path` is not a folder.
    """
    return get_files(path, extensions=DICOM_EXTENSIONS, recurse=recurse, folders=folders)


def dcmread(path: str | os.PathLike, force: bool = False) -> Any:
    """Read a DICOM file with pydicom (``pydicom.dcmread``): the header now, the pixels when asked for.

    Args:
        force: also read a file without the 128-byte preamble and ``DICM`` marker (old ACR-NEMA files).

    Returns:
        A ``pydicom.Dataset``.

    Raises:
        DataError: the file is missing, is not a DICOM file, or is truncated (the message names it).
        ConfigError: pydicom is not installed.
    """
    pydicom = _import_pydicom()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Cannot read the DICOM file {path}: no such file.")
    try:
        return pydicom.dcmread(str(path), force=force)
    except pydicom.errors.InvalidDicomError as e:
        raise DataError(
            f"{path} is not a DICOM file ({e}). Remove it from the items, or, if it is an old DICOM file without "
            "the 'DICM' marker, read it with dcmread(path, force=True)."
        ) from e
    except Exception as e:  # pydicom raises many kinds on a broken file (EOFError, ValueError, struct.error …)
        raise DataError(f"Cannot read the DICOM file {path}: {type(e).__name__}: {e}. It may be truncated.") from e


def _name(ds: Any) -> str:
    filename = getattr(ds, "filename", None)
    return str(filename) if isinstance(filename, (str, os.PathLike)) and str(filename) else "given"


def _apply_modality_lut() -> Any:
    try:
        from pydicom.pixels import apply_modality_lut  # pydicom >= 3
    except ImportError:
        from pydicom.pixel_data_handlers.util import apply_modality_lut  # pydicom 2.4
    return apply_modality_lut


def _modality_array(ds: Any) -> np.ndarray:
    """Every frame of a greyscale dataset in the modality's units: float32 ``(H, W)`` or ``(F, H, W)``."""
    name = _name(ds)
    if _PIXEL_DATA not in ds:
        raise DataError(
            f"The DICOM file {name} holds no image (no PixelData element): it may be a report or a header-only file. "
            "Leave such files out of the items."
        )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DataError(
            f"The DICOM file {name} holds a colour image (PhotometricInterpretation={photometric!r}, "
            f"SamplesPerPixel={samples}); ember reads greyscale DICOM (CT, MR, X-ray): MONOCHROME1 or MONOCHROME2."
        )
    try:
        stored = ds.pixel_array
    except Exception as e:  # a compressed transfer syntax without its decoder, or broken pixel data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        syntax_name = getattr(syntax, "name", syntax)
        raise DataError(
            f"Cannot decode the pixels of the DICOM file {name} (transfer syntax {syntax_name}): "
            f"{type(e).__name__}: {e}. Compressed files need a decoder plugin for pydicom, e.g. "
            "`pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg`."
        ) from e
    lut = _apply_modality_lut()
    values = np.asarray(lut(stored, ds), dtype=np.float64)
    if photometric == "MONOCHROME1":
        # MONOCHROME1 shows low values bright: reflect the values within the range the stored bits can hold, so
        # that larger means brighter as for MONOCHROME2 (in the rescaled units, whatever the slope and intercept).
        bits = int(ds.get("BitsStored", stored.dtype.itemsize * 8))
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        ends = np.asarray(lut(np.array([lo, hi], dtype=stored.dtype), ds), dtype=np.float64)
        values = ends[0] + ends[1] - values
    return values.astype(np.float32)


def dicom_pixels(ds: Any, frame: int | None = None) -> torch.Tensor:
    """The image of a DICOM dataset in the modality's units, as a float32 ``(H, W)`` tensor.

    The modality transform is applied (``RescaleSlope`` and ``RescaleIntercept``, or a Modality LUT), so a CT slice
    comes out in Hounsfield units, whatever its stored bits (8, 12 or 16, signed or not). A MONOCHROME1 image (an
    X-ray where low values are bright) is reflected within the range its stored bits can hold, so that larger
    values are brighter as in MONOCHROME2.

    A multi-frame file (``NumberOfFrames > 1``) is an error unless `frame` picks one: the frames are slices of a
    volume or moments of a film, and which one a model should see is a choice for the caller.

    Args:
        ds: a ``pydicom.Dataset`` (from :func:`dcmread`) or the path of a DICOM file.
        frame: the frame to read from a multi-frame file (from 0).

    Raises:
        DataError: no pixel data, a colour image, pixels pydicom cannot decode, or several frames and no `frame`
            (the message names the file).
        ConfigError: `frame` is out of range.

    >>> dicom_pixels(dcmread("ct.dcm")).shape   # doctest: +SKIP
    torch.Size([512, 512])
    """
    if isinstance(ds, (str, os.PathLike)):
        ds = dcmread(ds)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < n_frames):
        raise ConfigError(expected(f"a frame index from 0 to {n_frames - 1}", "frame", frame))
    if n_frames > 1 and frame is None:
        raise DataError(
            f"The DICOM file {_name(ds)} holds {n_frames} frames; ember reads one 2D image at a time. "
            "Pick one with dicom_pixels(ds, frame=i), or write the frames to files of their own."
        )
    values = _modality_array(ds)  # (H, W) or (F, H, W)
    if values.ndim == 3:
        values = values[frame or 0]
    return torch.from_numpy(np.ascontiguousarray(values))  # (H, W)


def _is_dataset(x: Any) -> bool:
    """Whether `x` is a pydicom Dataset (checked without importing pydicom, nor touching its pixels)."""
    return any(c.__name__ == "Dataset" and c.__module__.startswith("pydicom") for c in type(x).__mro__)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _as_values(x: Any, name: str = "x") -> torch.Tensor:
    """An image in the modality's units (a tensor, an array or a pydicom Dataset) as a float tensor."""
    if isinstance(x, torch.Tensor):
        return x if x.is_floating_point() else x.float()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.asarray(x, dtype=np.float32))
    if _is_dataset(x):
        return dicom_pixels(x)
    raise DataError(expected("a tensor, an array or a pydicom Dataset", name, type(x).__name__))


def _check_width(w: Any) -> float:
    if not _is_number(w) or not w > 0:
        raise ConfigError(expected("a positive number (the window width)", "w", w, hint="E.g. dicom_windows.brain."))
    return float(w)


def windowed(x: Any, w: float, l: float) -> torch.Tensor:
    """Map the values from ``l - w / 2`` to ``l + w / 2`` (a window of width `w` at level `l`) to [0, 1], clipping.

    For a CT slice in Hounsfield units, ``windowed(x, *dicom_windows.brain)`` shows 0..80 HU (grey and white
    matter, blood) as black to white. fastai computes the ends with ``w // 2``: the results are the same for even
    widths (every preset but ``brain_soft``).

    Args:
        x: values in the modality's units: a tensor, an array, or a pydicom Dataset (read by :func:`dicom_pixels`).
        w: the window width (> 0).
        l: the window level (its centre).

    Returns:
        Float values in [0, 1], of the shape of `x` (float32 unless `x` is another float tensor).

    Raises:
        ConfigError: `w` is not a positive number.

    >>> windowed(torch.tensor([-10.0, 0.0, 40.0, 100.0]), 80, 40)
    tensor([0.0000, 0.0000, 0.5000, 1.0000])
    """
    w = _check_width(w)
    if not _is_number(l):
        raise ConfigError(expected("a number (the window level)", "l", l))
    x = _as_values(x)
    lo, hi = l - w / 2, l + w / 2
    return (x.clamp(lo, hi) - lo) / (hi - lo)


def freqhist_bins(x: Any, n_bins: int = 100) -> torch.Tensor:
    """Bin edges that split the values of `x` into about `n_bins` groups of equal size (its quantiles), deduplicated.

    The edges are the values at the 0.1 % and 99.9 % ranks and at the middle of each of `n_bins` equal steps of
    rank; equal values collapse into one edge, so an image with few distinct values gets fewer edges. Pass them
    to :func:`hist_scaled` to scale many images the same way.

    Returns:
        The sorted distinct edges, a 1D tensor of the dtype of `x` (float32 for arrays and datasets).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ConfigError(expected("a positive int", "n_bins", n_bins))
    flat = _as_values(x).reshape(-1)
    if flat.numel() == 0:
        raise DataError("freqhist_bins received an empty image.")
    ordered = flat.sort().values
    # the ranks, as fractions in float32: 0.001, the middle of each of the n_bins steps, and 0.999
    steps = torch.arange(n_bins, dtype=torch.float32, device=flat.device) / n_bins + 0.5 / n_bins
    fractions = torch.cat([steps.new_tensor([0.001]), steps, steps.new_tensor([0.999])])
    ranks = (fractions * ordered.numel()).long()
    return ordered[ranks].unique()


def hist_scaled(x: Any, brks: Any = None) -> torch.Tensor:
    """Histogram-equalize `x` to [0, 1]: the edges `brks` map to equal steps from 0 to 1, linearly in between.

    With the default edges (:func:`freqhist_bins`), each of about 100 groups of equally many pixels gets an equal
    share of the output range: the contrast follows where the pixels are, not a fixed window. The numbers are
    fastai's ``hist_scaled`` (its CPU version).

    Args:
        x: values in the modality's units: a tensor, an array, or a pydicom Dataset.
        brks: increasing bin edges (default ``freqhist_bins(x)``); values below the first edge become 0, above
            the last 1.

    Returns:
        float32 values in [0, 1], of the shape of `x`.

    >>> hist_scaled(torch.tensor([0.0, 10.0, 20.0, 1000.0]))
    tensor([0.0000, 0.3333, 0.6667, 1.0000])
    """
    values = _as_values(x)
    if brks is None:
        brks = freqhist_bins(values)
    edges = torch.as_tensor(brks, dtype=torch.float64, device=values.device).reshape(-1)
    if edges.numel() == 0 or bool((edges[1:] <= edges[:-1]).any()):
        raise ConfigError(expected("increasing bin edges (e.g. from freqhist_bins)", "brks", brks))
    flat = values.reshape(-1).to(torch.float64)
    n = edges.numel()
    if n == 1:
        return torch.zeros_like(values, dtype=torch.float32)
    # linear interpolation between the edges, whose outputs are 0, 1/(n-1), …, 1
    idx = torch.searchsorted(edges, flat, right=True).clamp(1, n - 1)
    left, right = edges[idx - 1], edges[idx]
    out = (idx - 1 + (flat - left) / (right - left)) / (n - 1)
    return out.clamp(0, 1).reshape(values.shape).to(torch.float32)


def _plain(value: Any) -> Any:
    """A pydicom element value as a plain Python value (None for binary data)."""
    if isinstance(value, (bytes, bytearray)):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)  # pydicom's IS
    if isinstance(value, float):
        return float(value)  # pydicom's DS
    return str(value)  # str, UID, PersonName, dates as text


def _header_row(ds: Any) -> dict[str, Any]:
    """The keyword-named top-level elements of a dataset; a multi-value ``K`` becomes ``MultiK = 1``, ``K``,
    ``K1``, ``K2`` … (fastai's column names). Sequences, binary data and private tags are left out."""
    row: dict[str, Any] = {}
    for elem in ds:
        if elem.tag == _PIXEL_DATA or elem.VR == "SQ" or not elem.keyword:
            continue
        value = elem.value
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            row[f"Multi{elem.keyword}"] = 1
            for i, v in enumerate(value):
                row[f"{elem.keyword}{i or ''}"] = _plain(v)
        elif not isinstance(value, (bytes, bytearray)):
            row[elem.keyword] = None if value is None else _plain(value)
    return row


_PIXEL_SUMMARY = ("img_min", "img_max", "img_mean", "img_std", "img_pct_window")


def _metadata_row(path: str | os.PathLike, px_summ: bool, window: tuple[float, float]) -> dict[str, Any]:
    """One row of :func:`dicom_metadata`. Pixels that cannot be read as greyscale values (a colour image, a compressed
    file without its decoder) leave the summary NaN and say why in ``img_error``: the header is still listed."""
    ds = dcmread(path)
    row: dict[str, Any] = {"fname": str(path), **_header_row(ds)}
    if px_summ and _PIXEL_DATA in ds:
        try:
            px = _modality_array(ds)  # every frame
        except DataError as e:
            row.update(dict.fromkeys(_PIXEL_SUMMARY, math.nan), img_error=str(e))
            return row
        w, l = window
        row.update(
            img_min=float(px.min()),
            img_max=float(px.max()),
            img_mean=float(px.mean()),
            img_std=float(px.std()),
            img_pct_window=float(((px >= l - w / 2) & (px <= l + w / 2)).mean()),
        )
    return row


def dicom_metadata(
    paths: Iterable[str | os.PathLike],
    px_summ: bool = True,
    window: tuple[float, float] = dicom_windows.brain,
    n_workers: int | None = None,
    progress: bool = True,
) -> Any:
    """The headers of many DICOM files as a pandas DataFrame, one row per file, read in parallel.

    The columns are ``fname`` (the path) then every top-level element with a keyword (``PatientID``,
    ``Modality``, ``RescaleIntercept`` …, as plain numbers and text); a multi-valued element ``K`` gives ``MultiK``
    (1) and ``K``, ``K1``, ``K2`` … (``ImagePositionPatient2`` is the z of a slice). Sequences, binary values and
    private tags are left out; an element missing from a file is NaN in its row.

    Args:
        px_summ: also summarize the pixels, in the modality's units (Hounsfield units for CT; fastai summarizes the
            stored values): ``img_min``, ``img_max``, ``img_mean``, ``img_std`` and ``img_pct_window``, the share of
            pixels inside `window`. Files without pixel data get NaN there; so do files whose pixels cannot be read
            as greyscale values (a colour image, a compressed file without its decoder), with the reason in an
            ``img_error`` column (present when some file has one).
        window: ``(width, level)`` for ``img_pct_window``.
        n_workers: processes reading the files (``None``: one per core; ``0``: in this process).
        progress: draw a progress bar (in a terminal or a notebook).

    Raises:
        DataError: a file cannot be read (missing, not DICOM, truncated); the message names it.

    >>> df = dicom_metadata(get_dicom_files(path))   # doctest: +SKIP
    >>> df[df.img_pct_window > 0.1]                   # doctest: +SKIP
    """
    import pandas as pd

    if not (isinstance(window, (tuple, list)) and len(window) == 2):
        raise ConfigError(expected("a (width, level) pair", "window", window))
    w, l = _check_width(window[0]), float(window[1])
    _import_pydicom()  # a missing pydicom is one clear error here, not one per file from the workers
    paths = [Path(p) for p in paths]
    row = partial(_metadata_row, px_summ=px_summ, window=(w, l))
    try:
        rows = parallel(row, paths, n_workers=n_workers, progress=progress, desc="Reading DICOM headers")
    except EmberError as e:
        if not isinstance(e.__cause__, DataError):
            raise
        # the reading error names the file; the worker's function name would say nothing more
        raise DataError(f"dicom_metadata stopped on a file it cannot read: {e.__cause__}") from e
    return pd.DataFrame(rows)


# -- the block --------------------------------------------------------------------------------------------------


def _check_one_window(window: Any, name: str) -> tuple[float, float] | str | None:
    if window is None or (isinstance(window, str) and window == "hist"):
        return window
    if isinstance(window, (tuple, list)) and len(window) == 2 and all(_is_number(v) for v in window):
        w, l = window
        if not w > 0:
            raise ConfigError(expected("a window with a positive width", name, window))
        return (w if isinstance(w, int) else float(w), l if isinstance(l, int) else float(l))
    raise ConfigError(
        expected(
            'None (min-max of each image), a (width, level) pair, "hist", or a list of these (one per channel)',
            name,
            window,
            hint="The usual CT windows are in dicom_windows, e.g. dicom_windows.brain == (80, 40).",
        )
    )


def _is_window_list(window: Any) -> bool:
    if not isinstance(window, (tuple, list)) or not window:
        return False
    return not all(_is_number(v) for v in window)


def _scale(values: torch.Tensor, window: tuple[float, float] | str | None) -> torch.Tensor:
    """(H, W) values in the modality's units -> (H, W) float32 in [0, 1]."""
    if window == "hist":
        return hist_scaled(values)
    if window is not None:
        return windowed(values, *window).float()
    lo, hi = values.min(), values.max()
    if hi <= lo:  # a constant image: black
        return torch.zeros_like(values, dtype=torch.float32)
    return ((values - lo) / (hi - lo)).float()


@register_recipe()
class DicomBlock(ImageBlock):
    """A DICOM image input: each file's pixels, in the modality's units, scaled to ``uint8 (C, H, W)``.

    The block is an image block (its kind is ``"image"``): item and batch transforms, ``vision_learner``,
    ``show_batch``, export and ``predict`` treat it as they treat :class:`~ember.vision.core.ImageBlock`. The
    scaling is part of the block, so it travels in the exported file and ``predict("scan.dcm")`` scales a new
    file the same way.

    Args:
        window: how the values (Hounsfield units for CT) become [0, 1]:

            - ``None``: from the smallest to the largest value of each image (min-max of the slice);
            - ``(width, level)``: a window, e.g. ``dicom_windows.brain`` (see :func:`windowed`);
            - ``"hist"``: histogram equalization of each image (:func:`hist_scaled`);
            - a list of these, one per channel, e.g. ``[dicom_windows.brain, dicom_windows.subdural,
              dicom_windows.brain_bone]`` for brain CT (the three windows of fastai's ``to_nchan``). A list holds
              exactly 3; fastai appends a histogram-scaled fourth channel unless told not to, here replace one
              of the three windows with ``"hist"`` to have one.
        channels: 1 (grey) or 3. With one window, 3 repeats the same grey image in each channel (what
            ``ImageBlock(mode="RGB")`` does with a grey file), so a pretrained RGB model takes it; with a list of
            windows, the default is one channel per window.

    A multi-frame file or a colour one raises a :class:`~ember.core.errors.DataError` naming it (see
    :func:`dicom_pixels`). Values may also be pydicom Datasets, the bytes of a file, or ``(H, W)`` tensors or
    arrays in the modality's units.

    Raises:
        ConfigError: `window` or `channels` is not valid.

    >>> DataBlock(blocks=(DicomBlock(window=dicom_windows.brain, channels=3), CategoryBlock), ...)   # doctest: +SKIP
    """

    kind = "image"

    def __init__(self, window: Any = None, channels: int | None = None) -> None:
        if _is_window_list(window) and len(window) == 1:
            window = window[0]  # a list of one window is that window
        if _is_window_list(window):
            windows = [_check_one_window(w, "window[]") for w in window]
            if channels is None:
                channels = len(windows)
            if len(windows) != 3 or channels != 3:
                raise ConfigError(
                    expected(f"one window, or 3 (one per channel; channels={channels!r})", "window", window)
                )
            self.window: Any = tuple(windows)
            self._windows = windows
        else:
            self.window = _check_one_window(window, "window")
            channels = 1 if channels is None else channels
            self._windows = [self.window]
        if isinstance(channels, bool) or channels not in (1, 3):
            raise ConfigError(expected("1 or 3", "channels", channels, valid=(1, 3)))
        self.channels = channels
        super().__init__(mode="L" if channels == 1 else "RGB")

    def validate(self, value: Any) -> None:
        """A file must exist (checked for every item before training; the file itself is read on encoding)."""
        if isinstance(value, (str, os.PathLike)) and not Path(value).is_file():
            raise DataError(f"No DICOM file {value}: check `get_items` (or `get_x`).")

    def encode(self, value: Any) -> torch.Tensor:
        values = self._values(value)  # (H, W) in the modality's units
        if values.ndim != 2:
            raise DataError(expected("an image of shape (H, W)", "image.shape", tuple(values.shape)))
        scaled = torch.stack([_scale(values, w) for w in self._windows])  # (n_windows, H, W) in [0, 1]
        x = (scaled * 255).round().to(torch.uint8)
        return x.expand(self.channels, -1, -1).contiguous() if x.shape[0] != self.channels else x  # (C, H, W)

    @staticmethod
    def _values(value: Any) -> torch.Tensor:
        if isinstance(value, (str, os.PathLike)):
            return dicom_pixels(dcmread(value))
        if isinstance(value, (bytes, bytearray)):
            pydicom = _import_pydicom()
            try:
                ds = pydicom.dcmread(io.BytesIO(value))
            except Exception as e:
                raise DataError(f"Cannot read the DICOM bytes given: {type(e).__name__}: {e}") from e
            return dicom_pixels(ds)
        return _as_values(value, "image")

    collate_hint = "DICOM images of different sizes: add an item transform that gives them one size, e.g. Resize(224)."

    def to_recipe(self) -> dict[str, Any]:
        window = list(self.window) if isinstance(self.window, tuple) else self.window
        return {"window": window, "channels": self.channels}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> DicomBlock:
        return cls(window=data.get("window"), channels=data.get("channels"))

    def __repr__(self) -> str:
        return f"DicomBlock(window={self.window!r}, channels={self.channels})"
