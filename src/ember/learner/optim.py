"""Optimizers: thin factories over `torch.optim`, and the hyper-parameter plumbing the schedules use.

An `opt_func` is any callable ``opt_func(param_groups, lr=..., wd=...) -> torch.optim.Optimizer``.
ember's factories choose the fastest implementation torch offers for the parameters' device
(fused kernels where available, else foreach) and use decoupled weight decay. Momentum is one
number per group whatever the optimizer calls it (Adam's ``betas[0]``, SGD's ``momentum``), so
one-cycle schedules can move it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ember.core.errors import ConfigError, expected

__all__ = ["Adam", "SGD", "RMSprop", "params_of", "spread_lr", "check_rate", "set_hyper", "get_hyper"]

ParamGroups = list[dict[str, Any]]


def _build(cls: type[torch.optim.Optimizer], groups: ParamGroups, fused_ok: bool, **kw: Any) -> torch.optim.Optimizer:
    """Build `cls` with its fastest implementation for these parameters.

    Fused kernels (one kernel for every parameter; on the CPU about 3x faster than foreach for Adam)
    when every parameter is a float tensor on one CUDA or CPU device and this torch supports it for
    `cls`; else the foreach implementation; else torch's default.
    """
    params = [p for g in groups for p in g["params"]]
    floats = bool(params) and all(torch.is_floating_point(p) for p in params)
    devices = {p.device.type for p in params}
    if floats and len(devices) == 1:
        if fused_ok and devices <= {"cuda", "cpu"}:
            try:
                return cls(groups, fused=True, **kw)
            except (RuntimeError, TypeError, ValueError):
                pass  # this torch has no fused kernel for this optimizer/device: fall back
        return cls(groups, foreach=True, **kw)
    return cls(groups, **kw)


def Adam(  # noqa: N802 (named like the optimizer users know)
    params: Iterable[Any],
    lr: float = 1e-3,
    wd: float = 0.01,
    mom: float = 0.9,
    sqr_mom: float = 0.99,
    eps: float = 1e-5,
    decouple_wd: bool = True,
) -> torch.optim.Optimizer:
    """Adam with decoupled weight decay (`torch.optim.AdamW`), or L2 decay (`torch.optim.Adam`) when asked.

    Defaults follow the one-cycle practice: ``betas=(0.9, 0.99)``, ``eps=1e-5``, ``wd=0.01``.
    """
    groups = _as_groups(params)
    cls = torch.optim.AdamW if decouple_wd else torch.optim.Adam
    return _build(cls, groups, True, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd)


def SGD(  # noqa: N802
    params: Iterable[Any], lr: float = 1e-2, wd: float = 0.0, mom: float = 0.9, nesterov: bool = False
) -> torch.optim.Optimizer:
    """Stochastic gradient descent with momentum (`torch.optim.SGD`).

    Never torch's fused kernel: when a mixed-precision step is skipped for an overflow (common on the first
    steps of "16-mixed"), it leaves the new momentum buffers uninitialized and the next steps read them.
    """
    groups = _as_groups(params)
    return _build(torch.optim.SGD, groups, False, lr=lr, momentum=mom, weight_decay=wd, nesterov=nesterov)


def RMSprop(  # noqa: N802
    params: Iterable[Any], lr: float = 1e-2, wd: float = 0.0, mom: float = 0.0, sqr_mom: float = 0.99, eps: float = 1e-8
) -> torch.optim.Optimizer:
    """RMSprop (`torch.optim.RMSprop`); `sqr_mom` is torch's `alpha`."""
    groups = _as_groups(params)
    return _build(torch.optim.RMSprop, groups, False, lr=lr, alpha=sqr_mom, eps=eps, momentum=mom, weight_decay=wd)


def _as_groups(params: Iterable[Any]) -> ParamGroups:
    params = list(params)
    if params and isinstance(params[0], dict):
        return params
    return [{"params": params}]


def params_of(groups: Sequence[Iterable[nn.Parameter]]) -> ParamGroups:
    """Turn a splitter's list of parameter lists into torch param-group dicts, dropping duplicates and empties."""
    seen: set[int] = set()
    out: ParamGroups = []
    for g in groups:
        ps = [p for p in g if id(p) not in seen]
        seen.update(id(p) for p in ps)
        if ps:
            out.append({"params": ps})
    return out


def _scalar(x: Any) -> float | None:
    """`x` as a float when it is one real number (a python or numpy number, a one-element array or tensor)."""
    if isinstance(x, bool):
        return None
    if isinstance(x, numbers.Real):
        return float(x)
    if isinstance(x, (np.generic, np.ndarray)) and np.ndim(x) == 0 and np.asarray(x).dtype.kind in "iuf":
        return float(x)
    if isinstance(x, torch.Tensor) and x.ndim == 0 and not x.is_complex() and x.dtype != torch.bool:
        return float(x.item())
    return None


def check_rate(value: Any, name: str = "lr") -> float:
    """A learning rate (or other positive factor) as a float: a real, finite, non-negative number.

    Raises:
        ConfigError: naming `name`, for anything else (a string, a negative or non-finite number).
    """
    v = _scalar(value)
    if v is None:
        raise ConfigError(
            expected("a number (a float, a numpy or torch scalar)", name, value, hint="For example lr=1e-3.")
        )
    if not math.isfinite(v) or v < 0:
        raise ConfigError(expected("a finite, non-negative number", name, value))
    return v


def spread_lr(lr: float | slice | Sequence[float], n_groups: int, name: str = "lr") -> list[float]:
    """One learning rate per group.

    A number (python, numpy or a 0-d tensor) gives every group the same rate; ``slice(lo, hi)`` spreads rates
    geometrically from `lo` (first group, e.g. the pretrained body) to `hi` (last group, the head);
    ``slice(hi)`` gives the last group `hi` and the others ``hi / 10``; a sequence is taken as it is.

    Raises:
        ConfigError: naming `name`, for a rate that is not a finite non-negative number (a string, a negative
            rate) or a sequence of the wrong length.
    """
    if isinstance(lr, slice):
        if lr.stop is None:
            raise ConfigError(expected("a slice with a stop value", name, lr, hint="Use slice(lo, hi) or slice(hi)."))
        hi = check_rate(lr.stop, name)
        if lr.start is None:
            return [hi / 10] * (n_groups - 1) + [hi]
        lo = check_rate(lr.start, name)
        if n_groups == 1:
            return [hi]
        if lo == 0 or hi == 0:
            return [float(v) for v in np.linspace(lo, hi, n_groups)]
        return [float(v) for v in np.geomspace(lo, hi, n_groups)]
    if _scalar(lr) is not None or isinstance(lr, (str, bytes, bool)) or not isinstance(lr, Iterable):
        return [check_rate(lr, name)] * n_groups
    if isinstance(lr, torch.Tensor):
        lr = lr.reshape(-1).tolist()
    lrs = [check_rate(v, name) for v in lr]
    if len(lrs) != n_groups:
        raise ConfigError(
            f"Expected one learning rate per parameter group ({n_groups}); received {len(lrs)} values in "
            f"`{name}={lr!r}`."
        )
    return lrs


def set_hyper(opt: torch.optim.Optimizer, name: str, values: float | Sequence[float]) -> None:
    """Set a hyper-parameter on every group: ``lr``, ``wd`` or ``mom`` (mapped to each optimizer's own name)."""
    groups = opt.param_groups
    vals = [values] * len(groups) if isinstance(values, (int, float)) else list(values)
    for g, v in zip(groups, vals):
        if name == "lr":
            g["lr"] = v
        elif name == "wd":
            g["weight_decay"] = v
        elif name == "mom":
            if "betas" in g:
                g["betas"] = (v, g["betas"][1])
            elif "momentum" in g:
                g["momentum"] = v
        else:
            g[name] = v


def get_hyper(opt: torch.optim.Optimizer, name: str) -> list[float]:
    """Read a hyper-parameter of every group (see :func:`set_hyper` for the names)."""
    out = []
    for g in opt.param_groups:
        if name == "wd":
            out.append(g.get("weight_decay", 0.0))
        elif name == "mom":
            out.append(g["betas"][0] if "betas" in g else g.get("momentum", 0.0))
        else:
            out.append(g[name])
    return out
