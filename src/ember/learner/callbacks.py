"""The stock callbacks: gathering predictions, gradient accumulation and clipping, the channels-last memory
format, early stopping, saving the best model, logging to CSV or TensorBoard, stopping on a NaN loss, frozen
batch-norm statistics, short epochs for smoke runs, and Monte-Carlo dropout."""

from __future__ import annotations

import csv
import math
import operator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.core.errors import ConfigError, EmberError, expected
from ember.learner.callback import (
    Callback,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
)

__all__ = [
    "GatherPreds",
    "GradientAccumulation",
    "GradientClip",
    "ChannelsLast",
    "TrackerCallback",
    "EarlyStoppingCallback",
    "SaveModelCallback",
    "ReduceLROnPlateau",
    "CSVLogger",
    "TensorBoardCallback",
    "TerminateOnNaNCallback",
    "BnFreeze",
    "ShortEpochCallback",
    "MCDropoutCallback",
]


def _cat(chunks: list[Any]) -> Any:
    if not chunks:
        return None
    first = chunks[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(chunks)
    if isinstance(first, (tuple, list)):
        return type(first)(_cat([c[i] for c in chunks]) for i in range(len(first)))
    return chunks


def _cpu(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu() if x.is_floating_point() else x.detach().cpu()
    if isinstance(x, (tuple, list)):
        return type(x)(_cpu(v) for v in x)
    return x


class GatherPreds(Callback):
    """Collect predictions (and targets, inputs, per-item losses) batch by batch on the CPU."""

    order = 70
    run_train = False

    def __init__(self, with_input: bool = False, with_loss: bool = False) -> None:
        self.with_input, self.with_loss = with_input, with_loss

    def before_validate(self) -> None:
        self._preds: list[Any] = []
        self._targs: list[Any] = []
        self._inputs: list[Any] = []
        self._losses: list[torch.Tensor] = []

    def after_pred(self) -> None:
        self._preds.append(_cpu(self.learn.pred))
        if self.with_input:
            xb = self.learn.xb
            self._inputs.append(_cpu(xb[0] if len(xb) == 1 else xb))
        yb = self.learn.yb
        if yb:
            self._targs.append(_cpu(yb[0] if len(yb) == 1 else yb))
            if self.with_loss:
                self._losses.append(_per_item_loss(self.learn.loss_func, self.learn.pred, *yb).detach().cpu())

    @property
    def preds(self) -> Any:
        return _cat(self._preds)

    @property
    def targs(self) -> Any:
        return _cat(self._targs)

    @property
    def inputs(self) -> Any:
        return _cat(self._inputs)

    @property
    def losses(self) -> torch.Tensor | None:
        return _cat(self._losses)


def _per_item_loss(loss_func: Any, pred: torch.Tensor, *yb: torch.Tensor) -> torch.Tensor:
    """The loss of each item of a batch ``(B,)`` in float32: the loss with ``reduction="none"``, averaged over the
    non-batch axes (a mask's pixels, a sequence's steps). Differentiable: detach it to keep it."""
    if getattr(loss_func, "reduction", None) is None:
        raise ConfigError(
            f"Per-item losses need a loss with a `reduction` attribute (like torch's and ember's losses); "
            f"received `loss_func={loss_func!r}`."
        )
    old = loss_func.reduction
    loss_func.reduction = "none"
    try:
        loss = loss_func(pred, *yb).float()
    finally:
        loss_func.reduction = old
    bs = pred.shape[0] if isinstance(pred, torch.Tensor) else yb[0].shape[0]
    return loss.reshape(bs, -1).mean(1)


class GradientAccumulation(Callback):
    """Accumulate gradients over batches until `n_acc` samples are seen, then step once.

    This trains with an effective batch size of `n_acc` when memory allows only smaller batches. The
    loss is scaled so that the accumulated gradient is the mean over the `n_acc` samples.
    """

    order = 20
    run_valid = False

    def __init__(self, n_acc: int = 32) -> None:
        if n_acc < 1:
            raise ConfigError(expected("a positive int", "n_acc", n_acc))
        self.n_acc = n_acc

    def before_fit(self) -> None:
        self.count = 0

    def _bs(self) -> int:
        """The batch's size; in a distributed fit, the whole batch's (every process computes an equal slice)."""
        bs = int(self.learn.xb[0].shape[0])
        if self.learn.forward_model is not None:
            from ember.distributed import num_distrib

            bs *= num_distrib()
        return bs

    def after_loss(self) -> None:
        self.learn.loss_grad = self.learn.loss_grad * (self._bs() / self.n_acc)

    def before_step(self) -> None:
        self.count += self._bs()
        if self.count < self.n_acc:
            raise CancelStepException()  # keep the gradients and add the next batch's
        self.count = 0


class GradientClip(Callback):
    """Clip the gradients' global norm to `max_norm` before each step (after undoing loss scaling)."""

    order = 30
    run_valid = False

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        self.max_norm, self.norm_type = max_norm, norm_type

    def before_step(self) -> None:
        self.learn.unscale_grads()
        torch.nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm, self.norm_type)


def _channels_last(x: Any) -> Any:
    """`x` in the channels-last memory format when it is a 4-D float tensor (a batch of images); else `x`."""
    if isinstance(x, torch.Tensor) and x.ndim == 4 and x.is_floating_point():
        return x.contiguous(memory_format=torch.channels_last)
    return x


class ChannelsLast(Callback):
    """Train (and predict) with the model's 4-D weights and the image inputs in the channels-last memory format.

    Channels-last (NHWC) lets cuDNN pick its fastest convolution kernels, those of the tensor cores: on a
    CUDA GPU with mixed precision (``precision="16-mixed"`` or ``"bf16-mixed"``) a conv net often trains
    markedly faster. On the CPU, or for models without convolutions, it changes little; results stay the
    same up to rounding (only the layout in memory changes, never the values). ``learn.to_channels_last()``
    adds it.

    Only 4-D tensors are converted (conv weights, image batches): other parameters, 5-D weights of 3-D
    convolutions and integer inputs are left as they are.
    """

    order = 95  # last in before_batch: after any callback that builds or replaces the inputs

    def _convert_model(self) -> None:
        for t in (*self.learn.model.parameters(), *self.learn.model.buffers()):
            if t.ndim == 4 and not t.is_contiguous(memory_format=torch.channels_last):
                t.data = t.data.contiguous(memory_format=torch.channels_last)  # in place: the optimizer keeps it
                if t.grad is not None:
                    t.grad = t.grad.contiguous(memory_format=torch.channels_last)

    def before_fit(self) -> None:
        self._convert_model()
        opt = self.learn.opt
        if opt is not None:
            # State from an earlier fit (Adam's moments) must match its parameter's layout: fused and foreach
            # kernels want the same strides for a parameter, its gradient and its state.
            for state in opt.state.values():
                for k, v in state.items():
                    state[k] = _channels_last(v)

    def before_validate(self) -> None:
        self._convert_model()  # also when predicting outside a fit (get_preds, validate)

    def before_batch(self) -> None:
        self.learn.xb = tuple(_channels_last(x) for x in self.learn.xb)


class TrackerCallback(Callback):
    """Base of callbacks that watch a recorded value (``valid_loss`` or a metric) after every epoch.

    Args:
        monitor: a column of the recorder's table (``"valid_loss"``, ``"train_loss"``, a metric name).
        comp: ``operator.lt`` (lower is better) or ``operator.gt`` (higher is better). By default the metric's
            own direction decides (its ``lower_is_better``: ember's error metrics such as ``rmse``, ``mae`` or
            ``Perplexity`` are lower-is-better, scores such as ``accuracy`` or ``F1Score`` higher-is-better);
            losses and, for metrics that declare nothing, names with "loss", "error", "rmse", "mae", "mse" ...
            are lower-is-better (see :func:`ember.metrics.lower_is_better`).
        min_delta: the smallest change that counts as an improvement.
        reset_on_fit: forget the best value (and any patience count) at the start of each fit.

    Trackers do not run during ``lr_find``.
    """

    order = 80
    run_in_lr_find = False

    def __init__(
        self, monitor: str = "valid_loss", comp: Any = None, min_delta: float = 0.0, reset_on_fit: bool = True
    ) -> None:
        if not isinstance(monitor, str):
            raise ConfigError(expected("the name of a recorded value (a str)", "monitor", monitor))
        if comp is not None and not callable(comp):
            raise ConfigError(expected("operator.lt, operator.gt or None", "comp", comp))
        self.monitor, self._comp, self.min_delta, self.reset_on_fit = monitor, comp, abs(min_delta), reset_on_fit
        self.best: float | None = None
        self.new_best = False

    @property
    def comp(self) -> Any:
        """The comparison in use: the one given, else ``operator.lt`` or ``operator.gt`` from the metric's direction
        (known once the callback belongs to a learner)."""
        if self._comp is not None:
            return self._comp
        return operator.lt if self._lower_is_better() else operator.gt

    @comp.setter
    def comp(self, value: Any) -> None:
        self._comp = value

    def _lower_is_better(self) -> bool:
        from ember.metrics import lower_is_better

        learn = getattr(self, "learn", None)
        if learn is None or self.monitor in ("train_loss", "valid_loss"):
            return lower_is_better(self.monitor)
        names = learn.recorder.metric_names[3:-1]
        metric = next((m for n, m in zip(names, learn.metrics) if n == self.monitor), None)
        return lower_is_better(self.monitor, metric)

    def before_fit(self) -> None:
        names = self.learn.recorder.metric_names
        if self.monitor not in names[1:-1]:
            raise ConfigError(expected("a recorded value", "monitor", self.monitor, names[1:-1]))
        self._op = self.comp
        self._lower = bool(self._op(0.0, 1.0))  # operator.lt, operator.le or alike: lower is better
        if self.reset_on_fit or self.best is None:
            self.best = math.inf if self._lower else -math.inf
        self.new_best = False
        self._in_fit = True

    def cleanup_fit(self) -> None:
        self._in_fit = False

    def after_epoch(self) -> None:
        value = self.learn.recorder.log.get(self.monitor)
        delta = -self.min_delta if self._lower else self.min_delta
        self.new_best = value is not None and not math.isnan(value) and self._op(value - delta, self.best)
        if self.new_best:
            self.best = value

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]


class EarlyStoppingCallback(TrackerCallback):
    """Stop training when `monitor` has not improved for `patience` epochs.

    The fit ends once the epoch is over: the loggers and the checkpoint still record that last epoch."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Any = None,
        min_delta: float = 0.0,
        patience: int = 1,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience = patience
        self.wait = 0

    def before_fit(self) -> None:
        super().before_fit()
        if self.reset_on_fit:
            self.wait = 0

    def after_epoch(self) -> None:
        super().after_epoch()
        self.wait = 0 if self.new_best else self.wait + 1
        if self.wait >= self.patience:
            print(f"No improvement of {self.monitor} for {self.wait} epochs: stopping after epoch {self.learn.epoch}.")
            self.learn.request_stop()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state["wait"]


class SaveModelCallback(TrackerCallback):
    """Save the model whenever `monitor` improves (or every epoch), and load the best at the end.

    Args:
        fname: file name under ``learn.path / learn.model_dir`` (``.pth`` added).
        every_epoch: save after every epoch as ``{fname}_{epoch}`` instead of only on improvement.
        at_end: save once, at the end of the fit, instead of on improvement.
        with_opt: also save the optimizer's state.
        reset_on_fit: forget the best value at the start of each fit (``False`` keeps the best of earlier
            fits: a later fit's model is saved, and loaded at the end, only when it beats it).
    """

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Any = None,
        min_delta: float = 0.0,
        fname: str = "model",
        every_epoch: bool = False,
        at_end: bool = False,
        with_opt: bool = False,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt
        self._saved = False

    def before_fit(self) -> None:
        super().before_fit()
        self._saved = not self.reset_on_fit and self._saved

    def after_epoch(self) -> None:
        if self.every_epoch:
            self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
            return
        super().after_epoch()
        if self.new_best and not self.at_end:
            self.learn.save(self.fname, with_opt=self.with_opt)
            self._saved = True

    def after_fit(self) -> None:
        if not getattr(self, "_in_fit", False):  # the fit was cancelled before this callback's before_fit
            return
        if self.at_end:
            self.learn.save(self.fname, with_opt=self.with_opt)
        elif not self.every_epoch and self.best is not None and math.isfinite(self.best) and self._saved:
            self.learn.load(self.fname, with_opt=False)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "saved": self._saved}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state["best"]
        self._saved = bool(state.get("saved", self.best is not None and math.isfinite(self.best)))


class ReduceLROnPlateau(TrackerCallback):
    """Divide the learning rate by `factor` when `monitor` has not improved for `patience` epochs."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Any = None,
        min_delta: float = 0.0,
        patience: int = 1,
        factor: float = 10.0,
        min_lr: float = 0.0,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience, self.factor, self.min_lr = patience, factor, min_lr
        self.wait = 0

    def before_fit(self) -> None:
        super().before_fit()
        if self.reset_on_fit:
            self.wait = 0

    def after_epoch(self) -> None:
        super().after_epoch()
        self.wait = 0 if self.new_best else self.wait + 1
        if self.wait >= self.patience:
            self.wait = 0
            for g in self.learn.opt.param_groups:
                g["lr"] = max(g["lr"] / self.factor, self.min_lr)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = state["best"], state.get("wait", 0)


class CSVLogger(Callback):
    """Append each epoch's row of the metrics table to a CSV file (``learn.path / fname``); not during ``lr_find``."""

    order = 85
    main_process_only = True
    run_in_lr_find = False

    def __init__(self, fname: str = "history.csv", append: bool = False) -> None:
        self.fname, self.append = fname, append

    @property
    def path(self) -> Path:
        return self.learn.path / self.fname

    def before_fit(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not (self.append and self.path.exists())
        self._file = open(self.path, "w" if new else "a", newline="")  # noqa: SIM115 (closed in after_fit)
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.learn.recorder.metric_names)

    def after_epoch(self) -> None:
        log = self.learn.recorder.log
        self._writer.writerow(["" if log.get(n) is None else log.get(n) for n in self.learn.recorder.metric_names])
        self._file.flush()

    def after_fit(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def cleanup_fit(self) -> None:
        """Close the file however the fit ended."""
        self.after_fit()

    def read_log(self) -> Any:
        """The log as a pandas DataFrame."""
        import pandas as pd

        return pd.read_csv(self.path)


class TensorBoardCallback(Callback):
    """Write training loss per batch and the epoch table to TensorBoard (needs the `tensorboard` extra)."""

    order = 85
    main_process_only = True
    run_in_lr_find = False

    def __init__(self, log_dir: str | None = None, trace_model: bool = False) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise EmberError(
                "TensorBoardCallback needs the tensorboard package: pip install 'ember[tensorboard]'."
            ) from e
        self._writer_cls = SummaryWriter
        self.log_dir, self.trace_model = log_dir, trace_model
        self.writer = None

    def before_fit(self) -> None:
        self.writer = self._writer_cls(log_dir=self.log_dir)
        self._step = 0
        if self.trace_model:
            self.writer.add_graph(self.learn.model, self.learn.dls.one_batch()[: self.learn.dls.n_inp])

    def after_batch(self) -> None:
        if self.learn.training:
            self._step += 1
            self.writer.add_scalar("train/batch_loss", self.learn.loss, self._step)
            self.writer.add_scalar("train/lr", self.learn.opt.param_groups[-1]["lr"], self._step)

    def after_epoch(self) -> None:
        for name, value in self.learn.recorder.log.items():
            if name not in ("epoch", "time") and value is not None:
                self.writer.add_scalar(f"epoch/{name}", value, self.learn.epoch)

    def after_fit(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def cleanup_fit(self) -> None:
        """Close the writer however the fit ended."""
        self.after_fit()


class TerminateOnNaNCallback(Callback):
    """Stop training at the first batch whose loss is NaN or infinite, saying where and what to try.

    Checking a loss needs the value on the host, so this callback checks every `check_every` batches
    (a NaN stays NaN, so it is still caught, a few batches later at most).
    """

    order = 40
    run_valid = False

    def __init__(self, check_every: int = 1) -> None:
        self.check_every = check_every

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None or learn.iter % self.check_every:
            return
        bad = not torch.isfinite(learn.loss).all()
        if learn.forward_model is not None:  # a distributed fit: every process stops at the same batch
            from ember.distributed import any_process

            bad = any_process(bad)
        if bad:
            self.message = (
                f"The loss is {learn.loss.item()} at epoch {learn.epoch}, batch {learn.iter}: training stopped. "
                "Try a lower learning rate (learn.lr_find()), check the data for NaN or infinite values, "
                "or clip gradients (cbs=GradientClip())."
            )
            print(self.message)
            raise CancelFitException()


def _tracks_stats(m: nn.Module) -> bool:
    """Whether `m` is a normalization layer that updates running statistics in training mode (batch norm, and
    instance norm with ``track_running_stats=True``)."""
    return isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats


class BnFreeze(Callback):
    """Keep the batch-norm layers of frozen parameter groups in evaluation mode while training.

    Fine-tuning on little data, the running mean and variance a pretrained body learned on a large dataset are
    often better than those of a few small batches: with the body frozen (``learn.freeze()``), this callback
    puts its batch-norm layers back in evaluation mode at the start of every epoch's training, after the loop
    has put the model in training mode. Their statistics then stay as they were, and they normalize with them.

    A layer counts as frozen when its parameters belong to the groups ``learn.freeze_to(n)`` froze (whatever
    ``train_bn`` says about their weights), or when none of its parameters requires a gradient (parameters
    frozen by hand). Layers without learnable parameters (``affine=False``) belong to no group and are left as
    they are; so is everything once the model is unfrozen.

    >>> learn.freeze()                                   # doctest: +SKIP
    >>> learn.fit_one_cycle(3, 1e-3, cbs=BnFreeze())     # doctest: +SKIP
    """

    def before_train(self) -> None:
        for m in self.frozen_norm_layers():
            m.eval()

    def frozen_norm_layers(self) -> list[nn.Module]:
        """The normalization layers with running statistics that belong to frozen parameter groups."""
        learn = self.learn
        frozen: set[int] = set()
        if learn.frozen_to is not None:
            groups = learn.param_groups()
            n = learn.frozen_to
            n_frozen = max(0, min(n if n >= 0 else len(groups) + n, len(groups)))  # as Learner.freeze_to counts
            frozen = {id(p) for g in groups[:n_frozen] for p in g}
        layers = []
        for m in learn.model.modules():
            if not _tracks_stats(m):
                continue
            params = list(m.parameters(recurse=False))
            if params and (all(id(p) in frozen for p in params) or not any(p.requires_grad for p in params)):
                layers.append(m)
        return layers


class ShortEpochCallback(Callback):
    """Run only the first `pct` of each epoch's training batches (and validation batches), at least one.

    For a quick smoke run of a whole pipeline (data, model, loss, metrics, callbacks, saving) before the real
    training. The batches left out are skipped with ``CancelTrainException`` / ``CancelValidException`` before they
    are drawn into the model, so the recorder's losses and the metrics are those of the batches that ran.

    Args:
        pct: the fraction of the batches to run, in (0, 1]: ``ceil(pct * n_batches)`` of them, at least one.
        short_valid: also shorten validation (``False`` validates on the whole set).

    It acts in fits only: ``get_preds``, ``validate`` and ``predict`` still read every item, and ``lr_find`` (which
    counts its batches across epochs) runs without it.

    >>> learn.fit(1, cbs=ShortEpochCallback(pct=0.05))   # doctest: +SKIP
    """

    order = -30  # first in before_batch: a batch it skips is seen by no other callback
    run_in_lr_find = False

    def __init__(self, pct: float = 0.01, short_valid: bool = True) -> None:
        if isinstance(pct, bool) or not isinstance(pct, (int, float)) or not 0 < pct <= 1:
            raise ConfigError(expected("a fraction of the batches in (0, 1]", "pct", pct, hint="For 5% pass 0.05."))
        self.pct, self.short_valid = float(pct), bool(short_valid)
        self._in_fit = False

    def n_batches(self, n_iter: int) -> int:
        """How many of a phase's `n_iter` batches run: ``ceil(pct * n_iter)``, at least one."""
        return max(1, math.ceil(self.pct * n_iter - 1e-9))  # 0.07 * 100 is 7.000000000000001: 7 batches, not 8

    def before_fit(self) -> None:
        self._in_fit = True

    def cleanup_fit(self) -> None:
        self._in_fit = False

    def before_batch(self) -> None:
        learn = self.learn
        if not self._in_fit or learn.iter < self.n_batches(learn.n_iter):
            return
        if learn.training:
            raise CancelTrainException()
        if self.short_valid:
            raise CancelValidException()

    def __repr__(self) -> str:
        return f"ShortEpochCallback(pct={self.pct}, short_valid={self.short_valid})"


def _is_dropout(m: nn.Module) -> bool:
    """torch's dropout layers, and any layer whose class name says it is one (ember's ``RNNDropout``,
    ``EmbeddingDropout``, ``WeightDropout``)."""
    return isinstance(m, nn.modules.dropout._DropoutNd) or "dropout" in type(m).__name__.lower()


class MCDropoutCallback(Callback):
    """Monte-Carlo dropout: keep the dropout layers active while validating and predicting.

    Each prediction pass then drops other units, so repeated passes give samples of the prediction whose spread
    measures the model's uncertainty. Only the dropout layers change: batch-norm layers (also those inside a
    dropout module) stay in evaluation mode and use their running statistics, and the dropout layers go back to
    evaluation mode when the pass ends.

    Pass it to the predictions it is for (added to the learner, it would make the validation of a fit random too):

    >>> samples = torch.stack([learn.get_preds(cbs=MCDropoutCallback())[0] for _ in range(20)])  # doctest: +SKIP
    >>> mean, spread = samples.mean(0), samples.std(0)                               # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._switched: list[nn.Module] = []

    def before_validate(self) -> None:
        self._switched = []
        for m in self.learn.model.modules():
            if _is_dropout(m) and not m.training:  # a dropout module inside another was switched with it
                m.train()
                for sub in m.modules():
                    if isinstance(sub, nn.modules.batchnorm._NormBase):
                        sub.eval()
                self._switched.append(m)

    def after_validate(self) -> None:
        for m in self._switched:
            m.eval()
        self._switched = []
