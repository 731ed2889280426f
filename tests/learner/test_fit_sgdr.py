"""SGD with warm restarts: the schedule, Learner.fit_sgdr, its checkpoints and resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import CallbackError, ConfigError
from ember.core.seed import set_seed
from ember.data.loaders import DataLoaders
from ember.learner.callback import Callback
from ember.learner.learner import Learner
from ember.learner.optim import get_hyper
from ember.learner.schedule import sgdr_epochs, sgdr_scheds


def sgdr_lr(epoch_pos: float, lr_max: float, cycle_len: int, cycle_mult: int) -> float:
    """The SGDR rate `epoch_pos` epochs into training, written out by hand: find the cycle, then the cosine."""
    start, length = 0.0, float(cycle_len)
    while epoch_pos >= start + length - 1e-12:
        start, length = start + length, length * cycle_mult
    return lr_max * (1 + math.cos(math.pi * (epoch_pos - start) / length)) / 2


def test_sgdr_epochs_and_schedule_values():
    assert sgdr_epochs(3, 1, 2) == 7 and sgdr_epochs(2, 3, 2) == 9 and sgdr_epochs(4, 2, 1) == 8
    sched = sgdr_scheds(0.1, 3, 1, 2)["lr"]
    assert sched(0.0) == pytest.approx(0.1)
    assert sched(0.5 / 7) == pytest.approx(0.05)  # half-way through the first one-epoch cycle
    assert sched(1 / 7) == pytest.approx(0.1)  # a restart
    assert sched(2 / 7) == pytest.approx(0.05)  # half-way through the second, two-epoch cycle
    assert sched(3 / 7) == pytest.approx(0.1)
    assert sched(4 / 7) == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert sched(1.0) == pytest.approx(0.0, abs=1e-12)  # the floor is 0, as in fastai
    per_group = sgdr_scheds([1e-3, 1e-2], 2, 1, 1)["lr"](0.25)
    assert np.allclose(per_group, [5e-4, 5e-3])


def test_fit_sgdr_rate_follows_the_cosine_at_every_iteration(tiny_learner):
    tiny_learner.fit_sgdr(3, 1, lr_max=0.1)  # 1 + 2 + 4 epochs of 8 batches
    lrs = np.array(tiny_learner.recorder.lrs)
    assert len(lrs) == 56 and len(tiny_learner.recorder.values) == 7
    expected = [sgdr_lr(t / 8, 0.1, 1, 2) for t in range(56)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-9, atol=1e-12)
    # Each cycle starts again at lr_max (3/7 summed as 1/7 + 2/7 must not land at the end of the second cycle).
    assert lrs[0] == lrs[8] == lrs[24] == pytest.approx(0.1)
    assert lrs[7] == pytest.approx(0.1 * (1 + math.cos(math.pi * 7 / 8)) / 2) and lrs[23] < 2e-3 and lrs[-1] < 5e-4


def test_fit_sgdr_equal_cycles_and_default_rate(tiny_learner):
    tiny_learner.lr = 0.02
    tiny_learner.fit_sgdr(2, 2, cycle_mult=1)
    lrs = np.array(tiny_learner.recorder.lrs)
    assert len(lrs) == 32
    np.testing.assert_allclose(lrs[:16], lrs[16:])  # the two cycles are alike
    np.testing.assert_allclose(lrs, [sgdr_lr(t / 8, 0.02, 2, 1) for t in range(32)], rtol=1e-9)


def test_fit_sgdr_discriminative_rates(tiny_dls, tmp_path):
    def splitter(m):
        return [list(m[:3].parameters()), list(m[3].parameters())]

    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), splitter=splitter, path=tmp_path)
    learn.silent = True
    seen = []

    class Spy(Callback):
        order = 20  # after the ParamScheduler (10) set the rates
        run_valid = False

        def before_batch(self):
            seen.append(get_hyper(self.learn.opt, "lr"))

    learn.fit_sgdr(2, 1, lr_max=slice(1e-4, 1e-2), cycle_mult=1, cbs=Spy())
    seen = np.array(seen)  # (16, 2)
    hand = np.array([sgdr_lr(t / 8, 1.0, 1, 1) for t in range(16)])
    np.testing.assert_allclose(seen[:, 0], 1e-4 * hand, rtol=1e-9)
    np.testing.assert_allclose(seen[:, 1], 1e-2 * hand, rtol=1e-9)


def make_learner(tmp_path, seed=0):
    set_seed(seed)
    x, y = make_classification(320)
    dls = DataLoaders.from_tensors((x[:256], y[:256]), (x[256:], y[256:]), bs=32, device="cpu")
    learn = Learner(dls, tiny_model(seed=seed), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.model.append(nn.Dropout(0.1))  # uses the RNG during training: resume must restore it
    learn.silent = True
    return learn


class CrashAfter(Callback):
    def before_epoch(self):
        if self.learn.epoch == 2:
            raise RuntimeError("power cut")


def test_fit_sgdr_checkpoint_and_resume_give_the_same_run(tmp_path):
    full = make_learner(tmp_path / "a")
    full.fit_sgdr(2, 1, lr_max=1e-2)  # 3 epochs; the crash comes at the start of the second cycle's second epoch

    crashed = make_learner(tmp_path / "b")
    with pytest.raises(CallbackError, match="power cut"):
        crashed.fit_sgdr(2, 1, lr_max=1e-2, checkpoint="run", cbs=CrashAfter())
    assert (tmp_path / "b" / "models" / "run.ckpt").exists()

    resumed = make_learner(tmp_path / "b", seed=123)  # a new process
    epochs = []

    class Spy(Callback):
        def before_epoch(self):
            epochs.append(self.learn.epoch)

    resumed.fit_sgdr(2, 1, lr_max=1e-2, checkpoint="run", resume=True, cbs=Spy())
    assert epochs == [2]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    np.testing.assert_allclose(resumed.recorder.lrs, full.recorder.lrs, rtol=1e-12)
    np.testing.assert_allclose(resumed.recorder.lrs[16:], [sgdr_lr(t / 8, 1e-2, 1, 2) for t in range(16, 24)])


@pytest.mark.parametrize(
    "kwargs,name",
    [({"n_cycles": 0}, "n_cycles"), ({"cycle_len": 1.5}, "cycle_len"), ({"cycle_mult": 0}, "cycle_mult")],
)
def test_fit_sgdr_bad_counts_are_reported_before_training(tiny_learner, kwargs, name):
    args = {"n_cycles": 2, "cycle_len": 1, **kwargs}
    w0 = tiny_learner.model[0].weight.clone()
    with pytest.raises(ConfigError, match=f"`{name}`"):
        tiny_learner.fit_sgdr(args.pop("n_cycles"), args.pop("cycle_len"), lr_max=1e-2, **args)
    assert torch.equal(w0, tiny_learner.model[0].weight) and tiny_learner.recorder.lrs == []
