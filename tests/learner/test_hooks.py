"""Hooks keep what layers compute and leave the model as it was; ActivationStats follows every layer's output."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from conftest import make_classification
from ember.core.errors import CallbackError, ConfigError, DataError
from ember.data import DataLoaders
from ember.learner import ActivationStats, Callback, Hook, Learner, hook_output, hook_outputs


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
        assert torch.equal(g.stored, torch.ones(4, 2))  # the gradient of the last layer's output: ones for a sum
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


def test_hooks_survive_in_place_operations_and_containers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(inplace=True), nn.Linear(16, 2))
    x = torch.randn(4, 8)
    with hook_output(model[0]) as h, hook_output(model[0], grad=True) as g:
        model(x).sum().backward()  # the in-place ReLU rewrites the first layer's output after the hook saw it
        before_relu = model[0](x).detach()
        assert torch.equal(h.stored, before_relu) and bool((h.stored < 0).any())
        lin = before_relu.clone().requires_grad_()
        model[2](torch.relu(lin)).sum().backward()
        assert torch.allclose(g.stored, lin.grad)
    with hook_outputs(model) as hs:  # a container stands for its children
        model(x)
        assert len(hs) == 3 and [t.shape for t in hs.stored] == [(4, 16), (4, 16), (4, 2)]


def test_activation_stats_with_a_layer_that_does_not_always_run_and_after_an_error(tmp_path):
    class Sometimes(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(8, 2), nn.Linear(8, 2)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.a(x) if self.calls % 2 else self.b(x)

    x, y = make_classification(128)
    dls = DataLoaders.from_tensors((x[:96], y[:96]), (x[96:], y[96:]), bs=16, device="cpu")
    model = Sometimes()
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True
    stats = ActivationStats(modules=(m for m in [model.a, model.b]), every=4)  # a generator is fine
    learn.fit(2, 1e-2, cbs=stats)
    assert stats.steps == [0, 4, 8] and stats.stats.shape == (3, 2, 3)
    ran_a = ~torch.isnan(stats.stats[:, 0, 0])
    assert torch.equal(ran_a, torch.isnan(stats.stats[:, 1, 0]))  # exactly one of the two ran each batch
    learn.fit(1, 1e-2, cbs=stats)  # a second fit still knows its layers
    assert stats.stats.shape[0] == 2

    class _Boom(Callback):
        def after_batch(self):
            raise RuntimeError("boom")

    with pytest.raises(CallbackError, match="boom"):
        learn.fit(1, cbs=[stats, _Boom()])
    assert not model.a._forward_hooks and not model.b._forward_hooks
