"""XResNet: the ResNet-D of "Bag of Tricks for Image Classification with CNNs" (He et al., 2019), and its family.

Compared with the original ResNet: a stem of three 3x3 convolutions instead of one 7x7, downsampling in the
3x3 convolution of a bottleneck instead of the first 1x1, an average-pooled shortcut instead of a strided 1x1,
and residual branches whose last batch norm starts at zero. The family, as in fastai: ``xresnext*`` (grouped
ResNeXt blocks), ``xse_resnet*`` and ``xse_resnext*`` (with squeeze-and-excitation), ``*_deep`` (two more
single-block stages of 256 channels) and ``*_deeper`` (four more; ``xresnet18_deeper`` and the
``xse_resnext*_deeper`` also have fewer blocks in the middle stages, ``xresnet34_deeper``/``xresnet50_deeper`` keep
``(3, 4, 6, 3)``).

The model is an ``nn.Sequential``: stem convolutions, a max pool, the stages, then a head of exactly
:attr:`XResNet.n_head_layers` layers (``AdaptiveAvgPool``, ``Flatten``, ``Dropout``, ``Linear``), so
``model[:-4]`` (or ``model.body()``) is the convolutional body that outputs a feature map.

>>> import torch
>>> model = xresnet18(n_out=10)
>>> model(torch.zeros(2, 3, 64, 64)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from torch import nn

from ember.attention import SEBlock, SEResNeXtBlock
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
    "xresnet50_deep",
    "xresnet18_deeper",
    "xresnet34_deeper",
    "xresnet50_deeper",
    "xresnext18",
    "xresnext34",
    "xresnext50",
    "xresnext101",
    "xse_resnet18",
    "xse_resnet34",
    "xse_resnet50",
    "xse_resnet101",
    "xse_resnet152",
    "xse_resnext18",
    "xse_resnext34",
    "xse_resnext50",
    "xse_resnext101",
    "xse_resnext18_deep",
    "xse_resnext34_deep",
    "xse_resnext50_deep",
    "xse_resnext18_deeper",
    "xse_resnext34_deeper",
    "xse_resnext50_deeper",
    "xsenet154",
    "xresnet_tiny",
]

_BLOCK_SZS: tuple[int, ...] = (64, 128, 256, 512)
# stage depths shared by the family; the extra stages of the deep variants are 256 channels wide (as fastai)
_G18, _G34, _G101, _G152 = (2, 2, 2, 2), (3, 4, 6, 3), (3, 4, 23, 3), (3, 8, 36, 3)
_DEEP_SZS: tuple[int, ...] = (*_BLOCK_SZS, 256, 256, 256, 256)
_SE = {"block": SEBlock, "groups": 1, "reduction": 16}
_SE_NEXT = {"block": SEResNeXtBlock, "groups": 32, "reduction": 16}
_NEXT = {"block": SEResNeXtBlock, "groups": 32, "reduction": 0}


def _check_block_kwargs(block: Callable[..., nn.Module], block_kwargs: dict[str, Any]) -> None:
    """Refuse a keyword that neither XResNet nor its (ResBlock-based) block takes, naming the valid ones."""
    # without this a typo surfaces as a TypeError from inside the first block's constructor
    if not block_kwargs or not (isinstance(block, type) and issubclass(block, ResBlock)):
        return
    taken = set(inspect.signature(ResBlock).parameters) | set(inspect.signature(block).parameters)
    taken -= {"expansion", "ni", "nf", "kwargs"}
    unknown = sorted(set(block_kwargs) - taken)
    if unknown:
        valid = sorted(taken - {"stride", "sa", "act_cls", "ndim", "ks"})  # those XResNet sets itself
        raise ConfigError(expected("a keyword of XResNet or of its block", unknown[0], block_kwargs[unknown[0]], valid))


class XResNet(nn.Sequential):
    """A ResNet-D built from :class:`ember.layers.ConvLayer` and :class:`ember.layers.ResBlock`.

    Args:
        block: the residual block class (called like ``ResBlock(expansion, ni, nf, stride=..., ...)``), such as
            :class:`ember.layers.ResBlock`, :class:`ember.attention.SEBlock` or
            :class:`ember.attention.SEResNeXtBlock`.
        expansion: 1 for basic blocks (ResNet-18/34), 4 for bottlenecks (ResNet-50 and deeper).
        layers: number of blocks in each stage, e.g. ``(2, 2, 2, 2)``.
        p: dropout probability before the final linear layer.
        c_in: input channels.
        n_out: number of outputs.
        stem_szs: channels of the three stem convolutions.
        widen: multiplies the widths of every stage but the first.
        sa: put self-attention in the last block of stage ``sa_stage``.
        sa_stage: index of the stage that gets self-attention (negative counts from the end): by default the
            second-to-last, which for four stages is the third. fastai's XResNet uses ``sa_stage=-4`` with
            ``sa_type="simple"`` (a block argument).
        act_cls: activation class used throughout.
        ndim: spatial dimensions of the input (1, 2 or 3).
        ks: kernel size of the stem and block convolutions (odd).
        stride: the downsampling factor of the first stem convolution, the max pool and each later stage.
        block_szs: hidden width of each stage; the last width is used again for stages beyond its end.
        **block_kwargs: passed to every block (``groups``, ``reduction``, ``sa_type``, ``sym`` … of
            :class:`ember.layers.ResBlock`).

    Raises:
        ConfigError: for empty ``layers``, an even ``ks``, an ``sa_stage`` out of range or a bad channel count.
    """

    n_head_layers: ClassVar[int] = 4  # AdaptiveAvgPool, Flatten, Dropout, Linear: model[:-4] is the body

    def __init__(
        self,
        block: Callable[..., nn.Module],
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
        sa_stage: int = -2,
        **block_kwargs: Any,
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
        n_stages = len(layers)
        if sa and not (isinstance(sa_stage, int) and -n_stages <= sa_stage < n_stages):
            valid = f"a stage index in [{-n_stages}, {n_stages - 1}] (there are {n_stages} stages)"
            raise ConfigError(expected(valid, "sa_stage", sa_stage))
        sa_index = sa_stage % n_stages if sa else -1
        _check_block_kwargs(block, block_kwargs)
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
                        sa=i == sa_index and j == n_blocks - 1,
                        act_cls=act_cls,
                        ndim=ndim,
                        ks=ks,
                        **block_kwargs,
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


def _xresnet(
    expansion: int,
    layers: Sequence[int],
    pretrained: bool,
    block: Callable[..., nn.Module] = ResBlock,
    defaults: dict[str, Any] | None = None,
    **kwargs: Any,
) -> XResNet:
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
    if len(layers) > len(_BLOCK_SZS):
        kwargs.setdefault("block_szs", _DEEP_SZS)
    return XResNet(block, expansion, layers, **{**(defaults or {}), **kwargs})


def _family(expansion: int, layers: Sequence[int], pretrained: bool, kind: dict[str, Any], **kwargs: Any) -> XResNet:
    """An SE/ResNeXt member: ``kind`` holds its block class and that block's defaults (overridable)."""
    block_defaults = {k: v for k, v in kind.items() if k != "block"}
    return _xresnet(expansion, layers, pretrained, kind["block"], block_defaults, **kwargs)


@register_model
def xresnet18(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-18: basic blocks, stages of (2, 2, 2, 2). ``kwargs`` go to :class:`XResNet`."""
    return _xresnet(1, _G18, pretrained, **kwargs)


@register_model
def xresnet34(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-34: basic blocks, stages of (3, 4, 6, 3)."""
    return _xresnet(1, _G34, pretrained, **kwargs)


@register_model
def xresnet50(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-50: bottleneck blocks, stages of (3, 4, 6, 3)."""
    return _xresnet(4, _G34, pretrained, **kwargs)


@register_model
def xresnet101(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-101: bottleneck blocks, stages of (3, 4, 23, 3)."""
    return _xresnet(4, _G101, pretrained, **kwargs)


@register_model
def xresnet152(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-152: bottleneck blocks, stages of (3, 8, 36, 3)."""
    return _xresnet(4, _G152, pretrained, **kwargs)


@register_model
def xresnet18_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-18 with two extra single-block stages of 256 channels (more downsampling)."""
    return _xresnet(1, (*_G18, 1, 1), pretrained, **kwargs)


@register_model
def xresnet34_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-34 with two extra single-block stages of 256 channels (more downsampling)."""
    return _xresnet(1, (*_G34, 1, 1), pretrained, **kwargs)


@register_model
def xresnet50_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-50 with two extra single-block stages of 256 channels (more downsampling)."""
    return _xresnet(4, (*_G34, 1, 1), pretrained, **kwargs)


@register_model
def xresnet18_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-18 with one block in stages 3 and 4 and four extra single-block stages of 256 channels."""
    return _xresnet(1, (2, 2, 1, 1, 1, 1, 1, 1), pretrained, **kwargs)


@register_model
def xresnet34_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-34 with four extra single-block stages of 256 channels."""
    return _xresnet(1, (*_G34, 1, 1, 1, 1), pretrained, **kwargs)


@register_model
def xresnet50_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNet-50 with four extra single-block stages of 256 channels."""
    return _xresnet(4, (*_G34, 1, 1, 1, 1), pretrained, **kwargs)


@register_model
def xresnext18(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-18: XResNet-18 whose first block convolutions have 32 groups of 4 channels per 64 (no SE)."""
    return _family(1, _G18, pretrained, _NEXT, **kwargs)


@register_model
def xresnext34(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-34: 32 groups, basic blocks, stages of (3, 4, 6, 3)."""
    return _family(1, _G34, pretrained, _NEXT, **kwargs)


@register_model
def xresnext50(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-50 (32x4d): grouped bottlenecks, stages of (3, 4, 6, 3)."""
    return _family(4, _G34, pretrained, _NEXT, **kwargs)


@register_model
def xresnext101(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """XResNeXt-101 (32x4d): grouped bottlenecks, stages of (3, 4, 23, 3)."""
    return _family(4, _G101, pretrained, _NEXT, **kwargs)


@register_model
def xse_resnet18(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-18: XResNet-18 with squeeze-and-excitation (reduction 16) in every block."""
    return _family(1, _G18, pretrained, _SE, **kwargs)


@register_model
def xse_resnet34(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-34: basic SE blocks, stages of (3, 4, 6, 3)."""
    return _family(1, _G34, pretrained, _SE, **kwargs)


@register_model
def xse_resnet50(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-50: bottleneck SE blocks of fastai's widths (see :class:`ember.attention.SEBlock`)."""
    return _family(4, _G34, pretrained, _SE, **kwargs)


@register_model
def xse_resnet101(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-101: bottleneck SE blocks, stages of (3, 4, 23, 3)."""
    return _family(4, _G101, pretrained, _SE, **kwargs)


@register_model
def xse_resnet152(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNet-152: bottleneck SE blocks, stages of (3, 8, 36, 3)."""
    return _family(4, _G152, pretrained, _SE, **kwargs)


@register_model
def xse_resnext18(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-18: grouped basic blocks (32 groups) with squeeze-and-excitation."""
    return _family(1, _G18, pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext34(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-34: grouped basic SE blocks, stages of (3, 4, 6, 3)."""
    return _family(1, _G34, pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext50(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-50 (32x4d): grouped SE bottlenecks, stages of (3, 4, 6, 3)."""
    return _family(4, _G34, pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext101(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-101 (32x4d): grouped SE bottlenecks, stages of (3, 4, 23, 3)."""
    return _family(4, _G101, pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext18_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-18 with two extra single-block stages of 256 channels."""
    return _family(1, (*_G18, 1, 1), pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext34_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-34 with two extra single-block stages of 256 channels."""
    return _family(1, (*_G34, 1, 1), pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext50_deep(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-50 with two extra single-block stages of 256 channels."""
    return _family(4, (*_G34, 1, 1), pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext18_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-18 with stages of (2, 2, 1, 1, 1, 1, 1, 1), the last four 256 channels wide."""
    return _family(1, (2, 2, 1, 1, 1, 1, 1, 1), pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext34_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-34 with stages of (3, 4, 4, 2, 2, 1, 1, 1), the last four 256 channels wide."""
    return _family(1, (3, 4, 4, 2, 2, 1, 1, 1), pretrained, _SE_NEXT, **kwargs)


@register_model
def xse_resnext50_deeper(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SE-XResNeXt-50 with stages of (3, 4, 4, 2, 2, 1, 1, 1), the last four 256 channels wide."""
    return _family(4, (3, 4, 4, 2, 2, 1, 1, 1), pretrained, _SE_NEXT, **kwargs)


@register_model
def xsenet154(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """SENet-154 in XResNet form: SE bottlenecks with 64 groups, stages of (3, 8, 36, 3), dropout 0.2."""
    kwargs.setdefault("p", 0.2)
    return _family(4, _G152, pretrained, {**_SE, "groups": 64}, **kwargs)


@register_model
def xresnet_tiny(pretrained: bool = False, **kwargs: Any) -> XResNet:
    """A very small XResNet (one basic block per stage, 8 to 64 channels) for tests and quick experiments."""
    kwargs.setdefault("stem_szs", (8, 8, 16))
    kwargs.setdefault("block_szs", (8, 16, 32, 64))
    return _xresnet(1, (1, 1, 1, 1), pretrained, **kwargs)
