"""Reproducibility: one call seeds Python, NumPy, torch (CPU and CUDA) and DataLoader workers."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["set_seed", "seed_worker", "get_rng_state", "set_rng_state"]


def set_seed(seed: int, deterministic: bool = False) -> None:
    """Seed every random number generator ember uses.

    Args:
        seed: the seed.
        deterministic: also ask cuDNN for deterministic algorithms (slower on GPU).

    DataLoader workers are seeded from torch's generator by :func:`seed_worker`, which ember's
    loaders install, so a seeded run draws the same augmentations with any number of workers.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn` for torch DataLoaders: derive Python's and NumPy's seeds from torch's."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Every generator's state, as plain Python values and tensors (loadable with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
