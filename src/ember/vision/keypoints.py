"""Keypoints: the point block, the transform that scales points to ``[-1, 1]``, and drawing them.

Keypoints are ``float`` tensors of shape ``(N, 2)`` holding ``(x, y)``. They are read in pixels, follow
the item transforms in pixels, and are scaled to ``[-1, 1]`` by the image size (``-1`` the left/top edge,
``+1`` the right/bottom edge, the convention of ``torch.nn.functional.grid_sample``) by
:class:`PointScaler`, which :class:`PointBlock` adds to the item transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import register_recipe
from ember.data.block import TransformBlock
from ember.data.transform import Transform

__all__ = ["PointBlock", "PointScaler", "show_points"]


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
