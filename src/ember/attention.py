"""Layers that reweight features by their context: squeeze-and-excitation and light self-attention.

:class:`SEModule` scales each channel by a gate computed from the whole feature map (channel attention);
:class:`SimpleSelfAttention` and :class:`PooledSelfAttention2d` mix information across positions (spatial
attention) and start as the identity, their learned weight ``gamma`` being 0 at init. The full SAGAN layer is
:class:`ember.layers.SelfAttention`. :class:`ember.layers.ResBlock` adds these through its ``reduction`` and
``sa`` arguments; :class:`SEBlock` and :class:`SEResNeXtBlock` are the residual blocks of the SE-XResNets.

>>> se = SEModule(64, reduction=16)
>>> se(torch.randn(2, 64, 8, 8)).shape
torch.Size([2, 64, 8, 8])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from ember.core.errors import ConfigError, DataError, expected
from ember.layers import ActCls, ResBlock, _check_ndim, _check_positive_int, _make_act, _nd, init_default

__all__ = ["SEModule", "SimpleSelfAttention", "PooledSelfAttention2d", "SEBlock", "SEResNeXtBlock"]


def _spectral_conv(conv: nn.modules.conv._ConvNd) -> nn.Module:
    """Kaiming-initialize a bias-free convolution, then constrain its weight with spectral normalization."""
    init_default(conv)
    return parametrizations.spectral_norm(conv)


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): scale each channel by a gate in (0, 1) computed from all of them.

    The input is average-pooled to one value per channel ("squeeze"), passed through a 1x1 convolution to a
    narrower hidden width, the activation, a 1x1 convolution back to ``ch`` channels and a sigmoid ("excite");
    the result multiplies the input channel by channel.

    Args:
        ch: channels in and out.
        reduction: the hidden width is ``ch // reduction``, rounded up to a multiple of 8 (at least 8).
        act_cls: the activation class between the two convolutions, or None.
        ndim: number of spatial dimensions (1, 2 or 3).

    Raises:
        ConfigError: for a bad ``ch``, ``reduction``, ``ndim`` or ``act_cls``.

    >>> SEModule(32, 4).hidden
    8
    """

    def __init__(self, ch: int, reduction: int, act_cls: ActCls | None = nn.ReLU, ndim: int = 2) -> None:
        super().__init__()
        _check_positive_int("ch", ch)
        _check_positive_int("reduction", reduction)
        _check_ndim(ndim)
        act = _make_act(act_cls)
        self.hidden = max(-(-(ch // reduction) // 8) * 8, 8)  # ceil to a multiple of 8
        self.pool = _nd("AdaptiveAvgPool", ndim)(1)
        self.reduce = _nd("Conv", ndim)(ch, self.hidden, 1)
        self.act = act if act is not None else nn.Identity()
        self.expand = _nd("Conv", ndim)(self.hidden, ch, 1)
        init_default(self.reduce)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel scale, of shape ``(B, C, 1, ...)``."""
        return torch.sigmoid(self.expand(self.act(self.reduce(self.pool(x)))))  # (B, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)  # (B, C, *spatial)


class SimpleSelfAttention(nn.Module):
    """Self-attention at the cost of a convolution: ``x + gamma * (x xᵀ) conv(x)`` over flattened positions.

    ``x xᵀ`` is the ``(C, C)`` matrix of channel correlations over all positions, so every output position
    sees the whole map, in ``O(C² N)`` time instead of the ``O(N²)`` of :class:`ember.layers.SelfAttention`.
    ``gamma`` starts at 0 (the layer starts as the identity). The convolution is spectrally normalized.
    This is the self-attention fastai's XResNet uses (``sa_type="simple"`` in :class:`ember.layers.ResBlock`).

    Args:
        n_in: channels in and out.
        ks: kernel size of the 1D convolution over flattened positions (odd).
        sym: make the 1x1 convolution's weight symmetric (the average of it and its transpose); needs ``ks=1``.

    Raises:
        ConfigError: for a bad ``n_in`` or ``ks``, or ``sym`` with ``ks`` other than 1.
    """

    def __init__(self, n_in: int, ks: int = 1, sym: bool = False) -> None:
        super().__init__()
        _check_positive_int("n_in", n_in)
        _check_positive_int("ks", ks)
        if ks % 2 == 0:
            raise ConfigError(expected("an odd kernel size", "ks", ks))
        if sym and ks != 1:
            raise ConfigError(expected("1 when sym=True (only a square 1x1 weight has a transpose)", "ks", ks))
        self.n_in, self.ks, self.sym = n_in, ks, sym
        self.conv = _spectral_conv(nn.Conv1d(n_in, n_in, ks, padding=ks // 2, bias=False))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # (B, C, N)
        if self.sym:
            w = self.conv.weight.squeeze(-1)  # (C, C)
            convx = F.conv1d(flat, ((w + w.t()) / 2).unsqueeze(-1))  # (B, C, N)
        else:
            convx = self.conv(flat)  # (B, C, N)
        xxt = torch.bmm(flat, flat.transpose(1, 2))  # (B, C, C)
        out = torch.bmm(xxt, convx)  # (B, C, N)
        return x + self.gamma * out.view_as(x)

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, ks={self.ks}, sym={self.sym}"


class PooledSelfAttention2d(nn.Module):
    """SAGAN self-attention whose keys and values are max-pooled 2x2: a quarter of the cost of the full layer.

    Queries (``C/8`` channels) come from every position, keys (``C/8``) and values (``C/2``) from the pooled map;
    a 1x1 convolution brings the attended values back to ``C`` channels. All four convolutions are spectrally
    normalized and bias-free, and ``gamma`` starts at 0, so the layer starts as the identity. Needs a map of at
    least 2x2 (odd sizes are pooled down).

    Raises:
        ConfigError: when ``n_channels`` is below 8.
        DataError: (when called) for an input smaller than 2x2.
    """

    def __init__(self, n_channels: int) -> None:
        super().__init__()
        _check_positive_int("n_channels", n_channels)
        if n_channels < 8:
            raise ConfigError(expected("at least 8 (queries and keys have n_channels // 8)", "n_channels", n_channels))
        self.n_channels = n_channels
        n_qk, n_v = n_channels // 8, n_channels // 2
        self.query = _spectral_conv(nn.Conv2d(n_channels, n_qk, 1, bias=False))
        self.key = _spectral_conv(nn.Conv2d(n_channels, n_qk, 1, bias=False))
        self.value = _spectral_conv(nn.Conv2d(n_channels, n_v, 1, bias=False))
        self.out = _spectral_conv(nn.Conv2d(n_v, n_channels, 1, bias=False))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[2] < 2 or x.shape[3] < 2:
            raise DataError(expected("a (B, C, H, W) batch with H, W >= 2", "x.shape", tuple(x.shape)))
        b, _, h, w = x.shape
        q = self.query(x).flatten(2)  # (B, C/8, N)
        k = F.max_pool2d(self.key(x), 2).flatten(2)  # (B, C/8, N/4)
        v = F.max_pool2d(self.value(x), 2).flatten(2)  # (B, C/2, N/4)
        attn = F.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N/4): position i over pooled j
        attended = torch.bmm(v, attn.transpose(1, 2)).view(b, -1, h, w)  # (B, C/2, H, W)
        return x + self.gamma * self.out(attended)

    def extra_repr(self) -> str:
        return f"n_channels={self.n_channels}"


class SEBlock(ResBlock):
    """A :class:`ResBlock` with squeeze-and-excitation, as in fastai's SE-XResNets.

    The widths are fastai's: ``nh1 = 2 * nf`` and ``nh2 = nf * expansion``, so a bottleneck SE block is wider
    (and much larger) than a plain one. Other keyword arguments go to :class:`ResBlock`.
    """

    def __init__(
        self, expansion: int, ni: int, nf: int, stride: int = 1, groups: int = 1, reduction: int = 16, **kwargs: Any
    ) -> None:
        _check_positive_int("expansion", expansion)
        _check_positive_int("nf", nf)
        kwargs.setdefault("nh1", nf * 2)
        kwargs.setdefault("nh2", nf * expansion)
        super().__init__(expansion, ni, nf, stride=stride, groups=groups, reduction=reduction, **kwargs)


class SEResNeXtBlock(ResBlock):
    """A ResNeXt :class:`ResBlock` (``groups`` paths of ``base_width`` channels per 64 of ``nf``) with SE.

    The strided convolution has ``(nf * base_width // 64) * groups`` channels and ``groups`` groups; the last
    convolution is not grouped. ``reduction=0`` gives a plain ResNeXt block (fastai's ``xresnext*``). Other
    keyword arguments go to :class:`ResBlock`.

    Raises:
        ConfigError: when ``nf * base_width`` is below 64 (no channel left per group).
    """

    def __init__(
        self,
        expansion: int,
        ni: int,
        nf: int,
        stride: int = 1,
        groups: int = 32,
        reduction: int | None = 16,
        base_width: int = 4,
        **kwargs: Any,
    ) -> None:
        _check_positive_int("nf", nf)
        _check_positive_int("groups", groups)
        _check_positive_int("base_width", base_width)
        if nf * base_width < 64:
            raise ConfigError(expected(f"at least {-(-64 // nf)} for nf={nf}", "base_width", base_width))
        kwargs.setdefault("nh2", nf * base_width // 64 * groups)
        kwargs.setdefault("g2", 1)
        super().__init__(expansion, ni, nf, stride=stride, groups=groups, reduction=reduction, **kwargs)
