"""The GAN architectures: a DCGAN generator from noise, a DCGAN critic, and a patch critic for image-to-image GANs.

:func:`basic_generator` and :func:`basic_critic` are the pair a Wasserstein GAN trains from noise
(:meth:`~ember.vision.gan.GANLearner.wgan`); :func:`gan_critic` scores each region of an image, for a GAN built
from a pretrained generator (:meth:`~ember.vision.gan.GANLearner.from_learners`).
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from ember.core.errors import ConfigError, expected
from ember.layers import ConvLayer, Flatten, SelfAttention
from ember.learner.export import register_model_factory

__all__ = ["basic_generator", "basic_critic", "gan_critic"]


def _check_size(name: str, size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ConfigError(expected("a power of two of at least 8", name, size, hint="e.g. 32 or 64 pixels"))
    return size


def _check_count(name: str, value: object, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ConfigError(expected(f"an int >= {least}", name, value))
    return value


class _NoiseAsMap(nn.Module):
    """``(B, n)`` noise vectors -> ``(B, n, 1, 1)``, the 1x1 "image" a transposed convolution grows from."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1, 1, 1)


@register_model_factory("basic_generator")
def basic_generator(
    out_size: int, n_channels: int, in_sz: int = 100, n_features: int = 64, n_extra_layers: int = 0
) -> nn.Sequential:
    """A DCGAN generator: noise ``(B, in_sz)`` (or ``(B, in_sz, 1, 1)``) -> images ``(B, n_channels, out_size,
    out_size)`` in [-1, 1].

    Transposed convolutions double the size from 4x4 up, halving the features each time; the last one gives
    `n_channels` through a tanh, so normalize the real images to [-1, 1] (``Normalize.from_stats([0.5]*C,
    [0.5]*C)``). The model's ``noise_sz`` attribute says how long a noise vector it takes.

    Args:
        out_size: image side in pixels, a power of two (>= 8).
        n_channels: image channels (3 for colour, 1 for grey).
        in_sz: length of the noise vector.
        n_features: features of the layer before the image (doubled at every smaller size).
        n_extra_layers: 3x3 convolutions added before the last upsampling.
    """
    _check_size("out_size", out_size)
    for name, v in (("n_channels", n_channels), ("in_sz", in_sz), ("n_features", n_features)):
        _check_count(name, v)
    _check_count("n_extra_layers", n_extra_layers, 0)
    n_up = int(math.log2(out_size)) - 3  # 4 -> out_size/2 by doubling, then the last layer doubles to out_size
    nf = n_features * 2**n_up
    layers: list[nn.Module] = [_NoiseAsMap(), ConvLayer(in_sz, nf, ks=4, stride=1, padding=0, transpose=True)]
    for _ in range(n_up):
        layers.append(ConvLayer(nf, nf // 2, ks=4, stride=2, padding=1, transpose=True))
        nf //= 2
    layers += [ConvLayer(nf, nf, ks=3) for _ in range(n_extra_layers)]
    layers += [nn.ConvTranspose2d(nf, n_channels, 4, stride=2, padding=1, bias=False), nn.Tanh()]
    model = nn.Sequential(*layers)
    model.noise_sz = in_sz
    kwargs = dict(out_size=out_size, n_channels=n_channels, in_sz=in_sz, n_features=n_features)
    model.model_recipe = {"factory": "basic_generator", "kwargs": {**kwargs, "n_extra_layers": n_extra_layers}}
    return model


_leaky = functools.partial(nn.LeakyReLU, 0.2, inplace=True)


def basic_critic(
    in_size: int, n_channels: int, n_features: int = 64, n_extra_layers: int = 0, norm_type: str | None = "batch"
) -> nn.Sequential:
    """A DCGAN critic: images ``(B, n_channels, in_size, in_size)`` -> one score per image ``(B,)``.

    Strided convolutions with leaky ReLUs halve the size down to 4x4, doubling the features; a last 4x4
    convolution gives the score (a logit: no sigmoid, so it suits both a Wasserstein loss and
    ``BCEWithLogitsLoss``).

    Args:
        in_size: image side in pixels, a power of two (>= 8).
        norm_type: normalization of the inner layers (``"batch"``, ``"instance"``, ``"spectral"`` or None).
    """
    _check_size("in_size", in_size)
    _check_count("n_channels", n_channels)
    _check_count("n_features", n_features)
    _check_count("n_extra_layers", n_extra_layers, 0)
    first = ConvLayer(n_channels, n_features, ks=4, stride=2, padding=1, norm_type=None, act_cls=_leaky)
    layers: list[nn.Module] = [first]
    size, nf = in_size // 2, n_features
    layers += [ConvLayer(nf, nf, ks=3, norm_type=norm_type, act_cls=_leaky) for _ in range(n_extra_layers)]
    while size > 4:
        layers.append(ConvLayer(nf, nf * 2, ks=4, stride=2, padding=1, norm_type=norm_type, act_cls=_leaky))
        nf, size = nf * 2, size // 2
    layers += [nn.Conv2d(nf, 1, 4, padding=0, bias=False), Flatten(full=False), _Squeeze()]
    return nn.Sequential(*layers)


class _Squeeze(nn.Module):
    """``(B, 1)`` -> ``(B,)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(1)


def gan_critic(n_channels: int = 3, nf: int = 128, n_blocks: int = 3, p: float = 0.15) -> nn.Sequential:
    """A critic for image-to-image GANs: images of any size -> a score per patch ``(B, n_patches)``.

    Every convolution has spectral normalization (which keeps the critic from pushing its weights, and the
    generator's, out of control), dropout regularizes it and one self-attention layer lets the first block see
    the whole image. Train it with ``AdaptiveLoss(nn.BCEWithLogitsLoss())``, which gives every patch the image's
    label, and measure it with :func:`accuracy_thresh_expand`.

    Args:
        n_channels: image channels.
        nf: features of the first layer (doubled by each block).
        n_blocks: strided blocks after the first layer; each halves the size (inputs of at least
            ``2 ** (n_blocks + 3)`` pixels).
        p: dropout probability inside the blocks (half of it before the first one).
    """
    _check_count("n_channels", n_channels)
    _check_count("nf", nf)
    _check_count("n_blocks", n_blocks)
    if not (isinstance(p, (int, float)) and 0 <= p < 1):
        raise ConfigError(expected("a probability in [0, 1)", "p", p))

    def conv(ni: int, no: int, ks: int, stride: int, padding: int = 1, act: bool = True) -> ConvLayer:
        return ConvLayer(
            ni, no, ks=ks, stride=stride, padding=padding, norm_type="spectral", act_cls=_leaky if act else None
        )

    layers: list[nn.Module] = [conv(n_channels, nf, 4, 2), nn.Dropout2d(p / 2), conv(nf, nf, 3, 1)]
    for i in range(n_blocks):
        layers += [nn.Dropout2d(p), conv(nf, nf * 2, 4, 2)]
        if i == 0:
            layers.append(SelfAttention(nf * 2))
        nf *= 2
    layers += [conv(nf, 1, 4, 1, padding=0, act=False), Flatten()]
    return nn.Sequential(*layers)
