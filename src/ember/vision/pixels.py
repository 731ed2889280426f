"""Predictions taken back to the pixels of each item's own image.

At prediction the item transforms only resize, crop and pad, so each axis of the model's input maps affinely
onto the image it came from. :meth:`~ember.vision.learner.VisionLearner._encode_and_map` gives that map per item
as a ``(3, 2)`` float64 tensor: where the image's corners ``(0, 0)`` and ``(W, H)`` land in the model's input, in
[-1, 1], then ``(W, H)``. The functions here apply it to keypoints, boxes and masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["coordinates_in_pixels", "input_box", "mask_in_image", "masks_in_pixels", "unknown_id"]


def unknown_id(n_classes: int) -> int:
    """The value for pixels a model did not see in a mask of `n_classes` class ids: 255 (8-bit masks) up to 255
    classes, else 65535 (16-bit)."""
    return 255 if n_classes <= 255 else 2**16 - 1


def coordinates_in_pixels(maps: Sequence[torch.Tensor | None], coords: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Keypoints ``(N, 2)`` or boxes ``(N, 4)`` in [-1, 1] of the model's input, one tensor per item -> ``(x, y)``
    pixels of each item's own image (a box's two corners each). An item without a map (no image input) keeps its
    coordinates as they are."""
    out = []
    for m, c in zip(maps, coords):
        if m is None:
            out.append(c)
            continue
        start, end, size = m  # each (2,), float64
        xy = c.detach().cpu().double().reshape(-1, 2)  # (N * k, 2): points, or the two corners of each box
        out.append(((xy - start) * size / (end - start)).float().reshape(c.shape))
    return out


Box = tuple[float, float, float, float]


def input_box(item_map: torch.Tensor | None, h: int, w: int) -> Box:
    """``(x0, y0, x1, y1)``: where the edges of the model's input fall in the pixels of an ``(h, w)`` image, from
    its map (the map inverted at the input's edges -1 and +1); the whole image without a usable map."""
    if item_map is None:
        return 0.0, 0.0, float(w), float(h)
    (cx0, cy0), (cx1, cy1), _ = item_map.double().tolist()  # (3, 2): corner (0, 0), corner (W, H), size
    if not (abs(cx1 - cx0) > 1e-9 and abs(cy1 - cy0) > 1e-9):
        return 0.0, 0.0, float(w), float(h)
    sx, sy = w / (cx1 - cx0), h / (cy1 - cy0)  # image pixels per unit of the input's [-1, 1] range
    return (-1 - cx0) * sx, (-1 - cy0) * sy, (1 - cx0) * sx, (1 - cy0) * sy


def mask_in_image(mask: torch.Tensor, box: Box, h: int, w: int, unknown: int) -> torch.Tensor:
    """The model's mask ``(h_in, w_in)`` at the ``(h, w)`` pixels of the image it was predicted for, nearest
    neighbour: each image pixel takes the class of the mask pixel its centre falls in, or `unknown` outside the
    region the model saw (what its crop cut off)."""
    h_in, w_in = mask.shape
    x0, y0, x1, y1 = box
    cols = torch.floor((torch.arange(w, dtype=torch.float64) + 0.5 - x0) * w_in / (x1 - x0)).long()  # (W,)
    rows = torch.floor((torch.arange(h, dtype=torch.float64) + 0.5 - y0) * h_in / (y1 - y0)).long()  # (H,)
    mask = mask.cpu()
    out = mask[rows.clamp(0, h_in - 1)][:, cols.clamp(0, w_in - 1)].clone()  # (H, W)
    out[(rows < 0) | (rows >= h_in)] = unknown
    out[:, (cols < 0) | (cols >= w_in)] = unknown
    return out


def masks_in_pixels(maps: Sequence[torch.Tensor | None], masks: torch.Tensor, unknown: int) -> list[torch.Tensor]:
    """Class-id masks ``(B, h_in, w_in)`` as the model predicted them -> each at the ``(H, W)`` pixels of its item's
    own image (by the item's map), `unknown` where the model's input did not reach. An item without a map keeps
    its mask."""
    out = []
    for m, mask in zip(maps, masks):
        if m is None:
            out.append(mask.cpu())
            continue
        w, h = (int(round(v)) for v in m[2].tolist())
        out.append(mask_in_image(mask, input_box(m, h, w), h, w, unknown))
    return out
