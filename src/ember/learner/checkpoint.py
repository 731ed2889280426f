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

from ember.core.errors import ConfigError, EmberError
from ember.core.seed import get_rng_state, set_rng_state
from ember.learner.callback import Callback

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "atomic_save",
    "safe_load",
    "CheckpointCallback",
    "FORMAT",
    "model_state_problem",
    "opt_class_name",
    "opt_state_problem",
]

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


def model_state_problem(model: torch.nn.Module, state: dict[str, Any], strict: bool = True) -> str | None:
    """Why the weights `state` cannot be loaded into `model` (missing or unexpected names with `strict`, a shape
    that differs), or None when they fit. Checked before loading, so that nothing changes when they do not."""
    if not isinstance(state, dict):
        return f"the file holds a {type(state).__name__}, not a state dict"
    own = model.state_dict()
    problems = []
    if strict:
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing:
            problems.append(f"missing {_some(missing)}")
        if unexpected:
            problems.append(f"unexpected {_some(unexpected)}")
    shapes = [
        f"{k} {tuple(v.shape)} in the file, {tuple(own[k].shape)} in the model"
        for k, v in state.items()
        if k in own
        and isinstance(v, torch.Tensor)
        and isinstance(own[k], torch.Tensor)
        and not torch.nn.parameter.is_lazy(own[k])
        and v.shape != own[k].shape
    ]
    if shapes:
        problems.append(f"other shapes: {_some(shapes)}")
    return "; ".join(problems) or None


def opt_class_name(opt: torch.optim.Optimizer) -> str:
    """The optimizer's class name, with the optimizer it wraps for a wrapper: ``"Lookahead(RAdam)"``."""
    inner = getattr(opt, "opt", None)
    if isinstance(inner, torch.optim.Optimizer) and inner is not opt:
        return f"{type(opt).__name__}({opt_class_name(inner)})"
    return type(opt).__name__


# The group hyper-parameters that tell optimizers apart: Adam's betas, SGD's momentum, RMSprop's alpha, QHAdam's nu_1
_KIND_KEYS = ("betas", "momentum", "alpha", "rho", "lr_decay", "etas", "lambd", "nu_1")


def opt_state_problem(opt: torch.optim.Optimizer, state: dict[str, Any], opt_class: str | None = None) -> str | None:
    """Why the optimizer state `state` does not fit `opt` (another optimizer, other parameter groups), or None.

    `opt_class` is the class name of the optimizer that wrote it, when known: with the wrapped optimizer for a
    wrapper (``"Lookahead(RAdam)"``), or the wrapper's name alone (``"Lookahead"``), which fits any optimizer it
    wraps, for a file that does not record it."""
    name = opt_class_name(opt)
    if opt_class is not None and opt_class not in (name, type(opt).__name__):
        return f"it was written by {opt_class}, this learner uses {name}"
    try:
        groups = state["param_groups"]
        sizes = [len(g["params"]) for g in groups]
    except (KeyError, TypeError):
        return "it is not an optimizer state"
    own = [len(g["params"]) for g in opt.param_groups]
    if sizes != own:
        return f"it has parameter groups of {sizes} tensors, this optimizer {own}"
    for saved, g in zip(groups, opt.param_groups):
        kinds = {k for k in _KIND_KEYS if k in g}
        saved_kinds = {k for k in _KIND_KEYS if k in saved}
        if kinds != saved_kinds:
            return f"it has the hyper-parameters {sorted(saved_kinds)}, this optimizer ({name}) {sorted(kinds)}"
    return None


def _some(names: list[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _callback_keys(cbs: list[Callback]) -> list[str]:
    """One key per callback: its class name, with ``_2``, ``_3`` ... for later callbacks of the same class."""
    seen: dict[str, int] = {}
    keys = []
    for cb in cbs:
        name = type(cb).__name__
        seen[name] = seen.get(name, 0) + 1
        keys.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return keys


def checkpoint_state(learn: Learner) -> dict[str, Any]:
    """Everything a resumed fit needs, as plain values and tensors."""
    return {
        "format": FORMAT,
        "epoch": learn.epoch,
        "n_epoch": learn.n_epoch,
        "model": learn.model.state_dict(),
        "opt": learn.opt.state_dict() if learn.opt is not None else None,
        "opt_class": opt_class_name(learn.opt) if learn.opt is not None else None,
        "scaler": learn.scaler.state_dict() if learn.scaler is not None else None,
        "rng": get_rng_state(),
        "loader_rng": [_loader_generator_state(dl) for dl in learn.dls.loaders],
        "frozen_to": learn.frozen_to,
        "callbacks": {key: cb.state_dict() for key, cb in zip(_callback_keys(learn.cbs), learn.cbs)},
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
    problem = model_state_problem(learn.model, state["model"])
    if problem is not None:
        raise ConfigError(
            f"Cannot resume from {path}: its weights do not fit this model ({problem}). Resume with the model "
            "(architecture and number of outputs) that wrote the checkpoint."
        )
    if state["opt"] is not None and learn.opt is not None:
        problem = opt_state_problem(learn.opt, state["opt"], state.get("opt_class"))
        if problem is not None:
            raise ConfigError(
                f"Cannot resume from {path}: its optimizer state does not fit this learner's optimizer ({problem}). "
                "Resume with the opt_func and splitter that wrote the checkpoint."
            )
    learn.model.load_state_dict(state["model"])
    if state["frozen_to"] is not None:
        learn.freeze_to(state["frozen_to"])
    if state["opt"] is not None and learn.opt is not None:
        learn.opt.load_state_dict(state["opt"])
    if state["scaler"] is not None and learn.scaler is not None:
        learn.scaler.load_state_dict(state["scaler"])
    by_name = state["callbacks"]
    for key, cb in zip(_callback_keys(learn.cbs), learn.cbs):
        if key in by_name:
            cb.load_state_dict(by_name[key])
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
    run_in_lr_find = False

    def __init__(self, name: str = "checkpoint") -> None:
        self.fname = name

    def after_epoch(self) -> None:
        from ember.distributed import barrier, is_main_process

        if is_main_process():  # one writer in a distributed run; the others wait so that a resume finds it
            atomic_save(checkpoint_state(self.learn), self.learn.checkpoint_path(self.fname))
        barrier()
