"""Hyper-parameter schedules: annealing functions, the callback that applies them, and the fit policies.

A schedule is a function of the fraction of training done (``pct`` in [0, 1]) returning a value, or
an array of values (one per parameter group, for discriminative learning rates).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ember.core.errors import ConfigError, expected
from ember.learner.callback import Callback
from ember.learner.optim import set_hyper

__all__ = [
    "Schedule",
    "sched_lin",
    "sched_cos",
    "sched_exp",
    "sched_no",
    "combine_scheds",
    "one_cycle_scheds",
    "flat_cos_scheds",
    "sgdr_epochs",
    "sgdr_scheds",
    "ParamScheduler",
]

_EPS = 1e-9

Value = Any  # a float or a numpy array of floats (one per parameter group)
Schedule = Callable[[float], Value]


def _values(start: Value, end: Value) -> tuple[Any, Any]:
    """Plain floats for one group (a schedule runs every batch: numpy scalars cost ten times more), else arrays."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    if start.ndim == 0 and end.ndim == 0:
        return float(start), float(end)
    return start, end


def sched_lin(start: Value, end: Value) -> Schedule:
    """Linear from `start` to `end`."""
    start, end = _values(start, end)
    return lambda pct: start + pct * (end - start)


def sched_cos(start: Value, end: Value) -> Schedule:
    """Half a cosine from `start` to `end`: flat at both ends, steepest in the middle."""
    start, end = _values(start, end)
    return lambda pct: start + (1 + math.cos(math.pi * (1 - pct))) * (end - start) / 2


def sched_exp(start: Value, end: Value) -> Schedule:
    """Exponential (geometric) from `start` to `end` (both > 0)."""
    start, end = _values(start, end)
    return lambda pct: start * (end / start) ** pct


def sched_no(start: Value, end: Value | None = None) -> Schedule:
    """Constant `start`."""
    start, _ = _values(start, start)
    return lambda pct: start


def combine_scheds(pcts: Sequence[float], scheds: Sequence[Schedule]) -> Schedule:
    """Chain schedules: the i-th runs over a fraction `pcts[i]` of training (the fractions sum to 1)."""
    if len(pcts) != len(scheds):
        raise ConfigError(f"Expected one fraction per schedule; received {len(pcts)} fractions for {len(scheds)}.")
    if abs(sum(pcts) - 1) > 1e-6 or min(pcts) < 0:
        raise ConfigError(f"Expected non-negative fractions that sum to 1; received `pcts={list(pcts)}`.")
    bounds = [float(b) for b in np.cumsum([0.0, *pcts])]
    last = len(scheds) - 1

    def sched(pct: float) -> Value:
        pct = min(max(pct, 0.0), 1.0)
        i = 0
        # A handful of segments: a loop beats numpy. The tolerance puts a boundary (3/7 summed as 1/7 + 2/7) in the
        # segment it starts, whatever the rounding of the sum and of the fraction of training done.
        while i < last and (pct >= bounds[i + 1] - _EPS or pcts[i] == 0):
            i += 1
        width = pcts[i] or 1.0
        return scheds[i](min(max((pct - bounds[i]) / width, 0.0), 1.0))

    return sched


def one_cycle_scheds(
    lr_max: Value,
    div: float = 25.0,
    div_final: float = 1e5,
    pct_start: float = 0.25,
    moms: Sequence[float] | None = None,
) -> dict[str, Schedule]:
    """The one-cycle policy: lr warms up from ``lr_max/div`` to `lr_max` along a cosine over `pct_start`,
    then anneals to ``lr_max/div_final``; momentum moves the other way (`moms` = start, middle, end)."""
    if not 0 <= pct_start <= 1:
        raise ConfigError(f"Expected `pct_start` in [0, 1]; received `pct_start={pct_start}`.")
    lr_max = np.asarray(lr_max, dtype=float)
    scheds = {
        "lr": combine_scheds(
            [pct_start, 1 - pct_start], [sched_cos(lr_max / div, lr_max), sched_cos(lr_max, lr_max / div_final)]
        )
    }
    if moms is not None:
        scheds["mom"] = combine_scheds(
            [pct_start, 1 - pct_start], [sched_cos(moms[0], moms[1]), sched_cos(moms[1], moms[2])]
        )
    return scheds


def flat_cos_scheds(lr: Value, div_final: float = 1e5, pct_start: float = 0.75) -> dict[str, Schedule]:
    """Flat at `lr` for `pct_start` of training, then a cosine down to ``lr/div_final``."""
    lr = np.asarray(lr, dtype=float)
    return {"lr": combine_scheds([pct_start, 1 - pct_start], [sched_no(lr), sched_cos(lr, lr / div_final)])}


def _check_count(value: Any, name: str, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        what = "a positive int" if least == 1 else f"an int >= {least}"
        raise ConfigError(expected(what, name, value))
    return int(value)


def sgdr_epochs(n_cycles: int, cycle_len: int = 1, cycle_mult: int = 2) -> int:
    """The epochs SGDR takes: cycle ``i`` lasts ``cycle_len * cycle_mult**i`` epochs, for `n_cycles` cycles.

    >>> sgdr_epochs(3, 1, 2)  # 1 + 2 + 4
    7
    """
    n_cycles = _check_count(n_cycles, "n_cycles")
    cycle_len = _check_count(cycle_len, "cycle_len")
    cycle_mult = _check_count(cycle_mult, "cycle_mult")
    return sum(cycle_len * cycle_mult**i for i in range(n_cycles))


def sgdr_scheds(lr_max: Value, n_cycles: int, cycle_len: int = 1, cycle_mult: int = 2) -> dict[str, Schedule]:
    """SGD with warm restarts: in each cycle the rate falls along a half cosine from `lr_max` to 0, then restarts.

    Cycle ``i`` lasts ``cycle_len * cycle_mult**i`` epochs (:func:`sgdr_epochs` gives the total), so with the
    default ``cycle_mult=2`` each cycle is twice as long as the one before. The schedule is a function of the
    fraction of all the cycles done, like every other schedule; its rate reaches 0 only at the end of a cycle,
    which no training batch sits on.
    """
    lr_max = np.asarray(lr_max, dtype=float)
    n_epoch = sgdr_epochs(n_cycles, cycle_len, cycle_mult)
    pcts = [cycle_len * cycle_mult**i / n_epoch for i in range(int(n_cycles))]
    return {"lr": combine_scheds(pcts, [sched_cos(lr_max, 0.0 * lr_max) for _ in pcts])}


class ParamScheduler(Callback):
    """Set optimizer hyper-parameters from schedules before every training batch.

    Args:
        scheds: hyper-parameter name (``"lr"``, ``"mom"``, ``"wd"``) → schedule of the fraction of
            training done. The fraction comes from ``learn.pct_train``, so a resumed run continues the
            schedule where the interrupted one stopped.
    """

    order = 10
    run_valid = False

    def __init__(self, scheds: dict[str, Schedule]) -> None:
        self.scheds = dict(scheds)

    def before_fit(self) -> None:
        self._apply(self.learn.pct_train)

    def before_batch(self) -> None:
        self._apply(self.learn.pct_train)

    def _apply(self, pct: float) -> None:
        opt = self.learn.opt
        for name, sched in self.scheds.items():
            v = sched(pct)
            set_hyper(opt, name, v if isinstance(v, float) else [float(x) for x in np.atleast_1d(v)])

    def __repr__(self) -> str:
        return f"ParamScheduler({', '.join(self.scheds)})"
