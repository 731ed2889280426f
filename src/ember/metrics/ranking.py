"""Ranking metrics: the area under the ROC curve and average precision of the whole set.

They depend on the order of every score in the set, so unlike the counting metrics they keep the (detached)
predictions and targets of every batch on the device and rank them once in ``compute``. Tied scores count as
scikit-learn counts them: a tie between a positive and a negative is worth half a correctly ordered pair in the
ROC AUC, and tied scores form one threshold of the precision-recall curve. Only the order of the scores matters,
so logits and probabilities give the same value.

A class (or a label, or an item for ``average="samples"``) whose targets are all positive or all negative has no
ROC AUC, and one with no positive target no average precision: it is left out of the average, and the value is
``nan`` when nothing is left (scikit-learn raises an error for the ROC AUC and answers 0.0 for the average
precision). The value is ``nan`` too when a prediction is NaN or infinite (scikit-learn raises an error).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ember.core.errors import ConfigError, DataError, expected
from ember.metrics.base import (
    Metric,
    _bad_binary_targets,
    _binary_targets_error,
    _check_class_scores,
    _check_not_multi_label,
    _check_same_numel,
    _class_axis_size,
    _device_float,
    _is_one_logit,
)

__all__ = ["RocAuc", "RocAucBinary", "RocAucMulti", "APScoreBinary", "APScoreMulti"]


def _tie_groups(sorted_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each element of columns sorted along dim 0, the positions of the first and last element of its run of
    equal scores. Both ``(N, K)``."""
    n = sorted_scores.shape[0]
    pos = torch.arange(n, device=sorted_scores.device).unsqueeze(1).expand_as(sorted_scores)  # (N, K)
    starts = torch.ones_like(sorted_scores, dtype=torch.bool)  # (N, K): an element unlike the one before it
    starts[1:] = sorted_scores[1:] != sorted_scores[:-1]
    ends = torch.ones_like(starts)  # (N, K): an element unlike the one after it
    ends[:-1] = starts[1:]
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(dim=0).values
    last = torch.where(ends, pos, torch.full_like(pos, n - 1)).flip(0).cummin(dim=0).values.flip(0)
    return first, last


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N of the values in each column of `x` ``(N, K)``; tied values share the mean of their ranks."""
    sorted_x, order = x.sort(dim=0)
    first, last = _tie_groups(sorted_x)
    ranks = (first + last).to(_device_float(x.device)) / 2 + 1  # (N, K), in sorted order
    return torch.empty_like(ranks).scatter_(0, order, ranks)


def _roc_auc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """ROC AUC of each column: scores and boolean targets ``(N, K)`` -> ``(K,)``, ``nan`` where a column lacks
    positives or negatives.

    The AUC is the Mann-Whitney statistic: the fraction of (positive, negative) pairs that the scores order
    correctly, a tie counting one half, from the positives' average ranks.
    """
    dtype = _device_float(scores.device)
    n = scores.shape[0]
    y = positive.to(dtype)
    n_pos = y.sum(0)  # (K,)
    n_neg = n - n_pos
    rank_sum = (_average_ranks(scores) * y).sum(0)  # (K,)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg).clamp_min(1)
    return torch.where((n_pos > 0) & (n_neg > 0), auc, torch.full_like(auc, math.nan))


def _average_precision(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Average precision of each column: scores and boolean targets ``(N, K)`` -> ``(K,)``, ``nan`` where a column
    has no positive.

    ``AP = Σ_t (R_t - R_{t-1}) P_t`` over the distinct scores ``t`` from the highest down: every positive adds
    ``1 / n_pos`` of recall at the threshold of its own score, where the precision counts all the items scoring at
    least as high (its tied items included).
    """
    dtype = _device_float(scores.device)
    sorted_scores, order = scores.sort(dim=0, descending=True)
    _, last = _tie_groups(sorted_scores)  # (N, K): where each element's threshold takes in the last of its ties
    y = positive.gather(0, order).to(dtype)  # (N, K), in sorted order
    seen = torch.arange(1, scores.shape[0] + 1, device=scores.device, dtype=dtype).unsqueeze(1)  # (N, 1)
    precision = y.cumsum(0) / seen  # (N, K): precision at the threshold of each position
    n_pos = y.sum(0)  # (K,)
    ap = (y * precision.gather(0, last)).sum(0) / n_pos.clamp_min(1)
    return torch.where(n_pos > 0, ap, torch.full_like(ap, math.nan))


def _mean_of_defined(values: torch.Tensor, weights: torch.Tensor | None = None) -> float:
    """Mean of the values that are not ``nan`` (weighted by `weights` when given); ``nan`` when none is left."""
    defined = ~values.isnan()
    w = defined.to(values.dtype) if weights is None else weights.to(values.dtype) * defined
    total = float(w.sum())
    if total == 0:
        return math.nan
    return float((values.nan_to_num() * w).sum()) / total


class _ScoreMetric(Metric):
    """Keeps the detached predictions and targets of every batch on the device, for a value of the whole set.

    The value is ``nan`` when any prediction is not finite (a model that diverged): a NaN would otherwise sort as
    the highest score and give a plausible value. Checked once, in ``compute``.
    """

    lower_is_better = False

    def reset(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.targs: list[torch.Tensor] = []

    def _check(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        """Raise for predictions and targets that do not fit the metric (shapes only: no device sync)."""

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        self._check(pred, targ)
        self.preds.append(pred.detach())
        self.targs.append(targ)

    def _check_targets(self, targ: torch.Tensor) -> None:
        """Raise for target values the metric cannot use (in ``compute``, where a device sync is allowed)."""

    def _value(self, pred: torch.Tensor, targ: torch.Tensor) -> float:
        """The value from all the predictions and targets, concatenated."""
        raise NotImplementedError

    def compute(self) -> float:
        if not self.preds:
            return math.nan
        pred, targ = torch.cat(self.preds), torch.cat(self.targs)
        self._check_targets(targ)
        if not bool(torch.isfinite(pred).all()):
            return math.nan
        return self._value(pred, targ)


def _check_average(average: str, valid: tuple[str, ...]) -> str:
    if average not in valid:
        raise ConfigError(expected("an averaging mode", "average", average, valid))
    return average


# ----------------------------------------------------------------------------------------------------------------
# Single-label: class scores and class-id targets.


class RocAuc(_ScoreMetric):
    """ROC AUC of a single-label classifier over the whole set, one class against the rest, averaged over classes.

    The model outputs class scores ``(B, C)`` (or ``(B, T, C)``, every position counting) over ``axis``, turned into
    probabilities with a softmax; targets are class ids, and targets outside ``[0, C)`` (an ignore index) are left
    out. For each class the items of that class are the positives and all others the negatives.

    Args:
        average: ``"macro"`` (the mean over classes) or ``"weighted"`` (weighted by each class's number of items).
        axis: the class axis of the predictions.

    A class absent from the targets has no AUC and is left out of the average; ``nan`` when the targets hold a
    single class.
    """

    _default_name = "roc_auc_score"
    _averages = ("macro", "weighted")

    def __init__(self, average: str = "macro", axis: int = -1, name: str | None = None) -> None:
        self.average, self.axis = _check_average(average, self._averages), axis
        super().__init__(name=name)

    def _check(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        if _is_one_logit(pred, targ):
            what = "class scores with a class axis of at least 2, one more axis than the targets"
            hint = f"The targets have shape {tuple(targ.shape)}. For one logit per item, use RocAucBinary."
            if pred.ndim == 2 and pred.shape[1] > 1:
                hint = f"The targets have shape {tuple(targ.shape)}. For multi-label outputs, use RocAucMulti."
            raise DataError(expected(what, "pred.shape", tuple(pred.shape), hint=hint))
        _check_class_scores(pred, targ, self.axis, self.name)

    def _value(self, pred: torch.Tensor, targ: torch.Tensor) -> float:
        n_classes = pred.shape[self.axis]
        log_probs = F.log_softmax(pred.to(_device_float(pred.device)), dim=self.axis)  # same order as the softmax
        scores = log_probs.movedim(self.axis, -1).reshape(-1, n_classes)  # (N, C)
        targ = targ.reshape(-1).long()
        keep = (targ >= 0) & (targ < n_classes)
        scores, targ = scores[keep], targ[keep]
        positive = F.one_hot(targ, n_classes).bool()  # (N, C)
        auc = _roc_auc(scores, positive)  # (C,)
        return _mean_of_defined(auc, positive.sum(0) if self.average == "weighted" else None)


class _BinaryScoreMetric(_ScoreMetric):
    """A ranking metric of a binary classifier: one logit per item, or two class scores."""

    def __init__(self, axis: int = -1, name: str | None = None) -> None:
        self.axis = axis
        super().__init__(name=name)

    def _check(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        if _is_one_logit(pred, targ):
            _check_not_multi_label(pred, targ, self.name)
        elif pred.ndim in (targ.ndim, targ.ndim + 1) and _class_axis_size(pred, self.axis) == 2:
            _check_class_scores(pred, targ, self.axis, self.name)
        else:
            what = "one logit per item (B,) or (B, 1), or two class scores (B, 2)"
            hint = f"The targets have shape {tuple(targ.shape)}. For more than two classes, use RocAuc."
            raise DataError(expected(what, "pred.shape", tuple(pred.shape), hint=hint))

    def _check_targets(self, targ: torch.Tensor) -> None:
        bad = _bad_binary_targets(targ.reshape(-1))
        n_bad = int(bad.sum())
        if n_bad:
            raise _binary_targets_error(self.name, n_bad, targ.reshape(-1)[bad][0].item())

    def _columns(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of class 1 and whether each item is of class 1, ``(N, 1)`` each; negative targets left out."""
        pred = pred.to(_device_float(pred.device))
        if _is_one_logit(pred, targ):
            scores = pred.reshape(-1)
        else:
            # softmax(pred)[1] = sigmoid(pred[1] - pred[0]): the difference has the same order and never saturates
            scores = (pred.select(self.axis, 1) - pred.select(self.axis, 0)).reshape(-1)
        targ = targ.reshape(-1)
        keep = (targ == 0) | (targ == 1)
        return scores[keep].unsqueeze(1), (targ[keep] == 1).unsqueeze(1)


class RocAucBinary(_BinaryScoreMetric):
    """ROC AUC of a binary classifier over the whole set.

    The model outputs one logit per item (``(B,)`` or ``(B, 1)``) or two class scores (``(B, 2)`` over ``axis``,
    class 1 is the positive one); targets are class ids 0 and 1. A negative target (an ignore index) is left out,
    and any other value (a 2, or a fraction from regression targets passed by mistake) raises a DataError in
    ``compute``. Multi-label outputs ``(B, L)`` against targets of the same shape raise a DataError (use
    :class:`RocAucMulti`). ``nan`` when the targets hold a single class.
    """

    _default_name = "roc_auc_score"

    def _value(self, pred: torch.Tensor, targ: torch.Tensor) -> float:
        return float(_roc_auc(*self._columns(pred, targ))[0])


class APScoreBinary(_BinaryScoreMetric):
    """Average precision (the area under the precision-recall curve, as a step sum) of a binary classifier over the
    whole set.

    Inputs as for :class:`RocAucBinary`; ``nan`` when no target is positive.
    """

    _default_name = "average_precision_score"

    def _value(self, pred: torch.Tensor, targ: torch.Tensor) -> float:
        return float(_average_precision(*self._columns(pred, targ))[0])


# ----------------------------------------------------------------------------------------------------------------
# Multi-label: one logit and one 0/1 target per label.


class _MultiLabelScoreMetric(_ScoreMetric):
    _averages = ("macro", "micro", "weighted", "samples")

    def __init__(self, average: str = "macro", sigmoid: bool = True, name: str | None = None) -> None:
        # `sigmoid` is fastai's argument: a ranking depends only on the order of the scores, which the sigmoid
        # keeps, so logits and probabilities give the same value; it is accepted so ported code runs unchanged.
        self.average, self.sigmoid = _check_average(average, self._averages), bool(sigmoid)
        super().__init__(name=name)

    def _check(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        _check_same_numel(pred, targ, self.name)

    def _per_column(self, scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _value(self, pred: torch.Tensor, targ: torch.Tensor) -> float:
        n_labels = pred.shape[-1] if pred.ndim > 1 else 1
        scores = pred.to(_device_float(pred.device)).reshape(-1, n_labels)  # (N, L)
        positive = targ.reshape(-1, n_labels).bool()  # (N, L)
        if self.average == "micro":  # every (item, label) pair in one ranking
            return float(self._per_column(scores.reshape(-1, 1), positive.reshape(-1, 1))[0])
        if self.average == "samples":  # the labels of each item ranked, averaged over items
            return _mean_of_defined(self._per_column(scores.T, positive.T))
        values = self._per_column(scores, positive)  # (L,)
        return _mean_of_defined(values, positive.sum(0) if self.average == "weighted" else None)


class RocAucMulti(_MultiLabelScoreMetric):
    """ROC AUC of a multi-label classifier over the whole set.

    The model outputs one logit per label ``(B, L)`` (probabilities give the same value), the targets are 0/1
    ``(B, L)``.

    Args:
        average: ``"macro"`` (the mean of the labels' AUCs), ``"weighted"`` (weighted by each label's number of
            positives), ``"micro"`` (one AUC of all (item, label) pairs) or ``"samples"`` (the AUC of each item's
            labels, averaged over items).
        sigmoid: fastai's argument, accepted and without effect: the sigmoid keeps the order of the scores.

    A label whose targets are all 0 or all 1 has no AUC and is left out of the average.
    """

    _default_name = "roc_auc_score"

    def _per_column(self, scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        return _roc_auc(scores, positive)


class APScoreMulti(_MultiLabelScoreMetric):
    """Average precision of a multi-label classifier over the whole set; inputs and ``average`` as for
    :class:`RocAucMulti`. A label with no positive target is left out of the average."""

    _default_name = "average_precision_score"

    def _per_column(self, scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
        return _average_precision(scores, positive)
