"""Classification metrics: batch accuracies, set-level precision, recall and F-scores from a confusion matrix, the
Brier score of binary probabilities, and the perplexity of language models.

Predictions are raw model outputs (logits); targets are class ids.
"""

from __future__ import annotations

import math
from typing import Any

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
    _ElementMean,
    _FiniteGuard,
    _is_one_logit,
)

__all__ = [
    "accuracy",
    "error_rate",
    "top_k_accuracy",
    "accuracy_multi",
    "Precision",
    "Recall",
    "FBeta",
    "F1Score",
    "BrierScore",
    "Perplexity",
]

# ----------------------------------------------------------------------------------------------------------------
# Batch functions: each is a mean over the items of the batch, so AvgMetric turns it into the exact set value.


def accuracy(inp: torch.Tensor, targ: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Fraction of items whose highest-scoring class (over ``axis``) is the target.

    Works for ``(B, C)`` scores with ``(B,)`` targets and for ``(B, T, C)`` with ``(B, T)`` (every position counts).
    """
    _check_class_scores(inp, targ, axis, "accuracy")
    pred = inp.argmax(dim=axis)  # (B, ...) labels
    return (pred.reshape(-1) == targ.reshape(-1)).float().mean()


def error_rate(inp: torch.Tensor, targ: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """``1 - accuracy``."""
    return 1 - accuracy(inp, targ, axis=axis)


def top_k_accuracy(inp: torch.Tensor, targ: torch.Tensor, k: int = 5, axis: int = -1) -> torch.Tensor:
    """Fraction of items whose target is among the ``k`` highest-scoring classes."""
    _check_class_scores(inp, targ, axis, "top_k_accuracy")
    top = inp.topk(k, dim=axis).indices.movedim(axis, -1).reshape(-1, k)  # (N, k)
    return (top == targ.reshape(-1, 1)).any(dim=1).float().mean()


def accuracy_multi(inp: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True) -> torch.Tensor:
    """Multi-label accuracy: fraction of (item, label) pairs where ``score > thresh`` matches the 0/1 target.

    Args:
        sigmoid: apply a sigmoid first (``inp`` are logits); set ``False`` when ``inp`` are already probabilities.
    """
    _check_same_numel(inp, targ, "accuracy_multi")
    probs = inp.sigmoid() if sigmoid else inp
    return ((probs > thresh).reshape(-1) == targ.reshape(-1).bool()).float().mean()


error_rate.lower_is_better = True  # type: ignore[attr-defined]
for _f in (accuracy, top_k_accuracy, accuracy_multi):
    _f.lower_is_better = False  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------------
# Set-level metrics from a confusion matrix accumulated on the device.


class _ConfusionMatrix(_FiniteGuard, Metric):
    """Accumulates a ``(C, C)`` confusion matrix (rows: targets, columns: predictions) on the device.

    Predictions are raw outputs: class scores over ``axis`` are turned into labels with an argmax (without that
    axis their shape must be the targets'); a single output column (``(B,)`` or ``(B, 1)``) is binary, positive
    when ``sigmoid(pred) > thresh``. Targets outside ``[0, C)`` (e.g. an ignore index of -100) are left out.
    Multi-label outputs ``(B, L)`` against 0/1 targets of the same shape raise a DataError (use the ``*Multi``
    metrics).
    """

    lower_is_better = False

    def __init__(self, thresh: float = 0.5, axis: int = -1, name: str | None = None) -> None:
        self.thresh, self.axis = thresh, axis
        super().__init__(name=name)

    def reset(self) -> None:
        self.cm: torch.Tensor | None = None
        self._nonfinite = None

    def _labels(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, int]:
        if _is_one_logit(pred, targ):
            _check_not_multi_label(pred, targ, self.name)
            labels = (pred.float().sigmoid() > self.thresh).long()  # binary from one logit per item
            n_classes = 2
        else:
            _check_class_scores(pred, targ, self.axis, self.name)
            n_classes = pred.shape[self.axis]
            labels = pred.argmax(dim=self.axis)
        return labels.reshape(-1), n_classes

    def _check_classes(self, n: int) -> None:
        """Raise if the metric's arguments do not suit predictions of `n` classes."""

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        self._note_finite(pred.detach())
        labels, n = self._labels(pred.detach(), targ)
        self._check_classes(n)
        targ = targ.reshape(-1).long()
        # index_add_ into a fixed-size matrix instead of bincount: on CUDA bincount reads the max value back to
        # size its output, a sync per batch. Out-of-range targets get weight 0 instead of a (syncing) mask.
        valid = (targ >= 0) & (targ < n)
        idx = torch.where(valid, targ * n + labels, torch.zeros_like(targ))
        if self.cm is None:
            self.cm = torch.zeros(n * n, dtype=torch.long, device=pred.device)
        elif self.cm.numel() != n * n:
            raise DataError(expected(f"{math.isqrt(self.cm.numel())} classes, as in earlier batches", "classes", n))
        self.cm.index_add_(0, idx, valid.long())

    @property
    def confusion_matrix(self) -> torch.Tensor | None:
        """The accumulated ``(C, C)`` counts, rows are targets and columns predictions (``None`` before data)."""
        if self.cm is None:
            return None
        n = math.isqrt(self.cm.numel())
        return self.cm.view(n, n)

    def _float_counts(self) -> torch.Tensor | None:
        """The confusion matrix as floats (float64 where the device has it), ``None`` before data or after a NaN or
        infinite prediction (the metric is then nan)."""
        cm = self.confusion_matrix
        if cm is None or self._saw_nonfinite():
            return None
        return cm.to(_device_float(cm.device))


_AVERAGES = ("binary", "micro", "macro", "weighted")


class _ConfusionMetric(_ConfusionMatrix):
    """A per-class score from the confusion matrix, averaged over the classes as ``average`` says."""

    def __init__(
        self,
        average: str = "binary",
        pos_label: int = 1,
        thresh: float = 0.5,
        axis: int = -1,
        name: str | None = None,
    ) -> None:
        if average not in _AVERAGES:
            raise ConfigError(expected("an averaging mode", "average", average, _AVERAGES))
        self.average, self.pos_label = average, pos_label
        super().__init__(thresh=thresh, axis=axis, name=name)

    def _check_classes(self, n: int) -> None:
        if self.average == "binary" and n > 2:
            what, hint = (
                '"micro", "macro" or "weighted" for more than two classes',
                f"The predictions have {n} classes.",
            )
            raise ConfigError(expected(what, "average", self.average, hint=hint))
        if self.average == "binary" and not 0 <= self.pos_label < n:
            raise ConfigError(expected(f"a class index below {n}", "pos_label", self.pos_label))

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        """Per-class (or pooled) score from true positive, false positive and false negative counts."""
        raise NotImplementedError

    def compute(self) -> float:
        cm = self._float_counts()
        if cm is None:
            return math.nan
        tp = cm.diagonal()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp  # (C,) each
        if self.average == "binary":
            k = self.pos_label
            return float(self._score(tp[k], fp[k], fn[k]))
        if self.average == "micro":
            return float(self._score(tp.sum(), fp.sum(), fn.sum()))
        scores = self._score(tp, fp, fn)  # (C,)
        if self.average == "weighted":
            support = cm.sum(1)
            return float((scores * support).sum() / support.sum().clamp_min(1))
        # Macro: classes never seen in targets nor predictions are left out of the mean.
        present = (tp + fp + fn) > 0
        return float((scores * present).sum() / present.sum().clamp_min(1))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # A score with a zero denominator counts as 0.
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


# The scores from true positive, false positive and false negative counts (element-wise), shared by the single-label
# metrics here and the multi-label ones of ember.metrics.multilabel.


def _precision(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    return _safe_div(tp, tp + fp)


def _recall(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    return _safe_div(tp, tp + fn)


def _fbeta(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, beta: float) -> torch.Tensor:
    b2 = beta**2
    return _safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)


def _check_beta(beta: float) -> float:
    if not beta > 0:
        raise ConfigError(expected("a positive number", "beta", beta))
    return beta


class Precision(_ConfusionMetric):
    """Precision of the whole set, ``tp / (tp + fp)``, from an accumulated confusion matrix.

    Args:
        average: ``"binary"`` (class ``pos_label`` only), ``"micro"`` (pooled counts), ``"macro"`` (mean over
            classes), ``"weighted"`` (mean weighted by class support).
        pos_label: the positive class for ``average="binary"``.
        thresh: probability threshold for a single-column binary output.
        axis: the class axis of the predictions.

    Pass the class or an instance: ``metrics=[Precision]`` or ``metrics=[Precision(average="macro")]``.
    """

    _default_name = "precision_score"

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _precision(tp, fp, fn)


class Recall(_ConfusionMetric):
    """Recall of the whole set, ``tp / (tp + fn)``; arguments as for :class:`Precision`."""

    _default_name = "recall_score"

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _recall(tp, fp, fn)


class FBeta(_ConfusionMetric):
    """F-beta score of the whole set, ``(1 + β²) tp / ((1 + β²) tp + β² fn + fp)``.

    It is computed once from the set's confusion counts: a mean of per-batch scores would be a different (and
    batch-size dependent) number. Other arguments as for :class:`Precision`.
    """

    _default_name = "fbeta_score"

    def __init__(self, beta: float, average: str = "binary", **kwargs: Any) -> None:
        self.beta = _check_beta(beta)
        super().__init__(average=average, **kwargs)

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _fbeta(tp, fp, fn, self.beta)


class F1Score(FBeta):
    """F1 score of the whole set (:class:`FBeta` with ``beta=1``); arguments as for :class:`Precision`."""

    _default_name = "f1_score"

    def __init__(self, average: str = "binary", **kwargs: Any) -> None:
        super().__init__(1.0, average=average, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Set-level means of per-item values.


class BrierScore(_ElementMean):
    """Brier score of a binary classifier over the whole set: the mean of ``(p - y)²``, where ``p`` is the predicted
    probability of the positive class and ``y`` is 1 for a positive item and 0 otherwise. Lower is better.

    The model outputs one logit per item (``(B,)`` or ``(B, 1)``; ``p`` is its sigmoid) or two class scores
    (``(B, 2)`` over ``axis``; ``p`` is the softmax of class ``pos_label``). Targets are class ids 0 and 1; a
    negative target (an ignore index) is left out, and any other value raises a DataError in ``compute``. Multi-label
    outputs ``(B, L)`` against 0/1 targets of the same shape raise a DataError too, as in every single-label metric.
    ``nan`` when nothing was seen.

    fastai's ``BrierScore`` hands scikit-learn the argmax labels rather than the probabilities (so it scores 0/1
    predictions); this is the Brier score of the probabilities, as ``sklearn.metrics.brier_score_loss`` defines it.

    Args:
        pos_label: the positive class (0 or 1).
        axis: the class axis of two-class scores.
    """

    _default_name = "brier_score_loss"
    lower_is_better = True

    def __init__(self, pos_label: int = 1, axis: int = -1, name: str | None = None) -> None:
        if pos_label not in (0, 1):
            raise ConfigError(expected("the positive class of a binary problem", "pos_label", pos_label, (0, 1)))
        self.pos_label, self.axis = pos_label, axis
        super().__init__(name=name)

    def reset(self) -> None:
        super().reset()
        self.n_bad: torch.Tensor | int = 0  # targets neither 0, 1 nor negative, counted on the device
        self.bad_example: torch.Tensor | None = None  # the largest of them

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _device_float(pred.device)
        if _is_one_logit(pred, targ):
            _check_not_multi_label(pred, targ, self.name)
            prob = pred.to(dtype).sigmoid()  # probability of class 1
            prob = prob if self.pos_label == 1 else 1 - prob
        elif pred.ndim in (targ.ndim, targ.ndim + 1) and _class_axis_size(pred, self.axis) == 2:
            _check_class_scores(pred, targ, self.axis, self.name)
            prob = pred.to(dtype).softmax(dim=self.axis).select(self.axis, self.pos_label)
        else:
            hint = "The Brier score here is for binary problems; for several classes use a loss such as cross-entropy."
            what = "one logit per item (B,) or (B, 1), or two class scores (B, 2)"
            raise DataError(expected(what, "pred.shape", tuple(pred.shape), hint=hint))
        prob, targ = prob.reshape(-1), targ.reshape(-1)  # (N,) each
        bad = _bad_binary_targets(targ)
        self.n_bad = self.n_bad + bad.sum()
        if targ.numel():
            worst = torch.where(bad, targ.to(dtype), -math.inf).max()
            self.bad_example = worst if self.bad_example is None else torch.maximum(self.bad_example, worst)
        valid = (targ == 0) | (targ == 1)
        diff = torch.where(valid, prob - (targ == self.pos_label).to(dtype), torch.zeros_like(prob))  # (N,)
        return (diff * diff).sum(), valid.sum()

    def compute(self) -> float:
        n_bad = int(self.n_bad)
        if n_bad:
            example = float(self.bad_example) if self.bad_example is not None else math.nan
            raise _binary_targets_error(self.name, n_bad, int(example) if example.is_integer() else example)
        return super().compute()


class Perplexity(_ElementMean):
    """``exp`` of the set's mean cross-entropy per token, for language models.

    ``pred`` are logits ``(B, T, V)`` (or ``(N, V)``), ``targ`` token ids ``(B, T)`` (or ``(N,)``); positions equal
    to ``ignore_index`` are left out.
    """

    lower_is_better = True

    def __init__(self, ignore_index: int = -100, name: str | None = None) -> None:
        self.ignore_index = ignore_index
        super().__init__(name=name)

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = pred.reshape(-1, pred.shape[-1]).float()  # (B*T, V)
        _check_same_numel(logits[:, 0], targ, self.name)
        targ = targ.reshape(-1)
        ce = F.cross_entropy(logits, targ, ignore_index=self.ignore_index, reduction="sum")
        return ce, (targ != self.ignore_index).sum()

    def _finish(self, mean: float) -> float:
        return math.exp(mean)
