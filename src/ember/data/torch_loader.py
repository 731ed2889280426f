"""Building torch DataLoaders with ember's defaults, and rebuilding them with a few settings changed.

:func:`make_loader` picks the workers, pinned memory, collation and a seeded generator; :func:`loading_settings`
reads back how a loader loads, so that a copy over the same dataset (another batch size, another sampler) keeps it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler

from ember.core.errors import ConfigError, expected
from ember.core.seed import seed_worker

__all__ = ["make_loader", "loading_settings"]


def _default_workers(dataset: Dataset) -> int:
    # A fully cached dataset is a list lookup: worker processes would only add the cost of sending tensors.
    if getattr(dataset, "is_cached", False):
        return 0
    return min(8, os.cpu_count() or 1)


def make_loader(
    dataset: Dataset,
    bs: int = 64,
    shuffle: bool = False,
    drop_last: bool = False,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    collate_fn: Callable[[list], Any] | None = None,
    **kwargs: Any,
) -> DataLoader:
    """A torch DataLoader with ember's defaults.

    Args:
        num_workers: ``None`` picks 0 for a fully cached dataset, else ``min(8, cpu_count)``.
        device: the device batches go to; pinned memory is used when it is CUDA.
        collate_fn: ``None`` takes the dataset's ``collate`` method if it has one.

    Workers are persistent and seeded by :func:`~ember.core.seed.seed_worker`; shuffling uses a
    generator seeded from torch's, so ``set_seed`` makes the order reproducible.
    """
    if not isinstance(bs, int) or bs < 1:
        raise ConfigError(expected("a positive int", "bs", bs))
    if num_workers is None:
        num_workers = _default_workers(dataset)
    if collate_fn is None:
        collate_fn = getattr(dataset, "collate", None)
    settings: dict[str, Any] = {
        "batch_size": bs,
        "shuffle": shuffle,
        "drop_last": drop_last,
        "num_workers": num_workers,
        "collate_fn": collate_fn,
        "pin_memory": device is not None and torch.device(device).type == "cuda",
        "worker_init_fn": seed_worker,
    }
    if "generator" not in kwargs:
        settings["generator"] = _loader_generator()
    if num_workers > 0:
        settings["persistent_workers"] = True
    settings.update(kwargs)
    return DataLoader(dataset, **settings)


def _loader_generator() -> torch.Generator:
    """A torch Generator for a loader's random order, seeded from torch's global one: ``set_seed`` before building
    the loaders fixes every epoch's order, and the loaders' own draws leave the global stream alone afterwards."""
    return torch.Generator().manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))


def _keeps_sampler(sampler: Any, dataset: Any) -> bool:
    """Whether a rebuilt loader keeps `sampler`: a weighted one, or a random one that draws part of the items."""
    if isinstance(sampler, WeightedRandomSampler):
        return True
    try:
        return isinstance(sampler, RandomSampler) and sampler.num_samples != len(dataset)
    except TypeError:
        return False


def loading_settings(dl: DataLoader) -> dict[str, Any]:
    """How `dl` loads (workers, collation, pinning, seeding), without how it batches: the arguments that
    a DataLoader rebuilt over the same dataset with another sampler keeps."""
    settings: dict[str, Any] = {
        "num_workers": dl.num_workers,
        "collate_fn": dl.collate_fn,
        "pin_memory": dl.pin_memory,
        "worker_init_fn": dl.worker_init_fn,
        "generator": dl.generator,
    }
    if dl.num_workers > 0:
        settings["persistent_workers"] = dl.persistent_workers
        settings["prefetch_factor"] = dl.prefetch_factor
    return settings


def _rebuild_dl(dl: DataLoader, bs: int | None = None, shuffle: bool | None = None, **kwargs: Any) -> DataLoader:
    """Rebuild a torch DataLoader with the same settings but a few changed."""
    settings = {"batch_size": dl.batch_size if bs is None else bs, "drop_last": dl.drop_last, **loading_settings(dl)}
    if "generator" not in kwargs and isinstance(dl.generator, torch.Generator):
        # The copy draws from a generator of its own, starting where the original's is now: reading one loader
        # leaves the other's draws alone.
        settings["generator"] = torch.Generator(dl.generator.device).set_state(dl.generator.get_state())
    settings.update(kwargs)
    if shuffle is None and _keeps_sampler(dl.sampler, dl.dataset):
        # A weighted or partial loader stays one, its sampler drawing from the copy's generator.
        sampler = copy.copy(dl.sampler)
        sampler.generator = settings["generator"]
        return DataLoader(dl.dataset, sampler=sampler, **settings)
    if shuffle is None:
        shuffle = isinstance(dl.sampler, RandomSampler)
    return DataLoader(dl.dataset, shuffle=shuffle, **settings)
