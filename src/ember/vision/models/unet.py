"""`DynamicUnet`: a U-Net decoder grown on any CNN encoder, for per-pixel outputs (segmentation, image to image).

The encoder is probed once with a dummy image to find its feature maps just before each spatial downsampling;
forward hooks keep those maps during each forward, and the decoder upsamples the encoder's output back to the
input size, merging one kept map (a skip connection) per resolution on the way up.

>>> from ember.vision.learner import create_body                       # doctest: +SKIP
>>> unet = DynamicUnet(create_body("resnet18", pretrained=False), n_out=4, img_size=(64, 96))  # doctest: +SKIP
>>> unet(torch.zeros(2, 3, 64, 96)).shape                               # doctest: +SKIP
torch.Size([2, 4, 64, 96])
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ember.core.errors import ConfigError, EmberError, expected
from ember.layers import (
    BatchNorm,
    ConvLayer,
    MergeLayer,
    PixelShuffle_ICNR,
    ResBlock,
    SelfAttention,
    SigmoidRange,
    in_channels,
)

__all__ = ["DynamicUnet", "UnetBlock"]


# --------------------------------------------------------------------------------------------------------------
# keeping the skip activations
# --------------------------------------------------------------------------------------------------------------


class _Run:
    """The skip activations of one forward in progress, and the calls of each hooked module so far."""

    def __init__(self, n_slots: int) -> None:
        self.feats: list[torch.Tensor | None] = [None] * n_slots
        self.calls: dict[int, int] = {}  # hook key -> calls of its module so far in this forward


class _SkipStore:
    """Where the encoder's hooks put the skip activations, only while a :class:`DynamicUnet` forward runs.

    Outside that window the hooks do nothing, so the encoder can be run on its own without keeping tensors
    alive, and the model never holds activations between calls (a deep copy or a pickle sees no run). Each
    thread has its own run, so forwards running at the same time (a model served from several threads, or the
    replicas of ``nn.DataParallel``, which share these hooks) never see each other's activations.
    """

    def __init__(self, n_slots: int) -> None:
        self.n_slots = n_slots
        self.runs: dict[int, _Run] = {}  # thread id -> the forward running in that thread

    @property
    def feats(self) -> list[torch.Tensor | None]:
        """The skip activations of this thread's forward (all ``None`` outside one)."""
        run = self.runs.get(threading.get_ident())
        return list(run.feats) if run is not None else [None] * self.n_slots

    def current(self) -> _Run | None:
        return self.runs.get(threading.get_ident())

    def start(self) -> None:
        self.runs[threading.get_ident()] = _Run(self.n_slots)

    def stop(self) -> None:
        self.runs.pop(threading.get_ident(), None)


class _SkipHook:
    """A forward hook keeping a module's output in the store's slots, on given calls of one forward.

    A plain object (no closure) so that deep copies and pickles of the model keep hooks and store together.

    Args:
        store: the store of the :class:`DynamicUnet`.
        key: a key unique among the hooks of that store (counts this module's calls).
        slots: ``{call number (1 = first): slot}`` (a module called more than once keeps the right call).
    """

    def __init__(self, store: _SkipStore, key: int, slots: dict[int, int]) -> None:
        self.store, self.key, self.slots = store, key, dict(slots)

    def __call__(self, module: nn.Module, args: Any, output: Any) -> None:
        run = self.store.current()
        if run is None:
            return
        n = run.calls.get(self.key, 0) + 1
        run.calls[self.key] = n
        slot = self.slots.get(n)
        if slot is not None:
            run.feats[slot] = output


# --------------------------------------------------------------------------------------------------------------
# probing the encoder
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Call:
    """One module call seen while probing: when it started and ended, and the sizes it took and gave."""

    module: nn.Module
    call_no: int
    start: int
    end: int = -1
    in_size: tuple[int, int] | None = None
    out_size: tuple[int, int] | None = None
    out_channels: int | None = None


def _spatial(x: Any) -> tuple[int, int] | None:
    return (int(x.shape[-2]), int(x.shape[-1])) if isinstance(x, torch.Tensor) and x.ndim == 4 else None


def _area(size: tuple[int, int] | None) -> float:
    return math.inf if size is None else float(size[0] * size[1])


def _record_calls(encoder: nn.Module, x: torch.Tensor) -> tuple[list[_Call], torch.Tensor]:
    """Run `x` through `encoder` (no gradients) and list every submodule call in the order calls started."""
    calls: list[_Call] = []
    stack: list[_Call] = []
    counts: dict[int, int] = {}
    tick = [0]

    def pre(module: nn.Module, args: Any) -> None:
        counts[id(module)] = counts.get(id(module), 0) + 1
        tick[0] += 1
        call = _Call(module, counts[id(module)], tick[0], in_size=_spatial(args[0]) if args else None)
        calls.append(call)
        stack.append(call)

    def post(module: nn.Module, args: Any, output: Any) -> None:
        tick[0] += 1
        call = stack.pop()
        call.end = tick[0]
        call.out_size = _spatial(output)
        call.out_channels = int(output.shape[1]) if call.out_size is not None else None

    handles = []
    try:
        for m in encoder.modules():
            if m is not encoder:
                handles.append(m.register_forward_pre_hook(pre))
                handles.append(m.register_forward_hook(post))
        with torch.no_grad():
            out = encoder(x)
    finally:
        for h in handles:
            h.remove()
    return calls, out


def _outermost(calls: list[_Call], lo: int, hi: int) -> list[_Call]:
    """The calls strictly inside the interval ``(lo, hi)`` that no other such call contains, in order."""
    chain: list[_Call] = []
    last = lo
    for c in calls:  # in start order: a parent starts before its children
        if c.start > last and c.end < hi:
            chain.append(c)
            last = c.end
    return chain


def _main_path(calls: list[_Call], lo: int, hi: int) -> list[_Call]:
    """The encoder's top-level steps, opening any step that hides a resolution inside it.

    A step is opened when one of its inner calls gives a size strictly between the sizes the step takes and
    gives (a timm model whose `forward_features` runs the whole network, a Sequential of stages): the feature
    map before each downsampling is then among its inner steps. A residual block that downsamples once is kept
    whole, so its side branches are never mistaken for the main path.
    """
    path: list[_Call] = []
    for c in _outermost(calls, lo, hi):
        inner = [d for d in calls if c.start < d.start and d.end < c.end]
        lo_area, hi_area = _area(c.out_size) if c.out_size is not None else 0.0, _area(c.in_size)
        hidden = any(d.out_size is not None and lo_area < _area(d.out_size) < hi_area for d in inner)
        path.extend(_main_path(calls, c.start, c.end) if hidden else [c])
    return path


def _skip_calls(path: list[_Call], final_size: tuple[int, int]) -> list[_Call]:
    """The last step at each resolution before the resolution drops (shallow to deep)."""
    sized = [c for c in path if c.out_size is not None]
    skips: list[_Call] = []
    for i, c in enumerate(sized):
        nxt = sized[i + 1].out_size if i + 1 < len(sized) else final_size
        if _area(nxt) < _area(c.out_size) and _area(c.out_size) > _area(final_size):
            while skips and _area(skips[-1].out_size) <= _area(c.out_size):
                skips.pop()  # a resolution seen again: its last step before dropping wins
            skips.append(c)
    return skips


def _probe(encoder: nn.Module, n_in: int, img_size: tuple[int, int]) -> tuple[list[_Call], torch.Tensor]:
    """The skip points of `encoder` and its output on a dummy image, probed in eval mode.

    Every module's training flag is restored afterwards (not just the encoder's), so a partly frozen encoder
    with some layers kept in eval mode stays as it was.
    """
    modes = [(m, m.training) for m in encoder.modules()]
    param = next(encoder.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    encoder.eval()
    try:
        calls, out = _record_calls(encoder, torch.zeros(1, n_in, *img_size, dtype=dtype, device=device))
    except (RuntimeError, ValueError, AssertionError) as e:  # timm's transformers assert their input size
        raise ConfigError(
            expected(
                "an image size the encoder accepts",
                "img_size",
                img_size,
                hint=f"Running a (1, {n_in}, {img_size[0]}, {img_size[1]}) image through the encoder failed: {e}",
            )
        ) from e
    finally:
        for m, mode in modes:
            m.training = mode
    final = _spatial(out)
    if final is None:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"The encoder's output is {shape}; a U-Net needs an encoder giving a (B, C, H, W) feature map "
            "(a CNN body cut before its pooling, e.g. from create_body)."
        )
    return _skip_calls(_main_path(calls, 0, math.inf), final), out


# --------------------------------------------------------------------------------------------------------------
# the decoder
# --------------------------------------------------------------------------------------------------------------


class UnetBlock(nn.Module):
    """One decoder step: upsample by 2, merge the skip activation of that resolution, two convolutions.

    Args:
        up_in_c: channels of the decoder's input (from the step below).
        skip_c: channels of the skip activation.
        nf: output channels (default: the merged channels, ``up_in_c // 2 + skip_c``).
        blur: blur after the pixel shuffle (against checkerboard artefacts).
        self_attention: add self-attention after the convolutions.

    The upsampled map is resized (nearest) to the skip's size when they differ, which odd input sizes cause.
    """

    def __init__(
        self, up_in_c: int, skip_c: int, nf: int | None = None, blur: bool = False, self_attention: bool = False
    ) -> None:
        super().__init__()
        up_c = max(up_in_c // 2, 1)
        self.shuf = PixelShuffle_ICNR(up_in_c, up_c, blur=blur)
        self.bn = BatchNorm(skip_c)
        ni = up_c + skip_c
        nf = ni if nf is None else nf
        self.relu = nn.ReLU()
        self.conv1 = ConvLayer(ni, nf)
        self.conv2 = ConvLayer(nf, nf, xtra=SelfAttention(nf) if self_attention else None)
        self.n_out = nf

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up_in)  # (B, up_c, 2h, 2w)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, size=skip.shape[-2:], mode="nearest")
        x = self.relu(torch.cat([up, self.bn(skip)], dim=1))  # (B, up_c + skip_c, H, W)
        return self.conv2(self.conv1(x))


def _pair(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)
    ):
        raise ConfigError(expected("a positive int or a (height, width) pair", name, value))
    return int(value[0]), int(value[1])


class DynamicUnet(nn.Module):
    """A U-Net on `encoder`: its feature maps before each downsampling are the skip connections of a decoder
    that grows back to the input size.

    Args:
        encoder: a module turning ``(B, n_in, H, W)`` images into a ``(B, C, h, w)`` feature map (e.g.
            :func:`ember.vision.learner.create_body`). It is probed once with a dummy ``img_size`` image (in eval
            mode, without gradients; every module's training flag is restored).
        n_out: output channels (classes for segmentation).
        img_size: ``(height, width)`` (or one int) of the probe image; other sizes work at run time too.
        blur: blur after each pixel-shuffle upsampling (smoother outputs, fewer checkerboard artefacts).
        blur_final: with `blur`, also blur the last upsampling(s); ``False`` keeps them sharp.
        self_attention: self-attention in the third-to-last decoder block (the first one if there are fewer).
        y_range: ``(low, high)``: squash the outputs into that range with a scaled sigmoid (image regression).
        last_cross: concatenate the input image to the decoder's output and add a residual block there, so the
            last layers see full-resolution pixels.
        bottle: halve the channels of that last residual block (less memory at full resolution).

    The model is ``encoder``, ``middle`` (batch norm, ReLU and two convolutions on the encoder's output),
    ``blocks`` (one :class:`UnetBlock` per skip, deepest first), an optional ``upsample`` to the input
    resolution, the optional ``cross`` residual block and ``final`` (a 1x1 convolution to `n_out`), then
    ``y_range``. The encoder carries forward hooks (inert outside this model's forward); :meth:`remove_hooks`
    takes them off before the encoder is used elsewhere.

    Raises:
        ConfigError: for bad arguments, an encoder that does not give a 4-D feature map, or an `img_size` the
            encoder cannot take.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_out: int,
        img_size: int | tuple[int, int],
        blur: bool = False,
        blur_final: bool = True,
        self_attention: bool = False,
        y_range: tuple[float, float] | None = None,
        last_cross: bool = True,
        bottle: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise ConfigError(expected("an nn.Module", "encoder", type(encoder).__name__))
        if isinstance(n_out, bool) or not isinstance(n_out, int) or n_out < 1:
            raise ConfigError(expected("a positive number of outputs", "n_out", n_out))
        img_size = _pair("img_size", img_size)
        if y_range is not None and (not isinstance(y_range, Sequence) or len(y_range) != 2):
            raise ConfigError(expected("a (low, high) pair or None", "y_range", y_range))
        n_in = in_channels(encoder)
        skips, feats = _probe(encoder, n_in, img_size)

        self.encoder = encoder
        self.n_out, self.img_size, self.n_in = n_out, img_size, n_in
        self.skip_sizes = [c.out_size for c in skips]  # shallow to deep, at the probe's size
        self.skip_channels = [int(c.out_channels) for c in skips]
        self._store = _SkipStore(len(skips))
        self._add_hooks(skips)

        ni = int(feats.shape[1])
        self.middle = nn.Sequential(BatchNorm(ni), nn.ReLU(), ConvLayer(ni, ni * 2), ConvLayer(ni * 2, ni))
        n_blocks = len(skips)
        sa_idx = max(n_blocks - 3, 0)
        blocks = []
        for k, skip_c in enumerate(reversed(self.skip_channels)):
            last = k == n_blocks - 1
            merged = max(ni // 2, 1) + skip_c
            block = UnetBlock(
                ni,
                skip_c,
                nf=max(merged // 2, 1) if last else merged,
                blur=blur and (blur_final or not last),
                self_attention=self_attention and k == sa_idx,
            )
            blocks.append(block)
            ni = block.n_out
        self.blocks = nn.ModuleList(blocks)
        top = self.skip_sizes[0] if skips else _spatial(feats)
        # the shallowest skip is usually at half the input size (a strided stem): one more upsampling step
        self.upsample = PixelShuffle_ICNR(ni, blur=blur and blur_final) if _area(top) < _area(img_size) else None
        if last_cross:
            ni_cross = ni + n_in
            nf = max(ni_cross // 2, 1) if bottle else ni_cross
            self.merge = MergeLayer(dense=True)
            self.cross = ResBlock(1, ni_cross, nf)
            ni = nf
        else:
            self.merge, self.cross = None, None
        self.final = ConvLayer(ni, n_out, ks=1, norm_type=None, act_cls=None)
        self.y_range = SigmoidRange(*y_range) if y_range is not None else None

    # -- hooks ---------------------------------------------------------------------------------------------
    def _add_hooks(self, skips: list[_Call]) -> None:
        by_module: dict[int, tuple[nn.Module, dict[int, int]]] = {}
        for slot, c in enumerate(skips):
            by_module.setdefault(id(c.module), (c.module, {}))[1][c.call_no] = slot
        for key, (module, slots) in enumerate(by_module.values()):
            module.register_forward_hook(_SkipHook(self._store, key, slots))

    def _own_hooks(self) -> list[tuple[nn.Module, int]]:
        return [
            (m, k)
            for m in self.encoder.modules()
            for k, h in m._forward_hooks.items()
            if isinstance(h, _SkipHook) and h.store is self._store
        ]

    def remove_hooks(self) -> None:
        """Take this model's hooks off the encoder (to reuse the encoder elsewhere); the U-Net then cannot run."""
        for m, k in self._own_hooks():
            m._forward_hooks.pop(k, None)
            for extra in ("_forward_hooks_with_kwargs", "_forward_hooks_always_called"):
                getattr(m, extra, {}).pop(k, None)

    # -- forward -------------------------------------------------------------------------------------------
    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        store = self._store
        store.start()
        try:
            feats = self.encoder(x)  # (B, C, h, w)
            skips = store.feats
        finally:
            store.stop()  # nothing outlives the call
        if any(s is None for s in skips):
            raise EmberError(
                "The U-Net's encoder did not give all its skip activations: its hooks were removed "
                "(remove_hooks) or it runs differently than when the U-Net was built. Rebuild the model."
            )
        return feats, skips

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats, skips = self._encode(x)
        y = self.middle(feats)
        for block, skip in zip(self.blocks, reversed(skips), strict=True):
            y = block(y, skip)
        if self.upsample is not None:
            y = self.upsample(y)
        if y.shape[-2:] != x.shape[-2:]:
            y = F.interpolate(y, size=x.shape[-2:], mode="nearest")
        if self.cross is not None:
            y = self.cross(self.merge(y, x))  # (B, C + n_in, H, W) -> residual block
        y = self.final(y)  # (B, n_out, H, W)
        return self.y_range(y) if self.y_range is not None else y

    def extra_repr(self) -> str:
        return f"n_out={self.n_out}, img_size={self.img_size}, skips={self.skip_sizes}"
