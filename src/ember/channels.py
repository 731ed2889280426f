"""Channel counts of a model: how many channels a CNN takes in, and how many its body gives out.

Both look at the model itself (its first convolution, or one small forward pass), so they work on any CNN body,
ember's or not, with one, two or three spatial dimensions.

>>> in_channels(nn.Conv2d(3, 8, 3))
3
>>> num_features_model(nn.Sequential(nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1)))
8
"""

from __future__ import annotations

import torch
from torch import nn

from ember.core.errors import ConfigError, expected

__all__ = ["in_channels", "num_features_model"]


def _first_conv(model: nn.Module) -> nn.modules.conv._ConvNd | None:
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module
    return None


def in_channels(model: nn.Module) -> int:
    """The number of input channels of ``model``: that of its first convolution.

    Raises:
        ConfigError: when the model has no convolution.
    """
    conv = _first_conv(model)
    if conv is None:
        raise ConfigError(
            expected("a model containing a convolution", "model", type(model).__name__, hint="Is this a CNN body?")
        )
    return conv.in_channels


def num_features_model(model: nn.Module, size: int = 64) -> int:
    """The number of channels ``model`` (a CNN body) outputs, found by running a small input through it.

    The model is run in eval mode without gradients on a ``(1, in_channels, size, size)`` input (or 1D/3D,
    following the first convolution); if that is too small for the model, the size is doubled a few times.

    Raises:
        ConfigError: when the model has no convolution, or no input size up to ``8 * size`` runs.
    """
    conv = _first_conv(model)
    n_in = in_channels(model)
    ndim = len(conv.kernel_size)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    last_error: Exception | None = None
    try:
        with torch.no_grad():
            for sz in (size, size * 2, size * 4, size * 8):
                x = torch.zeros(1, n_in, *([sz] * ndim), dtype=dtype, device=device)
                try:
                    return model(x).shape[1]
                except (RuntimeError, ValueError) as e:  # too small an input for this many poolings: try a bigger one
                    last_error = e
    finally:
        model.train(was_training)
    raise ConfigError(
        expected(
            "a CNN body that accepts a small image",
            "model",
            type(model).__name__,
            hint=f"Running it failed: {last_error}",
        )
    )
