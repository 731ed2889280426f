"""Metrics: plain batch functions and accumulators that add up a whole validation set on the device.

The training loop calls ``reset()``, then ``update(pred, *targs)`` per batch with raw outputs still on the device,
then ``compute()`` once, so no metric forces a device-to-host copy per batch. See :mod:`ember.metrics.base` for
the protocol and what ``metrics=`` accepts; the metrics themselves live in modules named for their kind:
``classification``, ``agreement`` (Matthews correlation, Cohen's kappa, balanced accuracy), ``ranking`` (ROC AUC,
average precision), ``multilabel``, ``regression``, ``correlation`` and ``segmentation``.
"""

from __future__ import annotations

from ember.metrics.agreement import BalancedAccuracy, CohenKappa, MatthewsCorrCoef
from ember.metrics.base import AccumMetric, AvgMetric, Metric, as_metric, lower_is_better
from ember.metrics.classification import (
    BrierScore,
    F1Score,
    FBeta,
    Perplexity,
    Precision,
    Recall,
    accuracy,
    accuracy_multi,
    error_rate,
    top_k_accuracy,
)
from ember.metrics.correlation import PearsonCorrCoef, SpearmanCorrCoef
from ember.metrics.multilabel import F1ScoreMulti, FBetaMulti, HammingLoss, PrecisionMulti, RecallMulti
from ember.metrics.ranking import APScoreBinary, APScoreMulti, RocAuc, RocAucBinary, RocAucMulti
from ember.metrics.regression import RMSE, ExplainedVariance, ExpRMSPE, R2Score, exp_rmspe, mae, mse, msle, rmse
from ember.metrics.segmentation import Dice, DiceMulti, JaccardCoeff, foreground_acc

__all__ = [
    "Metric",
    "AvgMetric",
    "AccumMetric",
    "as_metric",
    "lower_is_better",
    "accuracy",
    "error_rate",
    "top_k_accuracy",
    "accuracy_multi",
    "mse",
    "mae",
    "msle",
    "RMSE",
    "rmse",
    "ExpRMSPE",
    "exp_rmspe",
    "R2Score",
    "ExplainedVariance",
    "Precision",
    "Recall",
    "F1Score",
    "FBeta",
    "BrierScore",
    "MatthewsCorrCoef",
    "CohenKappa",
    "BalancedAccuracy",
    "RocAuc",
    "RocAucBinary",
    "RocAucMulti",
    "APScoreBinary",
    "APScoreMulti",
    "PrecisionMulti",
    "RecallMulti",
    "FBetaMulti",
    "F1ScoreMulti",
    "HammingLoss",
    "PearsonCorrCoef",
    "SpearmanCorrCoef",
    "Perplexity",
    "foreground_acc",
    "Dice",
    "DiceMulti",
    "JaccardCoeff",
]
