"""Segmentation metrics over the whole set: foreground accuracy, Dice and Jaccard of binary masks, and the Dice
coefficient averaged over the classes of a multi-class mask.

Predictions are class scores ``(B, C, H, W)``, targets class ids ``(B, H, W)``. Pixel counts accumulate on the
device; targets that are not class ids, outside ``[0, C)`` (an ignore index such as -100 or 255), are left out.
"""

from __future__ import annotations

import math

import torch

from ember.core.errors import DataError, expected
from ember.metrics.base import Metric, _check_class_scores, _ElementMean

__all__ = ["foreground_acc", "Dice", "DiceMulti", "JaccardCoeff"]


def _seg_labels(pred: torch.Tensor, targ: torch.Tensor, axis: int, metric: str) -> tuple[torch.Tensor, int]:
    """Predicted class ids, flattened, and the number of classes: the argmax over `axis`, or for a single output
    channel the positive class where the logit is above 0."""
    _check_class_scores(pred, targ, axis, metric)
    if pred.ndim == targ.ndim + 1 and pred.shape[axis] == 1:
        labels, n = (pred.squeeze(axis) > 0).long(), 2
    else:
        labels, n = pred.argmax(dim=axis), pred.shape[axis]
    return labels.reshape(-1), n


def foreground_acc(inp: torch.Tensor, targ: torch.Tensor, bkg_idx: int = 0, axis: int = 1) -> torch.Tensor:
    """Pixel accuracy leaving out the background: the fraction of pixels whose target is not `bkg_idx` that the
    highest-scoring class (over `axis`) gets right.

    ``inp`` are scores ``(B, C, H, W)`` (or one logit channel ``(B, 1, H, W)``, class 1 above 0), ``targ`` class
    ids ``(B, H, W)``; pixels whose target is outside ``[0, C)`` (an ignore index) are left out too. ``nan`` for a
    batch without foreground. As ``metrics=[foreground_acc]`` it is computed over the whole set (the foreground
    pixels of every batch pooled), not as a mean of batch values.
    """
    correct, total = _foreground_counts(inp, targ, bkg_idx, axis, "foreground_acc")
    return correct.float() / total.float()


def _foreground_counts(
    inp: torch.Tensor, targ: torch.Tensor, bkg_idx: int, axis: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct foreground pixels, foreground pixels) of a batch, as device tensors."""
    labels, n = _seg_labels(inp, targ, axis, metric)
    targ = targ.reshape(-1)
    keep = (targ != bkg_idx) & (targ >= 0) & (targ < n)
    return ((labels == targ) & keep).sum(), keep.sum()


class _ForegroundAcc(_ElementMean):
    """The set-level :func:`foreground_acc`: correct foreground pixels over all foreground pixels of the set."""

    _default_name = "foreground_acc"
    lower_is_better = False

    def __init__(self, bkg_idx: int = 0, axis: int = 1, name: str | None = None) -> None:
        self.bkg_idx, self.axis = bkg_idx, axis
        super().__init__(name=name)

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _foreground_counts(pred, targ, self.bkg_idx, self.axis, self.name)


foreground_acc.set_metric = _ForegroundAcc  # type: ignore[attr-defined]
foreground_acc.lower_is_better = False  # type: ignore[attr-defined]


class Dice(Metric):
    """Dice coefficient of a binary segmentation over the whole set: ``2 |P ∩ T| / (|P| + |T|)``.

    ``P`` are the pixels predicted positive and ``T`` those that are: a positive pixel is one of any class but 0
    (with two classes, class 1). Predictions are scores ``(B, C, H, W)`` (the argmax over `axis` is the class) or a
    single logit channel ``(B, 1, H, W)`` (positive above 0); targets are class ids ``(B, H, W)``, and pixels whose
    target is outside ``[0, C)`` (an ignore index such as -100 or 255) are left out. The counts of every batch are
    pooled, so the value is that of the whole set; ``nan`` when nothing is positive anywhere.

    Args:
        axis: the class axis of the predictions.
    """

    lower_is_better = False

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        self.axis = axis
        super().__init__(name=name)

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None  # (2,): |P ∩ T|, |P| + |T|

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        labels, n = _seg_labels(pred.detach(), targ, self.axis, self.name)
        targ = targ.reshape(-1)
        valid = (targ >= 0) & (targ < n)
        p, t = (labels != 0) & valid, (targ > 0) & valid
        batch = torch.stack([(p & t).sum(), p.sum() + t.sum()])
        self.counts = batch if self.counts is None else self.counts + batch

    def _score(self, inter: float, total: float) -> float:
        return 2 * inter / total

    def compute(self) -> float:
        if self.counts is None:
            return math.nan
        inter, total = (float(v) for v in self.counts.cpu())
        return self._score(inter, total) if total > 0 else math.nan


class JaccardCoeff(Dice):
    """Jaccard index (intersection over union) of a binary segmentation over the whole set: ``|P ∩ T| / |P ∪ T|``.

    Positives, predictions and targets as for :class:`Dice`; ``nan`` when nothing is positive anywhere.
    """

    def _score(self, inter: float, total: float) -> float:
        return inter / (total - inter)


class DiceMulti(Metric):
    """Dice coefficient of a multi-class segmentation over the whole set, averaged over the classes.

    For each class ``c``, ``2 |P_c ∩ T_c| / (|P_c| + |T_c|)`` from the pixel counts of every batch pooled; the mean
    is over the classes that appear in the predictions or the targets (a class never seen is left out, not
    counted as 0 or 1). Predictions are scores ``(B, C, H, W)``, targets class ids ``(B, H, W)``.

    Args:
        axis: the class axis of the predictions.
    """

    lower_is_better = False

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        self.axis = axis
        super().__init__(name=name)

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None  # (2, C): |P_c ∩ T_c|, |P_c| + |T_c|

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        labels, n = _seg_labels(pred.detach(), targ, self.axis, self.name)
        targ = targ.reshape(-1).long()
        if self.counts is None:
            self.counts = torch.zeros(2, n, dtype=torch.long, device=labels.device)
        elif self.counts.shape[1] != n:
            raise DataError(expected(f"{self.counts.shape[1]} classes, as in earlier batches", "classes", n))
        # index_add_ into fixed-size counts (no bincount, whose output size would need a sync); targets out of
        # range get weight 0 rather than being masked out.
        valid = ((targ >= 0) & (targ < n)).long()
        t = torch.where(valid.bool(), targ, torch.zeros_like(targ))
        self.counts[0].index_add_(0, t, valid * (labels == t).long())
        self.counts[1].index_add_(0, t, valid)
        self.counts[1].index_add_(0, labels, valid)

    def compute(self) -> float:
        if self.counts is None:
            return math.nan
        inter, total = self.counts.cpu().double()
        seen = total > 0
        if not bool(seen.any()):
            return math.nan
        return float((2 * inter[seen] / total[seen]).mean())
