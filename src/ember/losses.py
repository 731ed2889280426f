"""Losses that take any ``(B, ..., C)`` output, and know how to turn a raw output into an answer.

Every loss here is an ``nn.Module`` with

* ``activation(out)``: raw model output -> probabilities or values (softmax over the class axis, sigmoid, identity);
* ``decodes(probs)``: the output of ``activation`` -> the answer (argmax over the class axis, ``probs > thresh``,
  identity);
* a ``reduction`` attribute (``"mean"``, ``"sum"`` or ``"none"``) that can be changed after construction, e.g. set
  to ``"none"`` to get one loss per item. With ``"none"`` a flattened loss returns one value per flattened
  element: ``B*T`` values for ``(B, T, C)`` logits with ``(B, T)`` targets, ``B*H*W`` for segmentation, ``B*C``
  for multi-label outputs; reshape with ``.view(B, -1)`` to get per-item rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import recipe_from_init

__all__ = [
    "loss_activation",
    "loss_decodes",
    "FlattenedLoss",
    "CrossEntropyLossFlat",
    "BCEWithLogitsLossFlat",
    "BCELossFlat",
    "MSELossFlat",
    "L1LossFlat",
    "LabelSmoothingCrossEntropy",
    "LabelSmoothingCrossEntropyFlat",
    "FocalLoss",
    "FocalLossFlat",
    "DiceLoss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ConfigError(expected("a reduction", "reduction", reduction, _REDUCTIONS))
    return reduction


def _shape_error(inp: torch.Tensor, targ: torch.Tensor, loss: str, what: str) -> DataError:
    return DataError(
        expected(
            what,
            "targ.shape",
            tuple(targ.shape),
            hint=f"{loss} received predictions of shape {tuple(inp.shape)}; check the model's output size, "
            "the targets and the loss's `axis`.",
        )
    )


class FlattenedLoss(nn.Module):
    """Wrap a loss module so that it sees flattened predictions and targets.

    With ``class_axis=True`` (classification) the predictions' ``axis`` is moved last and the rest flattened:
    ``(B, C, H, W)`` with ``axis=1`` becomes ``(B*H*W, C)`` and the targets ``(B*H*W,)``. Otherwise the predictions
    become ``(N, K)`` with ``K`` the size of ``axis`` (so per-column weights still broadcast) and the targets take
    the same shape.

    Args:
        loss: the loss module to call on the flattened tensors; it must have a ``reduction`` attribute.
        axis: the class (or output) axis of the predictions.
        class_axis: the targets are class indices without that axis.
        floatify: cast the targets to the predictions' dtype (regression, binary targets).
    """

    def __init__(self, loss: nn.Module, axis: int = -1, class_axis: bool = True, floatify: bool = False) -> None:
        super().__init__()
        if not hasattr(loss, "reduction"):
            raise ConfigError(expected("a loss module with a `reduction` attribute", "loss", loss))
        self.func, self.axis, self.class_axis, self.floatify = loss, axis, class_axis, floatify

    @property
    def reduction(self) -> str:
        """``"mean"``, ``"sum"`` or ``"none"`` (one value per flattened element); settable."""
        return self.func.reduction

    @reduction.setter
    def reduction(self, value: str) -> None:
        self.func.reduction = _check_reduction(value)

    def _flatten(self, inp: torch.Tensor, targ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        name = type(self).__name__
        if inp.ndim == 0:
            raise _shape_error(inp, targ, name, "a target for predictions with at least one dimension")
        moved = inp.movedim(self.axis, -1) if inp.ndim > 1 else inp  # (B, ..., C)
        if self.class_axis:
            flat = moved.reshape(-1, moved.shape[-1])  # (N, C)
            if targ.is_floating_point() and targ.shape == inp.shape:
                # Class probabilities (soft targets) keep their class axis.
                return flat, targ.movedim(self.axis, -1).reshape(flat.shape)
            if targ.numel() != flat.shape[0]:
                raise _shape_error(inp, targ, name, f"one class index per prediction row ({flat.shape[0]} in all)")
            return flat, targ.reshape(-1).long()  # (N,)
        flat = moved.reshape(-1, moved.shape[-1]) if moved.ndim > 1 else moved  # (N, K) or (N,)
        if targ.numel() != flat.numel():
            raise _shape_error(inp, targ, name, f"one target per prediction ({flat.numel()} in all)")
        if targ.ndim == inp.ndim and inp.ndim > 1:
            targ = targ.movedim(self.axis, -1)
        targ = targ.reshape(flat.shape)
        if self.floatify and targ.dtype != flat.dtype:
            targ = targ.to(flat.dtype)
        return flat, targ

    def forward(self, inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        """The loss of raw outputs ``inp`` against ``targ``."""
        flat_inp, flat_targ = self._flatten(inp, targ)
        loss = self.func(flat_inp, flat_targ)
        return loss.reshape(-1) if self.reduction == "none" else loss

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Raw output -> probabilities or values (identity here)."""
        return out

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Output of :meth:`activation` -> the answer (identity here)."""
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.func!r}, axis={self.axis})"


class _SoftmaxDecoding:
    """Softmax over the class axis, argmax to decode (argmax of probabilities equals argmax of logits)."""

    axis: int

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Softmax over the class axis."""
        return F.softmax(out, dim=self.axis)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Index of the highest-scoring class over the class axis."""
        return out.argmax(dim=self.axis)


@recipe_from_init()
class CrossEntropyLossFlat(_SoftmaxDecoding, FlattenedLoss):
    """``nn.CrossEntropyLoss`` over flattened outputs, class scores on ``axis``.

    ``(B, C)``/``(B,)``, ``(B, T, C)``/``(B, T)`` (``axis=-1``) and ``(B, C, H, W)``/``(B, H, W)`` (``axis=1``) all
    work. Float targets with the predictions' shape are taken as class probabilities.
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        axis: int = -1,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        loss = nn.CrossEntropyLoss(
            weight=weight,
            ignore_index=ignore_index,
            reduction=_check_reduction(reduction),
            label_smoothing=label_smoothing,
        )
        super().__init__(loss, axis=axis, class_axis=True)


@recipe_from_init()
class BCEWithLogitsLossFlat(FlattenedLoss):
    """``nn.BCEWithLogitsLoss`` over flattened outputs (multi-label or single-logit binary).

    ``pos_weight`` of shape ``(C,)`` weighs the positives of each label on ``axis``. Targets are cast to float.
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        axis: int = -1,
        thresh: float = 0.5,
        pos_weight: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> None:
        loss = nn.BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, reduction=_check_reduction(reduction))
        super().__init__(loss, axis=axis, class_axis=False, floatify=True)
        self.thresh = thresh

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the logits."""
        return torch.sigmoid(out)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """``probs > thresh`` (booleans)."""
        return out > self.thresh


@recipe_from_init()
class BCELossFlat(FlattenedLoss):
    """``nn.BCELoss`` over flattened outputs: the model outputs probabilities already."""

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        *,
        axis: int = -1,
        thresh: float = 0.5,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            nn.BCELoss(weight=weight, reduction=_check_reduction(reduction)), axis=axis, class_axis=False, floatify=True
        )
        self.thresh = thresh

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """``probs > thresh`` (booleans)."""
        return out > self.thresh


@recipe_from_init()
class MSELossFlat(FlattenedLoss):
    """``nn.MSELoss`` over flattened outputs: ``(B, 1)`` predictions with ``(B,)`` targets work."""

    def __init__(self, *, axis: int = -1, reduction: str = "mean") -> None:
        super().__init__(nn.MSELoss(reduction=_check_reduction(reduction)), axis=axis, class_axis=False, floatify=True)


@recipe_from_init()
class L1LossFlat(FlattenedLoss):
    """``nn.L1Loss`` over flattened outputs."""

    def __init__(self, *, axis: int = -1, reduction: str = "mean") -> None:
        super().__init__(nn.L1Loss(reduction=_check_reduction(reduction)), axis=axis, class_axis=False, floatify=True)


@recipe_from_init()
class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against targets smoothed towards uniform: ``(1 - eps)`` on the true class, ``eps`` spread.

    The loss per item is ``(1 - eps) * nll + eps * mean_c(-log p_c)``, the formula of
    ``F.cross_entropy(..., label_smoothing=eps)``, which computes it. Predictions ``(N, C)``, targets ``(N,)``;
    use :class:`LabelSmoothingCrossEntropyFlat` for other shapes.
    """

    def __init__(
        self,
        eps: float = 0.1,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        if not 0.0 <= eps <= 1.0:
            raise ConfigError(expected("a number in [0, 1]", "eps", eps))
        self.eps, self.ignore_index = eps, ignore_index
        self.reduction = _check_reduction(reduction)
        self.register_buffer("weight", weight)

    def forward(self, inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        """The smoothed cross-entropy of logits ``inp`` (N, C) against class indices ``targ`` (N,)."""
        return F.cross_entropy(
            inp,
            targ,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.eps,
        )

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Softmax over the last axis."""
        return F.softmax(out, dim=-1)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Argmax over the last axis."""
        return out.argmax(dim=-1)


@recipe_from_init()
class LabelSmoothingCrossEntropyFlat(_SoftmaxDecoding, FlattenedLoss):
    """:class:`LabelSmoothingCrossEntropy` over flattened outputs, class scores on ``axis``."""

    def __init__(
        self,
        eps: float = 0.1,
        weight: torch.Tensor | None = None,
        *,
        axis: int = -1,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        loss = LabelSmoothingCrossEntropy(eps=eps, weight=weight, reduction=reduction, ignore_index=ignore_index)
        super().__init__(loss, axis=axis, class_axis=True)


@recipe_from_init()
class FocalLoss(nn.Module):
    """Focal loss: cross-entropy scaled by ``(1 - p_t) ** gamma`` so that easy, confident items count less.

    ``gamma=0`` gives plain cross-entropy, class weights included (the mean divides by the targets' summed weight,
    as ``F.cross_entropy`` does). Predictions ``(N, C)``, targets ``(N,)``; use :class:`FocalLossFlat` for others.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        weight: torch.Tensor | None = None,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ConfigError(expected("a number >= 0", "gamma", gamma))
        self.gamma, self.ignore_index = gamma, ignore_index
        self.reduction = _check_reduction(reduction)
        self.register_buffer("weight", weight)

    def forward(self, inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        """The focal loss of logits ``inp`` (N, C) against class indices ``targ`` (N,)."""
        valid = targ != self.ignore_index  # (N,)
        safe_targ = torch.where(valid, targ, torch.zeros_like(targ))
        log_pt = F.log_softmax(inp.float(), dim=-1).gather(1, safe_targ[:, None]).squeeze(1)  # (N,)
        pt = log_pt.exp()
        w = valid.to(log_pt.dtype)
        if self.weight is not None:
            w = w * self.weight.to(log_pt.dtype)[safe_targ]
        loss = -((1 - pt) ** self.gamma) * log_pt * w  # (N,)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / w.sum()

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Softmax over the last axis."""
        return F.softmax(out, dim=-1)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Argmax over the last axis."""
        return out.argmax(dim=-1)


@recipe_from_init()
class FocalLossFlat(_SoftmaxDecoding, FlattenedLoss):
    """:class:`FocalLoss` over flattened outputs, class scores on ``axis``."""

    def __init__(
        self,
        gamma: float = 2.0,
        weight: torch.Tensor | None = None,
        *,
        axis: int = -1,
        reduction: str = "mean",
        ignore_index: int = -100,
    ) -> None:
        loss = FocalLoss(gamma=gamma, weight=weight, reduction=reduction, ignore_index=ignore_index)
        super().__init__(loss, axis=axis, class_axis=True)


@recipe_from_init()
class DiceLoss(nn.Module):
    """Soft Dice loss for segmentation: ``1 - (2 |P ∩ T| + smooth) / (|P| + |T| + smooth)`` per image and class.

    Args:
        axis: the class axis of the logits, e.g. ``(B, C, H, W)`` with ``axis=1`` and a ``(B, H, W)`` mask.
        smooth: added to both sides so that a class absent from both prediction and mask scores 1 (loss 0).
        square_in_union: sum squared probabilities in the union (the V-Net form).
        reduction: ``"mean"`` or ``"sum"`` over images and classes, or ``"none"`` for the ``(B, C)`` losses.
    """

    def __init__(
        self,
        axis: int = 1,
        smooth: float = 1e-6,
        square_in_union: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        self.axis, self.smooth, self.square_in_union = axis, smooth, square_in_union
        self.reduction = _check_reduction(reduction)

    def forward(self, inp: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        """The Dice loss of logits ``inp`` (B, C, ...) against class indices ``targ`` (B, ...)."""
        probs = F.softmax(inp.float(), dim=self.axis).movedim(self.axis, -1)  # (B, ..., C)
        n_classes = probs.shape[-1]
        if targ.shape != probs.shape[:-1]:
            raise _shape_error(inp, targ, "DiceLoss", f"a mask of shape {tuple(probs.shape[:-1])}")
        onehot = F.one_hot(targ.long(), n_classes).to(probs.dtype)  # (B, ..., C)
        probs = probs.reshape(probs.shape[0], -1, n_classes)  # (B, P, C)
        onehot = onehot.reshape(probs.shape)
        inter = (probs * onehot).sum(1)  # (B, C)
        union = (probs * probs if self.square_in_union else probs).sum(1) + onehot.sum(1)  # (B, C)
        loss = 1 - (2 * inter + self.smooth) / (union + self.smooth)  # (B, C)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """Softmax over the class axis."""
        return F.softmax(out, dim=self.axis)

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Argmax over the class axis."""
        return out.argmax(dim=self.axis)


def _torch_class_axis(out: torch.Tensor) -> int:
    """The class axis of torch's ``CrossEntropyLoss``/``NLLLoss`` inputs: 1, or the only axis of one unbatched item."""
    return 1 if out.ndim >= 2 else -1


def loss_activation(loss_func: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function that turns raw outputs into answers' scores for `loss_func`.

    ember's losses say it themselves (``loss.activation``); for torch's own losses the usual pairing
    is used (softmax for cross-entropy, sigmoid for BCE-with-logits); otherwise the identity. torch's
    ``CrossEntropyLoss`` and ``NLLLoss`` take the classes on axis 1 (``(B, C)``, ``(B, C, T)``,
    ``(B, C, H, W)``), so the softmax runs over that axis.
    """
    act = getattr(loss_func, "activation", None)
    if callable(act):
        return act
    if isinstance(loss_func, nn.CrossEntropyLoss):
        return lambda out: torch.softmax(out, dim=_torch_class_axis(out))
    if isinstance(loss_func, nn.NLLLoss):
        return lambda out: out.exp()
    if isinstance(loss_func, nn.BCEWithLogitsLoss):
        return torch.sigmoid
    return lambda out: out


def loss_decodes(loss_func: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """The function that turns activated outputs into decoded answers (class indices, 0/1 labels, values)."""
    dec = getattr(loss_func, "decodes", None)
    if callable(dec):
        return dec
    if isinstance(loss_func, (nn.CrossEntropyLoss, nn.NLLLoss)):
        return lambda probs: probs.argmax(dim=_torch_class_axis(probs))
    if isinstance(loss_func, (nn.BCEWithLogitsLoss, nn.BCELoss)):
        return lambda probs: probs > 0.5
    return lambda out: out
