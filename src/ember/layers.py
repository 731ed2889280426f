"""Generic building blocks for models: convolution layers, residual blocks, pooling, heads and init helpers.

Everything here is a plain ``nn.Module`` (mostly ``nn.Sequential`` subclasses, so that a model built from them
can be indexed and cut), takes its normalization and activation as arguments, and has no application imports.

>>> block = res_block(16)                 # conv-bn-relu, conv-bn-relu, then add the input back
>>> block(torch.zeros(2, 16, 8, 8)).shape
torch.Size([2, 16, 8, 8])
"""

from __future__ import annotations

import numbers
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from ember.channels import in_channels, num_features_model
from ember.core.errors import ConfigError, DataError, expected

__all__ = [
    "NormType",
    "NORM_TYPES",
    "BatchNorm",
    "ConvLayer",
    "ResBlock",
    "SequentialEx",
    "MergeLayer",
    "res_block",
    "Flatten",
    "AdaptiveConcatPool2d",
    "icnr_init",
    "PixelShuffle_ICNR",
    "SelfAttention",
    "TimeDistributed",
    "SigmoidRange",
    "LinBnDrop",
    "Embedding",
    "simple_cnn",
    "init_default",
    "num_features_model",
    "in_channels",
]

NormType = Literal["batch", "batch_zero", "instance", "spectral", "weight"]
NORM_TYPES: tuple[str, ...] = ("batch", "batch_zero", "instance", "spectral", "weight")

# Activations whose gain Kaiming init is derived for (or is close enough to) — they get kaiming_normal_.
_RELU_LIKE: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
)

ActCls = Callable[[], nn.Module]
InitArg = Literal["auto"] | Callable[[torch.Tensor], object] | None


# --------------------------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------------------------


def _check_positive_int(name: str, value: object) -> None:
    # numbers.Integral also admits NumPy integers, which channel counts computed with NumPy often are
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(expected("a positive int", name, value))


def _check_ndim(ndim: object) -> None:
    if ndim not in (1, 2, 3):
        raise ConfigError(expected("the number of spatial dimensions", "ndim", ndim, valid=(1, 2, 3)))


def _check_norm_type(norm_type: object) -> None:
    if norm_type is not None and norm_type not in NORM_TYPES:
        raise ConfigError(expected("a normalization name or None", "norm_type", norm_type, valid=(*NORM_TYPES, None)))


def _make_act(act_cls: ActCls | None) -> nn.Module | None:
    """Instantiate an activation class (or factory); ``None`` means no activation."""
    if act_cls is None:
        return None
    if isinstance(act_cls, nn.Module):
        raise ConfigError(
            expected(
                "an activation class (or a factory returning a module)",
                "act_cls",
                act_cls,
                hint=f"Pass the class, e.g. `act_cls=nn.{type(act_cls).__name__}`, not an instance.",
            )
        )
    act = act_cls()
    if not isinstance(act, nn.Module):
        raise ConfigError(expected("a callable that returns an nn.Module", "act_cls", act_cls))
    return act


def _nd(prefix: str, ndim: int) -> type[nn.Module]:
    """``_nd("Conv", 2)`` -> ``nn.Conv2d``: the layer class for a number of spatial dimensions."""
    return getattr(nn, f"{prefix}{ndim}d")


# --------------------------------------------------------------------------------------------------------------
# init
# --------------------------------------------------------------------------------------------------------------


def init_default(
    module: nn.Module, func: Callable[[torch.Tensor], object] | None = nn.init.kaiming_normal_
) -> nn.Module:
    """Initialize ``module.weight`` with ``func`` and zero ``module.bias``, in place.

    Args:
        module: any module with a ``weight`` (and maybe a ``bias``) parameter.
        func: an in-place initializer such as ``nn.init.kaiming_normal_``; ``None`` leaves the weight as is.

    Returns:
        The same module, so that the call can wrap a constructor.
    """
    weight = getattr(module, "weight", None)
    # a meta tensor has no values to fill (and random fills on it import torch's compiler stack: seconds)
    if func is not None and isinstance(weight, torch.Tensor) and not weight.is_meta:
        with torch.no_grad():
            func(weight)
    bias = getattr(module, "bias", None)
    if isinstance(bias, torch.Tensor):
        with torch.no_grad():
            bias.zero_()
    return module


def BatchNorm(nf: int, ndim: int = 2, zero: bool = False) -> nn.Module:
    """A batch norm layer for ``ndim`` spatial dimensions, bias 0 and weight 1 (or 0 when ``zero``).

    A zero weight makes the layer output 0 at init: put it last in a residual branch and the block starts as
    the identity, which lets deep networks train from the first step.
    """
    _check_positive_int("nf", nf)
    _check_ndim(ndim)
    bn = _nd("BatchNorm", ndim)(nf)
    with torch.no_grad():
        bn.bias.zero_()
        bn.weight.fill_(0.0 if zero else 1.0)
    return bn


def _norm_layer(norm_type: str, nf: int, ndim: int) -> nn.Module:
    if norm_type in ("batch", "batch_zero"):
        return BatchNorm(nf, ndim, zero=norm_type == "batch_zero")
    # instance norm with learnable affine parameters, like batch norm has
    inorm = _nd("InstanceNorm", ndim)(nf, affine=True)
    with torch.no_grad():
        inorm.weight.fill_(1.0)
        inorm.bias.zero_()
    return inorm


# --------------------------------------------------------------------------------------------------------------
# convolution
# --------------------------------------------------------------------------------------------------------------


class _SlicesAsSequential(nn.Sequential):
    """An ``nn.Sequential`` with its own constructor, whose slices are plain ``nn.Sequential``s.

    ``nn.Sequential`` slices by calling ``type(self)(OrderedDict)``, which a subclass taking other arguments
    cannot serve; slicing keeps the child names, so a slice's state dict keys match the whole's.
    """

    def __getitem__(self, idx: int | slice) -> nn.Module:
        if isinstance(idx, slice):
            return nn.Sequential(OrderedDict(list(self._modules.items())[idx]))
        return super().__getitem__(idx)


class ConvLayer(_SlicesAsSequential):
    """Convolution, then optional normalization and activation, as one indexable block.

    Args:
        ni: input channels.
        nf: output channels.
        ks: kernel size.
        stride: stride of the convolution.
        padding: defaults to ``ks // 2`` (keeps the size at stride 1), or 0 for a transposed convolution.
        bias: defaults to False when a batch or instance norm follows (its shift makes a bias redundant).
        ndim: number of spatial dimensions (1, 2 or 3).
        norm_type: ``"batch"``; ``"batch_zero"`` (batch norm whose weight starts at 0, for the last layer of a
            residual branch); ``"instance"``; ``"spectral"`` or ``"weight"`` (reparametrize the convolution's
            weight with spectral or weight normalization); ``None`` for no normalization.
        bn_1st: put the norm before the activation (True) or after it.
        act_cls: the activation class (instantiated here), or None.
        transpose: use a transposed convolution.
        init: ``"auto"`` (Kaiming normal for ReLU-like activations, else PyTorch's default), ``None`` (PyTorch's
            default) or an in-place initializer called on the weight. When ember initializes the weight, the
            bias (if any) starts at 0.
        xtra: an extra module appended at the end.
        **kwargs: passed to the convolution (``groups``, ``dilation``, ``padding_mode`` …).

    Raises:
        ConfigError: for a bad channel count, ``ndim``, ``norm_type`` or ``act_cls``.

    >>> ConvLayer(3, 16, stride=2)(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 16, 16, 16])
    """

    def __init__(
        self,
        ni: int,
        nf: int,
        ks: int | tuple[int, ...] = 3,
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | None = None,
        bias: bool | None = None,
        ndim: int = 2,
        norm_type: NormType | None = "batch",
        bn_1st: bool = True,
        act_cls: ActCls | None = nn.ReLU,
        transpose: bool = False,
        init: InitArg = "auto",
        xtra: nn.Module | None = None,
        **kwargs: object,
    ) -> None:
        _check_positive_int("ni", ni)
        _check_positive_int("nf", nf)
        _check_ndim(ndim)
        _check_norm_type(norm_type)
        if not (init is None or init == "auto" or callable(init)):
            raise ConfigError(expected('"auto", None or an in-place initializer', "init", init))
        if padding is None:
            if transpose:
                padding = 0
            elif isinstance(ks, int):
                padding = ks // 2
            else:
                padding = tuple(k // 2 for k in ks)
        has_bn = norm_type in ("batch", "batch_zero", "instance")
        if bias is None:
            bias = not has_bn
        act = _make_act(act_cls)
        init_fn = nn.init.kaiming_normal_ if isinstance(act, _RELU_LIKE) else None
        if init != "auto":
            init_fn = init
        conv_cls = _nd("ConvTranspose" if transpose else "Conv", ndim)
        conv_args = {"kernel_size": ks, "stride": stride, "padding": padding, "bias": bias, **kwargs}
        # (torch.nn.utils.skip_init would save the default init, but its first use imports sympy: seconds.)
        conv = conv_cls(ni, nf, **conv_args)
        if init_fn is not None:
            # init before any reparametrization, so that weight/spectral norm start from the initialized weight
            init_default(conv, init_fn)
        if norm_type == "weight":
            conv = parametrizations.weight_norm(conv)
        elif norm_type == "spectral":
            conv = parametrizations.spectral_norm(conv)

        layers: list[nn.Module] = [conv]
        act_and_norm: list[nn.Module] = []
        if act is not None:
            act_and_norm.append(act)
        if has_bn:
            norm = _norm_layer(norm_type, nf, ndim)
            act_and_norm.insert(0 if bn_1st else len(act_and_norm), norm)
        layers += act_and_norm
        if xtra is not None:
            layers.append(xtra)
        super().__init__(*layers)


# --------------------------------------------------------------------------------------------------------------
# residual blocks
# --------------------------------------------------------------------------------------------------------------


class MergeLayer(nn.Module):
    """Merge a block's output with the block's input: add them, or concatenate along channels (``dense``).

    Used as the last layer of a :class:`SequentialEx`, which hands it the block's input.
    """

    takes_orig: ClassVar[bool] = True  # tells SequentialEx to call forward(x, orig)

    def __init__(self, dense: bool = False) -> None:
        super().__init__()
        self.dense = dense

    def forward(self, x: torch.Tensor, orig: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return torch.cat([x, orig], dim=1)  # (B, C_x + C_orig, *spatial)
        return x + orig

    def extra_repr(self) -> str:
        return f"dense={self.dense}"


class SequentialEx(nn.Sequential):
    """``nn.Sequential`` whose layers can see the block's input.

    A layer with a true ``takes_orig`` class attribute (such as :class:`MergeLayer`) is called as
    ``layer(x, orig)`` where ``orig`` is the input of the whole block; other layers are called as ``layer(x)``.
    The input is passed as an argument, not stored on a tensor or module, so nothing outlives the call.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        orig = x
        for layer in self:
            x = layer(x, orig) if getattr(layer, "takes_orig", False) else layer(x)
        return x


def res_block(
    nf: int,
    dense: bool = False,
    norm_type: NormType | None = "batch",
    bottle: bool = False,
    **conv_kwargs: object,
) -> SequentialEx:
    """A simple residual block: two ``ConvLayer``s of ``nf`` channels, then add (or concatenate) the input.

    Args:
        nf: channels in and out of the convolutions.
        dense: concatenate the input instead of adding it (the output then has ``2 * nf`` channels).
        norm_type: normalization of the convolutions; with ``"batch"`` the second one's weight starts at 0, so
            an additive block starts as the identity.
        bottle: halve the channels between the two convolutions.
        **conv_kwargs: passed to both :class:`ConvLayer`s.
    """
    _check_positive_int("nf", nf)
    mid = max(nf // 2, 1) if bottle else nf
    norm2 = "batch_zero" if norm_type == "batch" else norm_type
    return SequentialEx(
        ConvLayer(nf, mid, norm_type=norm_type, **conv_kwargs),
        ConvLayer(mid, nf, norm_type=norm2, **conv_kwargs),
        MergeLayer(dense),
    )


def _check_groups(name: str, groups: int, *channels: int) -> None:
    # a grouped convolution splits its input and its output channels alike
    if any(c % groups for c in channels):
        raise ConfigError(expected(f"a divisor of the channels it splits, {channels}", name, groups))


class ResBlock(nn.Module):
    """The residual block of XResNet ("bag of tricks" ResNet-D), with optional squeeze-and-excitation and attention.

    A basic block (two ``ks`` convolutions) when ``expansion == 1``, otherwise a bottleneck (1x1, ``ks``, 1x1).
    The input has ``ni`` channels, the branch's hidden width is ``nf`` and the output has ``nf * expansion``
    channels (torchvision's ``inplanes``/``planes`` convention). Striding happens in the ``ks`` convolution;
    the shortcut average-pools when it strides and uses a 1x1 conv + norm when channels change. The branch's
    last batch norm starts at 0, so the block starts as (pooled/projected) identity followed by ``act_cls``.

    Args:
        expansion: 1 for a basic block, usually 4 for a bottleneck.
        ni: input channels.
        nf: hidden width; the output has ``nf * expansion`` channels.
        stride: 1 or the downsampling factor.
        groups: groups of the strided ``ks`` convolution (ResNeXt-style); must divide its channels.
        pool_first: in the shortcut, pool before (True) or after the 1x1 convolution.
        sa: add self-attention at the end of the branch.
        reduction: add an :class:`ember.attention.SEModule` of this reduction at the end of the branch, before
            any self-attention (None or 0: none).
        nh1: width of a bottleneck's first 1x1 convolution (default ``nh2``).
        nh2: width out of the strided ``ks`` convolution (default ``nf``).
        dw: make the strided convolution depthwise (one group per input channel), instead of ``groups``.
        g2: groups of the branch's last convolution; by default ``groups`` in a basic block, 1 in a bottleneck.
        sa_type: ``"full"`` for :class:`SelfAttention`, ``"simple"`` for
            :class:`ember.attention.SimpleSelfAttention` (fastai's XResNet choice: much cheaper on large maps).
        sym: give the simple self-attention a symmetric weight.

    Raises:
        ConfigError: for a bad channel count, group count, ``reduction`` or ``sa_type``.
    """

    def __init__(
        self,
        expansion: int,
        ni: int,
        nf: int,
        stride: int = 1,
        groups: int = 1,
        norm_type: NormType | None = "batch",
        act_cls: ActCls | None = nn.ReLU,
        ks: int = 3,
        pool_first: bool = True,
        sa: bool = False,
        ndim: int = 2,
        reduction: int | None = None,
        nh1: int | None = None,
        nh2: int | None = None,
        dw: bool = False,
        g2: int | None = None,
        sa_type: Literal["full", "simple"] = "full",
        sym: bool = False,
    ) -> None:
        super().__init__()
        nh2 = nf if nh2 is None else nh2
        nh1 = nh2 if nh1 is None else nh1
        for name, value in (("expansion", expansion), ("ni", ni), ("nf", nf), ("stride", stride), ("groups", groups)):
            _check_positive_int(name, value)
        for name, value in (("nh1", nh1), ("nh2", nh2)):
            _check_positive_int(name, value)
        if reduction is not None and reduction != 0:
            _check_positive_int("reduction", reduction)
        if sa_type not in ("full", "simple"):
            raise ConfigError(expected("a self-attention kind", "sa_type", sa_type, valid=("full", "simple")))
        if sym and sa_type != "simple":
            raise ConfigError(expected('"simple" when sym=True', "sa_type", sa_type))
        _check_ndim(ndim)
        _check_norm_type(norm_type)
        n_out = nf * expansion
        last_norm = "batch_zero" if norm_type == "batch" else norm_type
        common = {"ndim": ndim, "act_cls": act_cls, "norm_type": norm_type}
        last = {"ndim": ndim, "norm_type": last_norm, "act_cls": None}
        mid_in = ni if expansion == 1 else nh1  # input of the strided ks convolution
        g2 = (groups if expansion == 1 else 1) if g2 is None else g2
        _check_positive_int("g2", g2)
        if dw:
            groups = mid_in
        _check_groups("groups", groups, mid_in, nh2)
        _check_groups("g2", g2, nh2, n_out)
        branch = [] if expansion == 1 else [ConvLayer(ni, nh1, 1, **common)]
        branch += [
            ConvLayer(mid_in, nh2, ks, stride=stride, groups=groups, **common),
            ConvLayer(nh2, n_out, ks if expansion == 1 else 1, groups=g2, **last),
        ]
        # imported here: ember.attention builds on this module
        from ember.attention import SEModule, SimpleSelfAttention

        if reduction:
            branch.append(SEModule(n_out, reduction, act_cls=act_cls, ndim=ndim))
        if sa:
            branch.append(SelfAttention(n_out) if sa_type == "full" else SimpleSelfAttention(n_out, sym=sym))
        self.convpath = nn.Sequential(*branch)

        shortcut: list[nn.Module] = []
        if ni != n_out:
            shortcut.append(ConvLayer(ni, n_out, 1, ndim=ndim, norm_type=norm_type, act_cls=None))
        if stride != 1:
            # ceil_mode keeps odd sizes in step with the strided conv branch
            pool = _nd("AvgPool", ndim)(stride, ceil_mode=True)
            shortcut.insert(0 if pool_first else len(shortcut), pool)
        self.idpath = nn.Sequential(*shortcut)
        act = _make_act(act_cls)
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convpath(x) + self.idpath(x))  # (B, nf * expansion, *spatial / stride)


# --------------------------------------------------------------------------------------------------------------
# pooling, flattening, heads
# --------------------------------------------------------------------------------------------------------------


class Flatten(nn.Module):
    """Flatten to ``(B, -1)``, or to one dimension when ``full``."""

    def __init__(self, full: bool = False) -> None:
        super().__init__()
        self.full = full

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1) if self.full else x.reshape(x.size(0), -1)

    def extra_repr(self) -> str:
        return f"full={self.full}"


class AdaptiveConcatPool2d(nn.Module):
    """Adaptive max pool and adaptive average pool, concatenated along channels (so channels double).

    Giving the head both the strongest and the average activation of each feature works better than either.
    The max-pooled half comes first.
    """

    def __init__(self, size: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.size = size
        self.mp = nn.AdaptiveMaxPool2d(size)
        self.ap = nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mp(x), self.ap(x)], dim=1)  # (B, 2C, size, size)


class SigmoidRange(nn.Module):
    """Squash the input into ``(low, high)`` with a scaled sigmoid (e.g. ratings in ``(0.5, 5.5)``)."""

    def __init__(self, low: float, high: float) -> None:
        super().__init__()
        if not high > low:
            raise ConfigError(expected(f"greater than low={low!r}", "high", high))
        self.low = float(low)
        self.high = float(high)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * (self.high - self.low) + self.low

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


class LinBnDrop(_SlicesAsSequential):
    """Batch norm, dropout and a linear layer (plus an optional activation), in a block.

    Args:
        n_in: input features.
        n_out: output features.
        bn: include a ``BatchNorm1d`` (on the input, or on the output when ``lin_first``).
        p: dropout probability (no dropout layer when 0).
        act: an activation module put right after the linear layer, or None.
        lin_first: ``Linear, act, BatchNorm, Dropout`` instead of ``BatchNorm, Dropout, Linear, act``.
            The linear layer has no bias when a batch norm follows it.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        bn: bool = True,
        p: float = 0.0,
        act: nn.Module | None = None,
        lin_first: bool = False,
    ) -> None:
        _check_positive_int("n_in", n_in)
        _check_positive_int("n_out", n_out)
        if not 0.0 <= p < 1.0:
            raise ConfigError(expected("a dropout probability in [0, 1)", "p", p))
        lin: list[nn.Module] = [nn.Linear(n_in, n_out, bias=not (bn and lin_first))]
        if act is not None:
            lin.append(act)
        norm_drop: list[nn.Module] = []
        if bn:
            norm_drop.append(BatchNorm(n_out if lin_first else n_in, ndim=1))
        if p > 0:
            norm_drop.append(nn.Dropout(p))
        layers = lin + norm_drop if lin_first else norm_drop + lin
        super().__init__(*layers)


class Embedding(nn.Embedding):
    """``nn.Embedding`` initialized from a normal of std ``std`` truncated at two standard deviations."""

    def __init__(self, ni: int, nf: int, std: float = 0.01) -> None:
        _check_positive_int("ni", ni)
        _check_positive_int("nf", nf)
        super().__init__(ni, nf)
        with torch.no_grad():
            nn.init.trunc_normal_(self.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


# --------------------------------------------------------------------------------------------------------------
# upsampling and attention
# --------------------------------------------------------------------------------------------------------------


def icnr_init(
    weight: torch.Tensor, scale: int = 2, init: Callable[[torch.Tensor], object] = nn.init.kaiming_normal_
) -> torch.Tensor:
    """Initialize, in place, the weight of a convolution that feeds ``nn.PixelShuffle(scale)`` with ICNR.

    Every group of ``scale**2`` output channels that pixel shuffle spreads over one output pixel block gets the
    same kernel, so at init the conv + shuffle equals a conv followed by nearest-neighbour upsampling: no
    checkerboard artefacts to unlearn.

    Args:
        weight: a ``(nf * scale**2, ni, *kernel)`` convolution weight.
        scale: the pixel shuffle factor.
        init: the initializer of the ``(nf, ni, *kernel)`` base kernel.

    Returns:
        ``weight``, filled in place.

    Raises:
        ConfigError: when the number of output channels is not a multiple of ``scale**2``.
    """
    _check_positive_int("scale", scale)
    n_sub = scale**2
    if weight.shape[0] % n_sub:
        raise ConfigError(
            expected(f"a multiple of scale**2={n_sub}", "weight.shape[0]", weight.shape[0], hint="Check `scale`.")
        )
    base = torch.empty(weight.shape[0] // n_sub, *weight.shape[1:], dtype=weight.dtype, device=weight.device)
    init(base)
    # pixel shuffle sends channel c * scale**2 + k to sub-pixel k of output channel c: repeat each kernel
    with torch.no_grad():
        weight.copy_(base.repeat_interleave(n_sub, dim=0))  # (nf * scale**2, ni, *kernel)
    return weight


class PixelShuffle_ICNR(_SlicesAsSequential):
    """Upsample by ``scale`` with a 1x1 conv to ``nf * scale**2`` channels and pixel shuffle, ICNR-initialized.

    Args:
        ni: input channels.
        nf: output channels (defaults to ``ni``).
        scale: the upsampling factor.
        blur: smooth with a replication pad and a 2x2 stride-1 average pool, against checkerboard artefacts.
        norm_type: normalization of the convolution (see :class:`ConvLayer`).
        act_cls: activation after the convolution, or None.
    """

    def __init__(
        self,
        ni: int,
        nf: int | None = None,
        scale: int = 2,
        blur: bool = False,
        norm_type: NormType | None = None,
        act_cls: ActCls | None = nn.ReLU,
    ) -> None:
        nf = ni if nf is None else nf
        _check_positive_int("scale", scale)
        conv = ConvLayer(
            ni, nf * scale**2, ks=1, norm_type=norm_type, act_cls=act_cls, init=partial(icnr_init, scale=scale)
        )
        layers: list[nn.Module] = [conv, nn.PixelShuffle(scale)]
        if blur:
            layers += [nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)]
        super().__init__(*layers)


class SelfAttention(nn.Module):
    """Self-attention over all positions of a feature map (SAGAN), added to the input with a learned weight.

    The weight ``gamma`` starts at 0, so the layer is the identity at init and the network learns how much
    global context to mix in. Works for any number of spatial dimensions.
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        _check_positive_int("n_channels", n_channels)
        n_qk = max(n_channels // 8, 1)
        self.query = init_default(nn.Conv1d(n_channels, n_qk, 1))
        self.key = init_default(nn.Conv1d(n_channels, n_qk, 1))
        self.value = init_default(nn.Conv1d(n_channels, n_channels, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N)
        q, k, v = self.query(flat), self.key(flat), self.value(flat)  # (B, C', N), (B, C', N), (B, C, N)
        attn = F.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N): row i weighs every position j
        out = torch.bmm(v, attn.transpose(1, 2))  # (B, C, N)
        return x + self.gamma * out.view_as(x)


# --------------------------------------------------------------------------------------------------------------
# wrappers
# --------------------------------------------------------------------------------------------------------------


class TimeDistributed(nn.Module):
    """Apply ``module`` to every step of a sequence: inputs ``(B, T, ...)`` (time at ``tdim``) give ``(B, T, ...)``.

    By default the steps are folded into the batch and ``module`` runs once on ``(B * T, ...)``; ``low_mem``
    runs it once per step (less memory, slower). Several inputs, tuple outputs and keyword arguments work.

    Args:
        module: the module to apply to each step.
        low_mem: run the steps one at a time.
        tdim: the time dimension of the inputs and outputs (0 for sequence-first ``(T, B, ...)``).

    Raises:
        ConfigError: for a negative ``tdim``.
        DataError: (when called) for inputs without a ``tdim`` or of different lengths along it.

    >>> TimeDistributed(nn.Linear(4, 2))(torch.zeros(3, 5, 4)).shape
    torch.Size([3, 5, 2])
    """

    def __init__(self, module: nn.Module, low_mem: bool = False, tdim: int = 1) -> None:
        super().__init__()
        if isinstance(tdim, bool) or not isinstance(tdim, numbers.Integral) or tdim < 0:
            raise ConfigError(expected("a non-negative dimension index", "tdim", tdim))
        self.module = module
        self.low_mem = low_mem
        self.tdim = int(tdim)

    def forward(self, *tensors: torch.Tensor, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        sizes = [tuple(t.shape) for t in tensors]
        if not tensors or any(len(size) <= max(self.tdim, 1) for size in sizes):
            raise DataError(expected(f"tensors with a batch dim and a time dim tdim={self.tdim}", "shapes", sizes))
        steps_in = [t.movedim(self.tdim, 1) for t in tensors]  # (B, T, ...)
        if len({t.shape[:2] for t in steps_in}) != 1:
            raise DataError(expected(f"the same batch size and length along tdim={self.tdim}", "shapes", sizes))
        b, n = steps_in[0].shape[:2]
        if self.low_mem:
            outs = [self.module(*(t[:, i] for t in steps_in), **kwargs) for i in range(n)]
            if isinstance(outs[0], tuple):
                return tuple(torch.stack(o, dim=self.tdim) for o in zip(*outs))
            return torch.stack(outs, dim=self.tdim)
        out = self.module(*(t.reshape(b * n, *t.shape[2:]) for t in steps_in), **kwargs)  # (B * T, ...)
        if isinstance(out, tuple):
            return tuple(o.reshape(b, n, *o.shape[1:]).movedim(1, self.tdim) for o in out)
        return out.reshape(b, n, *out.shape[1:]).movedim(1, self.tdim)  # (B, T, ...), T moved back to tdim

    def extra_repr(self) -> str:
        return f"low_mem={self.low_mem}, tdim={self.tdim}"


# --------------------------------------------------------------------------------------------------------------
# small models
# --------------------------------------------------------------------------------------------------------------


def simple_cnn(
    actns: Sequence[int],
    kernel_szs: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    bn: bool = True,
) -> nn.Sequential:
    """A plain CNN: one convolution per pair of ``actns``, then global average pooling and flattening.

    Every convolution but the last is followed by batch norm (when ``bn``) and ReLU; the last one is bare so
    that the output, of shape ``(B, actns[-1])``, can be used as logits.

    Args:
        actns: channel counts, input first, e.g. ``[1, 8, 16, 10]`` for 3 convolutions on 1-channel images.
        kernel_szs: kernel size of each convolution (default 3).
        strides: stride of each convolution (default 2).
        bn: use batch norm.

    Raises:
        ConfigError: when ``actns`` has fewer than 2 entries or the other lists have the wrong length.

    >>> simple_cnn([1, 8, 16, 10])(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 10])
    """
    actns = list(actns)
    if len(actns) < 2:
        raise ConfigError(expected("a list of at least 2 channel counts", "actns", actns))
    n = len(actns) - 1
    kernel_szs = [3] * n if kernel_szs is None else list(kernel_szs)
    strides = [2] * n if strides is None else list(strides)
    for name, values in (("kernel_szs", kernel_szs), ("strides", strides)):
        if len(values) != n:
            raise ConfigError(expected(f"a list of {n} values (one per convolution)", name, values))
    layers: list[nn.Module] = []
    for i in range(n):
        last = i == n - 1
        layers.append(
            ConvLayer(
                actns[i],
                actns[i + 1],
                kernel_szs[i],
                stride=strides[i],
                norm_type=None if last or not bn else "batch",
                act_cls=None if last else nn.ReLU,
            )
        )
    layers += [nn.AdaptiveAvgPool2d(1), Flatten()]
    return nn.Sequential(*layers)
