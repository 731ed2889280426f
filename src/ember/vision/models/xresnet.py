"""XResNet: the ResNet-D of "Bag of Tricks for Image Classification with CNNs" (He et al., 2019).

Compared with the original ResNet: a stem of three 3x3 convolutions instead of one 7x7, downsampling in the
3x3 convolution of a bottleneck instead of the first 1x1, an average-pooled shortcut instead of a strided 1x1,
and residual branches whose last batch norm starts at zero.

The model is an ``nn.Sequential``: stem convolutions, a max pool, the stages, then a head of exactly
:attr:`XResNet.n_head_layers` layers (``AdaptiveAvgPool``, ``Flatten``, ``Dropout``, ``Linear``), so
``model[:-4]`` (or ``model.body()``) is the convolutional body that outputs a feature map.

>>> import torch
>>> model = xresnet18(n_out=10)
>>> model(torch.zeros(2, 3, 64, 64)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import ClassVar

from torch import nn

from ember.core.errors import ConfigError, expected
from ember.layers import ConvLayer, Flatten, ResBlock
from ember.vision.models.registry import register_model

__all__ = [
    "XResNet",
    "xresnet18",
    "xresnet34",
    "xresnet50",
    "xresnet101",
    "xresnet152",
    "xresnet18_deep",
    "xresnet34_deep",
    "xresnet_tiny",
]

_BLOCK_SZS: tuple[int, ...] = (64, 128, 256, 512)


class XResNet(nn.Sequential):
    """A ResNet-D built from :class:`ember.layers.ConvLayer` and :class:`ember.layers.ResBlock`.

    Args:
        block: the residual block class (called like ``ResBlock(expansion, ni, nf, stride=..., ...)``).
        expansion: 1 for basic blocks (ResNet-18/34), 4 for bottlenecks (ResNet-50 and deeper).
        layers: number of blocks in each stage, e.g. ``(2, 2, 2, 2)``.
        p: dropout probability before the final linear layer.
        c_in: input channels.
        n_out: number of outputs.
        stem_szs: channels of the three stem convolutions.
        widen: multiplies the widths of every stage but the first.
        sa: put self-attention in the last block of the second-to-last stage.
        act_cls: activation class used throughout.
        ndim: spatial dimensions of the input (1, 2 or 3).
        ks: kernel size of the stem and block convolutions (odd).
        stride: the downsampling factor of the first stem convolution, the max pool and each later stage.
        block_szs: hidden width of each stage; must have at least ``len(layers)`` entries (extra stages of
            ``*_deep`` models use the last width again when it is short).

    Raises:
        ConfigError: for empty ``layers``, an even ``ks`` or a bad channel count.
    """

    n_head_layers: ClassVar[int] = 4  # AdaptiveAvgPool, Flatten, Dropout, Linear: model[:-4] is the body

    def __init__(
        self,
        block: type[nn.Module],
        expansion: int,
        layers: Sequence[int],
        p: float = 0.0,
        c_in: int = 3,
        n_out: int = 1000,
        stem_szs: Sequence[int] = (32, 32, 64),
        widen: float = 1.0,
        sa: bool = False,
        act_cls: type[nn.Module] | None = nn.ReLU,
        ndim: int = 2,
        ks: int = 3,
        stride: int = 2,
        block_szs: Sequence[int] = _BLOCK_SZS,
    ) -> None:
        layers = list(layers)
        if not layers or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ConfigError(expected("a non-empty list of positive block counts", "layers", layers))
        if not isinstance(ks, int) or ks < 1 or ks % 2 == 0:
            raise ConfigError(expected("an odd positive kernel size", "ks", ks))
        if len(stem_szs) < 1:
            raise ConfigError(expected("at least one stem width", "stem_szs", stem_szs))
        if not 0.0 <= p < 1.0:
            raise ConfigError(expected("a dropout probability in [0, 1)", "p", p))
        if widen <= 0:
            raise ConfigError(expected("a positive number", "widen", widen))
        sizes = list(block_szs)
        if not sizes:
            raise ConfigError(expected("a non-empty list of widths", "block_szs", block_szs))
        sizes += [sizes[-1]] * (len(layers) - len(sizes))  # deep variants repeat the last width
        widths = [sizes[0]] + [max(int(w * widen), 1) for w in sizes[1 : len(layers)]]

        stem_in = [c_in, *stem_szs]
        stem = [
            ConvLayer(stem_in[i], stem_in[i + 1], ks, stride=stride if i == 0 else 1, ndim=ndim, act_cls=act_cls)
            for i in range(len(stem_szs))
        ]
        pool = getattr(nn, f"MaxPool{ndim}d")(kernel_size=ks, stride=stride, padding=ks // 2)

        stages: list[nn.Module] = []
        ni = stem_in[-1]
        for i, (n_blocks, nf) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(n_blocks):
                blocks.append(
                    block(
                        expansion,
                        ni,
                        nf,
                        stride=(1 if i == 0 else stride) if j == 0 else 1,
                        sa=sa and i == len(layers) - 2 and j == n_blocks - 1,
                        act_cls=act_cls,
                        ndim=ndim,
                        ks=ks,
                    )
                )
                ni = nf * expansion
            stages.append(nn.Sequential(*blocks))

        head = [
            getattr(nn, f"AdaptiveAvgPool{ndim}d")(1),
            Flatten(),
            nn.Dropout(p),
            nn.Linear(ni, n_out),
        ]
        super().__init__(*stem, pool, *stages, *head)
        self.num_features = ni  # channels out of the body

    def __getitem__(self, idx: int | slice) -> nn.Module:
        # nn.Sequential would rebuild a slice as XResNet(OrderedDict), which this constructor cannot take
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)

    def body(self) -> nn.Sequential:
        """The convolutional body (everything before the pooling head), sharing this model's parameters."""
        return self[: -self.n_head_layers]


def _xresnet(expansion: int, layers: Sequence[int], pretrained: bool, **kwargs: object) -> XResNet:
    if pretrained:
        raise ConfigError(
            expected(
                "False",
                "pretrained",
                pretrained,
                hint="ember publishes no XResNet weights; use a torchvision or timm name (e.g. 'resnet18') "
                "for a pretrained network.",
            )
        )
    return XResNet(ResBlock, expansion, layers, **kwargs)


@register_model
def xresnet18(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-18: basic blocks, stages of (2, 2, 2, 2). ``kwargs`` go to :class:`XResNet`."""
    return _xresnet(1, (2, 2, 2, 2), pretrained, **kwargs)


@register_model
def xresnet34(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-34: basic blocks, stages of (3, 4, 6, 3)."""
    return _xresnet(1, (3, 4, 6, 3), pretrained, **kwargs)


@register_model
def xresnet50(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-50: bottleneck blocks, stages of (3, 4, 6, 3)."""
    return _xresnet(4, (3, 4, 6, 3), pretrained, **kwargs)


@register_model
def xresnet101(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-101: bottleneck blocks, stages of (3, 4, 23, 3)."""
    return _xresnet(4, (3, 4, 23, 3), pretrained, **kwargs)


@register_model
def xresnet152(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-152: bottleneck blocks, stages of (3, 8, 36, 3)."""
    return _xresnet(4, (3, 8, 36, 3), pretrained, **kwargs)


@register_model
def xresnet18_deep(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-18 with two extra single-block stages of 512 channels (more downsampling)."""
    return _xresnet(1, (2, 2, 2, 2, 1, 1), pretrained, **kwargs)


@register_model
def xresnet34_deep(pretrained: bool = False, **kwargs: object) -> XResNet:
    """XResNet-34 with two extra single-block stages of 512 channels (more downsampling)."""
    return _xresnet(1, (3, 4, 6, 3, 1, 1), pretrained, **kwargs)


@register_model
def xresnet_tiny(pretrained: bool = False, **kwargs: object) -> XResNet:
    """A very small XResNet (one basic block per stage, 8 to 64 channels) for tests and quick experiments."""
    kwargs.setdefault("stem_szs", (8, 8, 16))
    kwargs.setdefault("block_szs", (8, 16, 32, 64))
    return _xresnet(1, (1, 1, 1, 1), pretrained, **kwargs)
