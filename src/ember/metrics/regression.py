"""Regression metrics: batch errors (mean squared, absolute and squared-log) and set-level values (RMSE, RMSPE of
log targets, R² and explained variance) accumulated on the device.

Predictions and targets are flattened, so ``(B, 1)`` outputs against ``(B,)`` targets work, and every value of a
multi-output regression counts once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ember.metrics.base import Metric, _check_same_numel, _device_float, _ElementMean

__all__ = ["mse", "mae", "msle", "RMSE", "rmse", "ExpRMSPE", "exp_rmspe", "R2Score", "ExplainedVariance"]

# ----------------------------------------------------------------------------------------------------------------
# Batch functions: each is a mean over the items of the batch, so AvgMetric turns it into the exact set value.


def mse(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared error (predictions and targets flattened)."""
    _check_same_numel(inp, targ, "mse")
    return F.mse_loss(inp.reshape(-1).float(), targ.reshape(-1).float())


def mae(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (predictions and targets flattened)."""
    _check_same_numel(inp, targ, "mae")
    return F.l1_loss(inp.reshape(-1).float(), targ.reshape(-1).float())


def msle(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared logarithmic error, ``mean((log1p(pred) - log1p(targ))**2)``; values must be > -1."""
    _check_same_numel(inp, targ, "msle")
    return F.mse_loss(torch.log1p(inp.reshape(-1).float()), torch.log1p(targ.reshape(-1).float()))


for _f in (mse, mae, msle):
    _f.lower_is_better = True  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------------
# Set-level metrics.


class _RootMean(_ElementMean):
    lower_is_better = True

    def _finish(self, mean: float) -> float:
        return math.sqrt(mean)


class RMSE(_RootMean):
    """Root mean squared error of the whole set: ``sqrt(mean((pred - targ)**2))``, not a mean of batch RMSEs.

    ``rmse`` is the same class, so ``metrics=rmse``, ``metrics=[rmse]`` and ``metrics=[RMSE()]`` all work.
    """

    _default_name = "rmse"

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, int]:
        _check_same_numel(pred, targ, self.name)
        diff = pred.reshape(-1).float() - targ.reshape(-1).float()
        return (diff * diff).sum(), diff.numel()


rmse = RMSE


class ExpRMSPE(_RootMean):
    """Root mean squared percentage error of ``exp(pred)`` against ``exp(targ)`` (for log-scale targets).

    ``exp_rmspe`` is the same class.
    """

    _default_name = "exp_rmspe"

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, int]:
        _check_same_numel(pred, targ, self.name)
        p, t = torch.exp(pred.reshape(-1).float()), torch.exp(targ.reshape(-1).float())
        pct = (t - p) / t
        return (pct * pct).sum(), pct.numel()


exp_rmspe = ExpRMSPE


class R2Score(Metric):
    """Coefficient of determination of the whole set, ``1 - SSE / SST``, from running sums.

    Multi-output predictions are flattened (every value counts once).
    """

    _default_name = "r2_score"
    lower_is_better = False

    def reset(self) -> None:
        self.sums: torch.Tensor | None = None  # (3,): sum y, sum y², sum (y - p)²
        self.n = 0

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        _check_same_numel(pred, targ, self.name)
        dtype = _device_float(pred.device)
        p, y = pred.detach().reshape(-1).to(dtype), targ.reshape(-1).to(dtype)
        batch = torch.stack([y.sum(), (y * y).sum(), ((y - p) ** 2).sum()])
        self.sums = batch if self.sums is None else self.sums + batch
        self.n += y.numel()

    def compute(self) -> float:
        if self.sums is None or self.n == 0:
            return math.nan
        sum_y, sum_y2, sse = (float(v) for v in self.sums.cpu())
        sst = sum_y2 - sum_y * sum_y / self.n
        if sst <= 1e-12 * max(sum_y2, 1.0):  # constant targets, up to rounding
            return math.nan if sse > 0 else 1.0
        return 1.0 - sse / sst


def _is_constant(m2: float, mean: float, n: int) -> bool:
    """Whether a sum of squared deviations `m2` of `n` values around `mean` is zero up to rounding."""
    return m2 <= n * 1e-24 * max(mean * mean, 1.0)


class _PairMoments(Metric):
    """Running count, means, sums of squared deviations and co-deviation of two paired series ``(a, b)``.

    Each batch's moments are taken around its own means and merged into the running ones (the pairwise update of
    Chan, Golub and LeVeque), which stays accurate where running sums of squares would cancel.
    """

    def _pair(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's paired series ``(a, b)``, flattened, as floats."""
        raise NotImplementedError

    def reset(self) -> None:
        self.n = 0
        self.stats: torch.Tensor | None = None  # (5,): mean a, mean b, Σ(a - ā)², Σ(b - b̄)², Σ(a - ā)(b - b̄)

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        _check_same_numel(pred, targ, self.name)
        dtype = _device_float(pred.device)
        p, y = pred.detach().reshape(-1).to(dtype), targ.reshape(-1).to(dtype)  # (N,) each
        a, b = self._pair(p, y)
        n_b = a.numel()
        if n_b == 0:
            return
        mean_a, mean_b = a.mean(), b.mean()
        da, db = a - mean_a, b - mean_b
        batch = torch.stack([mean_a, mean_b, (da * da).sum(), (db * db).sum(), (da * db).sum()])
        if self.stats is None:
            self.stats, self.n = batch, n_b
            return
        n_a, n = self.n, self.n + n_b
        delta = batch[:2] - self.stats[:2]  # (2,): difference of the means
        weight = n_a * n_b / n
        means = self.stats[:2] + delta * (n_b / n)
        squares = self.stats[2:4] + batch[2:4] + delta * delta * weight
        co = self.stats[4:] + batch[4:] + delta[0] * delta[1] * weight
        self.stats, self.n = torch.cat([means, squares, co]), n

    def _moments(self) -> tuple[float, float, float, float, float] | None:
        """(mean a, mean b, Σ(a - ā)², Σ(b - b̄)², Σ(a - ā)(b - b̄)) as floats, ``None`` before data."""
        if self.stats is None:
            return None
        mean_a, mean_b, m2_a, m2_b, co = (float(v) for v in self.stats.cpu())
        return mean_a, mean_b, m2_a, m2_b, co


class ExplainedVariance(_PairMoments):
    """Explained variance of the whole set, ``1 - Var(targ - pred) / Var(targ)``.

    Unlike :class:`R2Score` it does not count a constant offset of the predictions as error. With constant targets
    it is 1.0 when the residuals are constant too and ``nan`` otherwise (scikit-learn answers 0.0 there).
    """

    _default_name = "explained_variance_score"
    lower_is_better = False

    def _pair(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return targ - pred, targ

    def compute(self) -> float:
        moments = self._moments()
        if moments is None:
            return math.nan
        mean_res, mean_y, m2_res, m2_y, _ = moments
        if _is_constant(m2_y, mean_y, self.n):
            return 1.0 if _is_constant(m2_res, mean_res, self.n) else math.nan
        return 1.0 - m2_res / m2_y
