"""Tests for the ranking, agreement, correlation, multi-label and probability metrics of ember.metrics.

The expected numbers are those scikit-learn 1.9 and scipy give for the same inputs (written here as literals), or
small hand-written references.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import ConfigError, DataError
from ember.metrics.agreement import BalancedAccuracy, CohenKappa, MatthewsCorrCoef
from ember.metrics.base import Metric, as_metric, lower_is_better
from ember.metrics.classification import BrierScore, F1Score, accuracy
from ember.metrics.correlation import PearsonCorrCoef, SpearmanCorrCoef
from ember.metrics.multilabel import F1ScoreMulti, FBetaMulti, HammingLoss, PrecisionMulti, RecallMulti
from ember.metrics.ranking import APScoreBinary, APScoreMulti, RocAuc, RocAucBinary, RocAucMulti
from ember.metrics.regression import ExplainedVariance


def run(metric: object, pred: torch.Tensor, targ: torch.Tensor, sizes: list[int] | None = None) -> float:
    """Drive a metric the way the training loop does, in batches of `sizes` (one batch by default)."""
    m = as_metric(metric)
    m.reset()
    sizes = sizes or [len(pred)]
    for p, t in zip(pred.split(sizes), targ.split(sizes), strict=True):
        m.update(p, t)
    return m.compute()


def one_hot_logits(labels: list[int], n_classes: int) -> torch.Tensor:
    """Logits whose argmax is `labels`."""
    return torch.nn.functional.one_hot(torch.tensor(labels), n_classes).float() * 4 - 2


# Three classes; equal rows and equal probabilities across rows make tied scores.
MC_LOGITS = torch.tensor(
    [
        [2.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.0, 1.0, 0.0],
        [1.0, 1.0, 0.0],
        [0.0, 0.0, 2.0],
        [1.0, 0.0, 1.0],
        [0.0, 2.0, 1.0],
        [1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 1.0, 2.0],
    ]
)
MC_TARG = torch.tensor([0, 1, 2, 0, 2, 2, 1, 1, 0, 2])

# Binary: one logit per item, with ties between positives and negatives.
BIN_SCORES = torch.tensor([0.5, -1.0, 0.5, 2.0, -1.0, 0.5, 0.0, 2.0, -0.5, 0.0])
BIN_TARG = torch.tensor([1, 0, 0, 1, 0, 1, 1, 0, 0, 1])

# Multi-label: 6 items, 4 labels; predicted labels (logit > 0) are
# [[1,0,1,0], [0,1,1,0], [1,0,0,1], [1,1,0,1], [0,1,1,0], [1,0,1,0]].
ML_LOGITS = torch.tensor(
    [
        [2.0, -1.0, 0.5, 0.0],
        [-2.0, 0.5, 1.0, -1.0],
        [0.5, -0.5, -3.0, 1.0],
        [1.5, 2.0, -1.0, 1.0],
        [-1.0, 0.5, 0.5, -2.0],
        [0.5, -1.0, 1.0, 0.0],
    ]
)
ML_TARG = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1], [0, 1, 1, 1], [0, 0, 1, 0], [1, 1, 0, 0]])

# Ordinal classes 0..3: targets and predicted labels.
ORD_TARG = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0, 2, 3, 1])
ORD_PRED = one_hot_logits([0, 2, 2, 3, 1, 2, 0, 0, 3, 3, 1], 4)


# --- ranking: ROC AUC and average precision ----------------------------------------------------------------------


def test_roc_auc_one_vs_rest_matches_sklearn_with_ties() -> None:
    assert run(RocAuc(), MC_LOGITS, MC_TARG) == pytest.approx(0.8313492063492064, abs=1e-12)
    assert run(RocAuc(average="weighted"), MC_LOGITS, MC_TARG) == pytest.approx(0.8357142857142857, abs=1e-12)
    # The same over uneven batches; and as a class, named as fastai names it.
    assert run(RocAuc, MC_LOGITS, MC_TARG, [3, 6, 1]) == pytest.approx(0.8313492063492064, abs=1e-12)
    assert as_metric(RocAuc).name == "roc_auc_score"


def test_roc_auc_sequences_and_ignored_targets() -> None:
    # (B, T, C) scores with (B, T) targets: every position counts; an ignore index is left out.
    pred = torch.cat([MC_LOGITS, torch.tensor([[9.0, 0.0, 0.0]])]).view(1, 11, 3)
    targ = torch.cat([MC_TARG, torch.tensor([-100])]).view(1, 11)
    assert run(RocAuc(), pred, targ) == pytest.approx(0.8313492063492064, abs=1e-12)
    # Class axis 1: (B, C, T).
    assert run(RocAuc(axis=1), pred.permute(0, 2, 1), targ) == pytest.approx(0.8313492063492064, abs=1e-12)


def test_binary_roc_auc_and_average_precision_with_ties() -> None:
    expect_auc, expect_ap = 0.7, 0.6257142857142857  # sklearn roc_auc_score / average_precision_score
    two_cols = torch.stack([torch.zeros(10), BIN_SCORES], dim=1)  # (B, 2): softmax[1] = sigmoid(score)
    for pred in (BIN_SCORES, BIN_SCORES[:, None], two_cols, 3 * two_cols - 1):
        assert run(RocAucBinary(), pred, BIN_TARG, [4, 4, 2]) == pytest.approx(expect_auc, abs=1e-12)
        assert run(APScoreBinary(), pred, BIN_TARG, [4, 4, 2]) == pytest.approx(expect_ap, abs=1e-12)
    # Probabilities order the items as the logits do.
    assert run(RocAucBinary(), BIN_SCORES.sigmoid(), BIN_TARG) == pytest.approx(expect_auc, abs=1e-12)


def test_binary_roc_auc_by_counting_pairs() -> None:
    # Hand reference: the fraction of (positive, negative) pairs ordered correctly, a tie counting one half.
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (40,), generator=g).float()  # many ties
    targ = torch.randint(0, 2, (40,), generator=g)
    pos, neg = scores[targ == 1], scores[targ == 0]
    pairs = (pos[:, None] > neg[None, :]).double() + 0.5 * (pos[:, None] == neg[None, :]).double()
    assert run(RocAucBinary(), scores, targ, [13, 27]) == pytest.approx(pairs.mean().item(), abs=1e-12)


def test_multilabel_roc_auc_and_average_precision_every_average() -> None:
    expect = {  # average: (roc_auc_score, average_precision_score) from sklearn
        "macro": (0.6944444444444445, 0.7722222222222221),
        "micro": (0.7307692307692308, 0.6956376956376955),
        "weighted": (0.6666666666666667, 0.7515151515151515),
        "samples": (0.6805555555555557, 0.7175925925925926),
    }
    for average, (auc, ap) in expect.items():
        assert run(RocAucMulti(average=average), ML_LOGITS, ML_TARG, [2, 4]) == pytest.approx(auc, abs=1e-12)
        assert run(APScoreMulti(average=average), ML_LOGITS, ML_TARG, [2, 4]) == pytest.approx(ap, abs=1e-12)
    assert as_metric(RocAucMulti).name == "roc_auc_score"
    assert as_metric(APScoreMulti).name == "average_precision_score"


def test_ranking_degenerate_cases_give_nan_or_leave_out() -> None:
    ones = torch.ones(5, dtype=torch.long)
    scores = torch.tensor([0.1, 0.4, -0.3, 2.0, 0.0])
    assert math.isnan(run(RocAucBinary(), scores, ones))  # one class only
    assert math.isnan(run(APScoreBinary(), scores, 1 - ones))  # no positive
    assert run(APScoreBinary(), scores, ones) == pytest.approx(1.0)  # every item positive: precision is 1
    assert math.isnan(run(RocAuc(), MC_LOGITS[:3], torch.zeros(3, dtype=torch.long)))
    # A class absent from the targets is left out of the one-vs-rest mean.
    targ = torch.tensor([0, 2, 2, 0, 2, 2, 0, 0, 0, 2])
    per_class = [run(RocAucBinary(), MC_LOGITS.double().log_softmax(1)[:, c], (targ == c).long()) for c in (0, 2)]
    assert run(RocAuc(), MC_LOGITS, targ) == pytest.approx(sum(per_class) / 2, abs=1e-12)
    # A label without positives is left out of the multi-label macro mean.
    targ_ml = ML_TARG.clone()
    targ_ml[:, 1] = 0
    others = [run(RocAucBinary(), ML_LOGITS[:, j], targ_ml[:, j]) for j in (0, 2, 3)]
    assert run(RocAucMulti(), ML_LOGITS, targ_ml) == pytest.approx(sum(others) / 3, abs=1e-12)
    # Nothing seen at all.
    for metric in (RocAuc(), RocAucBinary(), APScoreMulti(), SpearmanCorrCoef()):
        assert math.isnan(metric.compute())


# --- agreement: MCC, kappa, balanced accuracy --------------------------------------------------------------------


def test_matthews_corrcoef_matches_sklearn() -> None:
    assert run(MatthewsCorrCoef(), ORD_PRED, ORD_TARG, [5, 6]) == pytest.approx(0.5222222222222223, abs=1e-12)
    # Binary from one logit per item (positive above sigmoid 0.5).
    assert run(MatthewsCorrCoef, BIN_SCORES, BIN_TARG, [7, 3]) == pytest.approx(0.2, abs=1e-12)
    assert as_metric(MatthewsCorrCoef).name == "matthews_corrcoef"


def test_cohen_kappa_every_weighting_matches_sklearn() -> None:
    expect = {None: 0.5164835164835165, "linear": 0.6357615894039735, "quadratic": 0.7441860465116279}
    for weights, value in expect.items():
        assert run(CohenKappa(weights=weights), ORD_PRED, ORD_TARG, [4, 7]) == pytest.approx(value, abs=1e-12)
    assert as_metric(CohenKappa).name == "cohen_kappa_score"


def test_balanced_accuracy_matches_sklearn() -> None:
    assert run(BalancedAccuracy(), ORD_PRED, ORD_TARG, [6, 5]) == pytest.approx(2 / 3, abs=1e-12)
    assert run(BalancedAccuracy(adjusted=True), ORD_PRED, ORD_TARG) == pytest.approx(0.5555555555555555, abs=1e-12)
    # Every class counts the same: 9 of class 0 right and 1 of class 1 wrong is 0.5, not 0.9.
    pred, targ = one_hot_logits([0] * 10, 2), torch.tensor([0] * 9 + [1])
    assert run(BalancedAccuracy(), pred, targ) == pytest.approx(0.5)


def test_agreement_degenerate_cases() -> None:
    one_class = torch.zeros(4, dtype=torch.long)
    pred = one_hot_logits([0, 1, 0, 0], 2)
    assert math.isnan(run(MatthewsCorrCoef(), pred, one_class))  # undefined with one target class
    # Constant predictions against mixed targets: no correlation (as sklearn).
    assert run(MatthewsCorrCoef(), one_hot_logits([0, 0, 0, 0], 2), torch.tensor([0, 1, 0, 1])) == 0.0
    assert math.isnan(run(CohenKappa(), one_hot_logits([0, 0], 2), one_class[:2]))  # chance agreement is perfect
    assert run(BalancedAccuracy(), pred, one_class) == pytest.approx(0.75)
    assert math.isnan(run(BalancedAccuracy(adjusted=True), pred, one_class))
    # Ignored targets only: nothing counted.
    assert math.isnan(run(MatthewsCorrCoef(), pred, torch.full((4,), -100)))


# --- multi-label precision, recall, F-scores, Hamming loss -------------------------------------------------------


def test_multilabel_scores_every_average_match_sklearn() -> None:
    expect = {  # average: (precision, recall, f1, f2) from sklearn
        "macro": (0.7291666666666666, 0.8333333333333333, 0.7738095238095237, 0.8072916666666666),
        "micro": (0.6923076923076923, 0.8181818181818182, 0.75, 0.7894736842105263),
        "weighted": (0.7045454545454546, 0.8181818181818182, 0.7532467532467532, 0.7897727272727273),
        "samples": (0.6944444444444443, 0.861111111111111, 0.75, 0.8055555555555555),
    }
    for average, values in expect.items():
        metrics = (
            PrecisionMulti(average=average),
            RecallMulti(average=average),
            F1ScoreMulti(average=average),
            FBetaMulti(2.0, average=average),
        )
        for metric, value in zip(metrics, values, strict=True):
            assert run(metric, ML_LOGITS, ML_TARG, [1, 3, 2]) == pytest.approx(value, abs=1e-12), (metric, average)


def test_multilabel_threshold_sigmoid_and_defaults() -> None:
    assert run(F1ScoreMulti(thresh=0.7), ML_LOGITS, ML_TARG) == pytest.approx(0.475, abs=1e-12)  # sklearn
    # Probabilities with sigmoid=False give what logits give.
    assert run(F1ScoreMulti(sigmoid=False), ML_LOGITS.sigmoid(), ML_TARG) == pytest.approx(0.7738095238095237)
    m = F1ScoreMulti()
    assert (m.thresh, m.sigmoid, m.average, m.name) == (0.5, True, "macro", "f1_score")
    # Macro leaves out a label never true nor predicted (sklearn would count it as 0).
    pred = torch.cat([ML_LOGITS, torch.full((6, 1), -5.0)], dim=1)
    targ = torch.cat([ML_TARG, torch.zeros(6, 1, dtype=torch.long)], dim=1)
    assert run(F1ScoreMulti(), pred, targ) == pytest.approx(0.7738095238095237)


def test_hamming_loss_multilabel_and_single_label() -> None:
    assert run(HammingLoss(), ML_LOGITS, ML_TARG, [4, 2]) == pytest.approx(0.25)  # sklearn hamming_loss
    # Above 0.7 (logit above 0.85) the predictions get 10 of the 24 (item, label) pairs wrong.
    assert run(HammingLoss(thresh=0.7), ML_LOGITS, ML_TARG) == pytest.approx(10 / 24)
    # Class scores with class ids: the error rate (sklearn 0.36363636363636365); an ignore index is left out.
    pred = torch.cat([ORD_PRED, one_hot_logits([0], 4)])
    targ = torch.cat([ORD_TARG, torch.tensor([-100])])
    assert run(HammingLoss(), pred, targ, [6, 6]) == pytest.approx(0.36363636363636365)


# --- Brier score ----------------------------------------------------------------------------------------------------


def test_brier_score_matches_sklearn() -> None:
    expect = 0.2249738294239926  # sklearn brier_score_loss(y, sigmoid(scores))
    assert run(BrierScore(), BIN_SCORES, BIN_TARG, [3, 7]) == pytest.approx(expect, abs=1e-12)
    assert run(BrierScore(), BIN_SCORES[:, None], BIN_TARG) == pytest.approx(expect, abs=1e-12)
    two_cols = torch.stack([-BIN_SCORES / 2, BIN_SCORES / 2], dim=1)  # softmax[1] = sigmoid(score)
    assert run(BrierScore(), two_cols, BIN_TARG) == pytest.approx(expect, abs=1e-12)
    # Class 0 as the positive one, with the columns and the targets swapped, is the same problem.
    assert run(BrierScore(pos_label=0), two_cols.flip(1), 1 - BIN_TARG) == pytest.approx(expect, abs=1e-12)
    assert as_metric(BrierScore).name == "brier_score_loss"


# --- correlation and explained variance ----------------------------------------------------------------------------


REG_PRED = torch.tensor([1.0, 2.0, 2.0, 3.5, 5.0, 4.0, 7.0, 6.0])
REG_TARG = torch.tensor([1.5, 1.0, 2.5, 3.0, 5.0, 5.0, 6.0, 8.0])


def test_pearson_spearman_explained_variance_match_scipy_and_sklearn() -> None:
    assert run(PearsonCorrCoef(), REG_PRED[:, None], REG_TARG, [3, 5]) == pytest.approx(0.9035675562521541, abs=1e-12)
    # Spearman with tied values (average ranks).
    assert run(SpearmanCorrCoef(), REG_PRED, REG_TARG, [5, 3]) == pytest.approx(0.927710843373494, abs=1e-12)
    assert run(ExplainedVariance(), REG_PRED, REG_TARG, [2, 2, 4]) == pytest.approx(0.8155864197530864, abs=1e-12)
    assert [as_metric(m).name for m in (PearsonCorrCoef, SpearmanCorrCoef, ExplainedVariance)] == [
        "pearsonr",
        "spearmanr",
        "explained_variance_score",
    ]


def test_streamed_moments_stay_accurate_far_from_zero() -> None:
    # Far from zero, running sums of squares cancel: in float64 they get Pearson's r wrong by 2e-5 here.
    off = 1234567.891
    value = run(PearsonCorrCoef(), (REG_PRED.double() + off), REG_TARG.double() + off, [1, 2, 5])
    assert value == pytest.approx(0.9035675562521541, abs=1e-9)
    ev = run(ExplainedVariance(), REG_PRED.double() + off, REG_TARG.double() + off, [3, 1, 4])
    assert ev == pytest.approx(0.8155864197530864, abs=1e-9)


def test_correlation_degenerate_cases() -> None:
    const = torch.full((5,), 3.0)
    x = torch.arange(5.0)
    assert math.isnan(run(PearsonCorrCoef(), x, const))
    assert math.isnan(run(SpearmanCorrCoef(), const, x))
    assert math.isnan(run(PearsonCorrCoef(), x[:1], x[:1]))
    # Constant targets: explained variance is 1 for residuals that are constant too, else undefined.
    assert run(ExplainedVariance(), const + 2, const) == 1.0
    assert math.isnan(run(ExplainedVariance(), x, const))


# --- direction, errors, and inside a Learner ---------------------------------------------------------------------


def test_metrics_declare_which_way_they_improve() -> None:
    for cls in (BrierScore, HammingLoss):
        m = as_metric(cls)
        assert lower_is_better(m.name, m) is True
    higher = (RocAuc, RocAucBinary, RocAucMulti, APScoreBinary, APScoreMulti, MatthewsCorrCoef, CohenKappa)
    higher += (BalancedAccuracy, PrecisionMulti, RecallMulti, F1ScoreMulti, PearsonCorrCoef, SpearmanCorrCoef)
    for cls in (*higher, ExplainedVariance):
        m = as_metric(cls)
        assert isinstance(m, Metric) and lower_is_better(m.name, m) is False


def test_bad_arguments_and_inputs_raise_clear_errors() -> None:
    with pytest.raises(ConfigError, match="average"):
        RocAuc(average="micro")
    with pytest.raises(ConfigError, match="average"):
        PrecisionMulti(average="binary")
    with pytest.raises(ConfigError, match="weights"):
        CohenKappa(weights="cubic")
    with pytest.raises(ConfigError, match="pos_label"):
        BrierScore(pos_label=2)
    with pytest.raises(ConfigError, match="beta"):
        FBetaMulti(0.0)
    with pytest.raises(DataError, match="pred.shape.*RocAuc"):
        RocAucBinary().update(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="pred.shape.*RocAucBinary"):
        RocAuc().update(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="pred.shape"):
        BrierScore().update(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(DataError, match="pred.shape"):
        F1ScoreMulti().update(torch.zeros(4, 3), torch.zeros(4, 2))
    m = PrecisionMulti()
    m.update(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(DataError, match="labels"):
        m.update(torch.zeros(2, 4), torch.zeros(2, 4))


def test_non_finite_predictions_give_nan_not_a_plausible_score() -> None:
    # A diverged model: clamping a NaN correlation to [-1, 1] gave 1.0, and sorting put NaN first as the top score.
    x = torch.arange(8.0)
    assert math.isnan(run(PearsonCorrCoef(), torch.full((8,), math.nan), x))
    one_nan = 2 * x + 1
    one_nan[5] = math.nan
    assert math.isnan(run(PearsonCorrCoef(), one_nan, x, [4, 4]))
    assert math.isnan(run(PearsonCorrCoef(), torch.where(x == 3, math.inf, x), x))
    assert math.isnan(run(SpearmanCorrCoef(), one_nan, x))
    assert math.isnan(run(SpearmanCorrCoef(), x, one_nan))  # targets too
    bin_nan = BIN_SCORES.clone()
    bin_nan[3] = math.nan
    for metric in (RocAucBinary(), APScoreBinary()):
        assert math.isnan(run(metric, bin_nan, BIN_TARG, [5, 5]))
        assert math.isnan(run(metric, torch.full((10,), math.nan), BIN_TARG))
    mc_inf = MC_LOGITS.clone()
    mc_inf[2, 1] = math.inf
    assert math.isnan(run(RocAuc(), mc_inf, MC_TARG))
    ml_nan = ML_LOGITS.clone()
    ml_nan[0, 0] = math.nan
    assert math.isnan(run(RocAucMulti(), ml_nan, ML_TARG))
    assert math.isnan(run(APScoreMulti(), ml_nan, ML_TARG))
    # Finite values are unaffected.
    assert run(PearsonCorrCoef(), 2 * x + 1, x) == pytest.approx(1.0)


def test_class_scores_must_fit_the_targets_shape_not_just_their_count() -> None:
    # Segmentation scores (B, C, H, W) with C == W: read over the last axis they give as many labels as the masks.
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(2, 4, 5, 4, generator=g)
    targ = torch.randint(0, 4, (2, 5, 4), generator=g)
    for metric in (MatthewsCorrCoef(), CohenKappa(), BalancedAccuracy(), F1Score(average="macro"), RocAuc()):
        with pytest.raises(DataError, match=r"received `pred.shape=\(2, 4, 5, 4\)`.*pass axis=1"):
            metric.update(pred, targ)
    with pytest.raises(DataError, match="pass axis=1"):
        HammingLoss().update(pred, targ)
    with pytest.raises(DataError, match="pass axis=1"):
        accuracy(pred, targ)
    # With axis=1 each gives its value of the flattened pixels.
    flat_pred, flat_targ = pred.permute(0, 2, 3, 1).reshape(-1, 4), targ.reshape(-1)
    for make in (MatthewsCorrCoef, RocAuc, HammingLoss):
        assert run(make(axis=1), pred, targ) == pytest.approx(run(make(), flat_pred, flat_targ), abs=1e-12)
    assert accuracy(pred, targ, axis=1) == pytest.approx(accuracy(flat_pred, flat_targ))
    # When the counts differ the message names the model's output shape, not the shape of its argmax.
    with pytest.raises(DataError, match=r"\(2, 5, 6\).*received `pred.shape=\(2, 4, 5, 6\)`.*pass axis=1"):
        MatthewsCorrCoef().update(torch.randn(2, 4, 5, 6), torch.randint(0, 4, (2, 5, 6)))
    # Class-id targets with a class axis of 1, (B, 1) against (B, C), still fit.
    assert run(MatthewsCorrCoef(), ORD_PRED, ORD_TARG[:, None]) == pytest.approx(0.5222222222222223, abs=1e-12)
    assert float(accuracy(ORD_PRED, ORD_TARG[:, None])) == pytest.approx(float(accuracy(ORD_PRED, ORD_TARG)))


def test_multi_label_outputs_raise_in_single_label_metrics() -> None:
    # (B, L) logits against 0/1 targets of the same shape used to be pooled into B * L binary items silently.
    single_label = (MatthewsCorrCoef(), CohenKappa(), BalancedAccuracy(), F1Score(), RocAucBinary(), APScoreBinary())
    for metric in (*single_label, BrierScore()):
        with pytest.raises(DataError, match=r"`pred.shape=\(6, 4\)`.*multi-label: use F1ScoreMulti"):
            metric.update(ML_LOGITS, ML_TARG)
    with pytest.raises(DataError, match="RocAucMulti"):
        RocAuc().update(ML_LOGITS, ML_TARG)
    # One logit per item stays binary, as (B,), (B, 1) and per pixel (B, H, W).
    assert run(MatthewsCorrCoef(), BIN_SCORES[:, None], BIN_TARG) == pytest.approx(0.2, abs=1e-12)
    pixels, masks = BIN_SCORES.view(1, 2, 5), BIN_TARG.view(1, 2, 5)
    assert run(RocAucBinary(), pixels, masks) == pytest.approx(0.7, abs=1e-12)
    assert run(BrierScore(), pixels, masks) == pytest.approx(0.2249738294239926, abs=1e-12)


def test_binary_targets_must_be_0_or_1_negative_ones_are_ignored() -> None:
    # Negative targets (an ignore index) are left out: the same values as without them.
    scores = torch.cat([BIN_SCORES, torch.tensor([5.0, -5.0])])
    targ = torch.cat([BIN_TARG, torch.tensor([-100, -1])])
    assert run(RocAucBinary(), scores, targ, [6, 6]) == pytest.approx(0.7, abs=1e-12)
    assert run(APScoreBinary(), scores, targ) == pytest.approx(0.6257142857142857, abs=1e-12)
    assert run(BrierScore(), scores, targ, [7, 5]) == pytest.approx(0.2249738294239926, abs=1e-12)
    # Any other value is a mistake (a third class, regression targets): a DataError from compute, not update.
    for metric, bad in ((RocAucBinary(), 2), (APScoreBinary(), 2), (BrierScore(), 2)):
        metric.update(BIN_SCORES, torch.where(torch.arange(10) == 4, bad, BIN_TARG))
        with pytest.raises(DataError, match=r"class ids 0 or 1.*`targ=2`.*1 target\(s\)"):
            metric.compute()
    brier = BrierScore()
    brier.update(BIN_SCORES[:5], BIN_TARG[:5].float())
    brier.update(BIN_SCORES[5:], torch.tensor([0.5, 1.0, 0.0, 0.25, 1.0]))
    with pytest.raises(DataError, match="`targ=0.5`.*2 target"):
        brier.compute()
    brier.reset()
    assert math.isnan(brier.compute())


def test_roc_auc_and_mcc_inside_a_learner_fit(tmp_path) -> None:
    from ember.data import DataLoaders
    from ember.learner import Learner

    x, y = make_classification(160)
    dls = DataLoaders.from_tensors((x[:96], y[:96]), (x[96:], y[96:]), bs=16, device="cpu")
    metrics = [RocAucBinary(), MatthewsCorrCoef(), BrierScore()]
    learn = Learner(dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), path=tmp_path, metrics=metrics)
    learn.silent = True
    learn.fit(1, lr=1e-2)
    assert learn.recorder.metric_names[3:6] == ["roc_auc_score", "matthews_corrcoef", "brier_score_loss"]
    auc, mcc, brier = learn.recorder.values[-1][2:5]
    # The validation set in one piece gives the same values as the four batches streamed through the loop.
    probs, targs = learn.get_preds(ds_idx=1)
    pos, neg = probs[targs == 1, 1], probs[targs == 0, 1]
    pairs = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    assert auc == pytest.approx(pairs.mean().item(), abs=1e-6)
    assert 0.5 < auc <= 1.0
    assert mcc == pytest.approx(run(MatthewsCorrCoef(), probs, targs), abs=1e-9)
    assert brier == pytest.approx(((probs[:, 1] - targs.float()) ** 2).mean().item(), abs=1e-5)


def test_multi_label_ranking_takes_fastai_sigmoid_argument_without_effect():
    from ember.metrics.ranking import APScoreMulti, RocAucMulti

    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5], [0.1, -0.2]])
    targs = torch.tensor([[1, 0], [0, 1], [0, 1], [1, 0]])
    for cls in (RocAucMulti, APScoreMulti):
        values = []
        for sigmoid, x in ((True, logits), (False, logits.sigmoid())):
            m = cls(sigmoid=sigmoid)
            m.reset()
            m.update(x, targs)
            values.append(m.compute())
        assert values[0] == pytest.approx(values[1])


def test_label_metrics_are_nan_after_a_non_finite_prediction():
    from ember.metrics import BalancedAccuracy, CohenKappa, F1Score, F1ScoreMulti, HammingLoss, MatthewsCorrCoef

    scores, targs = torch.randn(8, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    bad = scores.clone()
    bad[2, 1] = float("nan")  # argmax still gives a label for that row: the value would look plausible
    for make in (MatthewsCorrCoef, CohenKappa, BalancedAccuracy, lambda: F1Score(average="macro"), HammingLoss):
        m = make()
        m.reset()
        m.update(scores, targs)
        assert not math.isnan(m.compute())
        m.update(bad, targs)
        assert math.isnan(m.compute()), type(m).__name__
        m.reset()  # a new pass starts clean
        m.update(scores, targs)
        assert not math.isnan(m.compute())
    multi = F1ScoreMulti()
    multi.reset()
    multi.update(torch.tensor([[1.0, float("inf")], [-1.0, 2.0]]), torch.tensor([[1, 1], [0, 1]]))
    assert math.isnan(multi.compute())
