"""Agreement of predicted and true classes beyond chance: Matthews correlation, Cohen's kappa and balanced accuracy.

Each is a function of the set's confusion matrix, accumulated on the device batch by batch (no predictions are
kept). Predictions are raw outputs: class scores over ``axis`` (the argmax is the class), or one logit per item
for a binary problem (class 1 where ``sigmoid(pred) > thresh``). Targets are class ids; targets outside ``[0, C)``
(an ignore index) are left out.
"""

from __future__ import annotations

import math

import torch

from ember.core.errors import ConfigError, expected
from ember.metrics.classification import _ConfusionMatrix

__all__ = ["MatthewsCorrCoef", "CohenKappa", "BalancedAccuracy"]


class MatthewsCorrCoef(_ConfusionMatrix):
    """Matthews correlation coefficient of the whole set (its multi-class form for more than two classes).

    It is 1 for perfect predictions, 0 for predictions no better than chance (and for constant predictions) and
    -1 for complete disagreement in the binary case. ``nan`` when the targets hold a single class, where it is not
    defined (scikit-learn answers 0.0 there).

    Args:
        thresh: probability threshold for a single-logit binary output.
        axis: the class axis of the predictions.
    """

    _default_name = "matthews_corrcoef"

    def compute(self) -> float:
        cm = self._float_counts()
        if cm is None:
            return math.nan
        cm = cm.cpu()
        true, pred = cm.sum(1), cm.sum(0)  # (C,) each: items per target class, per predicted class
        total, correct = float(cm.sum()), float(cm.trace())
        if int((true > 0).sum()) < 2:
            return math.nan
        cov_true_pred = correct * total - float((true * pred).sum())
        cov_true = total * total - float((true * true).sum())
        cov_pred = total * total - float((pred * pred).sum())
        if cov_pred == 0:  # every item predicted as the same class
            return 0.0
        return cov_true_pred / math.sqrt(cov_true * cov_pred)


_KAPPA_WEIGHTS = (None, "linear", "quadratic")


class CohenKappa(_ConfusionMatrix):
    """Cohen's kappa of the whole set: the agreement of predictions with targets, corrected for chance agreement.

    ``1 - Σ w·O / Σ w·E``, where ``O`` is the confusion matrix, ``E`` the one expected if predictions and targets were
    independent (same class frequencies), and ``w`` the cost of a disagreement.

    Args:
        weights: ``None`` (every disagreement costs 1), ``"linear"`` (``|i - j|``) or ``"quadratic"``
            (``(i - j)²``) for ordinal classes, whose index order is their order.
        thresh: probability threshold for a single-logit binary output.
        axis: the class axis of the predictions.

    ``nan`` when chance agreement is already perfect (predictions and targets all of one same class). The weights
    use the class indices ``0..C-1``; scikit-learn numbers only the classes present, which differs when a class
    between two others is absent from both predictions and targets.
    """

    _default_name = "cohen_kappa_score"

    def __init__(
        self, weights: str | None = None, thresh: float = 0.5, axis: int = -1, name: str | None = None
    ) -> None:
        if weights not in _KAPPA_WEIGHTS:
            raise ConfigError(expected("a weighting of disagreements", "weights", weights, _KAPPA_WEIGHTS))
        self.weights = weights
        super().__init__(thresh=thresh, axis=axis, name=name)

    def compute(self) -> float:
        cm = self._float_counts()
        if cm is None:
            return math.nan
        total = cm.sum()
        idx = torch.arange(cm.shape[0], device=cm.device, dtype=cm.dtype)
        dist = (idx[:, None] - idx[None, :]).abs()  # (C, C)
        if self.weights is None:
            cost = (dist > 0).to(cm.dtype)
        else:
            cost = dist if self.weights == "linear" else dist * dist
        chance = torch.outer(cm.sum(1), cm.sum(0)) / total.clamp_min(1)  # (C, C)
        observed, expected_cost = float((cost * cm).sum()), float((cost * chance).sum())
        if expected_cost == 0:
            return math.nan
        return 1.0 - observed / expected_cost


class BalancedAccuracy(_ConfusionMatrix):
    """Balanced accuracy of the whole set: the mean over classes of the recall (the fraction of each class's items
    predicted as that class), so that every class counts the same whatever its size.

    Args:
        adjusted: rescale so that chance scores 0 and perfect predictions 1: ``(score - 1/K) / (1 - 1/K)`` for
            ``K`` classes present in the targets.
        thresh: probability threshold for a single-logit binary output.
        axis: the class axis of the predictions.

    Classes absent from the targets are left out of the mean; ``nan`` when nothing was seen, and for
    ``adjusted=True`` when the targets hold a single class.
    """

    _default_name = "balanced_accuracy_score"

    def __init__(self, adjusted: bool = False, thresh: float = 0.5, axis: int = -1, name: str | None = None) -> None:
        self.adjusted = adjusted
        super().__init__(thresh=thresh, axis=axis, name=name)

    def compute(self) -> float:
        cm = self._float_counts()
        if cm is None:
            return math.nan
        support = cm.sum(1)  # (C,)
        present = support > 0
        n_present = int(present.sum())
        if n_present == 0:
            return math.nan
        recall = cm.diagonal() / support.clamp_min(1)  # (C,)
        score = float((recall * present).sum()) / n_present
        if not self.adjusted:
            return score
        if n_present < 2:
            return math.nan
        chance = 1 / n_present
        return (score - chance) / (1 - chance)
