"""`learn.summary()`: every layer's output shape and parameters, found by running one batch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = ["model_summary", "layer_table"]


def _shape(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return " x ".join(str(d) for d in out.shape)
    if isinstance(out, (tuple, list)) and out:
        return _shape(out[0]) + (" (+more)" if len(out) > 1 else "")
    return "-"


def layer_table(model: nn.Module, xb: tuple) -> list[tuple[str, str, int, bool | None]]:
    """Run `xb` through `model` (eval mode, no gradient) and return one row per leaf module:
    ``(name, output shape, parameter count, trainable)``; `trainable` is None for layers without parameters."""
    rows: list[tuple[str, str, int, bool | None]] = []
    hooks = []

    def hook(m: nn.Module, _inp: Any, out: Any) -> None:
        ps = list(m.parameters(recurse=False))
        n = sum(p.numel() for p in ps)
        trainable = None if not ps else any(p.requires_grad for p in ps)
        rows.append((type(m).__name__, _shape(out), n, trainable))

    for m in model.modules():
        if not list(m.children()) or list(m.parameters(recurse=False)) and not _has_param_children(m):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*xb)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return rows


def _has_param_children(m: nn.Module) -> bool:
    return any(True for c in m.children() for _ in c.parameters())


def model_summary(learn: Learner, model: nn.Module | None = None, xb: tuple | None = None) -> str:
    """The text of ``learn.summary()``: `model` (default: the learner's) run on `xb` (default: a batch's inputs)."""
    model = learn.model if model is None else model
    if xb is None:
        batch = learn.dls.one_batch()
        xb = batch[: learn.dls.n_inp]
    rows = layer_table(model, xb)
    in_shape = _shape(xb[0])
    width = max([len(r[0]) for r in rows] + [14])
    swidth = max([len(r[1]) for r in rows] + [12])
    sep = "=" * (width + swidth + 28)
    lines = [
        f"{type(model).__name__} (input: {in_shape})",
        sep,
        f"{'Layer (type)':<{width}}  {'Output Shape':<{swidth}}  {'Param #':>10}  Trainable",
        sep,
    ]
    for name, shape, n, trainable in rows:
        tr = "" if trainable is None else ("True" if trainable else "False")
        lines.append(f"{name:<{width}}  {shape:<{swidth}}  {n:>10,}  {tr}")
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    lines += [
        sep,
        f"Total params: {total:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {total - trainable:,}",
        "",
        f"Optimizer: {getattr(learn.opt_func, '__name__', repr(learn.opt_func))}",
        f"Loss function: {learn.loss_func!r}",
    ]
    if learn.frozen_to is not None:
        n_groups = len(learn.param_groups())
        n_frozen = learn.frozen_to if learn.frozen_to >= 0 else n_groups + learn.frozen_to
        n_frozen = max(0, min(n_frozen, n_groups))
        lines.append(
            f"Frozen: the first {n_frozen} of {n_groups} parameter groups "
            f"(normalization layers trainable: {learn.train_bn})"
        )
    lines.append("Callbacks: " + ", ".join(type(c).__name__ for c in learn.cbs))
    return "\n".join(lines)
