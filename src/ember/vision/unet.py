"""`unet_learner`: a :class:`~ember.vision.models.unet.DynamicUnet` on a pretrained (or fresh) body, for
per-pixel predictions such as semantic segmentation.

The body comes from the same places as :func:`~ember.vision.learner.vision_learner`'s (torchvision, timm, ember's
registry or a callable); the decoder is sized from a batch of the data, and the learner is a
:class:`~ember.vision.learner.VisionLearner`, so ``predict``, ``show_results`` and ``export`` work as for a
classifier, a prediction being a mask of class ids.

>>> learn = unet_learner(dls, "resnet34", metrics=DiceMulti())   # doctest: +SKIP
>>> learn.fine_tune(8)                                            # doctest: +SKIP
>>> mask, _, probs = learn.predict("street.png")                  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from ember.core.errors import ConfigError, expected
from ember.data.loaders import DataLoaders
from ember.learner.export import register_model_factory
from ember.vision.learner import (
    VisionLearner,
    _data_channels,
    _finish_learner,
    _input_block,
    _n_out_from,
    arch_name,
    check_learner_kwargs,
    create_body,
)
from ember.vision.models.unet import DynamicUnet, _pair

__all__ = ["unet_learner", "create_unet_model"]

_UNET_ARGS = tuple(p for p in inspect.signature(DynamicUnet.__init__).parameters if p not in ("self", "encoder"))
_UNET_OPTIONS = tuple(p for p in _UNET_ARGS if p not in ("n_out", "img_size"))


@register_model_factory("create_unet_model")
def create_unet_model(
    arch: str | Callable[..., nn.Module],
    n_out: int,
    img_size: int | tuple[int, int],
    pretrained: bool = True,
    n_in: int = 3,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    **unet_kwargs: Any,
) -> DynamicUnet:
    """A :class:`DynamicUnet` on the body of `arch` (see :func:`~ember.vision.learner.create_body`).

    Args:
        img_size: ``(height, width)`` of the images (the encoder is probed at that size).
        **unet_kwargs: the :class:`DynamicUnet` options (``blur``, ``blur_final``, ``self_attention``,
            ``y_range``, ``last_cross``, ``bottle``).

    Raises:
        ConfigError: an unknown option or architecture, or an image size the body cannot take.
    """
    unknown = sorted(set(unet_kwargs) - set(_UNET_OPTIONS))
    if unknown:
        raise ConfigError(expected("DynamicUnet options", "unet_kwargs", unknown, valid=_UNET_OPTIONS))
    body = create_body(arch, n_in=n_in, pretrained=pretrained, cut=cut)
    return DynamicUnet(body, n_out, img_size, **unet_kwargs)


def _encoder_decoder_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups: the encoder (frozen first when pretrained), then the whole decoder."""
    encoder = {id(p) for p in model.encoder.parameters()}
    return [list(model.encoder.parameters()), [p for p in model.parameters() if id(p) not in encoder]]


def unet_learner(
    dls: DataLoaders,
    arch: str | Callable[..., nn.Module],
    pretrained: bool = True,
    normalize: bool = True,
    n_out: int | None = None,
    n_in: int | None = None,
    img_size: int | tuple[int, int] | None = None,
    loss_func: Any = None,
    metrics: Any = None,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    blur: bool = False,
    blur_final: bool = True,
    self_attention: bool = False,
    y_range: tuple[float, float] | None = None,
    last_cross: bool = True,
    bottle: bool = False,
    **learner_kwargs: Any,
) -> VisionLearner:
    """A :class:`~ember.vision.learner.VisionLearner` with a U-Net on `arch`, for per-pixel outputs.

    Args:
        arch: an ember, torchvision or timm model name, or a callable returning a model (its body is the
            encoder).
        pretrained: start from the pretrained weights in the local cache; the encoder then starts frozen
            (``fine_tune`` trains the decoder first).
        normalize: with pretrained weights, add the weights' normalization to the batch transforms unless the
            data already normalizes.
        n_out: output channels; default ``dls.c`` (the number of classes of a mask target, the channels of
            an image target).
        n_in: input channels; default those of the data.
        img_size: ``(height, width)`` the encoder is probed at; default the size of a training batch.
        loss_func: default the data's (``CrossEntropyLossFlat(axis=1)`` for masks, ``MSELossFlat()`` for images).
        cut: where to cut the pretrained model (see :func:`~ember.vision.learner.create_body`).
        blur, blur_final, self_attention, y_range, last_cross, bottle: the
            :class:`~ember.vision.models.unet.DynamicUnet` options.
        **learner_kwargs: passed to :class:`~ember.learner.Learner` (``opt_func``, ``lr``, ``wd``, ``cbs``,
            ``path``, ``precision`` …).

    Raises:
        ConfigError: the number of outputs cannot be found, or `arch` is unknown.
        EmberError: pretrained weights are missing from the local cache.
    """
    check_learner_kwargs("unet_learner", unet_learner, learner_kwargs)
    arch = arch_name(arch)
    n_out = _n_out_from(dls, n_out, "unet_learner")
    xb = None
    if img_size is None:
        xb = dls.one_batch()[0]  # (B, C, H, W)
        if xb.ndim != 4:
            raise ConfigError(
                f"unet_learner needs image batches (B, C, H, W); these DataLoaders give {tuple(xb.shape)}. "
                "Pass img_size=(height, width) if the model's input is built otherwise."
            )
        img_size = (int(xb.shape[-2]), int(xb.shape[-1]))
    img_size = _pair("img_size", img_size)
    if n_in is None:  # the input block's channels, else those of the batch already taken
        known = getattr(_input_block(dls), "n_channels", None)
        if known is not None:
            n_in = int(known)
        elif xb is not None:
            n_in = int(xb.shape[1])
        else:
            n_in = _data_channels(dls)
    options = {
        "blur": blur,
        "blur_final": blur_final,
        "self_attention": self_attention,
        "y_range": [float(v) for v in y_range] if y_range is not None else None,
        "last_cross": last_cross,
        "bottle": bottle,
    }
    model = create_unet_model(arch, int(n_out), img_size, pretrained=pretrained, n_in=int(n_in), cut=cut, **options)
    recipe = {
        "arch": arch,
        "n_out": int(n_out),
        "img_size": list(img_size),
        "pretrained": False,  # an exported model carries its own weights
        "n_in": int(n_in),
        "cut": cut,
        **options,
    }
    return _finish_learner(
        dls,
        model,
        arch,
        n_in=int(n_in),
        pretrained=pretrained,
        normalize=normalize,
        cut=cut,
        splitter=_encoder_decoder_split,
        factory=("create_unet_model", recipe),
        loss_func=loss_func,
        metrics=metrics,
        **learner_kwargs,
    )
