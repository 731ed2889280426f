"""The learning-rate finder: a short run with an exponentially growing rate, and rates it suggests.

The suggestions leave out the first tenth of the run (the average of the first few losses is noise) and the
last 5 points (the divergence), and stop at the first NaN. Each reads the curve of smoothed loss against
learning rate differently:

- ``valley``: the longest run of ever lower losses (the longest decreasing subsequence); the rate about half
  way along its first two thirds. The most robust choice in practice, and the default for the command line.
- ``steep``: where the loss falls fastest (the most negative slope against log learning rate).
- ``minimum``: the rate at the lowest loss divided by 10 (the minimum itself is already too high).
- ``slide``: walking left from the end of the curve, the first rate where the slope of the loss stops changing
  by more than a threshold over a window of 15 points: where the curve is still smooth, before it turns up;
  never above the rate of the lowest loss.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import namedtuple
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ember.core.errors import ConfigError, expected
from ember.learner.callback import Callback, CancelFitException, CancelValidException
from ember.learner.optim import set_hyper

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = ["LRFinder", "SUGGESTIONS", "suggest_lrs", "plot_lr_find", "run_lr_find"]

SUGGESTIONS = ("valley", "steep", "minimum", "slide")


class LRFinder(Callback):
    """Grow the learning rate from `start_lr` to `end_lr` over `num_it` batches, recording the smoothed loss.

    Stops early when the loss diverges (4 times its best, or NaN) if `stop_div`. The model and the
    optimizer are restored after the run, however it ends (an error or an interrupt included).
    """

    order = 15

    def __init__(
        self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True, beta: float = 0.98
    ) -> None:
        if not 0 < start_lr < end_lr:
            raise ConfigError(f"Expected 0 < start_lr < end_lr; received `start_lr={start_lr}`, `end_lr={end_lr}`.")
        if num_it < 2:
            raise ConfigError(expected("an int >= 2", "num_it", num_it))
        self.start_lr, self.end_lr, self.num_it, self.stop_div, self.beta = start_lr, end_lr, num_it, stop_div, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.diverged = False
        self._model_state: dict[str, Any] | None = None
        self._opt_state: dict[str, Any] | None = None

    def before_fit(self) -> None:
        learn = self.learn
        self._model_state = copy.deepcopy(learn.model.state_dict())
        self._opt_state = copy.deepcopy(learn.opt.state_dict())
        self.lrs, self.losses, self.diverged = [], [], False
        self._avg, self._i, self._best = 0.0, 0, math.inf

    def before_batch(self) -> None:
        if self.learn.training:
            pct = self._i / (self.num_it - 1)
            set_hyper(self.learn.opt, "lr", self.start_lr * (self.end_lr / self.start_lr) ** pct)

    def after_batch(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        loss = float(learn.loss)  # one sync per batch: lr_find is short and needs the value now
        self._i += 1
        self._avg = self.beta * self._avg + (1 - self.beta) * loss
        smooth = self._avg / (1 - self.beta**self._i)
        self.lrs.append(learn.opt.param_groups[-1]["lr"])
        self.losses.append(smooth)
        self._best = min(self._best, smooth)
        # diverged: 4x the best loss, measured from the best so that a loss that can go negative works too
        if self.stop_div and (not math.isfinite(smooth) or smooth > self._best + 3 * abs(self._best)):
            self.diverged = True
            raise CancelFitException()
        if self._i >= self.num_it:
            raise CancelFitException()

    def before_validate(self) -> None:
        raise CancelValidException()

    def cleanup_fit(self) -> None:
        """Put the weights and the optimizer's state back, however the run ended."""
        if self._model_state is not None:
            self.learn.model.load_state_dict(self._model_state)
            self._model_state = None
        if self._opt_state is not None and self.learn.opt is not None:
            self.learn.opt.load_state_dict(self._opt_state)
            self._opt_state = None


SuggestedLRs = namedtuple("SuggestedLRs", SUGGESTIONS)


def _valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate about half way along the longest run of ever lower losses (those points need not be adjacent)."""
    n = len(losses)
    run = np.ones(n, dtype=np.int64)  # run[i]: the longest chain of decreasing losses that ends at point i
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            run[i] = run[:i][higher].max() + 1
    end = int(np.argmax(run))  # the first point where the longest chain ends
    span = int(run[end])  # the chain covers the points after ``end - span`` up to ``end``
    third = span / 3
    return float(lrs[max(end - span + int(third) + int(third / 2), 0)])


def _steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss falls fastest against the log of the rate."""
    return float(lrs[int(np.argmin(np.diff(losses) / np.diff(np.log(lrs))))])


def _slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """Compare the slope of the loss at each point with the slope `lr_diff` points to its right; going leftwards
    from the end of the curve, the suggestion is the last rate before the two first agree within `thresh`."""
    lr_diff = min(lr_diff, len(losses) - 1)
    slope = np.gradient(losses)
    settled = np.flatnonzero(np.abs(slope[lr_diff:] - slope[: len(slope) - lr_diff]) <= thresh)
    last = len(losses) - 1 - lr_diff  # the first point compared
    first_settled = int(settled[-1]) if len(settled) else -1
    return float(lrs[min(first_settled + 1, last)])


def suggest_lrs(
    lrs: Sequence[float],
    losses: Sequence[float],
    funcs: Sequence[str] = SUGGESTIONS,
    skip_start: int | None = None,
    skip_end: int = 5,
) -> Any:
    """Suggested learning rates from an lr_find curve (see the module docstring for each rule).

    Args:
        skip_start: points left out at the start (default: a tenth of the points).
        skip_end: points left out at the end. When that leaves fewer than 3 points, nothing is left out.

    Returns a named tuple with one field per name in `funcs`.
    """
    unknown = [f for f in funcs if f not in SUGGESTIONS]
    if unknown:
        raise ConfigError(expected("names of suggestion rules", "suggest_funcs", unknown, SUGGESTIONS))
    lrs_a = np.asarray(lrs, dtype=float)
    loss_a = np.asarray(losses, dtype=float)
    n = min(len(lrs_a), len(loss_a))
    lrs_a, loss_a = lrs_a[:n], loss_a[:n]
    skip_start = n // 10 if skip_start is None else skip_start
    if n - skip_start - skip_end >= 3:
        lrs_a, loss_a = lrs_a[skip_start : n - skip_end], loss_a[skip_start : n - skip_end]
    bad = np.flatnonzero(~np.isfinite(loss_a))
    if len(bad):  # up to the first NaN: what follows it is divergence
        lrs_a, loss_a = lrs_a[: bad[0]], loss_a[: bad[0]]
    if len(loss_a) < 3:
        raise ConfigError(
            "The lr_find run recorded fewer than 3 finite losses; try a lower `start_lr` or more `num_it`."
        )
    out: dict[str, float] = {}
    for name in funcs:
        if name == "minimum":
            out[name] = float(lrs_a[int(np.argmin(loss_a))] / 10)
        elif name == "steep":
            out[name] = _steep(lrs_a, loss_a)
        elif name == "valley":
            out[name] = _valley(lrs_a, loss_a)
        elif name == "slide":  # never past the bottom of the curve
            out[name] = min(_slide(lrs_a, loss_a), float(lrs_a[int(np.argmin(loss_a))]))
    return namedtuple("SuggestedLRs", list(funcs))(**out)


def plot_lr_find(
    lrs: Sequence[float], losses: Sequence[float], suggestions: Any = None, skip_end: int = 5, fname: str | None = None
) -> Any:
    """Loss against learning rate (log scale), with the suggestions marked; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    n = max(len(lrs) - skip_end, 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs[:n], losses[:n])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    if suggestions is not None:
        markers = ["o", "v", "s", "D"]
        for (name, lr), marker in zip(suggestions._asdict().items(), markers):
            y = float(np.interp(np.log10(lr), np.log10(lrs), losses))
            ax.plot([lr], [y], marker=marker, linestyle="", markersize=8, label=f"{name}: {lr:.2e}")
        ax.legend()
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=100)
    return fig


def run_lr_find(
    learn: Learner,
    start_lr: float,
    end_lr: float,
    num_it: int,
    stop_div: bool,
    show_plot: bool,
    suggest_funcs: Sequence[str],
) -> Any:
    """What ``Learner.lr_find`` does (kept here so the learner module stays about the loop).

    The run leaves out the callbacks with ``run_in_lr_find = False`` (trackers such as early stopping, loggers,
    checkpoints), and puts the weights and the optimizer back however it ends."""
    finder = LRFinder(start_lr, end_lr, num_it, stop_div)
    had_opt = learn.opt is not None
    if not had_opt:
        learn.create_opt()
    n_epoch = math.ceil(num_it / max(len(learn.dls.train), 1))
    left_out = [cb for cb in learn.cbs if not cb.run_in_lr_find]
    try:
        with learn.no_bar(), learn.removed_cbs(left_out):
            learn.fit(n_epoch, cbs=[finder])
    finally:
        if not had_opt:
            learn.opt = None
    if len(finder.losses) < num_it and not finder.diverged:
        warnings.warn(
            f"lr_find stopped after {len(finder.losses)} of {num_it} batches, before the loss diverged (a callback "
            "cancelled it, or the training set is too small): the suggestions read a partial curve.",
            stacklevel=3,
        )
    learn.recorder.lr_find_results = (finder.lrs, finder.losses)
    suggestions = suggest_lrs(finder.lrs, finder.losses, suggest_funcs, skip_start=num_it // 10)
    learn.recorder.lr_find_suggestions = suggestions
    if show_plot:
        plot_lr_find(finder.lrs, finder.losses, suggestions)
    return suggestions
