"""Schedules, one-cycle / flat-cos / fine-tune policies, parameter groups, freezing and optimizers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_model
from ember.core.errors import ConfigError
from ember.learner import SGD, Adam, Learner, RMSprop
from ember.learner.optim import get_hyper, set_hyper, spread_lr
from ember.learner.schedule import combine_scheds, one_cycle_scheds, sched_cos, sched_exp, sched_lin


def test_schedule_functions():
    assert sched_lin(1, 3)(0.5) == pytest.approx(2)
    assert sched_cos(0, 2)(0) == pytest.approx(0) and sched_cos(0, 2)(1) == pytest.approx(2)
    assert sched_cos(0, 2)(0.5) == pytest.approx(1)
    assert sched_exp(1e-3, 1e-1)(0.5) == pytest.approx(1e-2)
    s = combine_scheds([0.25, 0.75], [sched_lin(0, 1), sched_lin(1, 0)])
    assert s(0.0) == pytest.approx(0) and s(0.25) == pytest.approx(1) and s(1.0) == pytest.approx(0)
    assert s(0.125) == pytest.approx(0.5)
    with pytest.raises(ConfigError):
        combine_scheds([0.5, 0.6], [sched_lin(0, 1), sched_lin(1, 0)])


def test_one_cycle_shape():
    sc = one_cycle_scheds(1e-2, div=25, div_final=1e5, pct_start=0.25, moms=(0.95, 0.85, 0.95))
    assert sc["lr"](0) == pytest.approx(1e-2 / 25)
    assert sc["lr"](0.25) == pytest.approx(1e-2)
    assert sc["lr"](1) == pytest.approx(1e-2 / 1e5)
    assert sc["mom"](0) == pytest.approx(0.95) and sc["mom"](0.25) == pytest.approx(0.85)
    assert sc["mom"](1) == pytest.approx(0.95)


def test_fit_one_cycle_follows_the_schedule(tiny_learner):
    learn = tiny_learner
    learn.fit_one_cycle(4, 1e-2, pct_start=0.25)
    lrs, moms = np.array(learn.recorder.lrs), np.array(learn.recorder.moms)
    n = len(lrs)  # 4 epochs x 8 batches
    assert n == 32
    assert lrs[0] == pytest.approx(1e-2 / 25)
    assert lrs.max() == pytest.approx(1e-2, rel=0.02) and abs(int(lrs.argmax()) - n * 0.25) <= 1
    assert lrs[-1] < 1e-3 and moms.min() == pytest.approx(0.85, abs=0.005) and moms[0] == pytest.approx(0.95)
    assert np.all(np.diff(lrs[: int(n * 0.25)]) > 0) and np.all(np.diff(lrs[int(n * 0.25) + 1 :]) < 0)


def test_fit_flat_cos(tiny_learner):
    tiny_learner.fit_flat_cos(4, 1e-2, pct_start=0.5)
    lrs = np.array(tiny_learner.recorder.lrs)
    assert np.allclose(lrs[:16], 1e-2) and lrs[-1] < 1e-3


def test_spread_lr():
    assert spread_lr(1e-3, 3) == [1e-3] * 3
    assert spread_lr(slice(1e-5, 1e-3), 3) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert spread_lr(slice(1e-3), 3) == pytest.approx([1e-4, 1e-4, 1e-3])
    with pytest.raises(ConfigError, match="one learning rate per parameter group"):
        spread_lr([1e-3, 1e-2], 3)


@pytest.mark.parametrize("opt_func,mom_key", [(Adam, "betas"), (SGD, "momentum"), (RMSprop, "momentum")])
def test_optimizers_and_hyper_names(opt_func, mom_key):
    model = tiny_model()
    opt = opt_func([{"params": list(model.parameters())}], lr=1e-3)
    set_hyper(opt, "mom", 0.8)
    set_hyper(opt, "lr", 0.5)
    set_hyper(opt, "wd", 0.1)
    assert get_hyper(opt, "mom") == [0.8] and get_hyper(opt, "lr") == [0.5] and get_hyper(opt, "wd") == [0.1]
    g = opt.param_groups[0]
    assert (g["betas"][0] if mom_key == "betas" else g["momentum"]) == 0.8


def test_adam_is_decoupled_and_uses_a_fast_implementation():
    opt = Adam(tiny_model().parameters(), lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW)
    g = opt.param_groups[0]
    assert g.get("fused") or g.get("foreach")
    assert isinstance(Adam(tiny_model().parameters(), decouple_wd=False), torch.optim.Adam)


def test_sgd_survives_skipped_mixed_precision_steps():
    """A step skipped for an overflow (the grad scaler's first steps) must leave SGD's momentum well defined: torch's
    fused SGD left new buffers uninitialized there, so ember's SGD uses foreach."""
    torch.manual_seed(0)
    model = tiny_model()
    opt = SGD(model.parameters(), lr=1e-2, mom=0.9, wd=0.1)
    assert not opt.param_groups[0].get("fused") and opt.param_groups[0].get("foreach")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**60)  # the first steps overflow in float16
    for _ in range(6):
        with torch.autocast("cpu", dtype=torch.float16):
            loss = model(torch.randn(16, 8)).float().pow(2).mean()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
    assert scaler.get_scale() < 2.0**60  # steps were skipped
    assert all(torch.isfinite(p).all() for p in model.parameters())


def two_group_learner(dls, tmp_path):
    def splitter(m):
        return [list(m[:3].parameters()), list(m[3].parameters())]

    learn = Learner(dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), splitter=splitter, path=tmp_path)
    learn.silent = True
    return learn


def test_freeze_keeps_batchnorm_trainable_and_unfreeze(tiny_dls, tmp_path):
    learn = two_group_learner(tiny_dls, tmp_path)
    learn.freeze()
    m = learn.model
    assert not m[0].weight.requires_grad and m[2].weight.requires_grad and m[3].weight.requires_grad
    w0 = m[0].weight.clone()
    learn.fit(1, 1e-2)
    assert torch.equal(w0, m[0].weight)
    learn.unfreeze()
    assert all(p.requires_grad for p in m.parameters())
    learn.fit(1, 1e-2)
    assert not torch.equal(w0, m[0].weight)
    learn.train_bn = False
    learn.freeze()
    assert not m[2].weight.requires_grad


def test_discriminative_learning_rates(tiny_dls, tmp_path):
    learn = two_group_learner(tiny_dls, tmp_path)
    learn.fit(1, lr=slice(1e-4, 1e-2))
    assert get_hyper(learn.opt, "lr") == pytest.approx([1e-4, 1e-2])


def test_fine_tune_trains_head_then_everything(tiny_dls, tmp_path):
    learn = two_group_learner(tiny_dls, tmp_path)
    w0 = learn.model[0].weight.clone()
    seen = []

    class Spy(__import__("ember.learner", fromlist=["Callback"]).Callback):
        def before_fit(self):
            seen.append((self.learn.model[0].weight.requires_grad, self.learn.n_epoch))

    learn.fine_tune(2, base_lr=1e-2, freeze_epochs=1, cbs=Spy())
    assert seen == [(False, 1), (True, 2)]
    assert not torch.equal(w0, learn.model[0].weight)
    assert len(learn.recorder.values) == 2  # the recorder holds the last fit
    lrs = get_hyper(learn.opt, "lr")
    assert lrs[0] < lrs[1]  # body slower than head


def test_lr_find_restores_the_model_and_suggests_rates(tiny_learner):
    learn = tiny_learner
    before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    sugg = learn.lr_find(num_it=40, show_plot=False)
    after = learn.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert learn.opt is None  # the optimizer did not exist before; it is not left half-trained
    lrs, losses = learn.recorder.lr_find_results
    assert 5 < len(lrs) <= 40 and lrs[0] == pytest.approx(1e-7)
    for name in ("valley", "steep", "minimum", "slide"):
        v = getattr(sugg, name)
        assert 1e-7 <= v <= 10 and math.isfinite(v)
    kept = slice(40 // 10, len(lrs) - 5)  # the first tenth and the last 5 points are left out
    assert sugg.minimum == pytest.approx(lrs[kept][int(np.argmin(losses[kept]))] / 10)
    fig = learn.recorder.plot_lr_find()
    assert len(fig.axes[0].lines) == 5  # the curve and one marker per suggestion


def test_lr_find_does_not_stop_early_on_a_negative_loss(tiny_learner):
    """A loss below zero (a shifted or Wasserstein-like loss) is not "diverged" once it stops falling."""
    learn = tiny_learner
    ce = nn.CrossEntropyLoss()
    learn.loss_func = lambda out, y: ce(out, y) - 5.0
    learn.lr_find(start_lr=1e-7, end_lr=1e-4, num_it=30, show_plot=False)  # rates too small to diverge
    lrs, losses = learn.recorder.lr_find_results
    assert len(lrs) == 30 and max(losses) < 0


def test_one_cycle_leaves_momentum_off_where_the_optimizer_has_none(tiny_dls, tmp_path):
    from functools import partial

    for opt_func in (partial(SGD, mom=0.0), RMSprop):
        learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), opt_func=opt_func, path=tmp_path)
        learn.silent = True
        learn.fit_one_cycle(1, 1e-3)
        assert get_hyper(learn.opt, "mom") == [0.0] and set(learn.recorder.moms) == {0.0}
    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), opt_func=SGD, path=tmp_path)
    learn.silent = True
    learn.fit_one_cycle(1, 1e-3)
    assert min(learn.recorder.moms) < 0.9 < max(learn.recorder.moms)  # SGD with momentum: cycled


def test_lr_find_leaves_out_trackers_and_loggers(tiny_dls, tmp_path):
    from ember.learner import CSVLogger, EarlyStoppingCallback

    learn = Learner(
        tiny_dls,
        tiny_model(),
        loss_func=nn.CrossEntropyLoss(),
        path=tmp_path,
        cbs=[EarlyStoppingCallback(patience=1), CSVLogger()],
    )
    learn.silent = True
    learn.fit(1, 1e-2)
    log = (tmp_path / "history.csv").read_text()
    learn.lr_find(num_it=20, end_lr=1e-2, show_plot=False)
    assert len(learn.recorder.lr_find_results[0]) == 20  # not stopped by the early stopping callback
    assert (tmp_path / "history.csv").read_text() == log  # the training log is untouched
    assert len(learn.cbs) == 4


def test_an_interrupted_lr_find_restores_the_model_and_optimizer(tiny_learner):
    from ember.core.errors import CallbackError
    from ember.learner import Callback

    class Boom(Callback):
        def after_batch(self):
            if self.learn.iter == 3:
                raise RuntimeError("boom")

    learn = tiny_learner
    learn.fit(1, 1e-2)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_state = {k: v.clone() for k, v in learn.opt.state[learn.opt.param_groups[0]["params"][0]].items()}
    learn.add_cb(Boom())
    with pytest.raises(CallbackError, match="boom"):
        learn.lr_find(show_plot=False)
    assert all(torch.equal(v, weights[k]) for k, v in learn.model.state_dict().items())
    restored = learn.opt.state[learn.opt.param_groups[0]["params"][0]]
    assert all(torch.equal(restored[k], v) for k, v in opt_state.items())


def test_lr_find_suggestions_follow_the_usual_rules():
    from ember.learner.lr_find import suggest_lrs

    lrs = np.geomspace(1e-7, 10, 100)
    x = np.log10(lrs)
    losses = 1.2 - 0.5 / (1 + np.exp(-(x + 3) * 2)) + 0.002 * np.sin(7 * x)
    losses = losses + np.where(x > -0.5, (x + 0.5) ** 2 * 2, 0)
    losses[:4] = [1.6, 1.3, 1.1, 1.5]  # the noisy average of the first few batches
    sugg = suggest_lrs(lrs, losses, skip_start=10)
    # the values fastai's valley, steep, minimum and slide give on this curve
    assert sugg.valley == pytest.approx(6.280291441834259e-04)
    assert sugg.steep == pytest.approx(7.56463327554629e-04)  # not the noise at the start
    assert sugg.minimum == pytest.approx(2.915053062825182e-02)
    assert sugg.slide == pytest.approx(1.788649529057435e-02)
    losses[50] = np.nan  # what follows a NaN is left out
    assert suggest_lrs(lrs, losses, ("minimum",), skip_start=10).minimum < lrs[50] / 10
