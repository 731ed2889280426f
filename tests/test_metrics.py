"""Tests for ember.metrics: batch functions, set-level accumulators and as_metric."""

from __future__ import annotations

import functools
import math

import pytest
import torch

from ember.core.errors import ConfigError, DataError
from ember.metrics import (
    RMSE,
    AccumMetric,
    AvgMetric,
    ExpRMSPE,
    F1Score,
    FBeta,
    Metric,
    Perplexity,
    Precision,
    R2Score,
    Recall,
    accuracy,
    accuracy_multi,
    as_metric,
    error_rate,
    exp_rmspe,
    mae,
    mse,
    msle,
    rmse,
    top_k_accuracy,
)


def run(metric: object, batches: list[tuple[torch.Tensor, ...]]) -> float:
    """Drive a metric the way the training loop does."""
    m = as_metric(metric)
    m.reset()
    for batch in batches:
        m.update(*batch)
    return m.compute()


def one_hot_logits(labels: list[int], n_classes: int) -> torch.Tensor:
    """Logits whose argmax is `labels`."""
    return torch.nn.functional.one_hot(torch.tensor(labels), n_classes).float() * 4 - 2


def split(pred: torch.Tensor, targ: torch.Tensor, sizes: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(zip(pred.split(sizes), targ.split(sizes), strict=True))


# --- batch functions ----------------------------------------------------------------------------------------------


def test_accuracy_and_error_rate_by_hand() -> None:
    pred = one_hot_logits([0, 1, 2, 2], 3)
    targ = torch.tensor([0, 1, 1, 2])
    assert accuracy(pred, targ).item() == pytest.approx(0.75)
    assert error_rate(pred, targ).item() == pytest.approx(0.25)


def test_accuracy_on_sequences_flattens_positions() -> None:
    pred = one_hot_logits([0, 1, 2, 2, 1, 0], 3).view(2, 3, 3)  # (B, T, C)
    targ = torch.tensor([[0, 1, 1], [2, 1, 1]])  # (B, T)
    assert accuracy(pred, targ).item() == pytest.approx(4 / 6)


def test_accuracy_with_class_axis_1() -> None:
    pred = one_hot_logits([0, 1, 2, 2], 3).view(1, 4, 3).permute(0, 2, 1)  # (B, C, T)
    targ = torch.tensor([[0, 1, 1, 2]])
    assert accuracy(pred, targ, axis=1).item() == pytest.approx(0.75)


def test_accuracy_shape_mismatch_is_a_data_error() -> None:
    with pytest.raises(DataError, match="pred.shape"):
        accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))


def test_batch_averaged_accuracy_equals_whole_set_with_uneven_batches() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(23, 4, generator=g)
    targ = torch.randint(0, 4, (23,), generator=g)
    batches = split(pred, targ, [10, 10, 3])
    whole = (pred.argmax(1) == targ).float().mean().item()
    # A plain mean of the three batch accuracies would weigh the 3-item batch like the others.
    naive = sum(accuracy(p, t).item() for p, t in batches) / 3
    assert run(accuracy, batches) == pytest.approx(whole)
    assert naive != pytest.approx(whole)


def test_top_k_accuracy() -> None:
    pred = torch.tensor([[0.1, 0.5, 0.4, 0.0], [0.9, 0.05, 0.03, 0.02], [0.2, 0.3, 0.1, 0.4]])
    targ = torch.tensor([2, 3, 1])
    # top-2 sets: {1, 2}, {0, 1}, {3, 1} -> hits: yes, no, yes
    assert top_k_accuracy(pred, targ, k=2).item() == pytest.approx(2 / 3)
    assert top_k_accuracy(pred, targ, k=1).item() == pytest.approx(accuracy(pred, targ).item())
    assert top_k_accuracy(pred, targ, k=4).item() == pytest.approx(1.0)


def test_top_k_accuracy_on_sequences() -> None:
    pred = torch.tensor([[[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]]])  # (B=1, T=2, C=3)
    targ = torch.tensor([[2, 2]])
    assert top_k_accuracy(pred, targ, k=2).item() == pytest.approx(0.5)


def test_accuracy_multi() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.3], [-0.5, 1.0, -3.0]])
    targ = torch.tensor([[1, 0, 0], [0, 1, 1]])
    # sigmoid > 0.5 <=> logit > 0: [[1, 0, 1], [0, 1, 0]] -> 4 of 6 match
    assert accuracy_multi(logits, targ).item() == pytest.approx(4 / 6)
    # thresh 0.6 on probabilities: sigmoid(0.3) = 0.574 is now negative -> 5 of 6
    assert accuracy_multi(logits, targ, thresh=0.6).item() == pytest.approx(5 / 6)
    probs = torch.tensor([[0.9, 0.2, 0.4], [0.1, 0.7, 0.8]])
    assert accuracy_multi(probs, targ, sigmoid=False).item() == pytest.approx(1.0)
    assert run(functools.partial(accuracy_multi, thresh=0.6), [(logits, targ)]) == pytest.approx(5 / 6)


def test_regression_functions_by_hand() -> None:
    pred = torch.tensor([[1.0], [2.0], [4.0]])  # (B, 1)
    targ = torch.tensor([1.0, 3.0, 2.0])  # (B,)
    assert mse(pred, targ).item() == pytest.approx((0 + 1 + 4) / 3)
    assert mae(pred, targ).item() == pytest.approx((0 + 1 + 2) / 3)
    expect = sum((math.log1p(p) - math.log1p(t)) ** 2 for p, t in [(1, 1), (2, 3), (4, 2)]) / 3
    assert msle(pred, targ).item() == pytest.approx(expect)


# --- set-level metrics --------------------------------------------------------------------------------------------


def test_rmse_is_set_level_in_every_spelling() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    targ = torch.tensor([1.0, 2.0, 3.0, 4.0, 9.0])
    batches = split(pred, targ, [4, 1])
    expect = math.sqrt(16 / 5)
    mean_of_batches = (0.0 * 4 + 4.0 * 1) / 5  # what AvgMetric over a batch RMSE would give
    assert expect != pytest.approx(mean_of_batches)
    for spelling in (rmse, RMSE, RMSE()):
        assert run(spelling, batches) == pytest.approx(expect)
    assert [as_metric(m).name for m in (rmse, RMSE())] == ["rmse", "rmse"]


def test_exp_rmspe() -> None:
    targ = torch.log(torch.tensor([100.0, 200.0, 50.0]))
    pred = torch.log(torch.tensor([110.0, 180.0, 50.0]))
    expect = math.sqrt(((-0.1) ** 2 + 0.1**2 + 0.0) / 3)
    assert run(exp_rmspe, split(pred, targ, [2, 1])) == pytest.approx(expect, rel=1e-5)
    assert as_metric(ExpRMSPE).name == "exp_rmspe"


def test_r2_score_set_level() -> None:
    targ = torch.tensor([3.0, -0.5, 2.0, 7.0, 4.0])
    pred = torch.tensor([2.5, 0.0, 2.0, 8.0, 3.0])
    mean = targ.mean()
    expect = 1 - ((targ - pred) ** 2).sum().item() / ((targ - mean) ** 2).sum().item()
    value = run(R2Score, split(pred[:, None], targ, [2, 2, 1]))  # (B, 1) predictions
    assert value == pytest.approx(expect)
    assert as_metric(R2Score()).name == "r2_score"


def test_r2_score_constant_target_edge_cases() -> None:
    targ = torch.ones(4)
    assert run(R2Score(), [(targ.clone(), targ)]) == 1.0
    assert math.isnan(run(R2Score(), [(targ + 1, targ)]))


def test_f1_over_uneven_batches_equals_whole_set_not_batch_mean() -> None:
    # Binary labels, single-logit outputs (positive when the logit > 0).
    targ = torch.tensor([1, 1, 0, 0, 1, 0, 0, 1, 1, 0])
    pred_lbl = torch.tensor([1, 0, 0, 1, 1, 0, 0, 1, 0, 0])
    logits = pred_lbl.float() * 4 - 2  # (B,)
    sizes = [4, 2, 4]
    tp, fp, fn = 3, 1, 2
    expect = 2 * tp / (2 * tp + fp + fn)  # 6 / 9

    def f1_of(p: torch.Tensor, t: torch.Tensor) -> float:
        tp_ = int(((p == 1) & (t == 1)).sum())
        fp_ = int(((p == 1) & (t == 0)).sum())
        fn_ = int(((p == 0) & (t == 1)).sum())
        return 0.0 if tp_ == 0 else 2 * tp_ / (2 * tp_ + fp_ + fn_)

    batch_mean = sum(f1_of(p, t) for p, t in zip(pred_lbl.split(sizes), targ.split(sizes), strict=True)) / 3
    assert f1_of(pred_lbl, targ) == pytest.approx(expect)
    assert batch_mean != pytest.approx(expect)  # (1/2 + 1 + 2/3) / 3
    assert run(F1Score(), split(logits, targ, sizes)) == pytest.approx(expect)
    # Same answer from (B, 1) logits and from two-class (B, 2) scores.
    assert run(F1Score, split(logits[:, None], targ, sizes)) == pytest.approx(expect)
    assert run(F1Score(), split(one_hot_logits(pred_lbl.tolist(), 2), targ, sizes)) == pytest.approx(expect)
    assert run(Precision(), split(logits, targ, sizes)) == pytest.approx(tp / (tp + fp))
    assert run(Recall(), split(logits, targ, sizes)) == pytest.approx(tp / (tp + fn))


def test_macro_vs_binary_vs_micro_vs_weighted() -> None:
    targ = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    lbl = [0, 1, 1, 1, 0, 2, 2, 1]
    pred = one_hot_logits(lbl, 3)
    batches = split(pred, targ, [3, 5])
    # per class (tp, fp, fn): 0 -> (1, 1, 1), 1 -> (2, 2, 1), 2 -> (2, 0, 1)
    prec = [1 / 2, 2 / 4, 2 / 2]
    rec = [1 / 2, 2 / 3, 2 / 3]
    f1 = [2 * p * r / (p + r) for p, r in zip(prec, rec, strict=True)]
    support = [2, 3, 3]
    assert run(Precision(average="macro"), batches) == pytest.approx(sum(prec) / 3)
    assert run(Recall(average="macro"), batches) == pytest.approx(sum(rec) / 3)
    assert run(F1Score(average="macro"), batches) == pytest.approx(sum(f1) / 3)
    assert run(F1Score(average="micro"), batches) == pytest.approx(5 / 8)  # micro F1 == accuracy here
    assert run(F1Score(average="weighted"), batches) == pytest.approx(
        sum(f * s for f, s in zip(f1, support, strict=True)) / 8
    )
    # Two classes: binary scores one class, macro averages both.
    t2 = torch.tensor([0, 0, 1, 1, 1])
    p2 = one_hot_logits([0, 1, 1, 0, 0], 2)
    f1_pos, f1_neg = 2 * 1 / (2 * 1 + 1 + 2), 2 * 1 / (2 * 1 + 2 + 1)
    assert run(F1Score(), [(p2, t2)]) == pytest.approx(f1_pos)
    assert run(F1Score(pos_label=0), [(p2, t2)]) == pytest.approx(f1_neg)
    assert run(F1Score(average="macro"), [(p2, t2)]) == pytest.approx((f1_pos + f1_neg) / 2)


def test_macro_leaves_out_classes_never_seen() -> None:
    targ = torch.tensor([0, 1, 1])
    pred = one_hot_logits([0, 1, 0], 4)  # classes 2 and 3 never appear
    prec = [1 / 2, 1 / 1]
    assert run(Precision(average="macro"), [(pred, targ)]) == pytest.approx(sum(prec) / 2)


def test_fbeta_by_hand_and_confusion_matrix() -> None:
    targ = torch.tensor([1, 1, 1, 0, 0])
    logits = torch.tensor([2.0, 2.0, -2.0, 2.0, -2.0])
    tp, fp, fn = 2, 1, 1
    b2 = 4.0
    m = FBeta(beta=2)
    assert run(m, [(logits, targ)]) == pytest.approx((1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp))
    assert m.name == "fbeta_score"
    assert m.confusion_matrix.tolist() == [[1, 1], [1, 2]]


def test_confusion_metrics_on_segmentation_with_ignore_index() -> None:
    targ = torch.tensor([[[0, 1], [1, -100]]])  # (B, H, W)
    pred = one_hot_logits([0, 1, 0, 1], 2).view(1, 2, 2, 2).permute(0, 3, 1, 2)  # (B, C, H, W)
    m = Recall(axis=1)
    assert run(m, [(pred, targ)]) == pytest.approx(1 / 2)
    assert m.confusion_matrix.sum().item() == 3  # the ignored pixel is not counted


def test_confusion_metric_errors() -> None:
    with pytest.raises(ConfigError, match="average"):
        F1Score(average="samples")
    with pytest.raises(ConfigError, match="average"):
        run(F1Score(), [(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))])
    with pytest.raises(ConfigError, match="beta"):
        FBeta(beta=0)


def test_perplexity_is_exp_of_set_mean_cross_entropy() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, 7, generator=g)  # (B, T, V)
    targ = torch.randint(0, 7, (5, 4), generator=g)
    targ[0, 0] = -100
    logp = logits.log_softmax(-1)
    nll = [-logp[b, t, targ[b, t]].item() for b in range(5) for t in range(4) if targ[b, t] >= 0]
    expect = math.exp(sum(nll) / len(nll))
    assert run(Perplexity, split(logits, targ, [2, 3])) == pytest.approx(expect, rel=1e-5)


def test_empty_metrics_give_nan() -> None:
    for m in (accuracy, rmse, R2Score, F1Score, Perplexity):
        assert math.isnan(run(m, []))


# --- AccumMetric, AvgMetric and the Metric base -------------------------------------------------------------------


def test_accum_metric_applies_func_to_the_whole_set() -> None:
    def worst_error(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        return (pred - targ).abs().max()

    pred = torch.tensor([[1.0], [2.0], [3.0]])
    targ = torch.tensor([1.5, 2.0, 0.0])
    m = AccumMetric(worst_error)
    assert m.name == "worst_error"
    assert run(m, split(pred, targ, [2, 1])) == pytest.approx(3.0)


def test_accum_metric_argmax_numpy_and_argument_order() -> None:
    seen = []

    def record(first: object, second: object) -> float:
        seen.append((first, second))
        return float((first == second).mean())

    pred = one_hot_logits([0, 2, 1], 3)
    targ = torch.tensor([0, 2, 2])
    m = AccumMetric(record, dim_argmax=-1, activation="softmax", to_np=True, invert_arg=True, name="acc")
    assert run(m, split(pred, targ, [1, 2])) == pytest.approx(2 / 3)
    first, second = seen[0]
    assert first.tolist() == [0, 2, 2] and second.tolist() == [0, 2, 1]  # targets first
    thresh = AccumMetric(lambda p, t: (p == t.bool()).float().mean(), activation="sigmoid", thresh=0.5)
    assert run(thresh, [(torch.tensor([3.0, -3.0]), torch.tensor([1, 1]))]) == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="activation"):
        AccumMetric(record, activation="relu")


def test_avg_metric_reset_and_name() -> None:
    m = AvgMetric(mse, name="my_mse")
    assert m.name == "my_mse"
    m.update(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]))
    m.reset()
    m.update(torch.tensor([0.0]), torch.tensor([2.0]))
    assert m.compute() == pytest.approx(4.0)


def test_custom_metric_subclass_name_and_class_acceptance() -> None:
    class CountPositives(Metric):
        def reset(self) -> None:
            self.total = 0

        def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
            self.total = self.total + (pred > 0).sum()

        def compute(self) -> float:
            return float(self.total)

    m = as_metric(CountPositives)
    assert isinstance(m, CountPositives) and m.name == "count_positives"
    assert run(m, [(torch.tensor([1.0, -1.0, 2.0]),), (torch.tensor([3.0]),)]) == 3.0
    m.name = "positives"
    assert m.name == "positives"


# --- as_metric ----------------------------------------------------------------------------------------------------


class FakeTorchMetric:
    """Duck-typed stand-in for a torchmetrics.Metric: update/compute/reset and `to`."""

    def __init__(self) -> None:
        self.device = torch.device("meta")
        self.moves = 0
        self.reset()

    def to(self, device: torch.device) -> FakeTorchMetric:
        self.device = torch.device(device)
        self.moves += 1
        return self

    def reset(self) -> None:
        self.correct = torch.tensor(0)
        self.total = torch.tensor(0)

    def update(self, pred: torch.Tensor, targ: torch.Tensor) -> None:
        assert pred.device == self.device
        self.correct = self.correct + (pred.argmax(-1) == targ).sum()
        self.total = self.total + targ.numel()

    def compute(self) -> torch.Tensor:
        return self.correct / self.total

    def __call__(self, *args: object) -> None:  # torchmetrics objects are callable modules too
        raise AssertionError("the adapter must use update/compute, not __call__")


def test_as_metric_adapts_a_duck_typed_torchmetrics_object() -> None:
    fake = FakeTorchMetric()
    m = as_metric(fake)
    assert m.name == "fake_torch_metric"
    pred = one_hot_logits([0, 1, 1, 2], 3)
    targ = torch.tensor([0, 1, 2, 2])
    m.reset()
    for p, t in split(pred, targ, [3, 1]):
        m.update(p, t)
    value = m.compute()
    assert isinstance(value, float) and value == pytest.approx(0.75)
    assert fake.device == torch.device("cpu") and fake.moves == 1  # moved once, on the first update


def test_as_metric_passes_through_and_wraps() -> None:
    m = F1Score()
    assert as_metric(m) is m
    wrapped = as_metric(error_rate)
    assert isinstance(wrapped, AvgMetric) and wrapped.name == "error_rate"
    assert as_metric(functools.partial(top_k_accuracy, k=3)).name == "top_k_accuracy"


@pytest.mark.parametrize("bad", [42, "accuracy", None, FakeTorchMetric])
def test_bad_metric_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="Expected `metric`"):
        as_metric(bad)


# --- segmentation ---------------------------------------------------------------------------------------------------


def seg_logits(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Scores (B, C, H, W) whose argmax over axis 1 is `labels` (B, H, W)."""
    return torch.nn.functional.one_hot(labels, n_classes).permute(0, 3, 1, 2).float() * 4 - 2


def test_segmentation_metrics_by_hand() -> None:
    from ember.metrics import Dice, DiceMulti, JaccardCoeff, foreground_acc

    pred = torch.tensor([[[0, 1, 2], [1, 1, 0]]])  # (1, 2, 3)
    targ = torch.tensor([[[0, 1, 2], [0, 2, 2]]])
    logits = seg_logits(pred, 3)
    # foreground pixels (target != 0): positions with targets 1, 2, 2, 2; right on two of them
    assert foreground_acc(logits, targ).item() == pytest.approx(2 / 4)
    assert foreground_acc(logits, targ, bkg_idx=2).item() == pytest.approx(2 / 3)  # targets 0, 1, 0
    # binary: positive = any class but 0. P = 4 pixels, T = 4 pixels, both on 3
    assert run(Dice(), [(logits, targ)]) == pytest.approx(2 * 3 / 8)
    assert run(JaccardCoeff(), [(logits, targ)]) == pytest.approx(3 / 5)
    # per class: 0: P 2, T 2, both 1 -> 1/2; 1: P 3, T 1, both 1 -> 1/2; 2: P 1, T 3, both 1 -> 1/2
    assert run(DiceMulti(), [(logits, targ)]) == pytest.approx(0.5)
    perfect = seg_logits(targ, 3)
    for m in (Dice(), JaccardCoeff(), DiceMulti()):
        assert run(m, [(perfect, targ)]) == pytest.approx(1.0)
    assert foreground_acc(perfect, targ).item() == 1.0
    assert [as_metric(m).name for m in (foreground_acc, Dice, DiceMulti, JaccardCoeff)] == [
        "foreground_acc",
        "dice",
        "dice_multi",
        "jaccard_coeff",
    ]


def test_segmentation_metrics_over_two_batches_equal_one_pass() -> None:
    from ember.metrics import Dice, DiceMulti, JaccardCoeff, foreground_acc

    g = torch.Generator().manual_seed(0)
    targ = torch.randint(0, 4, (5, 6, 7), generator=g)
    targ[:3][targ[:3] > 0] = 0  # the first batch is mostly background: batch means would weigh it wrongly
    targ[0, 0, 0] = 1
    logits = torch.randn(5, 4, 6, 7, generator=g) + seg_logits(targ, 4) * 0.4
    for make in (lambda: foreground_acc, Dice, JaccardCoeff, DiceMulti):
        whole = run(make(), [(logits, targ)])
        pooled = run(make(), split(logits, targ, [3, 2]))
        assert pooled == pytest.approx(whole, rel=1e-9), make
    # and foreground_acc is the set's value, not the mean of the two batch values
    pred = logits.argmax(1)
    fg = targ != 0
    assert run(foreground_acc, split(logits, targ, [3, 2])) == pytest.approx(
        ((pred == targ) & fg).sum().item() / fg.sum().item()
    )
    # DiceMulti by its definition, from the whole set's counts
    scores = []
    for c in range(4):
        p, t = pred == c, targ == c
        if p.sum() + t.sum():
            scores.append(2 * (p & t).sum().item() / (p.sum() + t.sum()).item())
    assert run(DiceMulti, split(logits, targ, [2, 3])) == pytest.approx(sum(scores) / len(scores))


def test_segmentation_metrics_edge_cases() -> None:
    from ember.metrics import Dice, DiceMulti, JaccardCoeff, foreground_acc

    targ = torch.tensor([[[0, 1], [1, -100]]])  # an ignored pixel
    logits = seg_logits(torch.tensor([[[0, 1], [0, 1]]]), 2)
    assert foreground_acc(logits, targ).item() == pytest.approx(1 / 2)  # the ignored pixel is not foreground
    assert run(Dice(), [(logits, targ)]) == pytest.approx(2 * 1 / (1 + 2))  # nor a predicted positive
    # a single logit channel: positive above 0
    one = torch.tensor([[[[-1.0, 2.0], [3.0, -4.0]]]])  # (1, 1, 2, 2)
    assert run(Dice(), [(one, torch.tensor([[[0, 1], [1, 0]]]))]) == pytest.approx(1.0)
    # nothing positive anywhere, nothing seen, no foreground: nan
    background = torch.zeros(1, 2, 2, dtype=torch.long)
    assert math.isnan(run(Dice(), [(seg_logits(background, 2), background)]))
    assert math.isnan(foreground_acc(seg_logits(background, 2), background).item())
    for m in (Dice, JaccardCoeff, DiceMulti, foreground_acc):
        assert math.isnan(run(m, []))
    # partial keywords reach the set-level foreground accuracy
    m = as_metric(functools.partial(foreground_acc, bkg_idx=1))
    assert run(m, [(logits, targ)]) == pytest.approx(1.0)  # the only non-1, non-ignored target (0) is right
    with pytest.raises(DataError, match="classes"):
        run(DiceMulti(), [(seg_logits(background, 2), background), (seg_logits(background, 3), background)])
    with pytest.raises(DataError, match="pred.shape"):
        run(DiceMulti(), [(torch.randn(1, 3, 2, 2), torch.zeros(1, 3, 3, dtype=torch.long))])


def test_metrics_declare_which_way_they_improve() -> None:
    from ember.metrics import Dice, DiceMulti, foreground_acc, lower_is_better

    for m in (rmse, mae, mse, msle, exp_rmspe, Perplexity, error_rate, functools.partial(mae)):
        metric = as_metric(m)
        assert metric.lower_is_better is True and lower_is_better(metric.name, metric)
    for m in (accuracy, top_k_accuracy, accuracy_multi, F1Score, R2Score, Precision, foreground_acc, Dice, DiceMulti):
        metric = as_metric(m)
        assert metric.lower_is_better is False and not lower_is_better(metric.name, metric)
    # undeclared: the name decides; a declaration wins over the name
    assert lower_is_better("my_rmse") and lower_is_better("val_error") and not lower_is_better("my_score")
    assert not lower_is_better("rmse_gain", AvgMetric(lambda p, t: p.mean(), lower_is_better=False))

    class TM:  # what torchmetrics objects say
        higher_is_better = False

        def update(self, *a): ...
        def compute(self): ...
        def reset(self): ...

    assert as_metric(TM()).lower_is_better is True
