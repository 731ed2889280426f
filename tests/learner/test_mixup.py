"""MixUp and CutMix: what the model sees in a training batch, the loss blended item by item with every kind of loss
and target, validation left alone, the learner's loss given back however the fit ends, and real training runs."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import CallbackError, ConfigError
from ember.data import DataLoaders
from ember.learner import Callback, CutMix, Learner, MixUp
from ember.losses import (
    BCEWithLogitsLossFlat,
    CrossEntropyLossFlat,
    FocalLossFlat,
    LabelSmoothingCrossEntropyFlat,
    MSELossFlat,
)
from ember.metrics import accuracy


class _Spy(Callback):
    """Keeps, for each training batch, the inputs before and after mixing, the targets, the loss and the draw."""

    order = 0  # after the mixing callbacks' before_batch (-10), before their after_batch

    def __init__(self, mix):
        self.mix = mix

    def before_fit(self):
        self.seen, self._x0 = [], None

    def after_loss(self):
        if self.learn.training:
            mix = self.mix
            self.seen.append(
                (self._x0, self.learn.xb, self.learn.yb, self.learn.pred.detach(), self.learn.loss, mix._lam, mix._perm)
            )


class _Before(Callback):
    order = -30  # before the mixing

    def __init__(self, spy):
        self.spy = spy

    def before_batch(self):
        if self.learn.training:
            self.spy._x0 = tuple(x.clone() for x in self.learn.xb)


def _learner(tmp_path, xs, y, model, loss, bs=16, **kwargs):
    xs = xs if isinstance(xs, tuple) else (xs,)
    n = len(y) * 3 // 4
    dls = DataLoaders.from_tensors((*(x[:n] for x in xs), y[:n]), (*(x[n:] for x in xs), y[n:]), bs=bs, device="cpu")
    dls.train.n_inp = dls.valid.n_inp = dls.n_inp = len(xs)
    learn = Learner(dls, model, loss_func=loss, path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def _fit_with_spy(learn, mix, epochs=1):
    spy = _Spy(mix)
    learn.fit(epochs, 1e-3, cbs=[mix, spy, _Before(spy)])
    return spy.seen


def test_mixup_blends_inputs_and_the_loss_item_by_item(tmp_path):
    torch.manual_seed(0)
    x, y = make_classification(64)
    loss = CrossEntropyLossFlat()
    learn = _learner(tmp_path, x, y, tiny_model(), loss)
    seen = _fit_with_spy(learn, MixUp(0.4))
    assert len(seen) == 3
    ce = nn.CrossEntropyLoss(reduction="none")
    for (x0,), (xm,), (yb,), pred, batch_loss, lam, perm in seen:
        assert yb.dtype == torch.int64  # the targets are the sample's own; the loss does the blending
        assert bool((lam >= 0.5).all()) and bool((lam <= 1).all())
        assert torch.allclose(xm, lam[:, None] * x0 + (1 - lam[:, None]) * x0[perm], atol=1e-6)
        expected = (lam * ce(pred, yb) + (1 - lam) * ce(pred, yb[perm])).mean()
        assert torch.allclose(batch_loss, expected, atol=1e-5)
    assert learn.loss_func is loss  # given back after the fit
    assert learn.recorder.values[-1][1] is not None  # validation ran on the data as it is


@pytest.mark.parametrize(
    "loss,n_out,target",
    [
        (FocalLossFlat(), 2, "ids"),
        (LabelSmoothingCrossEntropyFlat(), 2, "ids"),
        (CrossEntropyLossFlat(ignore_index=1), 2, "ids"),
        (CrossEntropyLossFlat(weight=torch.tensor([1.0, 3.0])), 2, "ids"),
        (BCEWithLogitsLossFlat(), 3, "multi"),
        (MSELossFlat(), 1, "float"),
    ],
    ids=["focal", "label-smoothing", "ignore-index", "weighted", "multi-label", "regression"],
)
def test_mixup_works_with_every_kind_of_loss(tmp_path, loss, n_out, target):
    torch.manual_seed(0)
    x, y = make_classification(64)
    y = {"ids": y, "multi": (x[:, :3] > 0).long(), "float": x[:, :1] * 2}[target]
    learn = _learner(tmp_path, x, y, tiny_model(n_out=n_out), loss)
    for precision in ("32", "bf16-mixed"):
        learn.precision = precision
        seen = _fit_with_spy(learn, MixUp())
        assert all(torch.isfinite(s[4]) for s in seen)
    assert learn.loss_func is loss


def test_mixup_on_a_table_blends_continuous_columns_and_keeps_categories(tmp_path):
    from ember.tabular import TabularDataLoaders, tabular_learner

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    df = pd.DataFrame(
        {
            "a": torch.randn(96, generator=g).numpy(),
            "b": torch.randn(96, generator=g).numpy(),
            "c": [["x", "y", "z"][i % 3] for i in range(96)],
        }
    )
    df["y"] = (df.a + (df.c == "x") > 0).map({True: "yes", False: "no"})
    dls = TabularDataLoaders.from_df(df, y_names="y", cat_names=["c"], cont_names=["a", "b"], bs=16, device="cpu")
    learn = tabular_learner(dls, layers=[8], path=tmp_path)
    learn.silent = True
    seen = _fit_with_spy(learn, MixUp(0.4))
    for x0, xm, _, _, loss, lam, perm in seen:
        cats0, conts0 = x0
        cats, conts = xm
        assert torch.equal(cats, cats0)  # the sample's own categories
        assert torch.allclose(conts, lam[:, None] * conts0 + (1 - lam[:, None]) * conts0[perm], atol=1e-5)
        assert torch.isfinite(loss)


def test_mixup_blends_every_target(tmp_path):
    torch.manual_seed(0)
    x, y = make_classification(64)
    y2 = x[:, :1].clone()

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = tiny_model(n_out=3)

        def forward(self, x):
            return self.body(x)

    def two_losses(pred, y, y2, reduction=None):
        ce = nn.functional.cross_entropy(pred[:, :2], y, reduction="none")
        mse = ((pred[:, 2:] - y2) ** 2).mean(1)
        out = ce + mse
        return out if two_losses.reduction == "none" else out.mean()

    two_losses.reduction = "mean"
    n = 48
    dls = DataLoaders.from_tensors((x[:n], y[:n], y2[:n]), (x[n:], y[n:], y2[n:]), bs=16, device="cpu")
    learn = Learner(dls, TwoHeads(), loss_func=two_losses, path=tmp_path)
    learn.silent = True
    seen = _fit_with_spy(learn, MixUp())
    for _, _, (yb, y2b), pred, loss, lam, perm in seen:
        two_losses.reduction = "none"
        expected = (lam * two_losses(pred, yb, y2b) + (1 - lam) * two_losses(pred, yb[perm], y2b[perm])).mean()
        two_losses.reduction = "mean"
        assert torch.allclose(loss, expected, atol=1e-5)


def _images(n: int = 96):
    """Bright-left against bright-right 8x8 images, with noise."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return x, y


def _cnn(n_out=2, dense=False):
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 8, 3, padding=1)
    if dense:
        return nn.Sequential(conv, nn.ReLU(), nn.Conv2d(8, n_out, 1))
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, n_out))


def _box(x0, xm):
    changed = (xm != x0).any(1).any(0)  # (H, W): pixels some image got from its partner
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    if not len(rows):
        return None
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def test_cutmix_pastes_a_rectangle_and_weighs_the_loss_by_the_area_kept(tmp_path):
    torch.manual_seed(1)
    x, y = _images()
    learn = _learner(tmp_path, x, y, _cnn(), CrossEntropyLossFlat())
    seen = _fit_with_spy(learn, CutMix(1.0), epochs=3)
    ce = nn.CrossEntropyLoss(reduction="none")
    n_boxes = 0
    for (x0,), (xm,), (yb,), pred, loss, lam, perm in seen:
        box = _box(x0, xm)
        if box is not None:
            r0, r1, c0, c1 = box
            assert torch.equal(xm[:, :, r0:r1, c0:c1], x0[perm][:, :, r0:r1, c0:c1])  # one rectangle for the batch
            outside = torch.ones(8, 8, dtype=torch.bool)
            outside[r0:r1, c0:c1] = False
            assert torch.equal(xm[:, :, outside], x0[:, :, outside])
            assert torch.allclose(lam, torch.full_like(lam, 1 - (r1 - r0) * (c1 - c0) / 64))
            n_boxes += 1
        expected = (lam * ce(pred, yb) + (1 - lam) * ce(pred, yb[perm])).mean()
        assert torch.allclose(loss, expected, atol=1e-5)
    assert n_boxes > 0


def test_cutmix_pastes_the_same_rectangle_into_mask_targets(tmp_path):
    torch.manual_seed(0)
    x, _ = _images()
    masks = (x[:, 0] > 0.5).long()  # (B, H, W): the bright pixels
    learn = _learner(tmp_path, x, masks, _cnn(dense=True), CrossEntropyLossFlat(axis=1))
    seen = _fit_with_spy(learn, CutMix(1.0), epochs=3)
    for _, (xm,), (ym,), pred, loss, *_ in seen:
        assert torch.equal(ym, (xm[:, 0] > 0.5).long())  # each mask still describes its (pasted) image
        expected = nn.functional.cross_entropy(pred, ym, reduction="none").flatten(1).mean(1).mean()
        assert torch.allclose(loss, expected, atol=1e-5)


@pytest.mark.parametrize("cb", [MixUp(0.4), CutMix(1.0)], ids=["mixup", "cutmix"])
def test_training_with_mixing_still_learns(tmp_path, cb):
    x, y = _images(160)
    learn = _learner(tmp_path, x, y, _cnn(), CrossEntropyLossFlat(label_smoothing=0.1), bs=16, metrics=accuracy)
    learn.fit_one_cycle(6, 1e-2, cbs=cb)
    assert learn.recorder.values[-1][2] >= 0.9
    assert learn.get_cb(type(cb)) is None and isinstance(learn.loss_func, CrossEntropyLossFlat)


def test_the_learner_gets_its_loss_back_after_an_error(tmp_path):
    x, y = make_classification(64)
    loss = CrossEntropyLossFlat()
    learn = _learner(tmp_path, x, y, tiny_model(), loss)

    class _Boom(Callback):
        def after_batch(self):
            raise RuntimeError("boom")

    with pytest.raises(CallbackError, match="boom"):
        learn.fit(1, cbs=[MixUp(), _Boom()])
    assert learn.loss_func is loss


def test_mixing_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="alpha"):
        MixUp(0)
    with pytest.raises(ConfigError, match="alpha"):
        CutMix(alpha="big")
    x, y = make_classification(64)
    learn = _learner(tmp_path, x, y, tiny_model(), CrossEntropyLossFlat())
    with pytest.raises(CallbackError, match="CutMix pastes rectangles of images"):
        learn.fit(1, cbs=CutMix())
    ids = torch.randint(0, 5, (64, 3))
    emb = nn.Sequential(nn.Embedding(5, 4), nn.Flatten(), nn.Linear(12, 2))
    learn = _learner(tmp_path, ids, y, emb, CrossEntropyLossFlat())
    with pytest.raises(CallbackError, match="blends float inputs"):
        learn.fit(1, cbs=MixUp())
    learn = _learner(tmp_path, x, y, tiny_model(), lambda p, t: nn.functional.cross_entropy(p, t))
    with pytest.raises(CallbackError, match="reduction"):
        learn.fit(1, cbs=MixUp())
