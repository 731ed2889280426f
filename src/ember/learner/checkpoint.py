"""Atomic, pickle-free checkpoints: everything needed to continue a run after a crash.

A checkpoint holds the model's and optimizer's state, the grad scaler's, every random generator's,
the callbacks' state (the recorder among them) and the last completed epoch. It is written to a
temporary file beside the target and renamed over it, so a crash mid-write leaves the previous
checkpoint intact. It is read back with ``torch.load(weights_only=True)``: plain values and tensors
only, no code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ember.core.errors import EmberError
from ember.core.seed import get_rng_state, set_rng_state
from ember.learner.callback import Callback

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = ["atomic_save", "safe_load", "CheckpointCallback", "FORMAT"]

FORMAT = "ember-checkpoint-1"


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """`torch.save` to a temporary file in the same folder, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load` with ``weights_only=True``; a missing or unreadable file gets an EmberError naming it."""
    path = Path(path)
    if not path.exists():
        raise EmberError(f"No file at {path}. Check the name, or the learner's `path` and `model_dir`.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise EmberError(
            f"Could not read {path}: {type(e).__name__}: {e}. The file may be truncated or not ember's."
        ) from e


def checkpoint_state(learn: Learner) -> dict[str, Any]:
    """Everything a resumed fit needs, as plain values and tensors."""
    return {
        "format": FORMAT,
        "epoch": learn.epoch,
        "n_epoch": learn.n_epoch,
        "model": learn.model.state_dict(),
        "opt": learn.opt.state_dict() if learn.opt is not None else None,
        "scaler": learn.scaler.state_dict() if learn.scaler is not None else None,
        "rng": get_rng_state(),
        "loader_rng": [_loader_generator_state(dl) for dl in learn.dls.loaders],
        "frozen_to": learn.frozen_to,
        "callbacks": {type(cb).__name__: cb.state_dict() for cb in learn.cbs},
    }


def restore_state(learn: Learner, state: dict[str, Any], path: Path) -> int:
    """Load a checkpoint into `learn`; returns the epoch to start from."""
    if state.get("format") != FORMAT:
        raise EmberError(f"{path} is not an ember checkpoint (format {state.get('format')!r}; expected {FORMAT!r}).")
    if state["n_epoch"] != learn.n_epoch:
        raise EmberError(
            f"The checkpoint {path} was written by a fit of {state['n_epoch']} epochs; this fit asks for "
            f"{learn.n_epoch}. Resume with the same number of epochs (the schedule depends on it)."
        )
    learn.model.load_state_dict(state["model"])
    if state["frozen_to"] is not None:
        learn.freeze_to(state["frozen_to"])
    if state["opt"] is not None and learn.opt is not None:
        learn.opt.load_state_dict(state["opt"])
    if state["scaler"] is not None and learn.scaler is not None:
        learn.scaler.load_state_dict(state["scaler"])
    by_name = state["callbacks"]
    for cb in learn.cbs:
        if type(cb).__name__ in by_name:
            cb.load_state_dict(by_name[type(cb).__name__])
    set_rng_state(state["rng"])
    for dl, gen_state in zip(learn.dls.loaders, state.get("loader_rng", [])):
        gen = getattr(getattr(dl, "dl", None), "generator", None)
        if gen is not None and gen_state is not None:
            gen.set_state(gen_state)
    return int(state["epoch"]) + 1


def _loader_generator_state(dl: Any) -> torch.Tensor | None:
    """The state of a loader's own shuffling generator (ember's loaders have one), so resumed epochs shuffle alike."""
    gen = getattr(getattr(dl, "dl", None), "generator", None)
    return gen.get_state() if gen is not None else None


class CheckpointCallback(Callback):
    """Write a resumable checkpoint after every epoch (added by ``fit(..., checkpoint=name)``).

    The file is ``learn.path / learn.model_dir / f"{name}.ckpt"``.
    """

    order = 90

    def __init__(self, name: str = "checkpoint") -> None:
        self.fname = name

    def after_epoch(self) -> None:
        from ember.distributed import barrier, is_main_process

        if is_main_process():  # one writer in a distributed run; the others wait so that a resume finds it
            atomic_save(checkpoint_state(self.learn), self.learn.checkpoint_path(self.fname))
        barrier()
