"""Stock callbacks, checkpoints and resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import CallbackError, EmberError
from ember.core.seed import set_seed
from ember.data import DataLoaders
from ember.learner import (
    SGD,
    Callback,
    CSVLogger,
    EarlyStoppingCallback,
    GradientAccumulation,
    GradientClip,
    Learner,
    SaveModelCallback,
    TerminateOnNaNCallback,
)
from ember.metrics import accuracy, as_metric


def make_learner(tmp_path, seed=0, bs=32, blocks=False, **kwargs):
    set_seed(seed)
    x, y = make_classification(320)
    if blocks:  # ember's own loaders: shuffled by a generator of their own
        from ember.data import CategoryBlock, DataBlock, IndexSplitter, RegressionBlock

        rows = [(x[i].tolist(), int(y[i])) for i in range(320)]
        dls = DataBlock(
            (RegressionBlock(n_out=8), CategoryBlock),
            get_x=lambda r: r[0],
            get_y=lambda r: r[1],
            splitter=IndexSplitter(range(256, 320)),
        ).dataloaders(rows, bs=bs, device="cpu")
        set_seed(seed + 1000)  # the global generator moves on; the loaders' own must be what resume restores
    else:
        dls = DataLoaders.from_tensors((x[:256], y[:256]), (x[256:], y[256:]), bs=bs, device="cpu")
    kwargs.setdefault("loss_func", nn.CrossEntropyLoss())
    learn = Learner(dls, tiny_model(seed=seed), path=tmp_path, **kwargs)
    learn.silent = True
    return learn


class CrashAfter(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def before_epoch(self):
        if self.learn.epoch == self.epoch + 1:
            raise RuntimeError("power cut")


@pytest.mark.parametrize("blocks", [False, True])
def test_resume_after_a_crash_gives_the_same_weights(tmp_path, blocks):
    full = make_learner(tmp_path / "a", metrics=accuracy, blocks=blocks)
    full.model.append(nn.Dropout(0.1))  # uses the RNG during training: resume must restore it
    full.fit_one_cycle(4, 1e-2)

    crashed = make_learner(tmp_path / "b", metrics=accuracy, blocks=blocks)
    crashed.model.append(nn.Dropout(0.1))
    with pytest.raises(CallbackError, match="power cut"):
        crashed.fit_one_cycle(4, 1e-2, checkpoint="run", cbs=CrashAfter(1))
    assert (tmp_path / "b" / "models" / "run.ckpt").exists()
    assert not list((tmp_path / "b" / "models").glob("*.tmp"))

    resumed = make_learner(tmp_path / "b", seed=123, metrics=accuracy, blocks=blocks)  # a new process
    resumed.model.append(nn.Dropout(0.1))
    epochs = []

    class Spy(Callback):
        def before_epoch(self):
            epochs.append(self.learn.epoch)

    resumed.fit_one_cycle(4, 1e-2, checkpoint="run", resume=True, cbs=Spy())
    assert epochs == [2, 3]
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert len(resumed.recorder.values) == 4
    assert resumed.recorder.values[-1] == pytest.approx(full.recorder.values[-1])


def test_resume_errors(tmp_path):
    learn = make_learner(tmp_path)
    with pytest.raises(EmberError, match="no checkpoint"):
        learn.fit(2, resume=True)
    learn.fit(2, checkpoint="c")
    with pytest.raises(EmberError, match="2 epochs"):
        learn.fit(3, checkpoint="c", resume=True)


def test_gradient_accumulation_equals_a_bigger_batch(tmp_path):
    def opt(ps, lr, **kw):
        return SGD(ps, lr=lr, mom=0.0)

    big = make_learner(tmp_path, bs=32, opt_func=opt)
    big.model = nn.Sequential(nn.Linear(8, 2))  # no batch norm: batch statistics would differ
    torch.manual_seed(5)
    big.model[0].reset_parameters()
    small = make_learner(tmp_path, bs=16, opt_func=opt)
    small.model = nn.Sequential(nn.Linear(8, 2))
    small.model[0].load_state_dict(big.model[0].state_dict())
    for learn in (big, small):
        learn.dls.train.dl = torch.utils.data.DataLoader(learn.dls.train.dataset, batch_size=learn.dls.bs)  # no shuffle
    big.fit(1, lr=0.1)
    small.fit(1, lr=0.1, cbs=GradientAccumulation(32))
    assert torch.allclose(big.model[0].weight, small.model[0].weight, atol=1e-6)


def test_gradient_clip_bounds_the_norm(tmp_path):
    norms = []

    class Norm(Callback):
        order = 35  # after GradientClip (30)

        def before_step(self):
            norms.append(torch.nn.utils.get_total_norm([p.grad for p in self.learn.model.parameters()]).item())

    learn = make_learner(tmp_path)
    learn.fit(1, lr=1e-2, cbs=[GradientClip(0.01), Norm()])
    assert max(norms) <= 0.01 + 1e-6


def test_early_stopping_stops(tmp_path):
    learn = make_learner(tmp_path, metrics=accuracy)
    learn.fit(20, lr=0.0, cbs=EarlyStoppingCallback(monitor="valid_loss", patience=2))
    assert len(learn.recorder.values) == 3  # epoch 0 sets the best; 1 and 2 do not improve


def test_early_stopping_unknown_monitor(tmp_path):
    learn = make_learner(tmp_path)
    with pytest.raises(Exception, match="monitor"):
        learn.fit(1, cbs=EarlyStoppingCallback(monitor="acuracy"))


def test_save_model_keeps_the_best_and_loads_it(tmp_path):
    learn = make_learner(tmp_path, metrics=accuracy)
    snapshots = {}

    class Snap(Callback):
        order = 95

        def after_epoch(self):
            snapshots[self.learn.epoch] = (
                {k: v.clone() for k, v in self.learn.model.state_dict().items()},
                self.learn.recorder.log["valid_loss"],
            )

    learn.fit(4, lr=0.05, cbs=[SaveModelCallback(monitor="valid_loss", fname="best"), Snap()])
    best_epoch = min(snapshots, key=lambda e: snapshots[e][1])
    assert (tmp_path / "models" / "best.pth").exists()
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, snapshots[best_epoch][0][k])
    learn.fit(2, lr=0.05, cbs=SaveModelCallback(every_epoch=True, fname="e"))
    assert (tmp_path / "models" / "e_0.pth").exists() and (tmp_path / "models" / "e_1.pth").exists()


def test_csv_logger(tmp_path):
    learn = make_learner(tmp_path, metrics=accuracy)
    cb = CSVLogger()
    learn.fit(3, lr=1e-2, cbs=cb)
    df = cb.read_log()
    assert list(df.columns) == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(df) == 3 and df["valid_loss"].iloc[-1] == pytest.approx(learn.recorder.values[-1][1])


def test_terminate_on_nan(tmp_path, capsys):
    learn = make_learner(tmp_path)
    learn.fit(3, lr=1e6, cbs=TerminateOnNaNCallback())
    out = capsys.readouterr().out
    assert "training stopped" in out and "lower learning rate" in out
    assert len(learn.recorder.values) == 0 or learn.epoch < 2


def test_a_skipped_batch_records_no_loss_and_cleanup_runs_after_an_error(tmp_path):
    from ember.learner import CancelBatchException

    x, y = make_classification(96)
    dls = DataLoaders.from_tensors((x[:64], y[:64]), (x[64:], y[64:]), bs=16, device="cpu")
    learn = Learner(dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True

    class _Skip(Callback):
        def before_batch(self):
            if self.learn.training and self.learn.iter == 1:
                raise CancelBatchException()

    learn.fit(1, 1e-3, cbs=_Skip())
    assert len(learn.recorder.losses) == 3  # 4 batches, one skipped: not the previous batch's loss again
    assert len(set(learn.recorder.losses)) == 3

    class _SkipValid(Callback):
        def before_batch(self):
            if not self.learn.training and self.learn.iter == 0:
                raise CancelBatchException()

    learn.metrics = [as_metric(accuracy)]
    valid = DataLoaders.from_tensors((x[:64], y[:64]), (x[64:], y[64:]), bs=8, device="cpu").valid  # 2 batches
    loss, acc = learn.validate(dl=valid, cbs=[_SkipValid()])  # only the second batch (16 of 32 items) counts
    preds, targs = learn.get_preds(dl=valid)
    assert acc == pytest.approx(float((preds[16:].argmax(1) == targs[16:]).float().mean()))

    class _Tidy(Callback):
        def before_fit(self):
            self.cleaned = self.after = False

        def after_batch(self):
            raise ValueError("boom")

        def after_fit(self):
            self.after = True

        def cleanup_fit(self):
            self.cleaned = True

    tidy = _Tidy()
    with pytest.raises(CallbackError, match="boom"):
        learn.fit(1, 1e-3, cbs=tidy)
    assert tidy.cleaned and not tidy.after

    class _BadCleanup(Callback):
        order = -5  # cleaned up before _Tidy

        def cleanup_fit(self):
            raise RuntimeError("cleanup failed")

    tidy = _Tidy()
    with pytest.raises(CallbackError, match="boom"):  # the fit's own error stays the one reported
        learn.fit(1, 1e-3, cbs=[_BadCleanup(), tidy])
    assert tidy.cleaned
    tidy = _Tidy()
    tidy.after_batch = lambda: None
    with pytest.raises(RuntimeError, match="cleanup failed"):  # a fit that went well reports the cleanup's error
        learn.fit(1, 1e-3, cbs=[_BadCleanup(), tidy])
    assert tidy.cleaned and tidy.after


def regression_learner(tmp_path, **kwargs):
    set_seed(0)
    x = torch.randn(96, 4, generator=torch.Generator().manual_seed(0))
    y = x.sum(1, keepdim=True)
    dls = DataLoaders.from_tensors((x[:64], y[:64]), (x[64:], y[64:]), bs=16, device="cpu")
    learn = Learner(dls, nn.Linear(4, 1), loss_func=nn.MSELoss(), path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def test_trackers_know_that_error_metrics_improve_downwards(tmp_path):
    import operator

    from ember.metrics import mae, rmse

    learn = regression_learner(tmp_path, metrics=[rmse, mae, accuracy])
    save = SaveModelCallback(monitor="rmse", fname="best")
    stop = EarlyStoppingCallback(monitor="mae", patience=1)
    learn.fit(4, 0.05, cbs=[save, stop])
    rmses = [row[2] for row in learn.recorder.values]
    assert len(rmses) == 4 and rmses[-1] < rmses[0]  # improving: early stopping on mae did not fire
    assert save.best == min(rmses)
    assert learn.validate()[1] == pytest.approx(min(rmses))  # the best (lowest rmse) weights were loaded back
    learn.add_cb(acc := EarlyStoppingCallback(monitor="accuracy"))
    assert acc.comp is operator.gt and save.comp is operator.lt
    assert EarlyStoppingCallback(monitor="rmse", comp=operator.gt).comp is operator.gt  # `comp` overrides


def test_early_stopping_lets_loggers_and_the_checkpoint_record_the_last_epoch(tmp_path):
    learn = make_learner(tmp_path, metrics=accuracy)
    learn.fit(20, lr=0.0, cbs=[EarlyStoppingCallback(patience=2), CSVLogger()], checkpoint="ck")
    import pandas as pd

    from ember.learner.checkpoint import safe_load

    assert len(learn.recorder.values) == 3  # epoch 2 triggered the stop ...
    assert len(pd.read_csv(tmp_path / "history.csv")) == 3  # ... and is in the log
    assert safe_load(learn.checkpoint_path("ck"))["epoch"] == 2  # ... and in the checkpoint


def test_metrics_with_the_same_name_get_their_own_columns(tmp_path):
    from ember.metrics import F1Score

    learn = make_learner(tmp_path, metrics=[F1Score(average="macro"), F1Score(average="micro"), accuracy])
    cb = CSVLogger()
    learn.fit(1, lr=1e-2, cbs=[cb, EarlyStoppingCallback(monitor="f1_score_2", patience=5)])
    names = ["epoch", "train_loss", "valid_loss", "f1_score", "f1_score_2", "accuracy", "time"]
    assert learn.recorder.metric_names == names
    df = cb.read_log()
    assert list(df.columns) == names
    values = learn.recorder.values[-1]
    assert df["f1_score"].iloc[0] == pytest.approx(values[2]) and df["f1_score_2"].iloc[0] == pytest.approx(values[3])
    assert learn.recorder.log["f1_score_2"] == values[3] and values[2] != values[3]


def test_checkpoint_keeps_the_state_of_each_callback_of_a_class(tmp_path):
    from ember.learner.checkpoint import restore_state, safe_load

    def trackers():
        return [SaveModelCallback(monitor="valid_loss", fname="l"), SaveModelCallback(monitor="accuracy", fname="a")]

    learn = make_learner(tmp_path, metrics=accuracy)
    cbs = trackers()
    learn.fit(2, lr=0.05, cbs=cbs, checkpoint="ck")
    state = safe_load(learn.checkpoint_path("ck"))
    assert state["callbacks"]["SaveModelCallback"]["best"] == cbs[0].best
    assert state["callbacks"]["SaveModelCallback_2"]["best"] == cbs[1].best
    fresh = make_learner(tmp_path, metrics=accuracy)
    new = trackers()
    fresh.add_cbs(new)
    fresh.create_opt()
    fresh.n_epoch = 2
    restore_state(fresh, state, learn.checkpoint_path("ck"))
    assert [c.best for c in new] == [c.best for c in cbs] and cbs[0].best != cbs[1].best


def test_resume_into_a_changed_model_or_optimizer_is_a_clear_error(tmp_path):
    learn = make_learner(tmp_path)
    learn.fit(1, lr=1e-2, checkpoint="ck")
    changed = make_learner(tmp_path)
    changed.model[-1] = nn.Linear(16, 3)
    before = {k: v.clone() for k, v in changed.model.state_dict().items()}
    with pytest.raises(EmberError, match="do not fit this model.*3.weight"):
        changed.fit(1, lr=1e-2, checkpoint="ck", resume=True)
    assert all(torch.equal(v, before[k]) for k, v in changed.model.state_dict().items())
    with pytest.raises(EmberError, match="optimizer state does not fit.*SGD"):
        make_learner(tmp_path, opt_func=SGD).fit(1, lr=1e-2, checkpoint="ck", resume=True)


def test_trackers_and_activation_stats_survive_a_fit_cancelled_in_before_fit(tmp_path):
    from ember.learner import ActivationStats, CancelFitException

    class Skip(Callback):
        order = -1

        def before_fit(self):
            raise CancelFitException()

    learn = make_learner(tmp_path)
    learn.fit(1, lr=1e-2, cbs=[Skip(), SaveModelCallback(), ActivationStats()])  # no error


def test_save_model_reset_on_fit(tmp_path):
    learn = make_learner(tmp_path, metrics=accuracy)
    keep = SaveModelCallback(fname="keep", reset_on_fit=False)
    learn.fit(1, lr=0.05, cbs=keep)
    saved = torch.load(tmp_path / "models" / "keep.pth", weights_only=True)["model"]
    keep.best = 1e-9  # a best that the next fit cannot beat
    learn.fit(1, lr=0.05, cbs=keep)
    assert keep.best == 1e-9  # kept across fits, and the first fit's best model is what is loaded
    assert all(torch.equal(v, saved[k]) for k, v in learn.model.state_dict().items())
    keep.reset_on_fit = True
    learn.fit(1, lr=0.05, cbs=keep)
    assert keep.best == pytest.approx(learn.recorder.values[-1][1])


def test_csv_logger_closes_its_file_after_an_error(tmp_path):
    class Boom(Callback):
        def after_batch(self):
            raise ValueError("boom")

    learn = make_learner(tmp_path)
    log = CSVLogger()
    with pytest.raises(CallbackError, match="boom"):
        learn.fit(1, lr=1e-2, cbs=[log, Boom()])
    assert log._file is None
