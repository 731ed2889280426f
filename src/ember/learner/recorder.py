"""`Recorder`: what happened during training (losses, hyper-parameters, metrics), kept without stalling the loop.

Losses are accumulated as tensors on the device; the host reads them once per epoch, so the hot loop
never waits for the accelerator. The smoothed loss (`smooth_loss`) is there for whoever wants a live
value (the progress bar reads it a few times a second).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from ember.learner.callback import Callback

__all__ = ["Recorder", "unique_names"]


def _batch_size(batch: tuple) -> int:
    for t in batch:
        if isinstance(t, torch.Tensor) and t.ndim > 0:
            return int(t.shape[0])
    return 1


_FIXED_COLUMNS = ("epoch", "train_loss", "valid_loss", "time")


def unique_names(names: Sequence[str], taken: Iterable[str] = ()) -> list[str]:
    """`names` with ``_2``, ``_3`` ... added to repeats and to names already `taken`."""
    taken = set(taken)
    out = []
    for name in names:
        unique, k = name, 1
        while unique in taken:
            k += 1
            unique = f"{name}_{k}"
        taken.add(unique)
        out.append(unique)
    return out


class Recorder(Callback):
    """Record per-batch training losses, learning rates and momentums, and per-epoch losses and metrics.

    Attributes:
        values: one list per epoch: ``[train_loss, valid_loss, *metrics]`` (``None`` where absent).
        metric_names: ``["epoch", "train_loss", "valid_loss", *metric names, "time"]``.
        losses: training loss of every batch (floats), `lrs` and `moms` beside them.
        epoch_times: seconds each epoch took.
        log: the last epoch's row as a dict (what the progress table shows).
    """

    order = 50

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = beta
        self._reset()

    def _reset(self) -> None:
        self.values: list[list[float | None]] = []
        self.losses: list[float] = []
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self.iters: list[int] = []
        self.epoch_times: list[float] = []
        self.log: dict[str, Any] = {}
        self.last_validation: list[float | None] = []
        self._smooth: torch.Tensor | None = None
        self._n_smooth = 0
        self._epoch_losses = []
        self._epoch_bs = []
        self._smoothed_upto = 0
        #: The columns of `values` as the fit that recorded them named them (the metrics may change later).
        self.columns: list[str] = []

    # -- names -------------------------------------------------------------------------------------
    @property
    def metric_names(self) -> list[str]:
        """The table's columns. Each metric's column is its name, made unique: a second metric of the same name
        (``F1Score(average="macro")`` and ``F1Score(average="micro")``) shows as ``f1_score_2``, and so on."""
        metrics = unique_names([m.name for m in self.learn.metrics], taken=_FIXED_COLUMNS)
        return ["epoch", "train_loss", "valid_loss", *metrics, "time"]

    # -- training --------------------------------------------------------------------------------
    def before_fit(self) -> None:
        self._reset()
        self.columns = self.metric_names

    def before_epoch(self) -> None:
        self._t0 = time.perf_counter()
        self._epoch_losses: list[torch.Tensor] = []
        self._epoch_bs: list[int] = []
        self._smoothed_upto = 0
        self.last_validation = []
        self._valid_n = 0

    def after_batch(self) -> None:
        learn = self.learn
        if learn.training:
            if learn.loss is None:
                return
            loss = learn.loss
            self._epoch_losses.append(loss if loss.dtype == torch.float32 else loss.float())
            self._epoch_bs.append(_batch_size(learn.xb))
            self._n_smooth += 1  # the moving average itself is brought up to date when read (smooth_loss)
            if learn.opt is not None:
                group = learn.opt.param_groups[-1]
                self.lrs.append(group["lr"])
                self.moms.append(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))
        elif learn.yb and learn.pred is not None:  # a validation batch that ran (a cancelled one has no prediction)
            bs = _batch_size(learn.yb)
            if learn.loss is not None:
                self._valid_sum += learn.loss.detach().float() * bs
            self._valid_n += bs
            for m in learn.metrics:
                m.update(learn.pred, *learn.yb)

    def _update_smooth(self) -> None:
        """Fold the losses recorded since the last read into the moving average, in one vectorized step."""
        new = self._epoch_losses[self._smoothed_upto :]
        if not new:
            return
        xs = torch.stack(new)  # (k,) on the device
        k = len(new)
        weights = (1 - self.beta) * self.beta ** torch.arange(k - 1, -1, -1, device=xs.device, dtype=xs.dtype)
        prev = self._smooth if self._smooth is not None else torch.zeros((), device=xs.device, dtype=xs.dtype)
        self._smooth = prev * self.beta**k + (weights * xs).sum()
        self._smoothed_upto = len(self._epoch_losses)

    @property
    def smooth_loss(self) -> torch.Tensor | None:
        """The debiased moving average of the training loss (a tensor on the device), or None before any batch."""
        self._update_smooth()
        if self._smooth is None:
            return None
        return self._smooth / (1 - self.beta**self._n_smooth)

    # -- validation --------------------------------------------------------------------------------
    def before_validate(self) -> None:
        self._valid_sum = torch.zeros((), device=self.learn.dls.device)
        self._valid_n = 0
        for m in self.learn.metrics:
            m.reset()

    def after_validate(self) -> None:
        if self.learn.dl is not None and self._valid_n == 0:
            self.last_validation = [None] * (1 + len(self.learn.metrics))
            return
        loss = (self._valid_sum / self._valid_n).item()
        self.last_validation = [loss, *[float(m.compute()) for m in self.learn.metrics]]

    # -- epoch ---------------------------------------------------------------------------------------
    def after_epoch(self) -> None:
        self._update_smooth()
        train_loss = None
        if self._epoch_losses:
            losses = torch.stack(self._epoch_losses).cpu()  # the one sync of the epoch
            bs = torch.tensor(self._epoch_bs, dtype=losses.dtype)
            train_loss = float((losses * bs).sum() / bs.sum())
            self.losses.extend(losses.tolist())
            self.iters.append(len(self._epoch_losses))
        # without validation, only the metrics that report on training have something to say
        metrics = self.learn.metrics
        valid = self.last_validation or [
            None,
            *[m.compute() if getattr(m, "from_training", False) else None for m in metrics],
        ]
        row = [train_loss, *valid]
        self.values.append(row)
        self.epoch_times.append(time.perf_counter() - self._t0)
        self.log = dict(zip(self.metric_names, [self.learn.epoch, *row, self.epoch_times[-1]]))

    # -- state (checkpoints) -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "columns": self.columns,
            "losses": self.losses,
            "lrs": self.lrs,
            "moms": self.moms,
            "iters": self.iters,
            "epoch_times": self.epoch_times,
            "smooth": None if self._smooth is None else self._smooth.cpu(),
            "n_smooth": self._n_smooth,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = [list(v) for v in state["values"]]
        self.columns = list(state.get("columns") or self.metric_names)  # checkpoints before columns were kept
        self.losses = list(state["losses"])
        self.lrs = list(state["lrs"])
        self.moms = list(state["moms"])
        self.iters = list(state["iters"])
        self.epoch_times = list(state["epoch_times"])
        smooth = state.get("smooth")
        self._smooth = None if smooth is None else smooth.to(self.learn.dls.device)
        self._n_smooth = int(state.get("n_smooth", 0))

    # -- plots ---------------------------------------------------------------------------------------
    def plot_loss(self, skip_start: int = 5, with_valid: bool = True, fname: str | None = None) -> Any:
        """Plot training loss per batch (and validation loss per epoch); returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        xs = list(range(skip_start, len(self.losses)))
        ax.plot(xs, self.losses[skip_start:], label="train")
        if with_valid and self.values and any(v[1] is not None for v in self.values):
            ends = [sum(self.iters[: i + 1]) for i in range(len(self.iters))]
            vals = [v[1] for v in self.values[: len(ends)]]
            ax.plot(ends, vals, marker="o", label="valid")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        return _finish(fig, fname)

    def plot_metrics(self, ncols: int = 3, fname: str | None = None) -> Any:
        """Plot, per epoch, the training and validation losses on one panel and each metric on its own; returns the
        Figure. Epochs without a value (no validation) are left out of their curve."""
        import matplotlib.pyplot as plt

        from ember.core.errors import EmberError

        if not self.values:
            raise EmberError("No epoch recorded yet: fit the learner first, then plot its metrics.")
        names = (self.columns or self.metric_names)[1:-1]  # train_loss, valid_loss, *metrics, as recorded
        panels = [("loss", [0, 1])] + [(name, [i]) for i, name in enumerate(names[2:], start=2)]
        ncols = max(1, min(ncols, len(panels)))
        nrows = -(-len(panels) // ncols)
        fig, axs = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
        for ax, (title, cols) in zip(axs.flat, panels):
            for j in cols:
                points = [(e, row[j]) for e, row in enumerate(self.values) if row[j] is not None]
                if points:
                    ax.plot(*zip(*points), marker="o", label=names[j])
            ax.set_title(title)
            ax.set_xlabel("epoch")
            if len(cols) > 1:
                ax.legend()
        for ax in list(axs.flat)[len(panels) :]:
            ax.set_visible(False)
        return _finish(fig, fname)

    def plot_sched(self, keys: tuple[str, ...] = ("lr", "mom"), fname: str | None = None) -> Any:
        """Plot the learning rate and momentum of every training batch; returns the Figure."""
        import matplotlib.pyplot as plt

        series = {"lr": self.lrs, "mom": self.moms}
        fig, axs = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
        for ax, k in zip(axs[0], keys):
            ax.plot(series[k])
            ax.set_title(k)
            ax.set_xlabel("batch")
        return _finish(fig, fname)

    def plot_lr_find(self, skip_end: int = 5, fname: str | None = None) -> Any:
        """Plot the last ``learn.lr_find()`` curve with its suggestions; returns the Figure."""
        from ember.core.errors import EmberError
        from ember.learner.lr_find import plot_lr_find

        results = getattr(self, "lr_find_results", None)
        if results is None:
            raise EmberError("No lr_find curve recorded yet: run learn.lr_find() first.")
        return plot_lr_find(*results, getattr(self, "lr_find_suggestions", None), skip_end=skip_end, fname=fname)


def _finish(fig: Any, fname: str | None) -> Any:
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=100)
    return fig
