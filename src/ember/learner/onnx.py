"""`learn.export_onnx`: the model as an ONNX graph, with the input normalization baked in.

The graph's input is what the model sees after the loaders' inference-time batch transforms *before*
normalization: for images, ``float32 (B, C, H, W)`` in [0, 1] (an RGB image divided by 255, already resized to the
training size). The normalization the loaders apply (``Normalize`` with its statistics) is part of the graph, so
a caller in any language only resizes and scales. Needs the optional extra: ``pip install 'ember[onnx]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, ExportError

__all__ = ["export_onnx", "Normalization"]


class Normalization(nn.Module):
    """``(x - mean) / std`` over the channel axis of ``(B, C, ...)`` inputs, as a module (for export)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).flatten())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)  # (B, C, ...)

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * self.std.to(x.device).view(shape) + self.mean.to(x.device).view(shape)


def _normalizations(learn: Any) -> list[nn.Module]:
    """The modules of the loaders' inference-time batch transforms that can be baked into a graph.

    A batch transform offers itself with an ``as_module()`` method (``Normalize`` returns a
    :class:`Normalization`); transforms without one (dtype conversion) are the caller's side of the contract.
    """
    setup = getattr(learn.dls, "setup_tfms", None)
    if callable(setup):  # Normalize() statistics come from a training batch if none went through yet
        setup()
    loader = learn.dls.valid if learn.dls.valid is not None else learn.dls.train
    return [t.as_module() for t in getattr(loader, "batch_tfms", []) if t.split_idx != 0 and hasattr(t, "as_module")]


def export_onnx(
    learn: Any,
    fname: str | os.PathLike = "model.onnx",
    example: torch.Tensor | None = None,
    dynamo: bool | None = None,
    opset: int | None = None,
) -> Path:
    """Write the model, with its normalization, as ONNX; returns the path.

    Args:
        example: an example input (default: the inputs of one batch of the loaders, up to 2 items).
        dynamo: use torch's ``torch.export``-based exporter (default when `onnxscript` is installed) or the
            older TorchScript one (``False``; faster to run, deprecated by torch).
        opset: the ONNX opset (default: the exporter's).

    The batch size is dynamic in the graph. Check it with onnxruntime::

        sess = onnxruntime.InferenceSession("model.onnx")
        probs = sess.run(None, {"input": images})[0]
    """
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ExportError("export_onnx needs the onnx package: pip install 'ember[onnx]'.") from e
    if dynamo is None:
        try:
            import onnxscript  # noqa: F401

            dynamo = True
        except ImportError:
            dynamo = False
    path = Path(fname)
    if not path.is_absolute() and not path.parent.parts:
        path = Path(learn.path) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    if example is None:
        batch = learn.dls.one_batch()
        if learn.dls.n_inp != 1:
            raise ConfigError("export_onnx handles models with one input; pass `example=` for others.")
        example = _denormalized(learn, batch[0][:2])
    was_training = learn.model.training
    model = nn.Sequential(*_normalizations(learn), learn.model).eval().to("cpu")
    example = example.detach().to("cpu")
    kwargs: dict[str, Any] = {"input_names": ["input"], "output_names": ["output"], "dynamo": dynamo}
    if opset is not None:
        kwargs["opset_version"] = opset
    if dynamo:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1)},)
    else:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    try:
        with torch.no_grad():
            torch.onnx.export(model, (example,), str(path), **kwargs)
    finally:
        learn.model.to(learn.dls.device)
        learn.model.train(was_training)
    return path


def _denormalized(learn: Any, x: torch.Tensor) -> torch.Tensor:
    """Undo the loaders' normalizations on a batch, giving the graph's input (e.g. images in [0, 1])."""
    for mod in reversed(_normalizations(learn)):
        x = mod.inverse(x)
    return x
