"""Correlation of predictions with targets over the whole set: Pearson's (linear) and Spearman's (of ranks).

For regression models: predictions and targets are flattened, so ``(B, 1)`` outputs against ``(B,)`` targets work.
Either is ``nan`` when the predictions or the targets are constant (there is no correlation to measure), and when
any of them is NaN or infinite (a model that diverged must not score r = 1).
"""

from __future__ import annotations

import math

import torch

from ember.metrics.base import _check_same_numel, _device_float
from ember.metrics.ranking import _average_ranks, _ScoreMetric
from ember.metrics.regression import _is_constant, _PairMoments

__all__ = ["PearsonCorrCoef", "SpearmanCorrCoef"]


def _pearson(n: int, mean_a: float, mean_b: float, m2_a: float, m2_b: float, co: float) -> float:
    """Pearson's r from the count, means, sums of squared deviations and co-deviation of two series; ``nan`` for
    non-finite moments (from NaN or infinite values), which the clamp to [-1, 1] would otherwise turn into 1."""
    if not all(math.isfinite(v) for v in (mean_a, mean_b, m2_a, m2_b, co)):
        return math.nan
    if n < 2 or _is_constant(m2_a, mean_a, n) or _is_constant(m2_b, mean_b, n):
        return math.nan
    return max(-1.0, min(1.0, co / math.sqrt(m2_a * m2_b)))


class PearsonCorrCoef(_PairMoments):
    """Pearson correlation coefficient of predictions and targets over the whole set.

    It streams: each batch's means and (co)variances are merged into running ones on the device, so nothing is
    kept and nothing is copied back before ``compute``.
    """

    _default_name = "pearsonr"
    lower_is_better = False

    def _pair(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return pred, targ

    def compute(self) -> float:
        moments = self._moments()
        return math.nan if moments is None else _pearson(self.n, *moments)


class SpearmanCorrCoef(_ScoreMetric):
    """Spearman rank correlation coefficient of predictions and targets over the whole set: Pearson's r of their
    ranks, tied values sharing the mean of their ranks.

    Ranks need the whole set, so the predictions and targets of every batch are kept on the device until
    ``compute``.
    """

    _default_name = "spearmanr"

    def _check(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        _check_same_numel(pred, targ, self.name)

    def _value(self, pred: torch.Tensor, targ: torch.Tensor) -> float:
        dtype = _device_float(pred.device)
        values = torch.stack([pred.reshape(-1).to(dtype), targ.reshape(-1).to(dtype)], dim=1)  # (N, 2)
        n = values.shape[0]
        if n < 2 or not bool(torch.isfinite(values).all()):  # NaN would rank highest and give a plausible value
            return math.nan
        ranks = _average_ranks(values)  # (N, 2)
        dev = ranks - ranks.mean(0)  # (N, 2)
        m2 = (dev * dev).sum(0)  # (2,)
        co = (dev[:, 0] * dev[:, 1]).sum()
        mean = (n + 1) / 2  # the mean of any ranks 1..n
        return _pearson(n, mean, mean, float(m2[0]), float(m2[1]), float(co))
