"""Multi-label classification metrics over the whole set: precision, recall and F-scores per label, and the Hamming
loss.

The model outputs one logit per label ``(B, L)``; a label is predicted when ``sigmoid(logit) > thresh`` (or, with
``sigmoid=False``, when the output itself is, for a model that outputs probabilities). Targets are 0/1 ``(B, L)``.
Counts accumulate on the device batch by batch; no predictions are kept.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.metrics.base import (
    Metric,
    _check_class_scores,
    _check_same_numel,
    _device_float,
    _ElementMean,
    _FiniteGuard,
    _is_one_logit,
)
from ember.metrics.classification import _check_beta, _fbeta, _precision, _recall

__all__ = ["PrecisionMulti", "RecallMulti", "FBetaMulti", "F1ScoreMulti", "HammingLoss"]


def _predicted_labels(
    pred: torch.Tensor, targ: torch.Tensor, thresh: float, sigmoid: bool, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and true labels as booleans ``(N, L)``."""
    _check_same_numel(pred, targ, metric)
    n_labels = pred.shape[-1] if pred.ndim > 1 else 1
    probs = pred.float().sigmoid() if sigmoid else pred
    return (probs > thresh).reshape(-1, n_labels), targ.reshape(-1, n_labels).bool()


_ML_AVERAGES = ("macro", "micro", "weighted", "samples")


class _MultiLabelMetric(_FiniteGuard, Metric):
    """A score from true positive, false positive and false negative counts per label (and per item, for
    ``average="samples"``), accumulated on the device."""

    lower_is_better = False

    def __init__(
        self, thresh: float = 0.5, sigmoid: bool = True, average: str = "macro", name: str | None = None
    ) -> None:
        if average not in _ML_AVERAGES:
            raise ConfigError(expected("an averaging mode", "average", average, _ML_AVERAGES))
        self.thresh, self.sigmoid, self.average = thresh, sigmoid, average
        super().__init__(name=name)

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None  # (3, L): true positives, false positives, false negatives
        self.sample_sum: torch.Tensor | float = 0.0  # Σ of the per-item scores (average="samples")
        self.sample_count: torch.Tensor | int = 0  # items with a label predicted or true
        self._nonfinite = None

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        """Score from true positive, false positive and false negative counts (element-wise)."""
        raise NotImplementedError

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        self._note_finite(pred.detach())
        p, t = _predicted_labels(pred.detach(), targs[0].detach(), self.thresh, self.sigmoid, self.name)
        tp, fp, fn = p & t, p & ~t, ~p & t  # (N, L) each
        batch = torch.stack([tp.sum(0), fp.sum(0), fn.sum(0)])  # (3, L)
        if self.counts is None:
            self.counts = batch
        elif self.counts.shape != batch.shape:
            raise DataError(expected(f"{self.counts.shape[1]} labels, as in earlier batches", "labels", p.shape[1]))
        else:
            self.counts = self.counts + batch
        if self.average == "samples":
            per_item = torch.stack([tp.sum(1), fp.sum(1), fn.sum(1)]).to(_device_float(p.device))  # (3, N)
            seen = per_item.sum(0) > 0  # (N,): items with no label true nor predicted are left out
            self.sample_sum = self.sample_sum + (self._score(*per_item) * seen).sum()
            self.sample_count = self.sample_count + seen.sum()

    def compute(self) -> float:
        if self.counts is None or self._saw_nonfinite():
            return math.nan
        if self.average == "samples":
            count = float(self.sample_count)
            return float(self.sample_sum) / count if count > 0 else math.nan
        tp, fp, fn = self.counts.to(_device_float(self.counts.device)).cpu()  # (L,) each
        if self.average == "micro":
            return float(self._score(tp.sum(), fp.sum(), fn.sum()))
        scores = self._score(tp, fp, fn)  # (L,)
        if self.average == "weighted":
            support = tp + fn
            return float((scores * support).sum() / support.sum().clamp_min(1))
        # Macro: labels never true nor predicted are left out of the mean.
        present = (tp + fp + fn) > 0
        n_present = int(present.sum())
        return float((scores * present).sum()) / n_present if n_present else math.nan


class PrecisionMulti(_MultiLabelMetric):
    """Precision of a multi-label classifier over the whole set, ``tp / (tp + fp)``.

    Args:
        thresh: a label is predicted when its probability is above this.
        sigmoid: apply a sigmoid to the outputs first (they are logits); ``False`` when they are probabilities.
        average: ``"macro"`` (the mean over labels), ``"micro"`` (from the counts of all labels pooled),
            ``"weighted"`` (the mean over labels weighted by their number of positive targets) or ``"samples"``
            (the score of each item's labels, averaged over items).

    Labels never true nor predicted are left out of the macro mean, and items with no label true nor predicted
    out of the samples mean (scikit-learn counts both as 0). A score with a zero denominator counts as 0.

    >>> learn = vision_learner(dls, "resnet18", metrics=[PrecisionMulti(thresh=0.3)])  # doctest: +SKIP
    """

    _default_name = "precision_score"

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _precision(tp, fp, fn)


class RecallMulti(_MultiLabelMetric):
    """Recall of a multi-label classifier over the whole set, ``tp / (tp + fn)``; arguments as for
    :class:`PrecisionMulti`."""

    _default_name = "recall_score"

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _recall(tp, fp, fn)


class FBetaMulti(_MultiLabelMetric):
    """F-beta score of a multi-label classifier over the whole set, ``(1 + β²) tp / ((1 + β²) tp + β² fn + fp)``;
    other arguments as for :class:`PrecisionMulti`."""

    _default_name = "fbeta_score"

    def __init__(self, beta: float, thresh: float = 0.5, sigmoid: bool = True, **kwargs: Any) -> None:
        self.beta = _check_beta(beta)
        super().__init__(thresh=thresh, sigmoid=sigmoid, **kwargs)

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _fbeta(tp, fp, fn, self.beta)


class F1ScoreMulti(FBetaMulti):
    """F1 score of a multi-label classifier over the whole set (:class:`FBetaMulti` with ``beta=1``); arguments as
    for :class:`PrecisionMulti`."""

    _default_name = "f1_score"

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, **kwargs: Any) -> None:
        super().__init__(1.0, thresh=thresh, sigmoid=sigmoid, **kwargs)


class HammingLoss(_FiniteGuard, _ElementMean):
    """Hamming loss over the whole set: the fraction of (item, label) pairs predicted wrong. Lower is better.

    For multi-label outputs (logits of the same shape as the 0/1 targets) a label is predicted when
    ``sigmoid(logit) > thresh`` (the output itself with ``sigmoid=False``); it is ``1 - accuracy_multi``. Class
    scores with one more axis than class-id targets are single-label: the argmax over ``axis`` is the prediction
    (it is then the error rate), and targets outside ``[0, C)`` are left out.

    Args:
        thresh: a label is predicted when its probability is above this.
        sigmoid: apply a sigmoid to multi-label outputs first; ``False`` when they are probabilities.
        axis: the class axis of single-label class scores.
    """

    _default_name = "hamming_loss"
    lower_is_better = True

    def __init__(self, thresh: float = 0.5, sigmoid: bool = True, axis: int = -1, name: str | None = None) -> None:
        self.thresh, self.sigmoid, self.axis = thresh, sigmoid, axis
        super().__init__(name=name)

    def reset(self) -> None:
        super().reset()
        self._nonfinite = None

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        self._note_finite(pred.detach())
        super().update(pred, *targs)

    def compute(self) -> float:
        return math.nan if self._saw_nonfinite() else super().compute()

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        if pred.ndim == targ.ndim + 1 and not _is_one_logit(pred, targ):  # single-label class scores
            _check_class_scores(pred, targ, self.axis, self.name)
            n_classes = pred.shape[self.axis]
            labels = pred.argmax(dim=self.axis)
            labels, targ = labels.reshape(-1), targ.reshape(-1)
            valid = (targ >= 0) & (targ < n_classes)
            return ((labels != targ) & valid).sum(), valid.sum()
        p, t = _predicted_labels(pred, targ, self.thresh, self.sigmoid, self.name)
        return (p != t).sum(), p.numel()
