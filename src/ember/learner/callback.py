"""The training loop's events, its cancel exceptions, and the `Callback` base class.

A callback is an object with methods named after events. The loop calls, in `order`, the method of
every callback that defines one. Callbacks see the learner only through ``self.learn`` and may read
and replace what the loop holds (``learn.xb``, ``learn.yb``, ``learn.pred``, ``learn.loss``, …).
Raising a cancel exception skips the rest of a stage cleanly: ``CancelBatchException`` in
``before_batch`` skips that batch, ``CancelFitException`` anywhere ends training (``after_cancel_fit``
and then ``after_fit`` still run).

Any other exception (an error, Ctrl-C) ends the fit without ``after_fit``. A callback that changes the learner
or the model for the duration of a fit (freezing parameters, swapping a function) puts things back in a
``cleanup_fit()`` method: the learner calls it at the end of every fit, however the fit ended.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any, ClassVar

from ember.core.errors import EmberError

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "EVENTS",
    "Callback",
    "training_loop",
    "CancelFitException",
    "CancelEpochException",
    "CancelTrainException",
    "CancelValidException",
    "CancelBatchException",
    "CancelBackwardException",
    "CancelStepException",
]

# The stages that can be cancelled, outermost first; each has before_/after_/after_cancel_ events.
_STAGES = ("fit", "epoch", "train", "validate", "batch", "backward", "step")

#: Every event the loop fires, in the order a batch of training meets them.
EVENTS: tuple[str, ...] = (
    "after_create",
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
    "after_train",
    "before_validate",
    "after_validate",
    "after_epoch",
    "after_fit",
) + tuple(f"after_cancel_{s}" for s in _STAGES)

#: The events of the batch loop, from ``before_batch`` to ``after_batch`` and the cancels inside a batch: only
#: these follow a callback's ``run_train`` / ``run_valid``; the fit, epoch and phase events reach every callback.
BATCH_EVENTS = frozenset(EVENTS[EVENTS.index("before_batch") : EVENTS.index("after_batch") + 1]) | frozenset(
    f"after_cancel_{s}" for s in _STAGES[_STAGES.index("batch") :]
)


class CancelFitException(Exception):
    """Stop training now; `after_cancel_fit` then `after_fit` run."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch (training and validation)."""


class CancelTrainException(Exception):
    """Skip the rest of this epoch's training phase; validation still runs."""


class CancelValidException(Exception):
    """Skip the rest of this epoch's validation."""


class CancelBatchException(Exception):
    """Skip the rest of this batch."""


class CancelBackwardException(Exception):
    """Skip the backward pass of this batch."""


class CancelStepException(Exception):
    """Skip the optimizer step of this batch (the gradients are kept, e.g. to accumulate)."""


CANCEL_EXCEPTIONS: dict[str, type[Exception]] = {
    "fit": CancelFitException,
    "epoch": CancelEpochException,
    "train": CancelTrainException,
    "validate": CancelValidException,
    "batch": CancelBatchException,
    "backward": CancelBackwardException,
    "step": CancelStepException,
}

_EVENT_SET = frozenset(EVENTS)
_HOOK_RE = re.compile(r"^(before|after)_\w+$")


def _snake(name: str) -> str:
    name = re.sub(r"Callback$", "", name) or name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Callback:
    """Base class of everything that hooks into the training loop.

    Subclasses define methods named after :data:`EVENTS`; a method that looks like a hook
    (``before_*``/``after_*``) but names no event is an error when the class is defined, so a typo
    never fails silently. Lower `order` runs first. Callbacks with state that must survive a resume
    override :meth:`state_dict` and :meth:`load_state_dict`.

    Attributes:
        learn: the learner, set when the callback is added.
        order: position among callbacks (lower first).
        run_train: whether the callback sees the batches of training (the batch-loop events, from
            ``before_batch`` to ``after_batch``); the fit, epoch and phase events always reach it.
        run_valid: whether the callback sees the batches of validation (and of `get_preds`).
        run_in_lr_find: whether the callback takes part in ``learn.lr_find()`` (trackers, loggers and
            checkpoints do not).
        main_process_only: in a distributed run (see :mod:`ember.distributed`), run in process 0 alone
            (callbacks that write files: logs).
    """

    order: ClassVar[int] = 0
    run_train: bool = True
    run_valid: bool = True
    run_in_lr_find: bool = True
    main_process_only: ClassVar[bool] = False
    learn: Learner

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attr, value in vars(cls).items():
            if callable(value) and _HOOK_RE.match(attr) and attr not in _EVENT_SET:
                close = difflib.get_close_matches(attr, EVENTS, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise EmberError(
                    f"Callback {cls.__name__} defines {attr!r}, which is not an event.{hint} "
                    f"Events: {', '.join(EVENTS)}."
                )

    @property
    def name(self) -> str:
        """The callback's name in snake case, without the `Callback` suffix (`SaveModelCallback` → `save_model`)."""
        return _snake(type(self).__name__)

    def state_dict(self) -> dict[str, Any]:
        """State to store in a checkpoint (plain values and tensors)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# The batch loop's events as `training_loop` shows them: all of them in training, no backward or step in validation.
_TRAIN_BATCH = EVENTS[EVENTS.index("before_batch") : EVENTS.index("after_batch") + 1]
_VALID_BATCH = tuple(e for e in _TRAIN_BATCH if not e.endswith(("_backward", "_step")))


def training_loop(cbs: list[Callback]) -> str:
    """The training loop's events in the order they fire, each with the callbacks (in `order`) that act on it:
    what :meth:`~ember.learner.Learner.show_training_loop` prints. The batch events list, per phase, only the
    callbacks that run there (``run_train``, ``run_valid``); then the cancel events and ``cleanup_fit``."""
    cbs = sorted(cbs, key=lambda c: c.order)

    def line(event: str, depth: int, phase: str | None = None) -> str:
        names = [
            type(c).__name__
            for c in cbs
            if getattr(type(c), event, None) is not None
            and (phase is None or (c.run_train if phase == "train" else c.run_valid))
        ]
        return f"{'  ' * depth}{event:<{24 - 2 * depth}} {', '.join(names) if names else '-'}"

    out = [line("before_fit", 0), "epoch loop:", line("before_epoch", 1), "  training:", line("before_train", 2)]
    out += ["    batch loop:", *(line(e, 3, "train") for e in _TRAIN_BATCH), line("after_train", 2)]
    out += ["  validation:", line("before_validate", 2), "    batch loop:"]
    out += [*(line(e, 3, "valid") for e in _VALID_BATCH), line("after_validate", 2), line("after_epoch", 1)]
    out += [line("after_fit", 0), "when a stage is cancelled (then its after_ event runs):"]
    out += [line(e, 1) for e in EVENTS if e.startswith("after_cancel_")]
    return "\n".join([*out, line("cleanup_fit", 0) + "   (at the end of every fit, however it ended)"])
