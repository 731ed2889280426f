"""Tests for ember.losses: reference values against torch.nn.functional, shapes, activation and decodes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ember.core.errors import ConfigError, DataError
from ember.losses import (
    BCELossFlat,
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    DiceLoss,
    FocalLoss,
    FocalLossFlat,
    L1LossFlat,
    LabelSmoothingCrossEntropy,
    LabelSmoothingCrossEntropyFlat,
    MSELossFlat,
)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def test_cross_entropy_flat_matches_functional_on_sequences(gen: torch.Generator) -> None:
    logits = torch.randn(2, 5, 4, generator=gen)  # (B, T, C)
    targ = torch.randint(0, 4, (2, 5), generator=gen)  # (B, T)
    loss = CrossEntropyLossFlat()
    expect = F.cross_entropy(logits.view(-1, 4), targ.view(-1))
    assert torch.allclose(loss(logits, targ), expect)
    loss.reduction = "none"
    per = loss(logits, targ)
    assert per.shape == (10,)  # one value per flattened position
    assert torch.allclose(per, F.cross_entropy(logits.view(-1, 4), targ.view(-1), reduction="none"))
    loss.reduction = "sum"
    assert torch.allclose(loss(logits, targ), per.sum())


def test_cross_entropy_flat_segmentation_axis_1(gen: torch.Generator) -> None:
    logits = torch.randn(2, 3, 4, 5, generator=gen)  # (B, C, H, W)
    mask = torch.randint(0, 3, (2, 4, 5), generator=gen)  # (B, H, W)
    mask[0, 0, 0] = -100
    weight = torch.tensor([1.0, 2.0, 0.5])
    loss = CrossEntropyLossFlat(weight, axis=1, label_smoothing=0.1)
    expect = F.cross_entropy(logits, mask, weight=weight, label_smoothing=0.1)  # torch's native (B, C, H, W) form
    assert torch.allclose(loss(logits, mask), expect, atol=1e-6)
    probs = loss.activation(logits)
    assert torch.allclose(probs.sum(1), torch.ones(2, 4, 5))
    assert torch.equal(loss.decodes(probs), logits.argmax(1))
    loss.reduction = "none"
    assert loss(logits, mask).view(2, -1).shape == (2, 20)


def test_cross_entropy_flat_soft_targets(gen: torch.Generator) -> None:
    logits = torch.randn(4, 3, generator=gen)
    soft = torch.softmax(torch.randn(4, 3, generator=gen), dim=-1)
    assert torch.allclose(CrossEntropyLossFlat()(logits, soft), F.cross_entropy(logits, soft))


def test_flattened_loss_shape_errors_name_the_problem() -> None:
    with pytest.raises(DataError, match="targ.shape"):
        CrossEntropyLossFlat()(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(DataError, match="MSELossFlat"):
        MSELossFlat()(torch.randn(4, 2), torch.zeros(4))
    with pytest.raises(ConfigError, match="reduction"):
        CrossEntropyLossFlat(reduction="avg")
    loss = CrossEntropyLossFlat()
    with pytest.raises(ConfigError, match="reduction"):
        loss.reduction = "batchmean"


def test_bce_with_logits_flat_multilabel(gen: torch.Generator) -> None:
    logits = torch.randn(6, 3, generator=gen)  # (B, C)
    targ = torch.randint(0, 2, (6, 3), generator=gen)  # int targets are cast to float
    pos_weight = torch.tensor([1.0, 3.0, 0.5])
    loss = BCEWithLogitsLossFlat(pos_weight=pos_weight)
    expect = F.binary_cross_entropy_with_logits(logits, targ.float(), pos_weight=pos_weight)
    assert torch.allclose(loss(logits, targ), expect)
    loss.reduction = "none"
    assert loss(logits, targ).shape == (18,)
    probs = loss.activation(logits)
    assert torch.allclose(probs, torch.sigmoid(logits))
    assert torch.equal(loss.decodes(probs), logits > 0)
    assert torch.equal(BCEWithLogitsLossFlat(thresh=0.8).decodes(probs), probs > 0.8)


def test_bce_with_logits_flat_single_column_and_class_axis(gen: torch.Generator) -> None:
    logits = torch.randn(5, 1, generator=gen)  # (B, 1) against (B,)
    targ = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    expect = F.binary_cross_entropy_with_logits(logits.view(-1), targ)
    assert torch.allclose(BCEWithLogitsLossFlat()(logits, targ), expect)
    seg = torch.randn(2, 3, 4, 4, generator=gen)  # (B, C, H, W) multi-label masks
    seg_targ = torch.randint(0, 2, (2, 3, 4, 4), generator=gen).float()
    pos_weight = torch.tensor([1.0, 2.0, 4.0])
    loss = BCEWithLogitsLossFlat(axis=1, pos_weight=pos_weight)
    expect = F.binary_cross_entropy_with_logits(seg, seg_targ, pos_weight=pos_weight.view(1, 3, 1, 1))
    assert torch.allclose(loss(seg, seg_targ), expect)


def test_bce_flat_takes_probabilities(gen: torch.Generator) -> None:
    probs = torch.rand(4, 2, generator=gen) * 0.9 + 0.05
    targ = torch.tensor([[1, 0], [0, 0], [1, 1], [0, 1]])
    loss = BCELossFlat(thresh=0.3)
    assert torch.allclose(loss(probs, targ), F.binary_cross_entropy(probs, targ.float()))
    assert torch.equal(loss.activation(probs), probs)
    assert torch.equal(loss.decodes(probs), probs > 0.3)


def test_regression_losses_flatten_b1_against_b() -> None:
    pred = torch.tensor([[1.0], [2.0], [4.0]])  # (B, 1)
    targ = torch.tensor([1, 3, 2])  # (B,) ints become floats
    assert MSELossFlat()(pred, targ).item() == pytest.approx(5 / 3)
    assert L1LossFlat()(pred, targ).item() == pytest.approx(1.0)
    loss = L1LossFlat()
    loss.reduction = "none"
    assert loss(pred, targ).tolist() == [0.0, 1.0, 2.0]
    assert torch.equal(MSELossFlat().activation(pred), pred)
    assert torch.equal(MSELossFlat().decodes(pred), pred)


def test_label_smoothing_matches_functional_and_hand_formula(gen: torch.Generator) -> None:
    logits = torch.randn(6, 4, generator=gen)
    targ = torch.randint(0, 4, (6,), generator=gen)
    eps = 0.2
    logp = logits.log_softmax(-1)
    by_hand = ((1 - eps) * -logp.gather(1, targ[:, None]).squeeze(1) + eps * -logp.mean(-1)).mean()
    loss = LabelSmoothingCrossEntropy(eps=eps)
    assert torch.allclose(loss(logits, targ), by_hand, atol=1e-6)
    assert torch.allclose(loss(logits, targ), F.cross_entropy(logits, targ, label_smoothing=eps))
    assert torch.allclose(LabelSmoothingCrossEntropy(eps=0.0)(logits, targ), F.cross_entropy(logits, targ))
    loss.reduction = "none"
    assert loss(logits, targ).shape == (6,)
    assert torch.equal(loss.decodes(loss.activation(logits)), logits.argmax(-1))
    with pytest.raises(ConfigError, match="eps"):
        LabelSmoothingCrossEntropy(eps=1.5)


def test_label_smoothing_flat_on_sequences(gen: torch.Generator) -> None:
    logits = torch.randn(2, 3, 5, generator=gen)  # (B, T, C)
    targ = torch.randint(0, 5, (2, 3), generator=gen)
    loss = LabelSmoothingCrossEntropyFlat(eps=0.1)
    expect = F.cross_entropy(logits.view(-1, 5), targ.view(-1), label_smoothing=0.1)
    assert torch.allclose(loss(logits, targ), expect)
    loss.reduction = "none"
    assert loss(logits, targ).shape == (6,)


def test_focal_loss_gamma_0_is_cross_entropy(gen: torch.Generator) -> None:
    logits = torch.randn(8, 3, generator=gen)
    targ = torch.randint(0, 3, (8,), generator=gen)
    targ[0] = -100
    weight = torch.tensor([0.5, 1.0, 3.0])
    assert torch.allclose(FocalLoss(gamma=0)(logits, targ), F.cross_entropy(logits, targ), atol=1e-6)
    expect = F.cross_entropy(logits, targ, weight=weight)
    assert torch.allclose(FocalLoss(gamma=0, weight=weight)(logits, targ), expect, atol=1e-6)
    expect_none = F.cross_entropy(logits, targ, weight=weight, reduction="none")
    assert torch.allclose(FocalLoss(0, weight, reduction="none")(logits, targ), expect_none, atol=1e-6)


def test_focal_loss_down_weights_easy_items(gen: torch.Generator) -> None:
    logits = torch.randn(5, 3, generator=gen)
    targ = torch.randint(0, 3, (5,), generator=gen)
    ce = F.cross_entropy(logits, targ, reduction="none")
    pt = torch.exp(-ce)
    focal = FocalLoss(gamma=2.0, reduction="none")(logits, targ)
    assert torch.allclose(focal, (1 - pt) ** 2 * ce, atol=1e-6)
    assert (focal <= ce).all()
    with pytest.raises(ConfigError, match="gamma"):
        FocalLoss(gamma=-1)


def test_focal_loss_flat_segmentation(gen: torch.Generator) -> None:
    logits = torch.randn(2, 3, 4, 4, generator=gen)  # (B, C, H, W)
    mask = torch.randint(0, 3, (2, 4, 4), generator=gen)
    loss = FocalLossFlat(gamma=0.0, axis=1)
    assert torch.allclose(loss(logits, mask), F.cross_entropy(logits, mask), atol=1e-6)
    assert torch.equal(loss.decodes(loss.activation(logits)), logits.argmax(1))
    loss.reduction = "none"
    assert loss(logits, mask).shape == (32,)


def test_dice_loss_by_hand() -> None:
    # Logits so confident that softmax is one-hot to float precision.
    pred_lbl = torch.tensor([[[0, 1], [1, 1]]])  # (B, H, W)
    logits = F.one_hot(pred_lbl, 2).permute(0, 3, 1, 2).float() * 100  # (B, C, H, W)
    mask = torch.tensor([[[0, 0], [1, 1]]])
    # class 0: |P|=1, |T|=2, inter=1 -> dice 2/3; class 1: |P|=3, |T|=2, inter=2 -> dice 4/5
    loss = DiceLoss(smooth=0.0, reduction="none")
    per = loss(logits, mask)
    assert per.shape == (1, 2)
    assert torch.allclose(per, torch.tensor([[1 - 2 / 3, 1 - 4 / 5]]), atol=1e-6)
    assert DiceLoss(smooth=0.0)(logits, mask).item() == pytest.approx((1 / 3 + 1 / 5) / 2, abs=1e-6)
    assert DiceLoss(smooth=0.0, reduction="sum")(logits, mask).item() == pytest.approx(1 / 3 + 1 / 5, abs=1e-6)
    assert DiceLoss()(logits, pred_lbl).item() == pytest.approx(0.0, abs=1e-5)
    assert torch.equal(loss.decodes(loss.activation(logits)), pred_lbl)
    with pytest.raises(DataError, match="mask"):
        loss(logits, mask[0])


def test_dice_loss_square_in_union_and_gradient(gen: torch.Generator) -> None:
    logits = torch.randn(2, 3, 4, 4, generator=gen, requires_grad=True)
    mask = torch.randint(0, 3, (2, 4, 4), generator=gen)
    probs = logits.softmax(1)
    onehot = F.one_hot(mask, 3).permute(0, 3, 1, 2).float()
    inter = (probs * onehot).sum((2, 3))
    union = (probs**2).sum((2, 3)) + onehot.sum((2, 3))
    expect = (1 - (2 * inter + 1e-6) / (union + 1e-6)).mean()
    loss = DiceLoss(square_in_union=True)(logits, mask)
    assert torch.allclose(loss, expect, atol=1e-6)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_torch_cross_entropy_activation_and_decodes_use_the_class_axis(gen: torch.Generator) -> None:
    from torch import nn

    from ember.losses import loss_activation, loss_decodes

    for loss in (nn.CrossEntropyLoss(), nn.NLLLoss()):
        act, dec = loss_activation(loss), loss_decodes(loss)
        seg = torch.randn(2, 4, 5, 7, generator=gen)  # (B, C, H, W): the classes are on axis 1
        if isinstance(loss, nn.NLLLoss):
            seg = seg.log_softmax(1)
        probs = act(seg)
        assert torch.allclose(probs.sum(1), torch.ones(2, 5, 7), atol=1e-6)
        assert torch.equal(dec(probs), seg.argmax(1)) and dec(probs).shape == (2, 5, 7)
    flat = torch.randn(3, 4, generator=gen)  # (B, C) and one unbatched item (C,)
    ce = nn.CrossEntropyLoss()
    assert torch.allclose(loss_activation(ce)(flat), flat.softmax(-1))
    assert torch.equal(loss_decodes(ce)(flat.softmax(-1)), flat.argmax(-1))
    assert torch.allclose(loss_activation(ce)(flat[0]), flat[0].softmax(0))
