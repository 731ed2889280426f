"""Hooks keep what layers compute and leave the model as it was; ActivationStats follows every layer's output."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from conftest import make_classification
from ember.core.errors import ConfigError, DataError
from ember.data import DataLoaders
from ember.learner import ActivationStats, Hook, Learner, hook_output, hook_outputs


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_hook_output_keeps_the_detached_output_and_is_removed():
    model = _model()
    x = torch.randn(4, 8)
    with hook_output(model[0]) as h:
        out = model(x)
        assert torch.equal(h.stored, model[0](x)) and not h.stored.requires_grad
    assert h.removed and not model[0]._forward_hooks
    model(x)  # no hook left: nothing kept
    assert out.shape == (4, 2)
    with hook_output(model[1], cpu=True, detach=False) as h:
        model(x)
        assert h.stored.requires_grad  # detach=False keeps the graph, for gradients with respect to features


def test_hook_outputs_and_gradients():
    model = _model()
    x = torch.randn(4, 8)
    with hook_outputs([model[0], model[2]]) as hs, hook_output(model[2], grad=True) as g:
        model(x).sum().backward()
        assert [t.shape for t in hs.stored] == [(4, 16), (4, 2)] and len(hs) == 2
        grad = g.stored[0]  # the gradient of the last layer's output: ones for a sum
        assert torch.equal(grad, torch.ones(4, 2))
    assert all(h.removed for h in hs) and not model[2]._backward_hooks


def test_a_hook_with_a_function_and_no_leaks():
    model = _model()
    h = Hook(model[0], lambda m, i, o: o.mean().item())
    model(torch.ones(2, 8))
    assert isinstance(h.stored, float)
    h.remove()
    h.remove()  # twice is fine
    ref = weakref.ref(model)
    del model, h
    gc.collect()
    assert ref() is None
    with pytest.raises(ConfigError, match="module"):
        Hook("not a module")


def test_activation_stats_follow_every_layer_and_leave_no_hook(tmp_path):
    x, y = make_classification(256)
    dls = DataLoaders.from_tensors((x[:192], y[:192]), (x[192:], y[192:]), bs=32, device="cpu")
    model = _model()
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True
    stats = ActivationStats()
    learn.fit(2, 1e-2, cbs=stats)
    assert stats.names == ["0", "2"]
    assert stats.stats.shape == (2 * 6, 2, 3)  # 6 training batches an epoch, 2 layers, mean/std/near-zero
    h = model[0](x[:32])
    assert torch.isfinite(stats.stats).all() and bool((stats.stats[:, :, 1] > 0).all())
    assert 0 <= float(stats.stats[:, :, 2].min()) and float(stats.stats[:, :, 2].max()) <= 1
    assert h.shape == (32, 16) and not model[0]._forward_hooks and not model[2]._forward_hooks
    fig = stats.plot_layer_stats(0, fname=tmp_path / "s.png")
    assert len(fig.axes) == 3 and (tmp_path / "s.png").exists()
    relu = ActivationStats(modules=[model[1]], every=3)
    learn.fit(1, 1e-2, cbs=relu)
    assert relu.stats.shape == (2, 1, 3) and float(relu.stats[:, 0, 2].min()) > 0.05  # ReLUs give exact zeros
    with pytest.raises(ConfigError, match="idx"):
        relu.plot_layer_stats(3)
    with pytest.raises(DataError, match="No statistics"):
        ActivationStats().plot_layer_stats()
    with pytest.raises(ConfigError, match="every"):
        ActivationStats(every=0)
