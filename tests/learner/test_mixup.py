"""MixUp and CutMix: what the model and the loss see in a training batch, validation left alone, every kind of
target, and a real training run with each."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import CallbackError, ConfigError
from ember.data import DataLoaders
from ember.learner import Callback, CutMix, Learner, MixUp
from ember.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat
from ember.metrics import accuracy


class _Seen(Callback):
    """Keeps what the loss receives in each training batch (it runs after the mixing callbacks)."""

    order = 0

    def before_fit(self):
        self.train, self.valid = [], []

    def after_loss(self):
        (self.train if self.learn.training else self.valid).append(
            (self.learn.xb[0].detach().clone(), self.learn.yb[0].detach().clone())
        )


def _learner(tmp_path, x, y, model, loss, bs=16, **kwargs):
    n = len(x) * 3 // 4
    dls = DataLoaders.from_tensors((x[:n], y[:n]), (x[n:], y[n:]), bs=bs, device="cpu")
    learn = Learner(dls, model, loss_func=loss, path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def test_mixup_blends_inputs_and_class_targets_the_same_way(tmp_path):
    torch.manual_seed(0)
    x, y = make_classification(64)
    learn = _learner(tmp_path, x, y, tiny_model(), CrossEntropyLossFlat())
    seen = _Seen()
    originals = []

    class _Before(Callback):
        order = -30  # before MixUp

        def before_batch(self):
            if self.learn.training:
                originals.append((self.learn.xb[0].clone(), self.learn.yb[0].clone()))

    learn.fit(1, 1e-3, cbs=[MixUp(0.4), seen, _Before()])
    assert len(seen.train) == len(originals) == 3
    for (x0, y0), (xm, ym) in zip(originals, seen.train):
        assert ym.shape == (16, 2) and ym.dtype == torch.float32
        assert torch.allclose(ym.sum(1), torch.ones(16))
        onehot = torch.nn.functional.one_hot(y0, 2).float()
        for i in range(16):
            # the mixed input is lam * its own + (1 - lam) * one partner's, lam >= 0.5, and the target the same blend
            found = False
            for j in range(16):
                d = x0[i] - x0[j]
                lam = 1.0 if j == i else float(((xm[i] - x0[j]) @ d) / (d @ d))
                if torch.allclose(xm[i], lam * x0[i] + (1 - lam) * x0[j], atol=1e-5) and lam >= 0.5 - 1e-5:
                    found = found or torch.allclose(ym[i], lam * onehot[i] + (1 - lam) * onehot[j], atol=1e-4)
            assert found, i
    for _, yv in seen.valid:  # validation sees the data as it is
        assert yv.dtype == torch.int64 and yv.ndim == 1
    assert learn.recorder.values[-1][1] is not None  # the validation loss and metrics still work


def test_mixup_blends_float_targets_directly(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y_multi = (x[:, :3] > 0).float()
    seen = _Seen()
    _learner(tmp_path, x, y_multi, tiny_model(n_out=3), BCEWithLogitsLossFlat()).fit(1, cbs=[MixUp(), seen])
    assert all(y.shape == (16, 3) and ((y >= 0) & (y <= 1)).all() for _, y in seen.train)
    assert any(((y > 0) & (y < 1)).any() for _, y in seen.train)  # blended, not just copied
    y_reg = x[:, :1] * 2
    _learner(tmp_path, x, y_reg, tiny_model(n_out=1), MSELossFlat()).fit(1, cbs=[MixUp(), seen])
    assert all(y.shape == (16, 1) and y.is_floating_point() for _, y in seen.train)


def _images(n: int = 96):
    """Bright-left against bright-right 8x8 images, with noise."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    x[y == 0, :, :, :4] += 1.0
    x[y == 1, :, :, 4:] += 1.0
    return x, y


def _cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 2)
    )


def test_cutmix_pastes_a_rectangle_and_weighs_targets_by_area(tmp_path):
    torch.manual_seed(1)
    x, y = _images()
    seen = _Seen()
    originals = []

    class _Before(Callback):
        order = -30

        def before_batch(self):
            if self.learn.training:
                originals.append((self.learn.xb[0].clone(), self.learn.yb[0].clone()))

    _learner(tmp_path, x, y, _cnn(), CrossEntropyLossFlat()).fit(3, cbs=[CutMix(1.0), seen, _Before()])
    n_checked = 0
    for (x0, y0), (xm, ym) in zip(originals, seen.train):
        assert torch.allclose(ym.sum(1), torch.ones(len(ym)))
        changed = (xm != x0).any(1)  # (B, H, W): where each image got its partner's pixels
        box = changed.any(0)
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        if not len(rows):
            continue
        # one rectangle for the whole batch, nothing changed outside it, and the targets weighted by the area kept
        r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
        outside = torch.ones_like(box)
        outside[r0:r1, c0:c1] = False
        assert not bool((changed & outside).any())
        kept = 1 - (r1 - r0) * (c1 - c0) / 64
        own = ym[torch.arange(len(y0)), y0]
        mixed = own < 1 - 1e-6  # images whose partner had the other class
        assert torch.allclose(own[mixed], torch.full_like(own[mixed], kept), atol=1e-5)
        n_checked += int(mixed.sum())
    assert n_checked > 0


@pytest.mark.parametrize("cb", [MixUp(0.4), CutMix(1.0)], ids=["mixup", "cutmix"])
def test_training_with_mixing_still_learns(tmp_path, cb):
    x, y = _images(160)
    learn = _learner(tmp_path, x, y, _cnn(), CrossEntropyLossFlat(label_smoothing=0.1), bs=16, metrics=accuracy)
    learn.fit_one_cycle(6, 1e-2, cbs=cb)
    assert learn.recorder.values[-1][2] >= 0.9
    assert cb.learn is learn and learn.get_cb(type(cb)) is None  # a fit's callback, gone afterwards


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
