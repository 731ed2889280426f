"""Metrics: plain batch functions and accumulators that add up a whole validation set on the device.

The training loop calls ``reset()``, then ``update(pred, *targs)`` per batch with raw outputs still on the device,
then ``compute()`` once, so no metric forces a device-to-host copy per batch. :func:`as_metric` accepts a plain
function ``f(pred, targ) -> tensor`` (averaged over the set by :class:`AvgMetric`, exact for means over items), a
:class:`Metric` (set-level values such as F1, R² or RMSE accumulate sufficient statistics), an
:class:`AccumMetric` (keeps all predictions, e.g. for scikit-learn functions), or a ``torchmetrics`` object.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ember.core.errors import ConfigError, DataError, expected

__all__ = [
    "Metric",
    "AvgMetric",
    "AccumMetric",
    "as_metric",
    "lower_is_better",
    "accuracy",
    "error_rate",
    "top_k_accuracy",
    "accuracy_multi",
    "mse",
    "mae",
    "msle",
    "RMSE",
    "rmse",
    "ExpRMSPE",
    "exp_rmspe",
    "R2Score",
    "Precision",
    "Recall",
    "F1Score",
    "FBeta",
    "Perplexity",
    "foreground_acc",
    "Dice",
    "DiceMulti",
    "JaccardCoeff",
]


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

    >>> from sklearn.metrics import matthews_corrcoef  # doctest: +SKIP
    >>> mcc = AccumMetric(matthews_corrcoef, dim_argmax=-1, to_np=True, invert_arg=True)  # doctest: +SKIP
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
# Batch functions: each is a mean over the items of the batch, so AvgMetric turns it into the exact set value.


def accuracy(inp: torch.Tensor, targ: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """Fraction of items whose highest-scoring class (over ``axis``) is the target.

    Works for ``(B, C)`` scores with ``(B,)`` targets and for ``(B, T, C)`` with ``(B, T)`` (every position counts).
    """
    pred = inp.argmax(dim=axis)  # (B, ...) labels
    _check_same_numel(pred, targ, "accuracy")
    return (pred.reshape(-1) == targ.reshape(-1)).float().mean()


def error_rate(inp: torch.Tensor, targ: torch.Tensor, axis: int = -1) -> torch.Tensor:
    """``1 - accuracy``."""
    return 1 - accuracy(inp, targ, axis=axis)


def top_k_accuracy(inp: torch.Tensor, targ: torch.Tensor, k: int = 5, axis: int = -1) -> torch.Tensor:
    """Fraction of items whose target is among the ``k`` highest-scoring classes."""
    top = inp.topk(k, dim=axis).indices.movedim(axis, -1).reshape(-1, k)  # (N, k)
    _check_same_numel(top[:, 0], targ, "top_k_accuracy")
    return (top == targ.reshape(-1, 1)).any(dim=1).float().mean()


def accuracy_multi(inp: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True) -> torch.Tensor:
    """Multi-label accuracy: fraction of (item, label) pairs where ``score > thresh`` matches the 0/1 target.

    Args:
        sigmoid: apply a sigmoid first (``inp`` are logits); set ``False`` when ``inp`` are already probabilities.
    """
    _check_same_numel(inp, targ, "accuracy_multi")
    probs = inp.sigmoid() if sigmoid else inp
    return ((probs > thresh).reshape(-1) == targ.reshape(-1).bool()).float().mean()


def mse(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared error (predictions and targets flattened)."""
    _check_same_numel(inp, targ, "mse")
    return F.mse_loss(inp.reshape(-1).float(), targ.reshape(-1).float())


def mae(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (predictions and targets flattened)."""
    _check_same_numel(inp, targ, "mae")
    return F.l1_loss(inp.reshape(-1).float(), targ.reshape(-1).float())


def msle(inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    """Mean squared logarithmic error, ``mean((log1p(pred) - log1p(targ))**2)``; values must be > -1."""
    _check_same_numel(inp, targ, "msle")
    return F.mse_loss(torch.log1p(inp.reshape(-1).float()), torch.log1p(targ.reshape(-1).float()))


for _f in (mse, mae, msle, error_rate):
    _f.lower_is_better = True  # type: ignore[attr-defined]
for _f in (accuracy, top_k_accuracy, accuracy_multi):
    _f.lower_is_better = False  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------------------------------
# Set-level metrics: accumulate sufficient statistics on the device, finish once in compute().


def _device_float(device: torch.device) -> torch.dtype:
    # float64 keeps long sums exact enough; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


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


class _RootMean(_ElementMean):
    lower_is_better = True

    def _finish(self, mean: float) -> float:
        return math.sqrt(mean)


class RMSE(_RootMean):
    """Root mean squared error of the whole set: ``sqrt(mean((pred - targ)**2))``, not a mean of batch RMSEs.

    ``rmse`` is the same class, so ``metrics=rmse``, ``metrics=[rmse]`` and ``metrics=[RMSE()]`` all work.
    """

    _default_name = "rmse"

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, int]:
        _check_same_numel(pred, targ, self.name)
        diff = pred.reshape(-1).float() - targ.reshape(-1).float()
        return (diff * diff).sum(), diff.numel()


rmse = RMSE


class ExpRMSPE(_RootMean):
    """Root mean squared percentage error of ``exp(pred)`` against ``exp(targ)`` (for log-scale targets).

    ``exp_rmspe`` is the same class.
    """

    _default_name = "exp_rmspe"

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, int]:
        _check_same_numel(pred, targ, self.name)
        p, t = torch.exp(pred.reshape(-1).float()), torch.exp(targ.reshape(-1).float())
        pct = (t - p) / t
        return (pct * pct).sum(), pct.numel()


exp_rmspe = ExpRMSPE


class Perplexity(_ElementMean):
    """``exp`` of the set's mean cross-entropy per token, for language models.

    ``pred`` are logits ``(B, T, V)`` (or ``(N, V)``), ``targ`` token ids ``(B, T)`` (or ``(N,)``); positions equal
    to ``ignore_index`` are left out.
    """

    lower_is_better = True

    def __init__(self, ignore_index: int = -100, name: str | None = None) -> None:
        self.ignore_index = ignore_index
        super().__init__(name=name)

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = pred.reshape(-1, pred.shape[-1]).float()  # (B*T, V)
        _check_same_numel(logits[:, 0], targ, self.name)
        targ = targ.reshape(-1)
        ce = F.cross_entropy(logits, targ, ignore_index=self.ignore_index, reduction="sum")
        return ce, (targ != self.ignore_index).sum()

    def _finish(self, mean: float) -> float:
        return math.exp(mean)


class R2Score(Metric):
    """Coefficient of determination of the whole set, ``1 - SSE / SST``, from running sums.

    Multi-output predictions are flattened (every value counts once).
    """

    _default_name = "r2_score"
    lower_is_better = False

    def reset(self) -> None:
        self.sums: torch.Tensor | None = None  # (3,): sum y, sum y², sum (y - p)²
        self.n = 0

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        _check_same_numel(pred, targ, self.name)
        dtype = _device_float(pred.device)
        p, y = pred.detach().reshape(-1).to(dtype), targ.reshape(-1).to(dtype)
        batch = torch.stack([y.sum(), (y * y).sum(), ((y - p) ** 2).sum()])
        self.sums = batch if self.sums is None else self.sums + batch
        self.n += y.numel()

    def compute(self) -> float:
        if self.sums is None or self.n == 0:
            return math.nan
        sum_y, sum_y2, sse = (float(v) for v in self.sums.cpu())
        sst = sum_y2 - sum_y * sum_y / self.n
        if sst <= 1e-12 * max(sum_y2, 1.0):  # constant targets, up to rounding
            return math.nan if sse > 0 else 1.0
        return 1.0 - sse / sst


_AVERAGES = ("binary", "micro", "macro", "weighted")


class _ConfusionMetric(Metric):
    """Accumulates a ``(C, C)`` confusion matrix (rows: targets, columns: predictions) on the device.

    Predictions are raw outputs: class scores over ``axis`` are turned into labels with an argmax; a single output
    column (``(B,)`` or ``(B, 1)``) is binary, positive when ``sigmoid(pred) > thresh``. Targets outside
    ``[0, C)`` (e.g. an ignore index of -100) are left out.
    """

    lower_is_better = False

    def __init__(
        self,
        average: str = "binary",
        pos_label: int = 1,
        thresh: float = 0.5,
        axis: int = -1,
        name: str | None = None,
    ) -> None:
        if average not in _AVERAGES:
            raise ConfigError(expected("an averaging mode", "average", average, _AVERAGES))
        self.average, self.pos_label, self.thresh, self.axis = average, pos_label, thresh, axis
        super().__init__(name=name)

    def reset(self) -> None:
        self.cm: torch.Tensor | None = None

    def _labels(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, int]:
        if pred.shape == targ.shape or (pred.ndim == targ.ndim + 1 and pred.shape[self.axis] == 1):
            labels = (pred.float().sigmoid() > self.thresh).long()  # binary from one logit per item
            n_classes = 2
        else:
            n_classes = pred.shape[self.axis]
            labels = pred.argmax(dim=self.axis)
        _check_same_numel(labels, targ, self.name)
        return labels.reshape(-1), n_classes

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        labels, n = self._labels(pred.detach(), targ)
        if self.average == "binary" and n > 2:
            what, hint = (
                '"micro", "macro" or "weighted" for more than two classes',
                f"The predictions have {n} classes.",
            )
            raise ConfigError(expected(what, "average", self.average, hint=hint))
        if self.average == "binary" and not 0 <= self.pos_label < n:
            raise ConfigError(expected(f"a class index below {n}", "pos_label", self.pos_label))
        targ = targ.reshape(-1).long()
        # index_add_ into a fixed-size matrix instead of bincount: on CUDA bincount reads the max value back to
        # size its output, a sync per batch. Out-of-range targets get weight 0 instead of a (syncing) mask.
        valid = (targ >= 0) & (targ < n)
        idx = torch.where(valid, targ * n + labels, torch.zeros_like(targ))
        if self.cm is None:
            self.cm = torch.zeros(n * n, dtype=torch.long, device=pred.device)
        elif self.cm.numel() != n * n:
            raise DataError(expected(f"{math.isqrt(self.cm.numel())} classes, as in earlier batches", "classes", n))
        self.cm.index_add_(0, idx, valid.long())

    @property
    def confusion_matrix(self) -> torch.Tensor | None:
        """The accumulated ``(C, C)`` counts, rows are targets and columns predictions (``None`` before data)."""
        if self.cm is None:
            return None
        n = math.isqrt(self.cm.numel())
        return self.cm.view(n, n)

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        """Per-class (or pooled) score from true positive, false positive and false negative counts."""
        raise NotImplementedError

    def compute(self) -> float:
        cm = self.confusion_matrix
        if cm is None:
            return math.nan
        cm = cm.double() if cm.device.type != "mps" else cm.float()
        tp = cm.diagonal()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp  # (C,) each
        if self.average == "binary":
            k = self.pos_label
            return float(self._score(tp[k], fp[k], fn[k]))
        if self.average == "micro":
            return float(self._score(tp.sum(), fp.sum(), fn.sum()))
        scores = self._score(tp, fp, fn)  # (C,)
        if self.average == "weighted":
            support = cm.sum(1)
            return float((scores * support).sum() / support.sum().clamp_min(1))
        # Macro: classes never seen in targets nor predictions are left out of the mean.
        present = (tp + fp + fn) > 0
        return float((scores * present).sum() / present.sum().clamp_min(1))


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    # A score with a zero denominator counts as 0.
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


class Precision(_ConfusionMetric):
    """Precision of the whole set, ``tp / (tp + fp)``, from an accumulated confusion matrix.

    Args:
        average: ``"binary"`` (class ``pos_label`` only), ``"micro"`` (pooled counts), ``"macro"`` (mean over
            classes), ``"weighted"`` (mean weighted by class support).
        pos_label: the positive class for ``average="binary"``.
        thresh: probability threshold for a single-column binary output.
        axis: the class axis of the predictions.

    Pass the class or an instance: ``metrics=[Precision]`` or ``metrics=[Precision(average="macro")]``.
    """

    _default_name = "precision_score"

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _safe_div(tp, tp + fp)


class Recall(_ConfusionMetric):
    """Recall of the whole set, ``tp / (tp + fn)``; arguments as for :class:`Precision`."""

    _default_name = "recall_score"

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        return _safe_div(tp, tp + fn)


class FBeta(_ConfusionMetric):
    """F-beta score of the whole set, ``(1 + β²) tp / ((1 + β²) tp + β² fn + fp)``.

    It is computed once from the set's confusion counts: a mean of per-batch scores would be a different (and
    batch-size dependent) number. Other arguments as for :class:`Precision`.
    """

    _default_name = "fbeta_score"

    def __init__(self, beta: float, average: str = "binary", **kwargs: Any) -> None:
        if not beta > 0:
            raise ConfigError(expected("a positive number", "beta", beta))
        self.beta = beta
        super().__init__(average=average, **kwargs)

    def _score(self, tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
        b2 = self.beta**2
        return _safe_div((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp)


class F1Score(FBeta):
    """F1 score of the whole set (:class:`FBeta` with ``beta=1``); arguments as for :class:`Precision`."""

    _default_name = "f1_score"

    def __init__(self, average: str = "binary", **kwargs: Any) -> None:
        super().__init__(1.0, average=average, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# Segmentation: predictions are class scores (B, C, H, W), targets class ids (B, H, W). Pixel counts accumulate on
# the device; targets that are not class ids, outside [0, C) (an ignore index such as -100 or 255), are left out.


def _seg_labels(pred: torch.Tensor, targ: torch.Tensor, axis: int, metric: str) -> tuple[torch.Tensor, int]:
    """Predicted class ids, flattened, and the number of classes: the argmax over `axis`, or for a single output
    channel the positive class where the logit is above 0."""
    if pred.ndim == targ.ndim + 1 and pred.shape[axis] == 1:
        labels, n = (pred.squeeze(axis) > 0).long(), 2
    else:
        labels, n = pred.argmax(dim=axis), pred.shape[axis]
    _check_same_numel(labels, targ, metric)
    return labels.reshape(-1), n


def foreground_acc(inp: torch.Tensor, targ: torch.Tensor, bkg_idx: int = 0, axis: int = 1) -> torch.Tensor:
    """Pixel accuracy leaving out the background: the fraction of pixels whose target is not `bkg_idx` that the
    highest-scoring class (over `axis`) gets right.

    ``inp`` are scores ``(B, C, H, W)`` (or one logit channel ``(B, 1, H, W)``, class 1 above 0), ``targ`` class
    ids ``(B, H, W)``; pixels whose target is outside ``[0, C)`` (an ignore index) are left out too. ``nan`` for a
    batch without foreground. As ``metrics=[foreground_acc]`` it is computed over the whole set (the foreground
    pixels of every batch pooled), not as a mean of batch values.
    """
    correct, total = _foreground_counts(inp, targ, bkg_idx, axis, "foreground_acc")
    return correct.float() / total.float()


def _foreground_counts(
    inp: torch.Tensor, targ: torch.Tensor, bkg_idx: int, axis: int, metric: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct foreground pixels, foreground pixels) of a batch, as device tensors."""
    labels, n = _seg_labels(inp, targ, axis, metric)
    targ = targ.reshape(-1)
    keep = (targ != bkg_idx) & (targ >= 0) & (targ < n)
    return ((labels == targ) & keep).sum(), keep.sum()


class _ForegroundAcc(_ElementMean):
    """The set-level :func:`foreground_acc`: correct foreground pixels over all foreground pixels of the set."""

    _default_name = "foreground_acc"
    lower_is_better = False

    def __init__(self, bkg_idx: int = 0, axis: int = 1, name: str | None = None) -> None:
        self.bkg_idx, self.axis = bkg_idx, axis
        super().__init__(name=name)

    def _values(self, pred: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return _foreground_counts(pred, targ, self.bkg_idx, self.axis, self.name)


foreground_acc.set_metric = _ForegroundAcc  # type: ignore[attr-defined]
foreground_acc.lower_is_better = False  # type: ignore[attr-defined]


class Dice(Metric):
    """Dice coefficient of a binary segmentation over the whole set: ``2 |P ∩ T| / (|P| + |T|)``.

    ``P`` are the pixels predicted positive and ``T`` those that are: a positive pixel is one of any class but 0
    (with two classes, class 1). Predictions are scores ``(B, C, H, W)`` (the argmax over `axis` is the class) or a
    single logit channel ``(B, 1, H, W)`` (positive above 0); targets are class ids ``(B, H, W)``, and pixels whose
    target is outside ``[0, C)`` (an ignore index such as -100 or 255) are left out. The counts of every batch are
    pooled, so the value is that of the whole set; ``nan`` when nothing is positive anywhere.

    Args:
        axis: the class axis of the predictions.
    """

    lower_is_better = False

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        self.axis = axis
        super().__init__(name=name)

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None  # (2,): |P ∩ T|, |P| + |T|

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        labels, n = _seg_labels(pred.detach(), targ, self.axis, self.name)
        targ = targ.reshape(-1)
        valid = (targ >= 0) & (targ < n)
        p, t = (labels != 0) & valid, (targ > 0) & valid
        batch = torch.stack([(p & t).sum(), p.sum() + t.sum()])
        self.counts = batch if self.counts is None else self.counts + batch

    def _score(self, inter: float, total: float) -> float:
        return 2 * inter / total

    def compute(self) -> float:
        if self.counts is None:
            return math.nan
        inter, total = (float(v) for v in self.counts.cpu())
        return self._score(inter, total) if total > 0 else math.nan


class JaccardCoeff(Dice):
    """Jaccard index (intersection over union) of a binary segmentation over the whole set: ``|P ∩ T| / |P ∪ T|``.

    Positives, predictions and targets as for :class:`Dice`; ``nan`` when nothing is positive anywhere.
    """

    def _score(self, inter: float, total: float) -> float:
        return inter / (total - inter)


class DiceMulti(Metric):
    """Dice coefficient of a multi-class segmentation over the whole set, averaged over the classes.

    For each class ``c``, ``2 |P_c ∩ T_c| / (|P_c| + |T_c|)`` from the pixel counts of every batch pooled; the mean
    is over the classes that appear in the predictions or the targets (a class never seen is left out, not
    counted as 0 or 1). Predictions are scores ``(B, C, H, W)``, targets class ids ``(B, H, W)``.

    Args:
        axis: the class axis of the predictions.
    """

    lower_is_better = False

    def __init__(self, axis: int = 1, name: str | None = None) -> None:
        self.axis = axis
        super().__init__(name=name)

    def reset(self) -> None:
        self.counts: torch.Tensor | None = None  # (2, C): |P_c ∩ T_c|, |P_c| + |T_c|

    def update(self, pred: torch.Tensor, *targs: torch.Tensor) -> None:
        targ = targs[0].detach()
        labels, n = _seg_labels(pred.detach(), targ, self.axis, self.name)
        targ = targ.reshape(-1).long()
        if self.counts is None:
            self.counts = torch.zeros(2, n, dtype=torch.long, device=labels.device)
        elif self.counts.shape[1] != n:
            raise DataError(expected(f"{self.counts.shape[1]} classes, as in earlier batches", "classes", n))
        # index_add_ into fixed-size counts (no bincount, whose output size would need a sync); targets out of
        # range get weight 0 rather than being masked out.
        valid = ((targ >= 0) & (targ < n)).long()
        t = torch.where(valid.bool(), targ, torch.zeros_like(targ))
        self.counts[0].index_add_(0, t, valid * (labels == t).long())
        self.counts[1].index_add_(0, t, valid)
        self.counts[1].index_add_(0, labels, valid)

    def compute(self) -> float:
        if self.counts is None:
            return math.nan
        inter, total = self.counts.cpu().double()
        seen = total > 0
        if not bool(seen.any()):
            return math.nan
        return float((2 * inter[seen] / total[seen]).mean())
