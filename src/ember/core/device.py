"""Where tensors live: picking the default device and moving (nested) batches to it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["default_device", "to_device", "to_cpu", "to_detach"]


def default_device(use: bool | str | torch.device | None = None) -> torch.device:
    """The device ember trains on: CUDA when available, then Apple's MPS, else the CPU.

    Args:
        use: ``None``/``True`` picks the best available; ``False`` forces the CPU; a string or a
            ``torch.device`` is taken as it is.
    """
    if isinstance(use, (str, torch.device)):
        return _available(use)
    if use is False:
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _available(use: str | torch.device) -> torch.device:
    """`use` as a device, after checking that this machine has it (a clear error instead of torch's own)."""
    from ember.core.errors import ConfigError

    try:
        device = torch.device(use)
    except (RuntimeError, ValueError) as e:
        raise ConfigError(f"Expected a device such as 'cpu', 'cuda' or 'cuda:1'; received {use!r} ({e}).") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={str(use)!r}, but CUDA is not available on this machine: use device='cpu'.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device={str(use)!r}, but this machine has {torch.cuda.device_count()} CUDA device(s) (0 to "
                f"{torch.cuda.device_count() - 1})."
            )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device={str(use)!r}, but Apple's MPS is not available on this machine: use 'cpu'.")
    return device


def to_device(batch: Any, device: torch.device | str | None, non_blocking: bool = True) -> Any:
    """Move every tensor in a (nested) tuple/list/dict to `device`; other objects pass through."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, tuple):
        return tuple(to_device(b, device, non_blocking) for b in batch)
    if isinstance(batch, list):
        return [to_device(b, device, non_blocking) for b in batch]
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, non_blocking) for k, v in batch.items()}
    return batch


def to_cpu(batch: Any) -> Any:
    """Move every tensor in a (nested) structure to the CPU (a blocking copy)."""
    return to_device(batch, torch.device("cpu"), non_blocking=False)


def to_detach(batch: Any, cpu: bool = False) -> Any:
    """Detach every tensor in a (nested) structure, optionally also moving it to the CPU."""
    if isinstance(batch, torch.Tensor):
        batch = batch.detach()
        return batch.cpu() if cpu else batch
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_detach(b, cpu) for b in batch)
    if isinstance(batch, Mapping):
        return {k: to_detach(v, cpu) for k, v in batch.items()}
    return batch
