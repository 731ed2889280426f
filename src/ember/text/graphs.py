"""CUDA graphs for the AWD-LSTM's recurrent layers while training.

cuDNN runs an LSTM as a few small kernels per time step and layer, so a language model's step is thousands of
launches, each costing the host more than the GPU spends on it: the GPU waits on Python and the driver. A CUDA
graph records one step's launches once and replays them with a single call.

:class:`RecurrentGraphs` records, for each batch shape seen at least twice, the forward of the layers (input
dropout, the weight-dropped LSTMs and the dropouts between them) and its backward, and replays them from then
on. What the recording reads stays live: the parameters (updated in place by the optimizer), the dropout masks
(drawn afresh by the graph at each replay from torch's CUDA generator) and the inputs, copied into the
recording's own buffers. The embedding, the decoder, the loss and the optimizer run as usual around it.

All recordings share one memory pool, which is safe while each replayed forward is followed by its own
backward before any other forward replays. A forward called while an earlier one still waits for its backward
(two forwards before one backward, as a classifier reading a document in chunks does) therefore runs without a
graph. So do calls with module hooks on the layers (they would run only while recording), with nothing that
needs a gradient, on a GPU other than the current one, and shapes past :attr:`RecurrentGraphs.max_graphs`.
When the trainable weights change (a layer frozen or unfrozen, the model moved), the recordings made for the old
ones are dropped. What a replay returns is a copy: it outlives later replays.
"""

from __future__ import annotations

import collections
import contextlib
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ember.core.errors import EmberError

__all__ = ["RecurrentGraphs"]

Recur = Callable[..., tuple[torch.Tensor, ...]]


def _has_hooks(parts: Sequence[nn.Module]) -> bool:
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for part in parts
        for m in part.modules()
    )


def _global_hooks() -> bool:
    from torch.nn.modules import module as m

    return bool(
        m._global_forward_hooks
        or m._global_forward_pre_hooks
        or m._global_backward_hooks
        or m._global_backward_pre_hooks
    )


class _Recording:
    """One batch shape's forward and backward graphs, with the buffers they read and write."""

    def __init__(
        self,
        recur: Recur,
        parts: Sequence[nn.Module],
        args: Sequence[torch.Tensor],
        params: Sequence[nn.Parameter],
        grad_bufs: Sequence[torch.Tensor],
        pool: Any,
        stream: torch.cuda.Stream,
        warm_up: bool,
    ) -> None:
        self.inputs = [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
        # The recording differentiates with respect to stand-ins that share each parameter's memory: new leaves,
        # whose gradient nodes belong to the recording's stream. (A parameter's own node can date from an
        # earlier step still referenced, on the default stream, which a recording must not wait on.)
        stand_ins = [p.detach().requires_grad_(True) for p in params]
        targets = [t for t in self.inputs if t.requires_grad] + stand_ins
        self.grad_slots = [t.requires_grad for t in self.inputs]
        autocast = _autocast_state(args[0].device.type)
        torch.cuda.synchronize()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), _no_autocast_cache(autocast), _swapped(parts, params, stand_ins):
            if warm_up:  # lazy set-up (handles, workspaces) must not happen inside a recording
                outs = recur(*self.inputs)
                diff = [o for o in outs if o.requires_grad]
                torch.autograd.grad(diff, targets, [torch.ones_like(o) for o in diff], allow_unused=True)
                del outs, diff
                torch.cuda.synchronize()
            self.fwd = torch.cuda.CUDAGraph()
            self.fwd.capture_begin(pool=pool, capture_error_mode="thread_local")
            try:
                self.outputs = list(recur(*self.inputs))
            finally:
                self.fwd.capture_end()
            self.diff_slots = [o.requires_grad for o in self.outputs]
            diff = [o for o in self.outputs if o.requires_grad]
            self.outputs = [o.detach() for o in self.outputs]  # the replays' outputs, without the recording's history
            self.grad_outputs = [torch.empty_like(o) for o in diff]
            self.bwd = torch.cuda.CUDAGraph()
            self.bwd.capture_begin(pool=pool, capture_error_mode="thread_local")
            try:
                grads = torch.autograd.grad(diff, targets, self.grad_outputs, allow_unused=True)
                n_in = sum(self.grad_slots)
                # The parameters' gradients land in buffers every recording shares (they are the largest);
                # the recording's own copies go back to the pool for the next recording to reuse.
                for buf, g in zip(grad_bufs, grads[n_in:]):
                    if g is None:
                        buf.zero_()
                    else:
                        buf.copy_(g)
            finally:
                self.bwd.capture_end()
        torch.cuda.current_stream().wait_stream(stream)
        torch.cuda.synchronize()
        self.input_grads, self.param_grads = list(grads[:n_in]), list(grad_bufs)


@contextlib.contextmanager
def _swapped(parts: Sequence[nn.Module], params: Sequence[nn.Parameter], stand_ins: Sequence[torch.Tensor]) -> Any:
    """Let the modules of `parts` hold `stand_ins` in place of `params` inside the block."""
    by_id = {id(p): q for p, q in zip(params, stand_ins)}
    swapped = []
    for part in parts:
        for m in part.modules():
            for name, p in m._parameters.items():
                if p is not None and id(p) in by_id:
                    swapped.append((m, name, p))
    try:
        for m, name, p in swapped:
            m._parameters[name] = by_id[id(p)]
        yield
    finally:
        for m, name, p in swapped:
            m._parameters[name] = p


def _autocast_state(device_type: str) -> torch.dtype | None:
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def _no_autocast_cache(dtype: torch.dtype | None) -> Any:
    """The caller's autocast, without the weight-cast cache (a cached cast would outlive the recording)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype, cache_enabled=False)


class _Replay(torch.autograd.Function):
    """Replays a recording's forward, and its backward when autograd asks for the gradients."""

    @staticmethod
    def forward(ctx: Any, owner: RecurrentGraphs, rec: _Recording, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(rec.inputs)
        for static, live in zip(rec.inputs, args[:n]):
            if static.data_ptr() != live.data_ptr():
                static.copy_(live)
        rec.fwd.replay()
        ctx.owner, ctx.rec = owner, rec
        ctx.set_materialize_grads(False)
        # Copies: a recording's outputs live in the shared pool, where another recording's replay may write; what
        # the caller keeps (the hidden state, the output AR/TAR read) must not change under it.
        outs = tuple(o.clone() for o in rec.outputs)
        ctx.mark_non_differentiable(*(o for o, d in zip(outs, rec.diff_slots) if not d))
        return outs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        rec: _Recording = ctx.rec
        diff_grads = [g for g, d in zip(grads, rec.diff_slots) if d]
        for static, g in zip(rec.grad_outputs, diff_grads):
            if g is None:
                static.zero_()
            elif static.data_ptr() != g.data_ptr():
                static.copy_(g)
        rec.bwd.replay()
        ctx.owner.pending = None
        # Copies: the recording's buffers are overwritten by its next replay, and autograd may keep a returned
        # gradient as a parameter's .grad (accumulating into it later).
        it = iter(rec.input_grads)
        in_grads = [(_copy(next(it)) if slot else None) for slot in rec.grad_slots]
        param_grads = [_copy(g) for g in rec.param_grads]
        return (None, None, *in_grads, *param_grads)


def _copy(g: torch.Tensor | None) -> torch.Tensor | None:
    return None if g is None else g.clone()


class RecurrentGraphs:
    """Records and replays `recur` (a function of tensors returning a tuple of tensors) as CUDA graphs.

    Call it in training mode only (the caller decides; evaluation has no backward to pair a forward with).

    Args:
        recur: the function to record; it may read the parameters of `parts`.
        parts: the modules `recur` runs (their parameters get their gradients through the replay, their dropout
            probabilities are part of a recording's key).
        max_graphs: the most batch shapes recorded; further shapes run without a graph.
        min_calls: a shape is recorded at its `min_calls`-th call (rare shapes are not worth recording).
    """

    def __init__(self, recur: Recur, parts: Sequence[nn.Module], max_graphs: int = 64, min_calls: int = 2) -> None:
        self.recur, self.parts = recur, list(parts)
        self.max_graphs, self.min_calls = max_graphs, min_calls
        self.recordings: dict[tuple, _Recording] = {}
        self.calls: dict[tuple, int] = {}
        self.pending: weakref.ref | None = None
        self._pool: Any = None
        self._stream: torch.cuda.Stream | None = None
        self._grad_bufs: dict[int, torch.Tensor] = {}
        self._weights_key: tuple | None = None
        #: How many calls replayed a recording (the rest ran as usual).
        self.replays = 0
        #: Why recording failed, if it did (no graph is used from then on).
        self.failed: str | None = None
        #: How many calls ran without a graph, by reason (see :meth:`why_not`; "rare shape": not yet
        #: `min_calls` calls of that shape).
        self.skipped: collections.Counter[str] = collections.Counter()

    def clear(self) -> None:
        """Drop every recording (and the memory they hold)."""
        self.recordings.clear()
        self.calls.clear()
        self._grad_bufs.clear()
        self.pending, self._pool, self._stream, self._weights_key = None, None, None, None

    def why_not(self, args: Sequence[torch.Tensor]) -> str | None:
        """Why a call on `args` may not replay (None: it may): it must run on CUDA, recording gradients, with no
        hooks on the layers and no replayed forward waiting for its backward."""
        if self.failed is not None:
            return "failed"
        x = args[0]
        if not (x.is_cuda and torch.is_grad_enabled()):
            return "no gradient" if x.is_cuda else "not on CUDA"
        if x.device.index != torch.cuda.current_device():
            return "not the current GPU"  # recordings are made on the current device's streams
        if torch.cuda.is_current_stream_capturing():
            return "capturing"
        if _has_hooks(self.parts) or _global_hooks():
            return "hooks"
        if self.pending is not None and self.pending() is not None:
            return "pending backward"  # replaying would overwrite what the earlier backward reads
        return None

    def _eager(self, why: str, args: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        self.skipped[why] += 1
        return self.recur(*args)

    def __call__(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        why = self.why_not(args)
        if why is not None:
            return self._eager(why, args)
        weights = self._parameters()  # walked once per call: this is the step's host time
        params = [p for p in weights if p.requires_grad]
        if not params and not any(a.requires_grad for a in args):
            return self._eager("no gradient", args)
        key = self._key(args, weights)
        if key[2] != self._weights_key:
            # Other trainable weights (frozen or unfrozen layers, a move to other memory): the recordings made for
            # the old ones can never replay again; free them and their place under `max_graphs`, and record the
            # new ones in a pool of their own.
            self.recordings.clear()
            self.calls.clear()
            self._weights_key, self._pool = key[2], None
        rec = self.recordings.get(key)
        if rec is None:
            n = self.calls[key] = self.calls.get(key, 0) + 1
            if n < self.min_calls:
                return self._eager("rare shape", args)
            if len(self.recordings) >= self.max_graphs:
                return self._eager("too many shapes", args)
            if self._pool is None:
                self._pool, self._stream = torch.cuda.graph_pool_handle(), torch.cuda.Stream()
            bufs = [self._grad_buf(p) for p in params]
            try:
                rec = _Recording(
                    self.recur, self.parts, args, params, bufs, self._pool, self._stream, not self.recordings
                )
            except Exception as e:
                # A capture that fails can leave torch's CUDA random generator unusable for the rest of the process,
                # so going on without graphs is not safe: stop, keep what was trained, and say how to go on.
                self.failed = f"{type(e).__name__}: {e}"
                self.clear()
                raise EmberError(
                    f"Recording the AWD-LSTM's recurrent layers as a CUDA graph failed ({self.failed}). The weights "
                    "trained so far are kept: turn graphs off with `learn.model[0].cuda_graphs = False` (or "
                    "`language_model_learner(..., cuda_graphs=False)`) and fit again, in a new process if CUDA "
                    "errors follow."
                ) from e
            self.recordings[key] = rec
        outs = _Replay.apply(self, rec, *args, *params)
        self.replays += 1
        if any(o.requires_grad for o in outs):
            self.pending = weakref.ref(outs[0].grad_fn) if outs[0].grad_fn is not None else None
        return outs

    def _grad_buf(self, p: nn.Parameter) -> torch.Tensor:
        buf = self._grad_bufs.get(id(p))
        if buf is None or buf.shape != p.shape or buf.dtype != p.dtype or buf.device != p.device:
            buf = self._grad_bufs[id(p)] = torch.empty_like(p, memory_format=torch.contiguous_format)
        return buf

    def _parameters(self) -> list[nn.Parameter]:
        return [p for part in self.parts for p in part.parameters()]

    def _key(self, args: Sequence[torch.Tensor], weights: Sequence[nn.Parameter]) -> tuple:
        """What a recording depends on: the inputs' shapes and types, the autocast type, each weight's memory and
        whether it trains (item 2, compared on its own), and the dropout probabilities."""
        x = args[0]
        drops = tuple(
            getattr(m, name)
            for part in self.parts
            for m in part.modules()
            for name in ("p", "weight_p")
            if isinstance(getattr(m, name, None), float)
        )
        return (
            tuple((tuple(a.shape), a.dtype, a.requires_grad, a.device) for a in args),
            _autocast_state(x.device.type),
            tuple((p.data_ptr(), p.requires_grad) for p in weights),
            drops,
        )
