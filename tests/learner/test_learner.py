"""The training loop: events, cancellation, callbacks, policies, evaluation, save/load."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import make_classification, tiny_model
from ember.core.errors import CallbackError, ConfigError, EmberError
from ember.data import DataLoaders
from ember.learner import (
    EVENTS,
    SGD,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    Learner,
)
from ember.metrics import accuracy, error_rate


class EventLog(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []


for _e in EVENTS:
    setattr(EventLog, _e, (lambda name: lambda self: self.events.append(name))(_e))


def one_batch_dls(n_train: int = 32, n_valid: int = 16, bs: int = 16) -> DataLoaders:
    x, y = make_classification(n_train + n_valid)
    return DataLoaders.from_tensors((x[:n_train], y[:n_train]), (x[n_train:], y[n_train:]), bs=bs, device="cpu")


def quiet_learner(dls=None, **kwargs) -> Learner:
    kwargs.setdefault("loss_func", nn.CrossEntropyLoss())
    learn = Learner(dls or one_batch_dls(), tiny_model(), **kwargs)
    learn.silent = True
    return learn


BATCH_TRAIN = [
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "before_step",
    "after_step",
    "after_batch",
]
BATCH_VALID = ["before_batch", "after_pred", "after_loss", "after_batch"]


def test_event_order_of_one_epoch():
    log = EventLog()
    learn = quiet_learner(one_batch_dls(32, 16, bs=16))
    learn.fit(1, cbs=log)
    # 2 training batches of 16, 1 validation batch of 32 (valid bs is doubled)
    expected = (
        ["before_fit", "before_epoch", "before_train"]
        + BATCH_TRAIN * 2
        + ["after_train", "before_validate"]
        + BATCH_VALID
        + ["after_validate", "after_epoch", "after_fit"]
    )
    assert log.events == expected


class CancelAt(Callback):
    def __init__(self, event: str, exc: type[Exception], when=lambda learn: True) -> None:
        self.event, self.exc, self.when = event, exc, when
        self.seen: list[str] = []

    def _maybe(self, name: str) -> None:
        self.seen.append(name)
        if name == self.event and self.when(self.learn):
            raise self.exc()


for _e in EVENTS:
    setattr(CancelAt, _e, (lambda name: lambda self: self._maybe(name))(_e))


def test_cancel_batch_skips_the_rest_of_the_batch_only():
    cb = CancelAt("before_batch", CancelBatchException, lambda learn: learn.training)
    learn = quiet_learner()
    before = [p.clone() for p in learn.model.parameters()]
    learn.fit(1, cbs=cb)
    assert cb.seen.count("after_cancel_batch") == 2
    assert "before_step" not in cb.seen
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))  # never stepped
    assert "after_validate" in cb.seen


def test_cancel_fit_runs_after_cancel_fit_then_after_fit():
    cb = CancelAt("after_epoch", CancelFitException)
    cb.order = 100  # after the recorder has written the epoch's row
    learn = quiet_learner()
    learn.fit(5, cbs=cb)
    assert cb.seen.count("before_epoch") == 1
    assert cb.seen[-2:] == ["after_cancel_fit", "after_fit"]
    assert len(learn.recorder.values) == 1


def test_cancel_train_still_validates_and_cancel_epoch_skips_validation():
    cb = CancelAt("before_train", CancelTrainException)
    quiet_learner().fit(1, cbs=cb)
    assert "after_cancel_train" in cb.seen and "before_validate" in cb.seen
    cb = CancelAt("before_train", CancelEpochException)
    quiet_learner().fit(1, cbs=cb)
    assert "after_cancel_epoch" in cb.seen and "before_validate" not in cb.seen


def test_cancel_step_keeps_gradients():
    cb = CancelAt("before_step", CancelStepException)
    learn = quiet_learner()
    learn.fit(1, cbs=cb)
    assert all(p.grad is not None for p in learn.model.parameters())


def test_callbacks_per_fit_are_removed_and_for_good_are_kept():
    learn = quiet_learner()
    log = EventLog()
    learn.fit(1, cbs=log)
    assert log not in learn.cbs
    learn.add_cb(log)
    learn.fit(1)
    assert log in learn.cbs and log.learn is learn
    learn.remove_cb(EventLog)
    assert log not in learn.cbs


def test_callback_order_is_respected():
    calls = []

    class A(Callback):
        order = 5

        def before_fit(self):
            calls.append("A")

    class B(Callback):
        order = 1

        def before_fit(self):
            calls.append("B")

    quiet_learner().fit(0, cbs=[A(), B()])
    assert calls == ["B", "A"]


def test_callbacks_can_replace_loop_state():
    class DoubleLoss(Callback):
        def after_loss(self):
            self.learn.loss_grad = self.learn.loss_grad * 0  # no learning signal at all

    learn = quiet_learner()
    before = [p.clone() for p in learn.model.parameters()]
    learn.fit(1, lr=1e-2, wd=0.0, cbs=DoubleLoss())
    after = list(learn.model.parameters())
    # Only Adam's epsilon-sized moves are possible with zero gradients: weights stay put.
    assert all(torch.allclose(a, b) for a, b in zip(before, after))


def test_unknown_hook_name_is_an_error_at_class_definition():
    with pytest.raises(EmberError, match="before_bach.*Did you mean 'before_batch'"):

        class Typo(Callback):
            def before_bach(self):
                pass


def test_failing_callback_is_reraised_naming_callback_and_event():
    class Broken(Callback):
        def after_loss(self):
            raise ValueError("boom")

    learn = quiet_learner()
    with pytest.raises(CallbackError, match=r"Broken failed in `after_loss`: ValueError: boom") as info:
        learn.fit(1, cbs=Broken())
    assert isinstance(info.value.__cause__, ValueError)
    assert not any(isinstance(c, Broken) for c in learn.cbs)


def test_loop_state_is_exposed():
    seen = []

    class Spy(Callback):
        def after_batch(self):
            seen.append((self.learn.epoch, self.learn.iter, self.learn.n_iter, self.learn.training))

    quiet_learner().fit(2, cbs=Spy())
    assert seen == [
        (0, 0, 2, True),
        (0, 1, 2, True),
        (0, 0, 1, False),
        (1, 0, 2, True),
        (1, 1, 2, True),
        (1, 0, 1, False),
    ]


def test_matches_a_plain_pytorch_loop():
    """Same seed, same data order, same optimizer: ember's fit gives the weights a hand-written loop gives."""
    x, y = make_classification(64)
    loss_func = nn.CrossEntropyLoss()

    torch.manual_seed(1)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    plain = tiny_model(seed=3)
    opt = torch.optim.SGD(plain.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        plain.train()
        for xb, yb in dl:
            loss = loss_func(plain(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad()

    torch.manual_seed(1)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16, shuffle=True)
    learn = Learner(
        DataLoaders(dl, device="cpu"),
        tiny_model(seed=3),
        loss_func=loss_func,
        opt_func=lambda ps, lr, **kw: SGD(ps, lr=lr, wd=0.0, mom=0.9),
    )
    learn.silent = True
    learn.fit(2, lr=0.1)
    for a, b in zip(plain.state_dict().values(), learn.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6)


def test_training_reduces_the_loss_and_metrics_are_recorded(tiny_dls):
    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    learn.silent = True
    learn.fit_one_cycle(4, 1e-2)
    values = learn.recorder.values
    assert len(values) == 4
    assert values[-1][0] < values[0][0]  # train loss falls
    assert values[-1][2] > 0.85  # accuracy on an easy problem
    assert learn.recorder.metric_names == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(learn.recorder.losses) == 4 * len(tiny_dls.train)


def test_validate_and_get_preds(tiny_learner):
    learn = tiny_learner
    learn.metrics = [__import__("ember.metrics", fromlist=["as_metric"]).as_metric(accuracy)]
    learn.fit(2, 1e-2)
    loss, acc = learn.validate()
    preds, targs = learn.get_preds()
    assert preds.shape == (64, 2) and targs.shape == (64,)
    assert torch.allclose(preds.sum(1), torch.ones(64), atol=1e-5)  # softmax applied for cross-entropy
    assert acc == pytest.approx((preds.argmax(1) == targs).float().mean().item())
    ref = nn.functional.cross_entropy(torch.log(preds), targs).item()
    assert loss == pytest.approx(ref, rel=1e-4)
    inp, preds, targs, dec, losses = learn.get_preds(
        with_decoded=True, with_input=True, with_loss=True
    )  # fastai's order
    assert torch.equal(dec, preds.argmax(1))
    assert inp.shape == (64, 8) and losses.shape == (64,)
    assert losses.mean().item() == pytest.approx(loss, rel=1e-4)


def test_bad_arguments_get_clear_errors(tiny_dls):
    with pytest.raises(ConfigError, match="dls"):
        Learner([1, 2], tiny_model(), loss_func=nn.CrossEntropyLoss())
    with pytest.raises(ConfigError, match="precision.*'fp16'"):
        Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), precision="fp16")
    with pytest.raises(ConfigError, match="loss_func"):
        Learner(tiny_dls, tiny_model())
    with pytest.raises(ConfigError, match="model"):
        Learner(tiny_dls, "resnet", loss_func=nn.CrossEntropyLoss())


def test_save_and_load_roundtrip(tiny_learner):
    learn = tiny_learner
    learn.fit(1, 1e-2)
    path = learn.save("stage1")
    assert path.exists() and path.name == "stage1.pth"
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn.fit(1, 1e-2)
    learn.load("stage1")
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, weights[k])
    with pytest.raises(EmberError, match="No file"):
        learn.load("missing")


def test_load_reads_the_file_on_the_cpu_whatever_the_data_device(tiny_learner, monkeypatch):
    # Read on the CPU, the optimizer's step counts stay there (torch moves the rest to the parameters): read on the
    # GPU, every step would read them back from the device, one sync per tensor.
    import ember.learner.learner as learner_module

    learn = tiny_learner
    learn.fit(1, 1e-2)
    learn.save("stage1", with_opt=True)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    seen = []
    real = learner_module.safe_load

    def spy(path, map_location="cpu"):
        seen.append(map_location)
        return real(path, map_location)

    learn.fit(1, 1e-2)
    monkeypatch.setattr(learner_module, "safe_load", spy)
    monkeypatch.setattr(learn.dls, "device", torch.device("meta"))  # stands for an accelerator
    learn.load("stage1", with_opt=True)
    assert seen == ["cpu"]
    assert all(torch.equal(v, weights[k]) for k, v in learn.model.state_dict().items())
    steps = [s["step"] for s in learn.opt.state.values() if isinstance(s.get("step"), torch.Tensor)]
    assert steps and all(t.device.type == "cpu" for t in steps)


def test_summary_lists_layers_shapes_and_params(tiny_learner):
    text = tiny_learner.summary(print_out=False)
    assert "Linear" in text and "32 x 16" in text and "32 x 2" in text
    n = sum(p.numel() for p in tiny_learner.model.parameters())
    assert f"Total params: {n:,}" in text


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_trains_on_cpu(tiny_dls, precision):
    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), precision=precision, metrics=accuracy)
    learn.silent = True
    learn.fit_one_cycle(3, 1e-2)
    assert (learn.scaler is not None) == (precision == "16-mixed")
    assert math.isfinite(learn.recorder.values[-1][1])
    assert learn.recorder.values[-1][2] > 0.8
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())  # weights stay in fp32


def test_progress_table_in_plain_output(tiny_dls, capsys):
    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy)
    learn.fit(2, 1e-2)
    lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[0] == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [row[0] for row in lines[1:]] == ["0", "1"]
    assert float(lines[2][2]) == pytest.approx(learn.recorder.values[1][1], abs=1e-6)
    with learn.no_bar():
        learn.fit(1, 1e-2)
    assert capsys.readouterr().out == ""


def test_tensorboard_callback_without_tensorboard_says_how_to_install():
    from ember.learner import TensorBoardCallback

    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(EmberError, match=r"pip install 'ember\[tensorboard\]'"):
            TensorBoardCallback()
    else:
        pytest.skip("tensorboard is installed here")


def test_smooth_loss_is_the_debiased_moving_average(tiny_learner):
    learn = tiny_learner
    seen = []

    class Peek(Callback):
        order = 55

        def after_batch(self):
            if self.learn.training and self.learn.iter % 3 == 2:  # read now and then, as the progress bar does
                seen.append(
                    (len(self.learn.recorder.losses) + self.learn.iter + 1, self.learn.recorder.smooth_loss.item())
                )

    learn.fit(2, 1e-2, cbs=Peek())
    losses = learn.recorder.losses
    for n, value in seen:
        avg = 0.0
        for x in losses[:n]:
            avg = 0.98 * avg + 0.02 * x
        assert value == pytest.approx(avg / (1 - 0.98**n), rel=1e-5)


def test_precision_shortcuts_switch_autocast_and_scaler(tiny_learner):
    learn = tiny_learner
    assert learn.to_fp16() is learn and learn.precision == "16-mixed"
    learn.fit(1, 1e-2)
    assert learn.scaler is not None  # float16 training scales the loss
    learn.to_bf16()
    assert learn.precision == "bf16-mixed" and learn.scaler is None
    learn.fit(1, 1e-2)
    assert learn.to_fp32().precision == "32" and learn.scaler is None
    learn.fit(1, 1e-2)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_train_only_and_valid_only_callbacks_get_every_epoch_event():
    class TrainOnly(EventLog):
        run_valid = False

    class ValidOnly(EventLog):
        run_train = False

    train_only, valid_only = TrainOnly(), ValidOnly()
    quiet_learner().fit(2, cbs=[train_only, valid_only])
    for log in (train_only, valid_only):
        for e in ("before_epoch", "after_epoch", "before_train", "after_train", "before_validate", "after_validate"):
            assert log.events.count(e) == 2, (type(log).__name__, e)
    assert train_only.events.count("before_batch") == 4 and train_only.events.count("before_step") == 4
    assert valid_only.events.count("before_batch") == 2 and "before_step" not in valid_only.events


def test_a_callback_class_for_one_fit_leaves_the_learners_own_instance():
    from ember.learner import GradientClip

    own = GradientClip(0.5)
    learn = quiet_learner(cbs=own)
    learn.fit(1, cbs=GradientClip)
    assert learn.get_cb(GradientClip) is own
    learn.fit(1, cbs=own)  # the learner's own instance passed again: still there afterwards
    assert learn.get_cb(GradientClip) is own and learn.cbs.count(own) == 1


def test_get_preds_gives_dataset_order_for_a_shuffling_loader():
    x, y = make_classification(80)
    dls = DataLoaders.from_tensors((x[:50], y[:50]), (x[50:], y[50:]), bs=16, device="cpu")
    gen = torch.Generator().manual_seed(1)
    dls.train.dl = torch.utils.data.DataLoader(
        dls.train.dataset, batch_size=16, shuffle=True, drop_last=True, generator=gen
    )
    learn = quiet_learner(dls)
    state = gen.get_state()
    inputs, preds, targs = learn.get_preds(dl=0, with_input=True)
    assert torch.equal(targs, y[:50]) and torch.equal(inputs, x[:50])  # every item (no batch dropped), in order
    assert torch.allclose(preds, learn.get_preds(dl=dls.train)[0])
    assert torch.equal(gen.get_state(), state)  # the training order is not disturbed
    shuffled = learn.get_preds(dl=0, reorder=False)[1]
    assert len(shuffled) == 48 and not torch.equal(shuffled, y[:48])  # as the loader gives them
    with pytest.raises(ConfigError, match="dl.*5"):
        learn.get_preds(dl=5)
    assert torch.equal(learn.get_preds(ds_idx=0)[1], y[:50])  # fastai's spelling of dl=0
    with pytest.raises(ConfigError, match="either `dl` or `ds_idx`"):
        learn.get_preds(dl=1, ds_idx=0)


def test_learning_rates_accept_numeric_scalars_and_refuse_the_rest():
    import numpy as np

    learn = quiet_learner()
    learn.fit_one_cycle(1, np.float32(1e-3))
    learn.fit_one_cycle(1, torch.tensor(1e-3))
    learn.fit(1, slice(np.float64(1e-4), torch.tensor(1e-3)))
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    for kwargs, name in (
        ({"lr_max": "1e-3"}, "lr_max"),
        ({"lr_max": -1.0}, "lr_max"),
        ({"lr_max": 1e-3, "div": 0}, "div"),
        ({"lr_max": 1e-3, "div_final": 0.0}, "div_final"),
    ):
        with pytest.raises(ConfigError, match=f"`{name}`"):
            learn.fit_one_cycle(1, **kwargs)
    with pytest.raises(ConfigError, match="`lr`"):
        learn.fit(1, -1.0)
    with pytest.raises(ConfigError, match="`lr`"):
        learn.fit(1, "1e-3")
    assert all(torch.equal(v, weights[k]) for k, v in learn.model.state_dict().items())
    with pytest.raises(ConfigError, match="loss_func"):
        quiet_learner(loss_func="ce")


def test_load_refuses_an_optimizer_state_that_does_not_fit(tiny_learner):
    learn = tiny_learner
    learn.fit(1, 1e-2)
    learn.save("adam")
    sgd = quiet_learner(tiny_learner.dls, opt_func=SGD, path=learn.path)
    before = {k: v.clone() for k, v in sgd.model.state_dict().items()}
    with pytest.raises(ConfigError, match="AdamW.*SGD.*with_opt=False"):
        sgd.load("adam")
    assert all(torch.equal(v, before[k]) for k, v in sgd.model.state_dict().items())  # nothing changed
    sgd.load("adam", with_opt=False)
    with pytest.warns(UserWarning, match="optimizer state"):
        sgd.load("adam", strict=False)
    sgd.fit(1, 1e-2)  # its own optimizer state still works
    two_groups = quiet_learner(
        tiny_learner.dls, path=learn.path, splitter=lambda m: [list(m[0].parameters()), list(m[2:].parameters())]
    )
    with pytest.raises(ConfigError, match="parameter groups"):
        two_groups.load("adam")


def test_an_interrupted_fit_stops_the_live_display():
    import io
    import sys

    from rich.console import Console

    from ember.learner import ProgressCallback

    class Interrupt(Callback):
        def after_batch(self):
            raise KeyboardInterrupt

    learn = quiet_learner()
    learn.silent = False
    bar = learn.get_cb(ProgressCallback)
    bar.console = Console(file=io.StringIO(), force_terminal=True)
    stdout = sys.stdout
    with pytest.raises(KeyboardInterrupt):
        learn.fit(1, cbs=Interrupt())
    assert sys.stdout is stdout and bar._live is None


def test_predict_tensor_is_float32_under_mixed_precision():
    learn = quiet_learner(precision="bf16-mixed")
    assert learn.predict_tensor(torch.randn(4, 8)).dtype == torch.float32


def test_summary_counts_frozen_groups(tiny_dls):
    learn = quiet_learner(tiny_dls, splitter=lambda m: [list(m[0].parameters()), list(m[2:].parameters())])
    learn.freeze()
    assert "first 1 of 2 parameter groups" in learn.summary(print_out=False)


def test_show_training_loop_lists_each_event_with_its_callbacks(tiny_learner, capsys):
    class OnlyTraining(Callback):
        run_valid = False

        def after_loss(self) -> None:
            pass

    tiny_learner.add_cb(OnlyTraining())
    text = tiny_learner.show_training_loop()
    assert capsys.readouterr().out.strip() == text.strip()
    lines = [line.split() for line in text.splitlines()]
    events = [words[0] for words in lines if words[0].startswith(("before_", "after_"))]
    loop = events[: events.index("after_fit") + 1]
    assert loop[:3] == ["before_fit", "before_epoch", "before_train"]
    assert loop.count("after_loss") == 2 and loop.count("before_step") == 1  # validation takes no step
    assert events[len(loop) :] == [e for e in EVENTS if e.startswith("after_cancel_")]
    cleanup = [words for words in lines if words[0] == "cleanup_fit"]
    assert len(cleanup) == 1 and "ProgressCallback" in cleanup[0][1]
    after_loss = [words[1:] for words in lines if words[0] == "after_loss"]  # training, then validation
    assert any("OnlyTraining" in w for w in after_loss[0]) and not any("OnlyTraining" in w for w in after_loss[1])
    assert any("Recorder" in w for words in lines if words[0] == "after_batch" for w in words[1:])


def test_plot_metrics_draws_losses_and_each_metric(tiny_dls, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), metrics=accuracy, path=tmp_path)
    learn.silent = True
    with pytest.raises(EmberError, match="fit the learner first"):
        learn.recorder.plot_metrics()
    learn.fit(2, 1e-2)
    fig = learn.recorder.plot_metrics(fname=tmp_path / "metrics.png")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy"]
    assert [line.get_label() for line in axes[0].lines] == ["train_loss", "valid_loss"]
    assert list(axes[1].lines[0].get_ydata()) == [row[2] for row in learn.recorder.values]
    assert (tmp_path / "metrics.png").stat().st_size > 0
    learn.metrics = [error_rate, accuracy]  # changed after the fit: the plot keeps the fit's own columns
    fig = learn.recorder.plot_metrics()
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["loss", "accuracy"]
