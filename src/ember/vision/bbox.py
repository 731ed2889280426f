"""Object-detection data: bounding boxes and their labels as plain tensors, a COCO reader, and drawing boxes.

A sample of a detection dataset is ``(image, boxes, labels)``: the image ``uint8 (C, H, W)``, the boxes ``float32
(N, 4)`` as ``[x0, y0, x1, y1]`` (left, top, right, bottom), and one class index per box, ``int64 (N,)``. ``N``
differs from image to image (and may be 0).

- :class:`BBoxBlock` (kind ``"bbox"``) reads boxes in pixels. The item transforms (resize, crop, pad, item flips)
  move them as their corners, in pixels; :class:`BBoxScaler`, the last item transform, scales them to ``[-1, 1]``
  by the image size (``-1`` the left/top edge, ``+1`` the right/bottom edge, as keypoints), clips them to the image
  and removes the boxes left with no area, with their labels.
- :class:`BBoxLblBlock` (kind ``"bbox_label"``) learns the sorted vocabulary of the training labels, with the
  background class ``"#na#"`` at index 0.
- Collation pads every sample of a batch to the largest ``N``: boxes with zeros, labels with 0. A batch is
  ``(images (B, 3, H, W), boxes (B, N, 4) in [-1, 1], labels (B, N))``.
- The geometric batch augmentations (:mod:`ember.vision.affine`) move the four corners of each box by the image's
  matrix, take the enclosing axis-aligned box and clip it; a box that leaves the image is zeroed and its label set
  to 0, like padding. Flips and quarter turns move boxes exactly. Colour transforms and RandomErasing leave boxes
  alone.

ember has no detection model: the blocks give a model of yours its batches, and ``show_batch``/``show_results``
draw the boxes with their labels.

>>> dblock = DataBlock(                                                           # doctest: +SKIP
...     blocks=(ImageBlock, BBoxBlock, BBoxLblBlock), get_items=get_image_files,
...     get_y=[lambda f: img2bbox[f.name][0], lambda f: img2bbox[f.name][1]], n_inp=1, item_tfms=Resize(128))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.block import TransformBlock
from ember.data.transform import Transform
from ember.vision.affine import _empty

__all__ = ["BBoxBlock", "BBoxLblBlock", "BBoxScaler", "get_annotations", "show_boxes"]

_NA = "#na#"
# matplotlib gid of the rectangle drawn for box i, so that the label block can find it on the same axes
_GID = "ember-bbox-{}"


def _short(value: Any, n: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


# ------------------------------------------------------------------------------------------------------------
# the item transform that scales boxes to [-1, 1]
# ------------------------------------------------------------------------------------------------------------


@register_recipe()
class BBoxScaler(Transform):
    """Item transform: scale boxes from pixels to [-1, 1] by the size of the sample's image, clip them to the image
    and remove the boxes left with no area, with their labels.

    Runs last among the item transforms (``order = 100``), after every resize and crop, so that the image it
    measures is the one the model sees. The i-th ``"bbox"`` element of a sample goes with its i-th
    ``"bbox_label"`` element.

    Raises:
        DataError: a sample has boxes but no image, or not one label per box (the dataset names the item).
    """

    order = 100
    deterministic = True

    def __call__(self, sample: tuple, kinds: Sequence[str], split: int = 0) -> tuple:
        if "bbox" not in kinds:
            return sample
        # the size stays local (not on self): datasets fill their cache from several threads at once
        size = next((x.shape[-2:] for x, kind in zip(sample, kinds) if kind == "image"), None)
        if size is None:
            raise DataError("Bounding boxes need an image in the same sample to be scaled (none was found).")
        h, w = int(size[0]), int(size[1])
        box_at = [j for j, kind in enumerate(kinds) if kind == "bbox"]
        label_at = [j for j, kind in enumerate(kinds) if kind == "bbox_label"]
        out = list(sample)
        for n, j in enumerate(box_at):
            b = sample[j]
            scale = torch.tensor([2.0 / w, 2.0 / h, 2.0 / w, 2.0 / h], dtype=b.dtype)
            b = (b * scale - 1).clamp(-1, 1)  # (N, 4) in [-1, 1]
            keep = ~_empty(b)  # (N,)
            out[j] = b[keep]
            if n < len(label_at):
                labels = sample[label_at[n]]
                if labels.shape[0] != b.shape[0]:
                    raise DataError(
                        f"This sample has {b.shape[0]} box(es) but {labels.shape[0]} label(s): every box needs "
                        "exactly one label. Check the two functions of `get_y` (boxes, then labels)."
                    )
                out[label_at[n]] = labels[keep]
        return tuple(out)

    def to_recipe(self) -> dict[str, Any]:
        return {}


# ------------------------------------------------------------------------------------------------------------
# the blocks
# ------------------------------------------------------------------------------------------------------------


@register_recipe()
class BBoxBlock(TransformBlock):
    """Bounding boxes: ``[x0, y0, x1, y1]`` pixel coordinates in, ``float32 (N, 4)`` in [-1, 1] out.

    A value is anything ``torch.as_tensor`` turns into ``N * 4`` numbers (a list of boxes, an array); ``N`` may be
    0. Boxes follow the item transforms in pixels and are then scaled, clipped and filtered by
    :class:`BBoxScaler`, which this block adds to the item transforms. Batches pad every sample to the largest
    number of boxes with zero boxes. There is no default loss: detection losses belong to the model you bring.

    Use it with :class:`BBoxLblBlock`, one label per box::

        DataBlock(blocks=(ImageBlock, BBoxBlock, BBoxLblBlock), get_y=[get_boxes, get_labels], n_inp=1, ...)
    """

    kind = "bbox"

    def __init__(self) -> None:
        self.item_tfms = [BBoxScaler()]
        self.batch_tfms = []

    def setup(self, train_values: Sequence[Any]) -> None:
        """Boxes learn nothing from the training data."""

    def validate(self, value: Any) -> None:
        self.encode(value)

    def encode(self, value: Any) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        try:
            b = torch.as_tensor(np.asarray(value, dtype=np.float32))
        except (TypeError, ValueError) as e:
            raise DataError(expected("boxes: lists of four numbers [x0, y0, x1, y1]", "boxes", _short(value))) from e
        if b.numel() % 4:
            raise DataError(expected("a multiple of four numbers ([x0, y0, x1, y1] per box)", "boxes", _short(value)))
        b = b.reshape(-1, 4)  # (N, 4) in pixels
        if not bool(torch.isfinite(b).all()):
            raise DataError(expected("finite coordinates", "boxes", _short(value)))
        if bool(((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])).any()):
            raise DataError(
                expected(
                    "boxes [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1",
                    "boxes",
                    _short(value),
                    hint="COCO's [x, y, width, height] must be converted first (get_annotations does it).",
                )
            )
        return b

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        n = max((int(x.shape[0]) for x in xs), default=0)
        out = torch.zeros(len(xs), n, 4, dtype=torch.float32)  # (B, N, 4); zero boxes are padding
        for i, x in enumerate(xs):
            out[i, : x.shape[0]] = x
        return out

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """One sample's boxes ``(N, 4)`` in [-1, 1], on the CPU (padding included: zero boxes).

        Raises:
            DataError: `x` is not made of boxes (e.g. a model output holding class scores too).
        """
        if x.numel() % 4:
            raise DataError(
                expected(
                    "boxes, four numbers [x0, y0, x1, y1] each",
                    "x.shape",
                    tuple(x.shape),
                    hint="A model whose output holds more than boxes (class scores) needs a loss with a `decodes` "
                    "method that picks the boxes out of it, so that predict and show_results can draw them.",
                )
            )
        return x.detach().cpu().float().reshape(-1, 4)

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        """Draw the boxes as rectangles over the image already on `ax` (padding boxes are skipped)."""
        show_boxes(value, ax, **kwargs)

    @property
    def loss_func(self) -> Any:
        return None

    @property
    def n_out(self) -> int | None:
        return None

    def to_recipe(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> BBoxBlock:
        return cls()

    def __repr__(self) -> str:
        return "BBoxBlock()"


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


@register_recipe()
class BBoxLblBlock(TransformBlock):
    """The labels of the boxes of :class:`BBoxBlock`: one label per box in, ``int64 (N,)`` class indices out.

    Args:
        vocab: the class names, in order; ``None`` learns them (sorted) from the training labels.
        add_na: put the background class ``"#na#"`` first, at index 0. Padding and removed boxes get label 0, so
            keep it unless your vocabulary already starts with a background class.

    Labels are stored as text: the label ``3`` and the label ``"3"`` are the same class. As the target, the block
    gives ``dls.vocab`` and ``dls.c`` (the number of classes, background included).

    Raises:
        DataError: (when encoding) a label that is not in the vocabulary.
    """

    kind = "bbox_label"

    def __init__(self, vocab: Sequence[Any] | None = None, add_na: bool = True) -> None:
        self.item_tfms = []
        self.batch_tfms = []
        self.add_na = bool(add_na)
        self.vocab: list[str] | None = None
        self._o2i: dict[str, int] = {}
        self._fixed = vocab is not None  # a given vocab is kept; a learned one is relearned by each setup
        if vocab is not None:
            if isinstance(vocab, (str, bytes)) or not hasattr(vocab, "__iter__"):
                raise ConfigError(expected("a list of class names", "vocab", vocab))
            self._set_vocab([str(v) for v in vocab])

    def _set_vocab(self, vocab: list[str]) -> None:
        if self.add_na and (not vocab or vocab[0] != _NA):
            vocab = [_NA, *vocab]
        if not vocab:
            raise ConfigError(expected("at least one class name", "vocab", vocab))
        if len(set(vocab)) != len(vocab):
            raise ConfigError(expected("class names without duplicates", "vocab", vocab[:20]))
        self.vocab = vocab
        self._o2i = {v: i for i, v in enumerate(vocab)}

    @staticmethod
    def _labels(value: Any) -> list[str]:
        """The labels of one sample as text: a list (or array, tensor) of labels; a lone label is a list of one."""
        if _is_missing(value):
            return []
        if isinstance(value, (str, bytes)):
            return [str(value)]
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        if isinstance(value, np.ndarray):
            value = value.tolist()
        if not hasattr(value, "__iter__"):
            return [str(value)]
        return [str(v) for v in value]

    def setup(self, train_values: Sequence[Any]) -> None:
        if self._fixed:
            return
        labels = list(dict.fromkeys(lab for v in train_values for lab in self._labels(v)))
        if not labels:
            raise DataError(
                "BBoxLblBlock found no training label: check the function of `get_y` that gives the labels, and the "
                "splitter."
            )
        self._set_vocab(sorted(labels))

    def validate(self, value: Any) -> None:
        self.encode(value)

    def encode(self, value: Any) -> torch.Tensor:
        if self.vocab is None:
            raise DataError("This BBoxLblBlock has no vocab yet: call setup(train_labels) or pass vocab=[...].")
        idxs = []
        for lab in self._labels(value):
            idx = self._o2i.get(lab)
            if idx is None:
                shown = self.vocab if len(self.vocab) <= 20 else [*self.vocab[:20], "..."]
                how = (
                    "Add it to `vocab`."
                    if self._fixed
                    else "Every class needs a box in the training items: use a splitter that keeps every class in "
                    "training, or pass BBoxLblBlock(vocab=[...])."
                )
                err = DataError(f"The box label {lab!r} is not in the vocabulary ({shown}). {how}")
                err.new_item_message = (
                    f"The box label {lab!r} is not one of the classes this model knows ({shown}). Check the labels "
                    "of these items."
                )
                raise err
            idxs.append(idx)
        return torch.tensor(idxs, dtype=torch.int64)  # (N,)

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        n = max((int(x.shape[0]) for x in xs), default=0)
        out = torch.zeros(len(xs), n, dtype=torch.int64)  # (B, N); 0 is the padding class
        for i, x in enumerate(xs):
            out[i, : x.shape[0]] = x
        return out

    def decode(self, x: torch.Tensor) -> list[str]:
        """One sample's labels as class names (padding included, as ``"#na#"``)."""
        return [self.vocab[int(i)] for i in x.detach().cpu().reshape(-1).tolist()]

    def show(self, value: Any, ax: Any, **kwargs: Any) -> None:
        """Write each label on its box, drawn before on `ax` by :class:`BBoxBlock`, in the colour of its class
        (``"#na#"`` is skipped); without boxes on `ax`, the labels become the title."""
        labels = list(value)
        rects = {p.get_gid(): p for p in ax.patches if p.get_gid()}
        if not any(_GID.format(i) in rects for i in range(len(labels))):
            shown = [lab for lab in labels if lab != _NA]
            old = ax.get_title()
            text = ";".join(shown)
            ax.set_title(f"{old}\n{text}" if old else text)
            return
        for i, lab in enumerate(labels):
            rect = rects.get(_GID.format(i))
            if rect is None or lab == _NA:
                continue
            colour = _colour(self._o2i.get(lab, 0))
            rect.set_edgecolor(colour)
            _write(ax, rect.get_x(), rect.get_y(), lab, colour)

    @property
    def loss_func(self) -> Any:
        return None

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) if self.vocab is not None else None

    def to_recipe(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "add_na": self.add_na}

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> BBoxLblBlock:
        return cls(vocab=data.get("vocab"), add_na=data.get("add_na", True))

    def __repr__(self) -> str:
        n = len(self.vocab) if self.vocab is not None else "?"
        return f"BBoxLblBlock({n} classes)"


# ------------------------------------------------------------------------------------------------------------
# drawing
# ------------------------------------------------------------------------------------------------------------


def _colour(i: int) -> Any:
    import matplotlib

    return matplotlib.colormaps["tab10"](i % 10)


def _write(ax: Any, x: float, y: float, text: str, colour: Any) -> None:
    """Write `text` inside a box, from its top-left corner ``(x, y)`` down (the y axis of an image points down), so
    that the label of a box at the image's top edge stays on the image."""
    ax.text(
        x,
        y,
        text,
        fontsize=8,
        color="white",
        va="top",
        ha="left",
        bbox={"facecolor": colour, "edgecolor": "none", "pad": 1, "alpha": 0.8},
        clip_on=True,
    )


def show_boxes(
    boxes: torch.Tensor,
    ax: Any,
    labels: Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
    color: Any = "tab:orange",
    linewidth: float = 2.0,
) -> Any:
    """Draw boxes ``(N, 4)`` scaled to [-1, 1] as rectangles over the image already on `ax` (or an image of `size`
    ``(H, W)``). Boxes with no area (padding) are skipped.

    Args:
        labels: one text per box, written inside it at its top-left corner (``"#na#"`` and ``None`` are not
            written).
        color: the rectangles' colour.

    Returns:
        The matplotlib Axes.
    """
    from matplotlib.patches import Rectangle

    if size is None:
        if not ax.images:
            raise ConfigError("show_boxes needs the image drawn first on `ax`, or `size=(H, W)`.")
        size = ax.images[0].get_array().shape[:2]
    h, w = size
    b = torch.as_tensor(boxes).detach().cpu().float().reshape(-1, 4)
    if labels is not None and len(labels) != b.shape[0]:
        raise ConfigError(expected(f"{b.shape[0]} labels, one per box", "labels", f"{len(labels)} labels"))
    # from [-1, 1] (the image's edges) to imshow's coordinates, where pixel centres are integers
    xs = (b[:, 0::2] + 1) * w / 2 - 0.5  # (N, 2): x0, x1
    ys = (b[:, 1::2] + 1) * h / 2 - 0.5  # (N, 2): y0, y1
    keep = ~_empty(b)
    for i in range(b.shape[0]):
        if not bool(keep[i]):
            continue
        x0, x1 = float(xs[i, 0]), float(xs[i, 1])
        y0, y1 = float(ys[i, 0]), float(ys[i, 1])
        rect = Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=linewidth)
        rect.set_gid(_GID.format(i))
        ax.add_patch(rect)
        if labels is not None and labels[i] is not None and labels[i] != _NA:
            _write(ax, x0, y0, str(labels[i]), color)
    return ax


# ------------------------------------------------------------------------------------------------------------
# COCO annotations
# ------------------------------------------------------------------------------------------------------------


def _need(obj: Any, key: str, where: str, fname: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"The COCO file {fname} is malformed: {where} has no {key!r} key.")
    return obj[key]


def _need_id(obj: Any, key: str, where: str, fname: Path) -> int | str:
    """The id under `key`: an int or a str, as COCO files hold them."""
    value = _need(obj, key, where, fname)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataError(
            f"The COCO file {fname} is malformed: {where} has the {key} {_short(value)}; expected an int or a str."
        )
    return value


def get_annotations(
    fname: str | os.PathLike, prefix: str | os.PathLike | None = None
) -> tuple[list[str], list[tuple[list[list[float]], list[str]]]]:
    """Read a COCO-style JSON file: the image file names, and for each image its boxes and their labels.

    The file holds ``"images"`` (each with ``"id"`` and ``"file_name"``), ``"annotations"`` (each with
    ``"image_id"``, ``"category_id"`` and ``"bbox"`` as ``[x, y, width, height]``) and ``"categories"`` (each with
    ``"id"`` and ``"name"``). Boxes come back as ``[x0, y0, x1, y1]`` (``[x, y, x + width, y + height]``), labels as
    category names. Only the images with at least one annotation are listed, in the order of ``"images"``.

    Args:
        prefix: put before every file name: a str is prepended as it is (``"train/"``), a path is joined.

    Returns:
        ``(file_names, [(boxes, labels), ...])``, one pair per file name.

    Raises:
        DataError: the file is missing, not JSON, or lacks a key (the message names it), an id is not an int or a
            str, or an annotation names an image or category that the file does not list.

    >>> files, lbl_bbox = get_annotations(path / "train.json")        # doctest: +SKIP
    >>> img2bbox = dict(zip(files, lbl_bbox))                          # doctest: +SKIP
    """
    fname = Path(fname)
    if not fname.is_file():
        raise DataError(f"Cannot read the annotations {fname}: no such file.")
    try:
        data = json.loads(fname.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"The COCO file {fname} is not valid JSON: {e}.") from e
    if not isinstance(data, dict):
        raise DataError(
            f"The COCO file {fname} is malformed: expected a JSON object with 'images', 'annotations' "
            f"and 'categories'; it holds a {type(data).__name__}."
        )
    images = _need(data, "images", "the file", fname)
    annotations = _need(data, "annotations", "the file", fname)
    categories = _need(data, "categories", "the file", fname)
    classes = {
        _need_id(c, "id", f"category {k}", fname): str(_need(c, "name", f"category {k}", fname))
        for k, c in enumerate(categories)
    }
    image_ids = {_need_id(im, "id", f"image {k}", fname) for k, im in enumerate(images)}
    boxes: dict[Any, list[list[float]]] = {}
    labels: dict[Any, list[str]] = {}
    for k, a in enumerate(annotations):
        where = f"annotation {k}"
        image_id = _need_id(a, "image_id", where, fname)
        category_id = _need_id(a, "category_id", where, fname)
        bb = _need(a, "bbox", where, fname)
        if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, (int, float)) for v in bb)):
            raise DataError(
                f"The COCO file {fname} is malformed: {where} has the bbox {_short(bb)}; expected [x, y, width, "
                "height], four numbers."
            )
        if category_id not in classes:
            raise DataError(
                f"The COCO file {fname} is malformed: {where} names the category_id {category_id!r}, which is not in "
                f"'categories' (ids: {sorted(classes, key=str)[:20]})."
            )
        if image_id not in image_ids:
            raise DataError(
                f"The COCO file {fname} is malformed: {where} names the image_id {image_id!r}, which is not in "
                "'images'."
            )
        x, y, w, h = (float(v) for v in bb)
        boxes.setdefault(image_id, []).append([x, y, x + w, y + h])
        labels.setdefault(image_id, []).append(classes[category_id])
    files, targets = [], []
    for k, im in enumerate(images):
        if im["id"] not in boxes:
            continue
        name = str(_need(im, "file_name", f"image {k}", fname))
        if prefix is None:
            files.append(name)
        elif isinstance(prefix, str):
            files.append(prefix + name)
        else:
            files.append(str(Path(prefix) / name))
        targets.append((boxes[im["id"]], labels[im["id"]]))
    return files, targets
