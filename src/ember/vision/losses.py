"""Losses for image-to-image models: :class:`FeatureLoss`, the perceptual ("feature") loss of restoration and
super-resolution.

A pixel loss alone (the mean squared or absolute error) rewards blurry predictions: when the model is unsure
where an edge goes, the average of the candidates costs least. A perceptual loss also compares what a frozen
convolutional network (the *feature model*, classically the convolutional part of a VGG trained on ImageNet)
sees in the prediction and in the target, at a few of its layers, and the Gram matrices of those features
(the correlations between channels, which describe texture and style). Sharp edges and textures then cost less
than blur.

>>> from torchvision.models import vgg16_bn                           # doctest: +SKIP
>>> features = vgg16_bn(weights="DEFAULT").features                  # doctest: +SKIP
>>> ids = [i - 1 for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]   # doctest: +SKIP
>>> loss = FeatureLoss(features, ids[2:5], [5, 15, 2])                # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ember.core.errors import ConfigError, DataError, expected

__all__ = ["FeatureLoss", "gram_matrix"]

_REDUCTIONS = ("mean", "sum", "none")


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """The Gram matrices of feature maps ``(B, C, H, W)``: ``(B, C, C)`` channel products summed over the
    pixels, divided by ``C * H * W`` so that the size of the map does not change their scale.

    Computed in float32 (sums over many pixels overflow half precision).
    """
    b, c = x.shape[:2]
    f = x.reshape(b, c, -1).float()  # (B, C, H*W)
    return f @ f.transpose(1, 2) / f[0].numel()  # (B, C, C)


class _Captured(Exception):
    """Raised by the last hook: every feature needed is kept, so the rest of the feature model need not run."""


class FeatureLoss(nn.Module):
    """Perceptual loss: a pixel loss, plus feature and Gram-matrix (style) losses at layers of a frozen network.

    ``loss = base(pred, targ) + sum_i w_i * base(f_i(pred), f_i(targ))
    + gram_wgt * sum_i w_i ** 2 * base(G(f_i(pred)), G(f_i(targ)))``, where ``f_i`` is the output of the
    i-th chosen layer of `feature_model`, ``w_i`` its weight and ``G`` :func:`gram_matrix`. The weights are
    squared in the style term so that the usual settings (``layer_wgts=[5, 15, 2]``, ``gram_wgt=5e3`` on the
    three VGG blocks before the last pooling layers) give terms of comparable size.

    The feature model is frozen (no gradient to its weights) and stays in eval mode, also when the loss's
    ``train()`` is called; gradients flow through it to the prediction. It is moved to the predictions'
    device on the first call. It sees the predictions and targets as they are: normalize the data with the
    statistics the feature model was trained with (ImageNet's for a VGG), which the targets then share.

    The chosen layers are read with forward hooks that exist only during a call (the model is stopped once
    the last of them has run), so nothing is kept between calls and the loss can be deep-copied. After a
    call, :attr:`parts` holds each term of the last batch (detached): ``"pixel"``, ``"feat_0"``, …,
    ``"gram_0"``, …

    Args:
        feature_model: the frozen network, e.g. ``torchvision.models.vgg16_bn(weights=...).features``.
        layer_ids: the layers whose outputs are compared: indices into ``feature_model``'s children (for an
            ``nn.Sequential``, its layers), or module names as ``feature_model.get_submodule`` takes them
            (``"3.1.conv2"``). Pick layers whose output the next layer does not change in place (the ReLU
            before a pooling layer, not a convolution followed by ``ReLU(inplace=True)``).
        layer_wgts: one weight per layer.
        base_loss: ``base_loss(input, target)`` comparing two tensors, like ``F.l1_loss`` or ``F.mse_loss``;
            for per-item losses (``reduction="none"``) it must also take ``reduction="none"``.
        gram_wgt: the weight of the style term; 0 leaves it out (and saves computing it).
        reduction: ``"mean"``, ``"sum"`` over the batch, or ``"none"`` for one loss per item ``(B,)``.

    Raises:
        ConfigError: an unknown layer, or a weight count that does not match the layers.

    A FeatureLoss cannot be written to an ``.ember`` file (it holds a whole network). ``learn.export`` still
    works: like any loss without a recipe it is left out, and the loaded learner predicts with the identity
    activation, which is what this loss uses too.
    """

    def __init__(
        self,
        feature_model: nn.Module,
        layer_ids: Sequence[int] | Sequence[str],
        layer_wgts: Sequence[float],
        base_loss: Callable[..., torch.Tensor] = F.l1_loss,
        gram_wgt: float = 5e3,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if not isinstance(feature_model, nn.Module):
            raise ConfigError(expected("a torch.nn.Module", "feature_model", type(feature_model).__name__))
        if isinstance(layer_ids, (str, int)) or not len(layer_ids):
            raise ConfigError(expected("a non-empty list of layer indices or names", "layer_ids", layer_ids))
        if len(layer_wgts) != len(layer_ids):
            raise ConfigError(expected(f"one weight per layer ({len(layer_ids)})", "layer_wgts", list(layer_wgts)))
        if not callable(base_loss):
            raise ConfigError(expected("a function (input, target) -> loss", "base_loss", base_loss))
        if gram_wgt < 0:
            raise ConfigError(expected("a weight >= 0", "gram_wgt", gram_wgt))
        self.feature_model = feature_model.eval().requires_grad_(False)
        self.layer_ids = list(layer_ids)
        self.layer_wgts = [float(w) for w in layer_wgts]
        self.base_loss = base_loss
        self.gram_wgt = float(gram_wgt)
        self.reduction = reduction
        self.parts: dict[str, torch.Tensor] = {}
        self._layers()  # unknown layers are reported now, not at the first batch

    @property
    def reduction(self) -> str:
        """``"mean"``, ``"sum"`` or ``"none"`` (one loss per item); settable."""
        return self._reduction

    @reduction.setter
    def reduction(self, value: str) -> None:
        if value not in _REDUCTIONS:
            raise ConfigError(expected("a reduction", "reduction", value, _REDUCTIONS))
        self._reduction = value

    def _layers(self) -> list[nn.Module]:
        """The chosen modules, looked up on each call (a deep copy finds its own)."""
        children = list(self.feature_model.children())
        out = []
        for lid in self.layer_ids:
            if isinstance(lid, str):
                try:
                    out.append(self.feature_model.get_submodule(lid))
                except AttributeError as e:
                    raise ConfigError(
                        expected("the name of a module of feature_model", "layer_ids", lid, hint=str(e))
                    ) from e
            elif isinstance(lid, int) and not isinstance(lid, bool) and -len(children) <= lid < len(children):
                out.append(children[lid])
            else:
                raise ConfigError(
                    expected(f"an index of one of feature_model's {len(children)} children", "layer_ids", lid)
                )
        return out

    def train(self, mode: bool = True) -> FeatureLoss:
        """Set the mode of the loss; the feature model stays in eval mode (its batch norms keep their statistics)."""
        super().train(mode)
        self.feature_model.eval()
        return self

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of the chosen layers for `x`, read by hooks that are removed before returning."""
        layers = self._layers()
        feats: dict[int, torch.Tensor] = {}

        def keeper(k: int) -> Callable[..., None]:
            def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
                feats.setdefault(k, out)
                if len(feats) == len(layers):
                    raise _Captured

            return hook

        handles = [m.register_forward_hook(keeper(k)) for k, m in enumerate(layers)]
        try:
            self.feature_model(x)
        except _Captured:
            pass
        finally:
            for h in handles:
                h.remove()
        if len(feats) != len(layers):
            missing = [self.layer_ids[k] for k in range(len(layers)) if k not in feats]
            raise ConfigError(
                f"The layers {missing} of the feature model did not run on its forward pass; "
                "choose layers among those its forward uses (layer_ids)."
            )
        return [feats[k] for k in range(len(layers))]

    def _base(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The base loss: a scalar for "mean", else one value per item ``(B,)``."""
        if self.reduction == "mean":
            return self.base_loss(a, b.to(a.dtype))
        return self.base_loss(a, b.to(a.dtype), reduction="none").reshape(a.shape[0], -1).mean(1)  # (B,)

    def forward(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        """The loss of predicted images ``(B, C, H, W)`` against target images of the same shape."""
        if pred.shape != targ.shape:
            raise DataError(
                expected(
                    f"target images of the predictions' shape {tuple(pred.shape)}",
                    "targ.shape",
                    tuple(targ.shape),
                    hint="The model's output channels (n_out) and size must match the target images.",
                )
            )
        param = next(self.feature_model.parameters(), None)
        if param is not None and param.device != pred.device:
            self.feature_model.to(pred.device)
        targ = targ.to(pred.dtype)
        pred_feats = self._features(pred)
        with torch.no_grad():
            targ_feats = self._features(targ)
        parts = {"pixel": self._base(pred, targ)}
        for k, (fp, ft, w) in enumerate(zip(pred_feats, targ_feats, self.layer_wgts)):
            parts[f"feat_{k}"] = w * self._base(fp, ft)
        if self.gram_wgt:
            for k, (fp, ft, w) in enumerate(zip(pred_feats, targ_feats, self.layer_wgts)):
                parts[f"gram_{k}"] = self.gram_wgt * w**2 * self._base(gram_matrix(fp), gram_matrix(ft))
        self.parts = {name: v.detach() for name, v in parts.items()}
        total = sum(parts.values())
        return total.sum() if self.reduction == "sum" else total

    def activation(self, out: torch.Tensor) -> torch.Tensor:
        """The predicted images are the output itself (identity)."""
        return out

    def decodes(self, out: torch.Tensor) -> torch.Tensor:
        """Identity: the images are decoded by the data's transforms (the normalization undone)."""
        return out

    def __repr__(self) -> str:
        base = getattr(self.base_loss, "__name__", repr(self.base_loss))
        return (
            f"FeatureLoss({type(self.feature_model).__name__}, layer_ids={self.layer_ids}, "
            f"layer_wgts={self.layer_wgts}, base_loss={base}, gram_wgt={self.gram_wgt:g})"
        )
