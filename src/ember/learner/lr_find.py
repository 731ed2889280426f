"""The learning-rate finder: a short run with an exponentially growing rate, and rates it suggests.

Each suggestion reads the curve of smoothed loss against log learning rate differently:

- ``valley``: inside the longest stretch where the loss keeps falling, the rate 60% of the way along.
  The most robust choice in practice, and the default for the command line.
- ``steep``: where the loss falls fastest (most negative slope before the minimum).
- ``minimum``: the rate at the lowest loss divided by 10 (the minimum itself is already too high).
- ``slide``: walking back from the minimum, the first rate whose loss is still a fifth of the total
  drop above the minimum: near the bottom, before the curve flattens.
"""

from __future__ import annotations

import copy
import math
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
    optimizer are restored after the run.
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

    def before_fit(self) -> None:
        learn = self.learn
        self._model_state = copy.deepcopy(learn.model.state_dict())
        self._opt_state = copy.deepcopy(learn.opt.state_dict())
        self.lrs: list[float] = []
        self.losses: list[float] = []
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
            raise CancelFitException()
        if self._i >= self.num_it:
            raise CancelFitException()

    def before_validate(self) -> None:
        raise CancelValidException()

    def after_fit(self) -> None:
        self.learn.model.load_state_dict(self._model_state)
        self.learn.opt.load_state_dict(self._opt_state)


SuggestedLRs = namedtuple("SuggestedLRs", SUGGESTIONS)


def suggest_lrs(lrs: Sequence[float], losses: Sequence[float], funcs: Sequence[str] = SUGGESTIONS) -> Any:
    """Suggested learning rates from an lr_find curve (see the module docstring for each rule).

    Returns a named tuple with one field per name in `funcs`.
    """
    unknown = [f for f in funcs if f not in SUGGESTIONS]
    if unknown:
        raise ConfigError(expected("names of suggestion rules", "suggest_funcs", unknown, SUGGESTIONS))
    lrs_a = np.asarray(lrs, dtype=float)
    loss_a = np.asarray(losses, dtype=float)
    finite = np.isfinite(loss_a)
    lrs_a, loss_a = lrs_a[finite], loss_a[finite]
    if len(loss_a) < 3:
        raise ConfigError(
            "The lr_find run recorded fewer than 3 finite losses; try a lower `start_lr` or more `num_it`."
        )
    i_min = int(np.argmin(loss_a))
    log_lr = np.log10(lrs_a)
    out: dict[str, float] = {}
    for name in funcs:
        if name == "minimum":
            out[name] = float(lrs_a[i_min] / 10)
        elif name == "steep":
            upto = max(i_min, 2) + 1
            slope = np.gradient(loss_a[:upto], log_lr[:upto])
            out[name] = float(lrs_a[int(np.argmin(slope))])
        elif name == "valley":
            start, length, best_start, best_len = 0, 0, 0, 0
            for i in range(1, len(loss_a)):
                if loss_a[i] < loss_a[i - 1]:
                    if length == 0:
                        start = i - 1
                    length += 1
                    if length > best_len:
                        best_start, best_len = start, length
                else:
                    length = 0
            out[name] = float(lrs_a[best_start + int(round(0.6 * best_len))])
        elif name == "slide":
            target = loss_a[i_min] + 0.2 * max(loss_a[0] - loss_a[i_min], 0.0)
            i = i_min
            while i > 0 and loss_a[i] < target:
                i -= 1
            out[name] = float(lrs_a[i])
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
    """What ``Learner.lr_find`` does (kept here so the learner module stays about the loop)."""
    had_opt = learn.opt is not None
    if not had_opt:
        learn.create_opt()
    finder = LRFinder(start_lr, end_lr, num_it, stop_div)
    n_epoch = math.ceil(num_it / max(len(learn.dls.train), 1))
    with learn.no_bar():
        learn.fit(n_epoch, cbs=[finder])
    if not had_opt:
        learn.opt = None
    learn.recorder.lr_find_results = (finder.lrs, finder.losses)
    suggestions = suggest_lrs(finder.lrs, finder.losses, suggest_funcs)
    learn.recorder.lr_find_suggestions = suggestions
    if show_plot:
        plot_lr_find(finder.lrs, finder.losses, suggestions)
    return suggestions
