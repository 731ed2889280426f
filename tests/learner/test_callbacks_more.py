"""BnFreeze, ShortEpochCallback and MCDropoutCallback on tiny models with batch norm and dropout."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import make_classification
from ember.core.errors import ConfigError
from ember.core.seed import set_seed
from ember.data import DataLoaders
from ember.learner.callback import Callback
from ember.learner.callbacks import BnFreeze, MCDropoutCallback, ShortEpochCallback
from ember.learner.learner import Learner
from ember.metrics import accuracy


def body_head(seed: int = 0) -> nn.Sequential:
    """A body (linear + batch norm) and a head (linear + batch norm + linear): two parameter groups."""
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU())
    head = nn.Sequential(nn.Linear(16, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))
    return nn.Sequential(body, head)


def make_learner(tmp_path, model: nn.Module, bs: int = 32, **kwargs) -> Learner:
    set_seed(0)
    x, y = make_classification(320)
    dls = DataLoaders.from_tensors((x[:256], y[:256]), (x[256:], y[256:]), bs=bs, device="cpu")
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def bn_stats(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor, int]:
    return bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)


# --------------------------------------------------------------------------------------------- BnFreeze
@pytest.mark.parametrize("train_bn", [True, False])
def test_bn_freeze_keeps_the_frozen_body_statistics(tmp_path, train_bn):
    model = body_head()
    learn = make_learner(tmp_path, model, splitter=lambda m: [m[0].parameters(), m[1].parameters()], train_bn=train_bn)
    body_bn, head_bn = model[0][1], model[1][1]
    body_before, head_before = bn_stats(body_bn), bn_stats(head_bn)
    weight_before = body_bn.weight.detach().clone()
    learn.freeze()
    learn.fit(2, 1e-2, cbs=BnFreeze())
    mean, var, n = bn_stats(body_bn)
    assert torch.equal(mean, body_before[0]) and torch.equal(var, body_before[1]) and n == 0
    head_mean, _, head_n = bn_stats(head_bn)
    assert head_n == 2 * 8 and not torch.allclose(head_mean, head_before[0])  # 8 batches an epoch
    # train_bn only decides whether the frozen layer's weight and bias learn; its statistics stay frozen either way
    assert torch.equal(body_bn.weight, weight_before) != train_bn


def test_without_bn_freeze_the_frozen_body_statistics_move(tmp_path):
    model = body_head()
    learn = make_learner(tmp_path, model, splitter=lambda m: [m[0].parameters(), m[1].parameters()])
    before = bn_stats(model[0][1])
    learn.freeze()
    learn.fit(1, 1e-2)
    mean, _, n = bn_stats(model[0][1])
    assert n == 8 and not torch.allclose(mean, before[0])


def test_bn_freeze_follows_unfreeze_and_hand_frozen_layers(tmp_path):
    model = body_head()
    learn = make_learner(tmp_path, model, splitter=lambda m: [m[0].parameters(), m[1].parameters()])
    cb = BnFreeze()
    learn.add_cb(cb)
    assert cb.frozen_norm_layers() == []  # nothing frozen: every layer trains
    learn.freeze()
    assert cb.frozen_norm_layers() == [model[0][1]]
    learn.unfreeze()
    learn.fit(1, 1e-2)
    assert int(model[0][1].num_batches_tracked) == 8 and int(model[1][1].num_batches_tracked) == 8
    # frozen by hand, without freeze_to: a layer none of whose parameters trains is kept too
    model[1][1].requires_grad_(False)
    assert cb.frozen_norm_layers() == [model[1][1]]
    learn.fit(1, 1e-2)
    assert int(model[0][1].num_batches_tracked) == 16 and int(model[1][1].num_batches_tracked) == 8


# ----------------------------------------------------------------------------------- ShortEpochCallback
class CountBatches(Callback):
    def __init__(self) -> None:
        self.train: list[int] = []
        self.valid: list[int] = []

    def before_epoch(self) -> None:
        self.train.append(0)
        self.valid.append(0)

    def after_batch(self) -> None:
        (self.train if self.learn.training else self.valid)[-1] += 1


def tiny_mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))


def test_short_epoch_runs_a_fraction_of_the_batches_and_reports_them(tmp_path):
    # bs=8: 32 training batches, 4 validation batches of 16
    learn = make_learner(tmp_path, tiny_mlp(), bs=8, metrics=accuracy)
    count = CountBatches()
    learn.fit(2, 1e-2, cbs=[ShortEpochCallback(pct=0.5), count])
    assert count.train == [16, 16] and count.valid == [2, 2]
    assert learn.recorder.iters == [16, 16] and len(learn.recorder.losses) == 32
    # the validation loss and accuracy are those of the first 32 validation items, the batches that ran
    x, y = make_classification(320)
    with torch.no_grad():
        out = learn.model(x[256:288])
    _, valid_loss, acc = learn.recorder.values[-1]
    assert valid_loss == pytest.approx(float(F.cross_entropy(out, y[256:288])), rel=1e-5)
    assert acc == pytest.approx(float((out.argmax(1) == y[256:288]).float().mean()))
    assert len(learn.get_preds()[0]) == 64  # outside the fit nothing is cut short


def test_short_epoch_runs_at_least_one_batch_and_can_keep_full_validation(tmp_path):
    learn = make_learner(tmp_path, tiny_mlp(), bs=8)
    count = CountBatches()
    learn.add_cb(ShortEpochCallback(short_valid=False))  # pct=0.01 of 32 batches: one
    learn.fit(1, 1e-2, cbs=count)
    assert count.train == [1] and count.valid == [4]
    assert learn.recorder.values[-1][1] == pytest.approx(learn.validate()[0], rel=1e-6)
    assert ShortEpochCallback(pct=0.07).n_batches(100) == 7 and ShortEpochCallback(pct=0.25).n_batches(10) == 3
    assert ShortEpochCallback(pct=1).n_batches(7) == 7


@pytest.mark.parametrize("pct", [0, 1.5, -0.1, True, "10%"])
def test_short_epoch_refuses_a_bad_fraction(pct):
    with pytest.raises(ConfigError, match="pct"):
        ShortEpochCallback(pct=pct)


# ------------------------------------------------------------------------------------ MCDropoutCallback
class FeatureDropout(nn.Module):
    """A dropout module with a batch norm inside: the norm must stay in evaluation mode under MC dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(self.norm(x), 0.5, self.training)


def dropout_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), FeatureDropout(), nn.Linear(32, 2))


def test_mc_dropout_samples_differ_and_batch_norm_stays_in_eval(tmp_path):
    model = dropout_model()
    learn = make_learner(tmp_path, model)
    learn.fit(1, 1e-2)
    plain = learn.get_preds()[0]
    assert torch.equal(plain, learn.get_preds()[0])  # without the callback predictions are deterministic

    norms = [model[1], model[3].norm]
    stats = [bn_stats(bn) for bn in norms]
    modes: list[bool] = []
    hooks = [bn.register_forward_hook(lambda m, i, o: modes.append(m.training)) for bn in norms]
    with learn.added_cbs(MCDropoutCallback()):
        a, b = learn.get_preds()[0], learn.get_preds()[0]
    for h in hooks:
        h.remove()
    assert a.shape == plain.shape == (64, 2)
    assert not torch.allclose(a, b) and not torch.allclose(a, plain)
    assert modes and not any(modes)  # every batch norm normalized with its running statistics
    assert all(torch.equal(s[0], bn_stats(bn)[0]) and s[2] == bn_stats(bn)[2] for s, bn in zip(stats, norms))
    assert not any(m.training for m in model.modules())  # dropout back in evaluation mode after the pass
    assert torch.equal(plain, learn.get_preds()[0])  # and the callback is gone with the `with` block


def test_mc_dropout_through_validate_and_torch_dropout(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 2))
    learn = make_learner(tmp_path, model)
    plain = learn.validate()[0]
    assert learn.validate()[0] == plain
    mc = [learn.validate(cbs=[MCDropoutCallback()])[0] for _ in range(2)]
    assert mc[0] != mc[1] and plain not in mc
    assert not model[2].training
    preds = learn.get_preds()[0]
    a, b = (learn.get_preds(cbs=MCDropoutCallback())[0] for _ in range(2))  # for this run only
    assert not torch.allclose(a, b) and torch.equal(learn.get_preds()[0], preds)
