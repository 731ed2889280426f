"""Random draws and argument checks shared by the batch augmentations (geometry, colour, erasing).

The draws are made on the CPU, one value per image, so the device never waits for them.
"""

from __future__ import annotations

import numbers

import torch

from ember.core.errors import ConfigError, expected


def _uniform(n: int, lo: float, hi: float) -> torch.Tensor:
    """`n` values ``(n,)`` drawn uniformly in ``[lo, hi)``."""
    return torch.empty(n).uniform_(lo, hi)


def _bernoulli(n: int, p: float) -> torch.Tensor:
    """`n` booleans ``(n,)``, each True with probability `p`."""
    return torch.rand(n) < p


def _is_number(value: object) -> bool:
    """Whether `value` is a real number (a bool is not one)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_p(p: float, name: str = "p") -> float:
    """`p` as a float, refused unless it is a probability in [0, 1]."""
    if not _is_number(p) or not 0 <= p <= 1:
        raise ConfigError(expected("a probability in [0, 1]", name, p))
    return float(p)
