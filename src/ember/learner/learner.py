"""`Learner`: a model, its data, a loss and an optimizer, and the loop that trains them.

The loop is a fixed sequence of events (see :data:`ember.learner.callback.EVENTS`); everything
optional (recording, the progress bar, schedules, checkpoints, early stopping, …) is a callback.
The hot path does no device-to-host synchronisation: losses stay on the device until the end of the
epoch.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.core.errors import CallbackError, ConfigError, DataError, EmberError, expected
from ember.data.loaders import DataLoaders, DeviceLoader
from ember.learner.callback import BATCH_EVENTS, CANCEL_EXCEPTIONS, EVENTS, Callback
from ember.learner.checkpoint import (
    CheckpointCallback,
    atomic_save,
    model_state_problem,
    opt_class_name,
    opt_state_problem,
    restore_state,
    safe_load,
)
from ember.learner.fit_policies import FitPoliciesMixin
from ember.learner.inference import InferenceMixin
from ember.learner.inference import _float32 as _float32
from ember.learner.inference import _in_dataset_order as _in_dataset_order
from ember.learner.listify import _listify
from ember.learner.optim import Adam, check_rate, params_of, set_hyper, spread_lr
from ember.learner.progress import ProgressCallback
from ember.learner.recorder import Recorder

# `_float32`, `_in_dataset_order` (ember.learner.inference) and `_listify` (ember.learner.listify) were defined
# here and stay importable from here: the vision and tabular interpreters and the text learner import them so.
__all__ = ["Learner", "PRECISIONS"]

PRECISIONS = ("32", "16-mixed", "bf16-mixed")
_CANCELS = tuple(CANCEL_EXCEPTIONS.values())


def _norm_layer(m: nn.Module) -> bool:
    return isinstance(
        m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    )


class Learner(InferenceMixin, FitPoliciesMixin):
    """Train `model` on `dls` with `loss_func`.

    Args:
        dls: the data (:class:`ember.data.DataLoaders`).
        model: any ``nn.Module``; it is moved to ``dls.device``.
        loss_func: ``loss_func(pred, *targets) -> scalar``. ``None`` takes ``dls.loss_func`` when the
            data knows a suitable one.
        opt_func: ``opt_func(param_groups, lr=..., wd=...) -> torch.optim.Optimizer`` (see
            :mod:`ember.learner.optim`).
        lr: default learning rate of `fit`.
        splitter: ``splitter(model) -> list of parameter lists``, one per group (body and head, …);
            groups can be frozen and get their own learning rates.
        cbs: callbacks kept for every fit.
        metrics: functions ``(pred, targ) -> tensor``, :class:`ember.metrics.Metric` objects or
            torchmetrics objects, computed on the validation set each epoch.
        wd: weight decay (``None`` keeps the optimizer's default).
        moms: momentums (start, middle, end) of the one-cycle schedule.
        path: folder for saved models and checkpoints (with `model_dir`).
        precision: ``"32"``, ``"16-mixed"`` (float16 autocast with gradient scaling) or
            ``"bf16-mixed"`` (bfloat16 autocast), on CPU or CUDA.
        train_bn: keep normalization layers of frozen groups trainable.

    >>> learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy)  # doctest: +SKIP
    >>> learn.fit_one_cycle(3, 1e-3)                                                     # doctest: +SKIP
    """

    def __init__(
        self,
        dls: DataLoaders,
        model: nn.Module,
        loss_func: Callable[..., torch.Tensor] | None = None,
        opt_func: Callable[..., torch.optim.Optimizer] = Adam,
        lr: float | slice = 1e-3,
        splitter: Callable[[nn.Module], Sequence[Iterable[nn.Parameter]]] | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        metrics: Any = None,
        wd: float | None = None,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
        path: str | Path = ".",
        model_dir: str | Path = "models",
        precision: str = "32",
        train_bn: bool = True,
    ) -> None:
        from ember.metrics import as_metric

        if not isinstance(dls, DataLoaders):
            raise ConfigError(
                expected(
                    "an ember.data.DataLoaders",
                    "dls",
                    type(dls).__name__,
                    hint="Wrap torch DataLoaders with DataLoaders(train_dl, valid_dl).",
                )
            )
        if not isinstance(model, nn.Module):
            raise ConfigError(expected("a torch.nn.Module", "model", type(model).__name__))
        if str(precision) not in PRECISIONS:
            raise ConfigError(expected("one of the supported precisions", "precision", precision, PRECISIONS))
        if loss_func is None:
            loss_func = getattr(dls, "loss_func", None)
            if loss_func is None:
                raise ConfigError(
                    "Expected a `loss_func`; received `loss_func=None`, and these DataLoaders do not suggest one. "
                    "Pass e.g. loss_func=nn.CrossEntropyLoss() for classification or nn.MSELoss() for regression."
                )
        if not callable(loss_func):
            raise ConfigError(
                expected(
                    "a callable loss_func(pred, *targets) -> scalar",
                    "loss_func",
                    loss_func,
                    hint="For example loss_func=nn.CrossEntropyLoss() or ember.losses.CrossEntropyLossFlat().",
                )
            )
        if not callable(opt_func):
            raise ConfigError(expected("a callable opt_func(param_groups, lr=...)", "opt_func", opt_func))
        self.dls = dls
        self.model = model.to(dls.device)
        self.loss_func = loss_func
        self.opt_func = opt_func
        self.lr = lr
        self.splitter = splitter if splitter is not None else (lambda m: [list(m.parameters())])
        self.metrics = [as_metric(m) for m in _listify(metrics)]
        self.wd = wd
        self.moms = tuple(moms)
        self.path = Path(path)
        self.model_dir = Path(model_dir)
        self.precision = str(precision)
        self.train_bn = train_bn

        self.opt: torch.optim.Optimizer | None = None
        self.scaler: Any = None
        self.frozen_to: int | None = None
        self.silent = False
        # Loop state, readable (and where it makes sense replaceable) by callbacks.
        self.epoch = 0
        self.n_epoch = 0
        self.iter = 0
        self.n_iter = 0
        self.training = False
        self.dl: DeviceLoader | None = None
        self.xb: tuple = ()
        self.yb: tuple = ()
        self.pred: Any = None
        # When set, training batches go through this module instead of `model` (a DistributedDataParallel
        # wrapper around it, set by DistributedTrainer); everything else keeps using `model`.
        self.forward_model: nn.Module | None = None
        self.loss: torch.Tensor | None = None
        self.loss_grad: torch.Tensor | None = None
        self._resume_path: Path | None = None
        self._stop_requested = False
        self._start_epoch = 0

        self.cbs: list[Callback] = []
        self.recorder = Recorder()
        self.add_cbs([self.recorder, ProgressCallback(), *_listify(cbs)])
        self("after_create")

    # ---------------------------------------------------------------------------------------------
    # callbacks
    # ---------------------------------------------------------------------------------------------
    def add_cb(self, cb: Callback | type[Callback]) -> Learner:
        """Add a callback (an instance, or a class to instantiate) for good; returns self."""
        if isinstance(cb, type):
            cb = cb()
        if not isinstance(cb, Callback):
            raise ConfigError(expected("an ember Callback", "cb", type(cb).__name__))
        cb.learn = self
        self.cbs.append(cb)
        self._index_cbs()
        return self

    def add_cbs(self, cbs: Iterable[Callback | type[Callback]]) -> Learner:
        for cb in cbs:
            self.add_cb(cb)
        return self

    def remove_cb(self, cb: Callback | type[Callback]) -> Learner:
        """Remove a callback instance, or every callback of a class; returns self."""
        if isinstance(cb, type):
            self.cbs = [c for c in self.cbs if not isinstance(c, cb)]
        else:
            self.cbs = [c for c in self.cbs if c is not cb]
        self._index_cbs()
        return self

    def remove_cbs(self, cbs: Iterable[Callback | type[Callback]]) -> Learner:
        for cb in cbs:
            self.remove_cb(cb)
        return self

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Sequence[Callback] | None) -> Iterator[Learner]:
        """Add callbacks for the duration of a ``with`` block.

        A class is instantiated; only the instances added here are removed at the end (the learner's own
        callbacks of the same class stay), and an instance the learner already holds is left where it is."""
        added = [cb() if isinstance(cb, type) else cb for cb in _listify(cbs)]
        added = [cb for i, cb in enumerate(added) if not any(cb is c for c in self.cbs) and cb not in added[:i]]
        self.add_cbs(added)
        try:
            yield self
        finally:
            self.remove_cbs(added)

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Sequence[Callback]) -> Iterator[Learner]:
        """Remove callbacks for the duration of a ``with`` block."""
        cbs = [c for c in _listify(cbs) if c in self.cbs]
        self.remove_cbs(cbs)
        try:
            yield self
        finally:
            self.add_cbs(cbs)

    @contextlib.contextmanager
    def no_bar(self) -> Iterator[Learner]:
        """Train quietly (no progress bar, no table) inside a ``with`` block."""
        old, self.silent = self.silent, True
        try:
            yield self
        finally:
            self.silent = old

    def get_cb(self, kind: type[Callback] | str) -> Callback | None:
        """The first callback of a class (or with a name, e.g. ``"save_model"``), or None."""
        for cb in self.cbs:
            if (isinstance(kind, str) and cb.name == kind) or (isinstance(kind, type) and isinstance(cb, kind)):
                return cb
        return None

    def to_channels_last(self) -> Learner:
        """Train and predict in the channels-last memory format (faster conv nets on CUDA with mixed
        precision); adds a :class:`~ember.learner.callbacks.ChannelsLast` callback once; returns self."""
        from ember.learner.callbacks import ChannelsLast

        if self.get_cb(ChannelsLast) is None:
            self.add_cb(ChannelsLast())
        return self

    def to_fp16(self) -> Learner:
        """Train in float16 mixed precision with gradient scaling (``precision="16-mixed"``); returns self."""
        return self._set_precision("16-mixed")

    def to_bf16(self) -> Learner:
        """Train in bfloat16 mixed precision (``precision="bf16-mixed"``); returns self."""
        return self._set_precision("bf16-mixed")

    def to_fp32(self) -> Learner:
        """Train in full float32 precision (``precision="32"``); returns self."""
        return self._set_precision("32")

    def _set_precision(self, precision: str) -> Learner:
        self.precision = precision
        if self.opt is not None:  # the optimizer is kept; only the grad scaler follows the precision
            self.scaler = torch.amp.GradScaler(self.dls.device.type) if precision == "16-mixed" else None
        return self

    def _index_cbs(self) -> None:
        from ember.distributed import is_main_process

        self.cbs.sort(key=lambda c: c.order)
        # in a distributed run, callbacks that write files (logs) run in process 0 alone
        active = self.cbs if is_main_process() else [c for c in self.cbs if not c.main_process_only]
        self._by_event = {e: [c for c in active if getattr(type(c), e, None) is not None] for e in EVENTS}

    def __call__(self, event: str) -> None:
        """Fire `event`: call the method of that name on each callback that has one, in order.

        The batch-loop events skip callbacks whose `run_train` (training) or `run_valid` (validation) is off;
        the other events reach every callback."""
        batch_level = event in BATCH_EVENTS
        for cb in self._by_event[event]:
            if batch_level and not (cb.run_train if self.training else cb.run_valid):
                continue
            try:
                getattr(cb, event)()
            except _CANCELS:
                raise
            except CallbackError:
                raise
            except Exception as e:
                raise CallbackError(f"Callback {type(cb).__name__} failed in `{event}`: {type(e).__name__}: {e}") from e

    # ---------------------------------------------------------------------------------------------
    # the loop
    # ---------------------------------------------------------------------------------------------
    def _with_events(self, f: Callable[[], None], stage: str) -> None:
        try:
            self(f"before_{stage}")
            f()
        except CANCEL_EXCEPTIONS[stage]:
            self(f"after_cancel_{stage}")
        self(f"after_{stage}")

    @property
    def pct_train(self) -> float:
        """Fraction of this fit's training done (0 at the first batch), what the schedules follow."""
        if not self.n_epoch:
            return 0.0
        n_iter = max(self.n_iter, 1)
        return min((self.epoch + self.iter / n_iter) / self.n_epoch, 1.0)

    def _split(self, batch: tuple) -> None:
        n = self.dls.n_inp
        self.xb, self.yb = batch[:n], batch[n:]

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.float16
        return torch.autocast(device_type=self.dls.device.type, dtype=dtype)

    def _do_one_batch(self) -> None:
        model = self.forward_model if self.training and self.forward_model is not None else self.model
        with self._autocast():
            self.pred = model(*self.xb)
            self("after_pred")
            if not self.yb:
                return
            self.loss_grad = self.loss_func(self.pred, *self.yb)
        self.loss = self.loss_grad.detach()
        self("after_loss")
        if not self.training:
            return
        self._with_events(self._backward, "backward")
        self._with_events(self._step, "step")

    def _backward(self) -> None:
        if self.scaler is not None:
            self.scaler.scale(self.loss_grad).backward()
        else:
            self.loss_grad.backward()

    def _step(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def unscale_grads(self) -> None:
        """Undo gradient scaling now (before clipping or inspecting gradients); a no-op in full precision."""
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)

    def _all_batches(self) -> None:
        self.n_iter = len(self.dl)
        for i, batch in enumerate(self.dl):
            self.iter = i
            self.pred, self.loss, self.loss_grad = None, None, None  # a skipped batch must not show the last one's
            self._split(batch)
            self._with_events(self._do_one_batch, "batch")

    def _do_train(self) -> None:
        self.training = True
        self.dl = self.dls.train
        self.model.train()
        self._with_events(self._all_batches, "train")

    def _do_validate(self, dl: DeviceLoader | None = None) -> None:
        self.training = False
        self.dl = dl if dl is not None else self.dls.valid
        self.model.eval()
        with torch.no_grad():
            self._with_events(self._all_batches, "validate")

    def _do_epoch(self) -> None:
        self._do_train()
        if self.dls.valid is not None:
            self._do_validate()

    def _do_fit(self) -> None:
        if self._resume_path is not None:
            # Read on the CPU: the random generators' states must stay there (load_state_dict copies the rest).
            self._start_epoch = restore_state(self, safe_load(self._resume_path, "cpu"), self._resume_path)
            self._resume_path = None
        for epoch in range(self._start_epoch, self.n_epoch):
            self.epoch = epoch
            self._with_events(self._do_epoch, "epoch")
            if self._stop_requested:
                raise CANCEL_EXCEPTIONS["fit"]()

    def request_stop(self) -> None:
        """End the fit once the current epoch is over: every callback's ``after_epoch`` still runs (the loggers
        and the checkpoint see the epoch), then ``after_cancel_fit`` and ``after_fit`` (as for a
        ``CancelFitException``). What :class:`~ember.learner.callbacks.EarlyStoppingCallback` uses."""
        self._stop_requested = True

    # ---------------------------------------------------------------------------------------------
    # optimizer and parameter groups
    # ---------------------------------------------------------------------------------------------
    def param_groups(self) -> list[list[nn.Parameter]]:
        """The splitter's parameter groups (duplicates and empty groups removed)."""
        return [g["params"] for g in params_of(self.splitter(self.model))]

    def create_opt(self) -> torch.optim.Optimizer:
        """(Re)build the optimizer over the parameter groups, and the grad scaler for "16-mixed"."""
        groups = params_of(self.splitter(self.model))
        if not groups:
            raise ConfigError("The model has no parameters to train (the splitter returned no parameter).")
        kwargs: dict[str, Any] = {}
        if self.wd is not None:
            kwargs["wd"] = self.wd
        lrs = spread_lr(self.lr, len(groups))
        self.opt = self.opt_func(groups, lr=lrs[-1], **kwargs)
        set_hyper(self.opt, "lr", lrs)
        if self.precision == "16-mixed":
            self.scaler = torch.amp.GradScaler(self.dls.device.type)
        else:
            self.scaler = None
        if self.frozen_to is not None:
            self.freeze_to(self.frozen_to)
        return self.opt

    def freeze_to(self, n: int) -> None:
        """Freeze the first `n` parameter groups (negative counts from the end); normalization layers
        stay trainable when `train_bn`."""
        groups = self.param_groups()
        n_frozen = n if n >= 0 else len(groups) + n
        n_frozen = max(0, min(n_frozen, len(groups)))
        norm_params = set()
        if self.train_bn:
            for m in self.model.modules():
                if _norm_layer(m):
                    norm_params.update(id(p) for p in m.parameters(recurse=False))
        for i, g in enumerate(groups):
            for p in g:
                p.requires_grad_(i >= n_frozen or id(p) in norm_params)
        self.frozen_to = n

    def freeze(self) -> None:
        """Freeze every group but the last (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Make every group trainable."""
        self.freeze_to(0)
        self.frozen_to = None

    # ---------------------------------------------------------------------------------------------
    # training (the policies built on `fit`: fit_one_cycle, fit_flat_cos, fit_sgdr, fine_tune and lr_find are
    # inherited from FitPoliciesMixin, in ember.learner.fit_policies)
    # ---------------------------------------------------------------------------------------------
    def fit(
        self,
        n_epoch: int,
        lr: float | slice | Sequence[float] | None = None,
        wd: float | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
        reset_opt: bool = False,
        checkpoint: str | None = None,
        resume: bool = False,
    ) -> None:
        """Train for `n_epoch` epochs at a constant learning rate (unless a callback schedules it).

        Args:
            lr: a rate, ``slice(lo, hi)`` for discriminative rates over the groups, or one per group.
            wd: weight decay for this fit.
            cbs: callbacks for this fit only.
            reset_opt: build a new optimizer (its state is otherwise kept between fits).
            checkpoint: write a resumable checkpoint ``<path>/<model_dir>/<checkpoint>.ckpt`` after
                every epoch.
            resume: continue from that checkpoint (default name ``"checkpoint"``) at the epoch after
                the last one completed.
        """
        if isinstance(n_epoch, bool) or not isinstance(n_epoch, int) or n_epoch < 0:
            raise ConfigError(expected("a non-negative int", "n_epoch", n_epoch))
        self._check_trainable()
        if self.opt is not None:  # check the rate before anything changes (a new optimizer checks it itself)
            spread_lr(self.lr if lr is None else lr, len(self.opt.param_groups))
        if wd is not None:
            check_rate(wd, "wd")
        cbs = _listify(cbs)
        if resume:
            checkpoint = checkpoint or "checkpoint"
            path = self.checkpoint_path(checkpoint)
            if not path.exists():
                raise EmberError(
                    f"Cannot resume: no checkpoint at {path}. Run fit(..., checkpoint={checkpoint!r}) first."
                )
            self._resume_path = path
        if checkpoint is not None:
            cbs.append(CheckpointCallback(checkpoint))
        if reset_opt or self.opt is None:
            self.create_opt()
        n_groups = len(self.opt.param_groups)
        set_hyper(self.opt, "lr", spread_lr(self.lr if lr is None else lr, n_groups))
        if wd is not None:
            set_hyper(self.opt, "wd", float(wd))
        self.n_epoch, self.epoch, self.iter, self._start_epoch = n_epoch, 0, 0, 0
        self._stop_requested = False
        with self.added_cbs(cbs):
            try:
                self._with_events(self._do_fit, "fit")
            finally:
                self._resume_path = None
                self.xb, self.yb, self.pred, self.loss, self.loss_grad = (), (), None, None, None
                self._cleanup_fit()

    def _cleanup_fit(self) -> None:
        """Every callback's ``cleanup_fit``, however the fit ended (an error or an interrupt included). One that
        fails does not keep the others from running; the first failure is raised after them, unless the fit is
        already ending with an error of its own (which then stays the one reported)."""
        failed: Exception | None = None
        for cb in list(self.cbs):
            cleanup = getattr(cb, "cleanup_fit", None)
            if cleanup is None:
                continue
            try:
                cleanup()
            except Exception as e:  # noqa: BLE001 - run the remaining cleanups first
                failed = failed or e
        if failed is not None and sys.exc_info()[1] is None:
            raise failed

    #: How to build a learner that can train, for the error a learner without training data gives.
    _how_to_build = "DataLoaders from your data, a learner on them, then learn.load(...) or the exported weights"

    def _check_trainable(self) -> None:
        """Refuse to train before anything changes when there is nothing to train on: a learner from
        ``ember.load_learner`` holds inference loaders only. Subclasses add their own checks."""
        train = self.dls.train
        try:
            empty = train is None or len(train) == 0
        except TypeError:  # a loader without a length: let it run
            empty = False
        if empty:
            raise DataError(
                "Training needs training rows, and this learner's training loader has none (a learner from "
                "ember.load_learner is for prediction only; its weights are left as they are). To train, build "
                f"{self._how_to_build}."
            )

    # ---------------------------------------------------------------------------------------------
    # distributed training (evaluation and prediction: validate, get_preds, predict, … are inherited
    # from InferenceMixin, in ember.learner.inference)
    # ---------------------------------------------------------------------------------------------
    def distrib_ctx(
        self, sync_bn: bool = True, backend: str | None = None, **ddp_kwargs: Any
    ) -> contextlib.AbstractContextManager:
        """Fits in this ``with`` block train on every process of a ``torchrun`` launch (DistributedDataParallel);
        in a single process it changes nothing. See :mod:`ember.distributed`.

        >>> with learn.distrib_ctx():          # doctest: +SKIP
        ...     learn.fit_one_cycle(5, 1e-3)
        """
        from ember.distributed import distrib_ctx

        return distrib_ctx(self, sync_bn=sync_bn, backend=backend, **ddp_kwargs)

    # ---------------------------------------------------------------------------------------------
    # save / load / summary
    # ---------------------------------------------------------------------------------------------
    def checkpoint_path(self, name: str) -> Path:
        return self.path / self.model_dir / f"{name}.ckpt"

    def save(self, name: str, with_opt: bool = True) -> Path:
        """Save the weights (and the optimizer's state) to ``<path>/<model_dir>/<name>.pth``, atomically.

        In a distributed run process 0 writes the file and the others wait until it is there."""
        from ember.distributed import barrier, is_main_process

        path = self.path / self.model_dir / f"{name}.pth"
        if is_main_process():
            state = {"model": self.model.state_dict()}
            if with_opt and self.opt is not None:
                state["opt"] = self.opt.state_dict()
                state["opt_class"] = opt_class_name(self.opt)
            atomic_save(state, path)
        barrier()
        return path

    def load(self, name: str, with_opt: bool = True, strict: bool = True) -> Learner:
        """Load what :meth:`save` wrote (never unpickles: ``weights_only=True``); returns self.

        Everything is checked before anything changes: weights that do not fit the model raise a
        :class:`~ember.core.errors.ConfigError`, and so does an optimizer state that does not fit this learner's
        optimizer (another optimizer, other parameter groups); with ``strict=False`` that optimizer state is
        skipped with a warning instead (and weights missing from the file or the model are left out).

        The file is read on the CPU; the weights and the optimizer state then move to the model's parameters (so
        the optimizer's step counts stay on the CPU, as when they are created, and reading them costs no device
        sync). When the optimizer state is not loaded, an optimizer with a ``restart_cycle`` method
        (:class:`~ember.learner.optimizers.Lookahead`) restarts its cycle, so that the loaded weights are not
        pulled back toward the slow weights of the ones they replaced.
        """
        path = Path(name) if str(name).endswith(".pth") else self.path / self.model_dir / f"{name}.pth"
        state = safe_load(path, "cpu")
        if not isinstance(state, dict) or "model" not in state:
            raise ConfigError(
                f"{path} was not written by Learner.save (it has no 'model' entry). For a bare state dict use "
                "learn.model.load_state_dict(torch.load(path, weights_only=True))."
            )
        problem = model_state_problem(self.model, state["model"], strict)
        if problem is not None:
            raise ConfigError(f"The weights in {path} do not fit this model: {problem}")
        load_opt = with_opt and state.get("opt") is not None
        if load_opt:
            if self.opt is None:
                self.create_opt()
            problem = opt_state_problem(self.opt, state["opt"], state.get("opt_class"))
            if problem is not None:
                if strict:
                    raise ConfigError(
                        f"The optimizer state in {path} does not fit this learner's optimizer: {problem}. Load the "
                        "weights alone with load(name, with_opt=False), or build the learner with the optimizer "
                        "and splitter that saved it."
                    )
                warnings.warn(
                    f"The optimizer state in {path} does not fit this learner's optimizer ({problem}); "
                    "only the weights were loaded.",
                    stacklevel=2,
                )
                load_opt = False
        try:
            self.model.load_state_dict(state["model"], strict=strict)
        except RuntimeError as e:
            raise EmberError(f"The weights in {path} do not fit this model: {e}") from e
        if load_opt:
            self.opt.load_state_dict(state["opt"])
        elif callable(getattr(self.opt, "restart_cycle", None)):
            self.opt.restart_cycle()
        return self

    def export(self, fname: str | Path = "export.ember", verbose: bool = True) -> Path:
        """Write this learner for inference to one safe file: weights as safetensors plus a JSON recipe.

        Load it back with ``ember.load_learner(fname)`` (no pickle, no code from the file is run). A relative
        name without folders goes under ``learn.path``. See :mod:`ember.learner.export`. In a distributed run
        process 0 writes the file and the others wait until it is there.
        """
        from ember.distributed import barrier, is_main_process
        from ember.learner.export import export_learner, export_path

        path = export_learner(self, fname, verbose=verbose) if is_main_process() else export_path(self, fname)
        barrier()
        return path

    def export_onnx(self, fname: str | Path = "model.onnx", **kwargs: Any) -> Path:
        """Write the model as ONNX with the input normalization baked in (see :mod:`ember.learner.onnx`)."""
        from ember.learner.onnx import export_onnx

        return export_onnx(self, fname, **kwargs)

    def show_training_loop(self, print_out: bool = True) -> str:
        """The training loop's events in the order they fire, each with the callbacks that act on it (in their
        `order`; the batch events per phase: training or validation)."""
        from ember.learner.callback import training_loop

        text = training_loop(self.cbs)
        if print_out:
            print(text)
        return text

    def summary(self, print_out: bool = True) -> str:
        """A table of every layer's output shape, parameter count and whether it trains (one batch is run)."""
        from ember.learner.summary import model_summary

        text = model_summary(self)
        if print_out:
            print(text)
        return text

    def __repr__(self) -> str:
        return f"Learner(model={type(self.model).__name__}, dls={self.dls!r}, loss_func={self.loss_func!r})"
