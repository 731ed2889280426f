"""The metric protocol: :class:`Metric` and the adapters that turn anything passed as ``metrics=`` into one.

The training loop calls ``reset()``, then ``update(pred, *targs)`` per batch with raw outputs still on the device,
then ``compute()`` once, so no metric forces a device-to-host copy per batch. :func:`as_metric` accepts a plain
function ``f(pred, targ) -> tensor`` (averaged over the set by :class:`AvgMetric`, exact for means over items), a
:class:`Metric` (set-level values such as F1, R² or RMSE accumulate sufficient statistics), an
:class:`AccumMetric` (keeps all predictions, e.g. for scikit-learn functions), or a ``torchmetrics`` object.

Validation runs whole on every process of a distributed run, so a metric sees the whole set and needs no
gathering of its own.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected

__all__ = ["Metric", "AvgMetric", "AccumMetric", "as_metric", "lower_is_better"]


def _snake_case(name: str) -> str:
    """``"R2Score"`` -> ``"r2_score"``, ``"RMSE"`` -> ``"rmse"``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return name.lower()


def _func_name(func: Callable[..., Any]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def _check_same_numel(pred: torch.Tensor, targ: torch.Tensor, metric: str) -> None:
    # Shapes are known on the host, so this check costs no device sync.
    if pred.numel() != targ.numel():
        hint = f"The targets have shape {tuple(targ.shape)}; check the model's output size and the loss axis."
        raise DataError(
            expected(f"as many predictions as targets for `{metric}`", "pred.shape", tuple(pred.shape), hint=hint)
        )


# The shape checks below read shapes only, which are known on the host: they cost no device sync.


def _without_axis(shape: torch.Size | tuple[int, ...], axis: int) -> tuple[int, ...] | None:
    """`shape` with `axis` removed, or None when `shape` has no such axis."""
    if not -len(shape) <= axis < len(shape):
        return None
    axis %= len(shape)
    return tuple(shape[:axis]) + tuple(shape[axis + 1 :])


def _class_axis_size(pred: torch.Tensor, axis: int) -> int | None:
    """The size of `pred` over `axis`, or None when it has no such axis."""
    return pred.shape[axis] if -pred.ndim <= axis < pred.ndim else None


def _fits_class_scores(pred: torch.Tensor, targ: torch.Tensor, axis: int) -> bool:
    """Whether `pred` holds class scores over `axis` for the targets: without that axis its shape is the targets'
    (or the targets have the same shape with a class axis of size 1, as ``(B, 1)`` against ``(B, C)``)."""
    rest = _without_axis(pred.shape, axis)
    if rest is None:
        return False
    if pred.ndim == targ.ndim + 1:
        return rest == tuple(targ.shape)
    return pred.ndim == targ.ndim and targ.shape[axis] == 1 and rest == _without_axis(targ.shape, axis)


def _check_class_scores(pred: torch.Tensor, targ: torch.Tensor, axis: int, metric: str) -> None:
    """Raise a DataError naming the model's output shape unless `pred` holds class scores over `axis` for `targ`.

    A count of elements would not do: segmentation scores ``(B, C, H, W)`` read over the last axis give as many
    labels as ``(B, H, W)`` masks whenever ``C == W``, and a meaningless value would come back.
    """
    if _fits_class_scores(pred, targ, axis):
        return
    targ_shape = tuple(targ.shape)
    if axis % max(pred.ndim, 1) != 1 and _without_axis(pred.shape, 1) == targ_shape:
        hint = "These look like segmentation scores (B, C, H, W) against masks (B, H, W): pass axis=1."
    else:
        hint = (
            "Check the model's output size and the class axis; for segmentation scores (B, C, H, W) against "
            "masks (B, H, W), pass axis=1."
        )
    what = f"the targets' shape {targ_shape} with a class axis at axis={axis}, for `{metric}`"
    raise DataError(expected(what, "pred.shape", tuple(pred.shape), hint=hint))


def _is_one_logit(pred: torch.Tensor, targ: torch.Tensor) -> bool:
    """Whether `pred` holds one logit per target: the targets' shape, or it up to axes of size 1 (``(B, 1)``
    against ``(B,)``, ``(B, 1, H, W)`` against ``(B, H, W)``)."""
    if pred.shape == targ.shape:
        return True
    return [d for d in pred.shape if d != 1] == [d for d in targ.shape if d != 1]


def _check_not_multi_label(pred: torch.Tensor, targ: torch.Tensor, metric: str) -> None:
    """Raise a DataError for multi-label outputs ``(B, L)``, L > 1, against targets of the same shape, which a
    single-label metric would otherwise read as ``B * L`` binary items and pool."""
    if pred.ndim == 2 and pred.shape[1] > 1 and pred.shape == targ.shape:
        hint = (
            "Outputs of the targets' shape (B, L) are multi-label: use F1ScoreMulti, PrecisionMulti, RecallMulti, "
            "RocAucMulti or APScoreMulti. A binary model outputs one logit per item, (B,) or (B, 1)."
        )
        what = f"one logit per item (B,) or (B, 1), or class scores, for the single-label `{metric}`"
        raise DataError(expected(what, "pred.shape", tuple(pred.shape), hint=hint))


def _bad_binary_targets(targ: torch.Tensor) -> torch.Tensor:
    """Which targets are neither a class id 0 or 1 nor negative (an ignore index such as -100): a bool tensor."""
    return ~((targ == 0) | (targ == 1) | (targ < 0))


def _binary_targets_error(metric: str, n_bad: int, example: Any) -> DataError:
    """The error for targets of a binary metric that are neither 0, 1 nor negative (checked in compute)."""
    hint = (
        f"{n_bad} target(s) are not 0 or 1. Negative targets (an ignore index) are left out; map labels -1/+1 to "
        "0/1 first, and for several classes or regression targets use a metric made for them."
    )
    return DataError(expected(f"class ids 0 or 1 for `{metric}`", "targ", example, hint=hint))


class Metric:
    """Base class of accumulating metrics.

    Subclasses keep their running state as tensors on the device in ``update`` (never calling ``.item()``) and turn
    it into one python float in ``compute``. The display name defaults to the snake-case class name; pass
    ``name=`` to a subclass or set ``metric.name`` to change it.

    Both a subclass and an instance of it may be passed as ``metrics=``: :func:`as_metric` instantiates a class.

    A metric that reports on training rather than on the validation set (``from_training = True``) is also
    computed at the end of an epoch that had no validation.

    ``lower_is_better`` says which way the metric improves (``True`` for errors, ``False`` for scores), so that
    the callbacks that watch a metric (early stopping, saving the best model) know; ``None`` leaves it to the
    name (see :func:`lower_is_better`).
    """

    _default_name: str | None = None
    from_training = False
    lower_is_better: bool | None = None

    def __init__(self, name: str | None = None) -> None:
        self._name = name
        self.reset()

    @property
    def name(self) -> str:
        """The name shown in the results table."""
        return self._name or self._default_name or _snake_case(type(self).__name__)

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    def reset(self) -> None:
        """Forget everything seen so far (called before each validation pass)."""

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        """Add one batch: raw model outputs ``pred`` and the targets, all on the device."""
        raise NotImplementedError

    def compute(self) -> float:
        """The value over everything seen since the last ``reset``; ``nan`` when nothing was seen."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class AvgMetric(Metric):
    """Average ``func(pred, *targs)`` over a set, weighted by batch size (``pred.shape[0]``).

    Exact for any function that is a mean over the items of a batch (accuracy, MSE …); use a set-level metric for
    the others.
    """

    def __init__(self, func: Callable[..., Any], name: str | None = None, lower_is_better: bool | None = None) -> None:
        self.func = func
        self.lower_is_better = lower_is_better if lower_is_better is not None else _declared_direction(func)
        super().__init__(name=name or _func_name(func))

    def reset(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count = 0

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        bs = pred.shape[0] if pred.ndim > 0 else 1
        value = self.func(pred, *targs)
        if isinstance(value, torch.Tensor):
            value = value.detach().float()
        self.total = self.total + value * bs
        self.count += bs

    def compute(self) -> float:
        if self.count == 0:
            return math.nan
        return float(self.total) / self.count


_ACTIVATIONS = ("softmax", "sigmoid")


class AccumMetric(Metric):
    """Keep the (detached) predictions and targets of every batch; apply ``func`` to all of them at the end.

    Args:
        func: called as ``func(preds, targs, **kwargs)`` (or ``func(targs, preds, …)`` with ``invert_arg=True``,
            the order scikit-learn uses) and returning a number or a one-element tensor.
        flatten: flatten predictions and targets to 1-D (after activation and argmax/threshold).
        activation: ``None``, ``"softmax"``, ``"sigmoid"`` or a callable applied to the concatenated outputs.
        dim_argmax: take the argmax of the predictions over this dimension (class scores to labels).
        thresh: turn predictions into booleans with ``pred > thresh`` (after the activation).
        to_np: hand numpy arrays (on the CPU) to ``func``.
        invert_arg: pass the targets first.
        lower_is_better: whether a lower value is better (default: ``func``'s own ``lower_is_better`` attribute,
            else decided from the name, see :func:`lower_is_better`).
        **kwargs: passed on to ``func``.

    >>> from sklearn.metrics import jaccard_score  # doctest: +SKIP
    >>> jac = AccumMetric(jaccard_score, dim_argmax=-1, to_np=True, invert_arg=True, average="macro")  # doctest: +SKIP
    """

    def __init__(
        self,
        func: Callable[..., Any],
        name: str | None = None,
        flatten: bool = True,
        activation: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        dim_argmax: int | None = None,
        thresh: float | None = None,
        to_np: bool = False,
        invert_arg: bool = False,
        lower_is_better: bool | None = None,
        **kwargs: Any,
    ) -> None:
        if activation is not None and not callable(activation) and activation not in _ACTIVATIONS:
            raise ConfigError(
                expected("None, a callable or an activation name", "activation", activation, _ACTIVATIONS)
            )
        self.func, self.flatten, self.activation, self.kwargs = func, flatten, activation, kwargs
        self.dim_argmax, self.thresh, self.to_np, self.invert_arg = dim_argmax, thresh, to_np, invert_arg
        self.lower_is_better = lower_is_better if lower_is_better is not None else _declared_direction(func)
        super().__init__(name=name or _func_name(func))

    def reset(self) -> None:
        self.preds: list[torch.Tensor] = []
        self.targs: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        self.preds.append(pred.detach())
        self.targs.append(targs[0].detach())

    def compute(self) -> float:
        if not self.preds:
            return math.nan
        preds, targs = torch.cat(self.preds), torch.cat(self.targs)
        if self.activation == "softmax":
            preds = preds.softmax(dim=-1 if self.dim_argmax is None else self.dim_argmax)
        elif self.activation == "sigmoid":
            preds = preds.sigmoid()
        elif callable(self.activation):
            preds = self.activation(preds)
        if self.dim_argmax is not None:
            preds = preds.argmax(dim=self.dim_argmax)
        elif self.thresh is not None:
            preds = preds > self.thresh
        if self.flatten:
            _check_same_numel(preds, targs, self.name)
            preds, targs = preds.reshape(-1), targs.reshape(-1)
        if self.to_np:
            preds, targs = preds.cpu().numpy(), targs.cpu().numpy()
        args = (targs, preds) if self.invert_arg else (preds, targs)
        return float(self.func(*args, **self.kwargs))


class _ExternalMetric(Metric):
    """Adapter for an object with ``update``/``compute``/``reset`` methods, such as a ``torchmetrics.Metric``."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj
        self._device: torch.device | None = None
        higher = getattr(obj, "higher_is_better", None)  # what torchmetrics objects declare
        self.lower_is_better = (not higher) if isinstance(higher, bool) else _declared_direction(obj)
        super().__init__(name=_snake_case(type(obj).__name__))

    def reset(self) -> None:
        self.obj.reset()

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        # Follow the model: move the object's state the first time it sees a batch on a new device.
        if pred.device != self._device:
            if callable(getattr(self.obj, "to", None)):
                moved = self.obj.to(pred.device)
                self.obj = moved if moved is not None else self.obj
            self._device = pred.device
        self.obj.update(pred, *targs)

    def compute(self) -> float:
        value = self.obj.compute()
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            hint = f"Its compute() returned shape {tuple(value.shape)}; set its averaging to give one value."
            raise ConfigError(
                expected("a metric that computes one number", "metric", type(self.obj).__name__, hint=hint)
            )
        return float(value)


def _declared_direction(func: Any) -> bool | None:
    """The ``lower_is_better`` attribute of a function (through any ``functools.partial``), or None."""
    while isinstance(func, functools.partial):
        func = func.func
    value = getattr(func, "lower_is_better", None)
    return value if isinstance(value, bool) else None


# Name fragments of values that improve downwards: losses, errors and distances.
_LOWER_NAMES = ("loss", "error", "rmse", "mse", "mae", "msle", "rmspe", "mape", "perplexity", "distance")


def lower_is_better(name: str, metric: Any = None) -> bool:
    """Whether a lower value of the recorded column `name` is better.

    The metric's own ``lower_is_better`` (ember's metrics declare it; torchmetrics objects declare
    ``higher_is_better``) decides; without one, names that contain "loss", "error", "rmse", "mae", "mse",
    "msle", "rmspe", "mape", "perplexity" or "distance" are lower-is-better and every other one higher-is-better.
    """
    declared = getattr(metric, "lower_is_better", None) if metric is not None else None
    if isinstance(declared, bool):
        return declared
    lowered = name.lower()
    return any(part in lowered for part in _LOWER_NAMES)


def _set_level(func: Callable[..., Any]) -> Metric | None:
    """The set-level :class:`Metric` that a batch function names in its ``set_metric`` attribute, built with the
    keywords of any ``functools.partial`` around it; ``None`` when there is none (or the partial binds positions)."""
    kwargs: dict[str, Any] = {}
    while isinstance(func, functools.partial):
        if func.args:
            return None
        kwargs = {**func.keywords, **kwargs}  # an outer partial's keywords win
        func = func.func
    make = getattr(func, "set_metric", None)
    if make is None:
        return None
    try:
        return make(**kwargs)
    except TypeError:  # keywords the set-level version does not take: average the function itself instead
        return None


def as_metric(m: Any) -> Metric:
    """Turn anything accepted as ``metrics=`` into a :class:`Metric`.

    * a :class:`Metric` instance is returned as it is; a :class:`Metric` subclass is instantiated;
    * an object with ``update``, ``compute`` and ``reset`` methods (e.g. a ``torchmetrics.Metric``) is adapted: it
      is moved to the predictions' device on its first update and ``compute`` returns ``float(obj.compute())``;
    * a plain function ``f(pred, targ) -> tensor`` is wrapped in :class:`AvgMetric`, unless it names an exact
      set-level version of itself in a ``set_metric`` attribute (as :func:`foreground_acc` does).

    Raises:
        ConfigError: for anything else (including a class that is not a :class:`Metric`).
    """
    what = "a metric function, a Metric, or an object with update/compute/reset methods"
    if isinstance(m, Metric):
        return m
    if isinstance(m, type):
        if issubclass(m, Metric):
            return m()
        raise ConfigError(expected(what, "metric", m, hint="It is a class: pass an instance of it instead."))
    if all(callable(getattr(m, attr, None)) for attr in ("update", "compute", "reset")):
        return _ExternalMetric(m)
    if callable(m):
        exact = _set_level(m)
        return exact if exact is not None else AvgMetric(m)
    raise ConfigError(expected(what, "metric", m, hint="For example `metrics=[accuracy, F1Score()]`."))


# ----------------------------------------------------------------------------------------------------------------
# Pieces shared by the set-level metrics, which accumulate sufficient statistics on the device and finish once in
# compute().


def _device_float(device: torch.device) -> torch.dtype:
    # float64 keeps long sums exact enough; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


class _FiniteGuard:
    """For metrics that turn predictions into labels batch by batch: remembers, on the device (no sync until
    ``compute``), whether any prediction was NaN or infinite, so that a diverged model scores nan, not a plausible
    number made of the labels its NaNs happen to give."""

    _nonfinite: torch.Tensor | None = None

    def _note_finite(self, pred: torch.Tensor) -> None:
        bad = ~torch.isfinite(pred).all()
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad

    def _saw_nonfinite(self) -> bool:
        return self._nonfinite is not None and bool(self._nonfinite)  # one sync, in compute


class _ElementMean(Metric):
    """``finish(sum of per-element values / number of elements)`` over the whole set."""

    def reset(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.count: torch.Tensor | int = 0

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        """Return (sum of the batch's per-element values, their count)."""
        raise NotImplementedError

    def _finish(self, mean: float) -> float:
        return mean

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        total, count = self._values(pred.detach(), targs[0].detach())
        self.total = self.total + total.to(_device_float(total.device))
        self.count = self.count + count

    def compute(self) -> float:
        count = float(self.count)
        if count == 0:
            return math.nan
        return self._finish(float(self.total) / count)
