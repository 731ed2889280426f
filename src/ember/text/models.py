"""AWD-LSTM (Merity et al., 2017) and the language-model and classifier models built on it.

- :class:`AWD_LSTM`: an embedding with whole-word dropout, then stacked one-layer LSTMs whose
  hidden-to-hidden weights are dropped (DropConnect) and whose outputs are dropped with the same mask at
  every time step. It keeps its hidden state between calls (batches of a language model continue each
  other); :meth:`AWD_LSTM.reset` clears it.
- :func:`get_language_model`: ``SequentialRNN(AWD_LSTM, LinearDecoder)`` with the decoder's weight tied
  to the embedding.
- :func:`get_text_classifier`: ``SequentialRNN(SentenceEncoder, PoolingLinearClassifier)``; the encoder
  reads a document of any length in chunks of `seq_len`, the head pools the last, max and mean states.

Weight dropout uses ``torch.nn.utils.parametrize``: the trained matrix is the parametrization's
``original`` and the LSTM sees a freshly dropped copy at each call, through torch's own LSTM kernel.
"""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ember.core.errors import ConfigError, EmberError, expected
from ember.layers import LinBnDrop
from ember.learner.export import register_model_factory
from ember.text.graphs import RecurrentGraphs

__all__ = [
    "awd_lstm_lm_config",
    "awd_lstm_clas_config",
    "TEXT_ARCHS",
    "RNNDropout",
    "EmbeddingDropout",
    "WeightDropout",
    "AWD_LSTM",
    "LinearDecoder",
    "SequentialRNN",
    "SentenceEncoder",
    "PoolingLinearClassifier",
    "get_language_model",
    "get_text_classifier",
    "convert_fastai_awd_lstm",
    "match_embeddings",
    "read_itos_pickle",
]

#: Defaults of the language model (the sizes of the public WikiText-103 weights).
awd_lstm_lm_config: dict[str, Any] = dict(
    emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, hidden_p=0.15, input_p=0.25, embed_p=0.02, weight_p=0.2,
    output_p=0.1, tie_weights=True, out_bias=True,
)  # fmt: skip
#: Defaults of the classifier's encoder and head.
awd_lstm_clas_config: dict[str, Any] = dict(
    emb_sz=400, n_hid=1152, n_layers=3, pad_token=1, hidden_p=0.3, input_p=0.4, embed_p=0.05, weight_p=0.5,
    output_p=0.4,
)  # fmt: skip
_DROPS = ("hidden_p", "input_p", "embed_p", "weight_p", "output_p")


def _check_p(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ConfigError(expected("a dropout probability in [0, 1)", name, p))


class RNNDropout(nn.Module):
    """Dropout of whole features with one mask per sequence, shared across time: ``(B, T, C)`` -> same."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _check_p("p", p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)  # (B, 1, C)
        return x * mask


def embedding_dropout(weight: torch.Tensor, x: torch.Tensor, p: float, training: bool, pad: int | None) -> torch.Tensor:
    """Look up `x` in `weight` with whole rows (words) dropped with probability `p` and the rest rescaled."""
    if training and p > 0:
        mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p) / (1 - p)  # (V, 1)
        weight = weight * mask
    return F.embedding(x, weight, padding_idx=pad)  # (B, T, E)


class EmbeddingDropout(nn.Module):
    """An embedding whose words (rows) are dropped as a whole during training."""

    def __init__(self, emb: nn.Embedding, embed_p: float) -> None:
        super().__init__()
        _check_p("embed_p", embed_p)
        self.emb, self.embed_p = emb, embed_p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return embedding_dropout(self.emb.weight, x, self.embed_p, self.training, self.emb.padding_idx)


class _DropWeight(nn.Module):
    """The parametrization of :class:`WeightDropout`: the weight, dropped while training."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return F.dropout(w, self.p, self.training) if self.p > 0 else w


class WeightDropout(nn.Module):
    """DropConnect on some weights of `module` (by default an LSTM's hidden-to-hidden matrix).

    The weights stay parameters of `module` (under ``parametrizations.<name>.original``); at each forward in
    training mode the module sees them with a fresh dropout mask, in evaluation mode as they are.
    """

    def __init__(self, module: nn.Module, weight_p: float, layer_names: Sequence[str] = ("weight_hh_l0",)) -> None:
        super().__init__()
        _check_p("weight_p", weight_p)
        self.module, self.weight_p, self.layer_names = module, weight_p, tuple(layer_names)
        for name in self.layer_names:
            parametrize.register_parametrization(module, name, _DropWeight(weight_p))
        if isinstance(module, nn.RNNBase):
            # An RNN packs its weights into one new buffer whenever they change, which a dropped copy does at
            # every call: each parameter would move to new memory at every step (what the optimizer and a CUDA
            # graph hold would go stale). Leave them where they are; cuDNN compacts its own copy per call (in
            # evaluation too, where packing once used to save that copy: a few tens of microseconds per call).
            module.flatten_parameters = _leave_weights_in_place
        self._forget_dropped()

    def forward(self, *args: Any) -> Any:
        with warnings.catch_warnings(), parametrize.cached():
            # cuDNN wants the LSTM's weights in one flat buffer, which a dropped copy cannot be; it compacts them
            # itself and would warn on every call.
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            # cached(): the LSTM reads its weights more than once per call; draw one dropout mask, not several.
            out = self.module(*args)
        self._forget_dropped()
        return out

    def _apply(self, fn: Any, recurse: bool = True) -> WeightDropout:
        out = super()._apply(fn, recurse)
        self._forget_dropped()  # moving the module (.to, .cuda) has the RNN read a dropped copy again
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> WeightDropout:
        self._forget_dropped()
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new

    def _forget_dropped(self) -> None:
        # The RNN keeps the weights it last used; drop the dropped copies' history (the model stays copyable, and
        # the copies hold no graph once the step is over). The next call sees them changed and reads them afresh.
        flat = getattr(self.module, "_flat_weights", None)
        if flat is not None:
            self.module._flat_weights = [w.detach() if torch.is_tensor(w) and w.grad_fn else w for w in flat]


def _leave_weights_in_place() -> None:
    """Stands in for an RNN's ``flatten_parameters`` under :class:`WeightDropout` (see there)."""


class AWD_LSTM(nn.Module):  # noqa: N801 (the architecture's published name)
    """The AWD-LSTM encoder: token ids ``(B, T)`` -> last layer's outputs ``(B, T, emb_sz)``.

    Args:
        vocab_sz: vocabulary size.
        emb_sz: embedding size (and size of the last layer, so that a decoder can share the embedding).
        n_hid: hidden size of the inner layers.
        n_layers: number of LSTM layers.
        pad_token: id of ``xxpad``.
        hidden_p: dropout between LSTM layers.
        input_p: dropout on the embedded input.
        embed_p: word dropout on the embedding.
        weight_p: DropConnect on the hidden-to-hidden weights.
    """

    def __init__(
        self,
        vocab_sz: int,
        emb_sz: int = 400,
        n_hid: int = 1152,
        n_layers: int = 3,
        pad_token: int = 1,
        hidden_p: float = 0.3,
        input_p: float = 0.4,
        embed_p: float = 0.05,
        weight_p: float = 0.5,
    ) -> None:
        super().__init__()
        for name, v in (("vocab_sz", vocab_sz), ("emb_sz", emb_sz), ("n_hid", n_hid), ("n_layers", n_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(expected("a positive int", name, v))
        _check_p("embed_p", embed_p)
        self.vocab_sz, self.emb_sz, self.n_hid, self.n_layers = vocab_sz, emb_sz, n_hid, n_layers
        self.pad_token, self.embed_p = pad_token, embed_p
        self.encoder = nn.Embedding(vocab_sz, emb_sz, padding_idx=pad_token)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        sizes = [emb_sz] + [n_hid] * (n_layers - 1) + [emb_sz]
        self.rnns = nn.ModuleList(
            WeightDropout(nn.LSTM(sizes[i], sizes[i + 1], batch_first=True), weight_p) for i in range(n_layers)
        )
        self.input_dp = RNNDropout(input_p)
        self.hidden_dps = nn.ModuleList(RNNDropout(hidden_p) for _ in range(n_layers - 1))
        self.hidden: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        # RNNRegularizer turns this on to read the last layer's raw output (kept only while training).
        self.keep_outputs = False
        self.last_raw: torch.Tensor | None = None
        #: Train the recurrent layers through CUDA graphs on a GPU (see :mod:`ember.text.graphs`); the language
        #: model learner turns it on.
        self.cuda_graphs = False
        self._graphs: RecurrentGraphs | None = None

    @property
    def graphs(self) -> RecurrentGraphs | None:
        """The CUDA-graph recordings (``replays``, ``skipped``, ``clear()``), made at the first training batch on a
        GPU with :attr:`cuda_graphs` on; None before."""
        return self._graphs

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        state["_graphs"] = None  # recordings belong to this object's parameters on this GPU: never copied
        return state

    def reset(self) -> None:
        """Forget the hidden state (the next batch starts from zeros)."""
        self.hidden = None

    def _init_hidden(self, bs: int, like: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        sizes = [self.n_hid] * (self.n_layers - 1) + [self.emb_sz]
        return [(like.new_zeros(1, bs, n), like.new_zeros(1, bs, n)) for n in sizes]  # (1, B, H) each

    def mask_hidden(self, keep: torch.Tensor) -> None:
        """Zero the hidden state of the rows where `keep` ``(B,)`` is False."""
        if self.hidden is not None:
            m = keep.to(self.hidden[0][0].dtype)[None, :, None]  # (1, B, 1)
            self.hidden = [(h * m, c * m) for h, c in self.hidden]

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        bs = inp.shape[0]
        x = embedding_dropout(self.encoder.weight, inp, self.embed_p, self.training, self.pad_token)  # (B, T, E)
        dev = x.device.type
        if torch.is_autocast_enabled(dev):
            # Give the LSTMs input and state in the autocast type: torch's CPU LSTM fails on a float32 input under
            # bfloat16 autocast on processors without native bfloat16, and on CUDA this is the cast autocast does.
            x = x.to(torch.get_autocast_dtype(dev))
        if self.hidden is None or self.hidden[0][0].shape[1] != bs or self.hidden[0][0].device != x.device:
            self.hidden = self._init_hidden(bs, x)
        elif self.hidden[0][0].dtype != x.dtype:
            self.hidden = [(h.to(x.dtype), c.to(x.dtype)) for h, c in self.hidden]
        layers = self._layers
        if self.cuda_graphs and self.training and x.is_cuda:
            if self._graphs is None:
                self._graphs = RecurrentGraphs(self._layers, [self.input_dp, self.rnns, self.hidden_dps])
            layers = self._graphs
        x, *flat = layers(x, *(t for hc in self.hidden for t in hc))
        self.hidden = [(flat[2 * i], flat[2 * i + 1]) for i in range(self.n_layers)]
        self.last_raw = x if (self.keep_outputs and self.training) else None
        return x

    def _layers(self, x: torch.Tensor, *hidden: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The recurrent part: ``(B, T, E)`` and each layer's ``h, c`` ``(1, B, H)`` -> the last layer's outputs
        ``(B, T, E)`` and each layer's new ``h, c``, detached (carried over, no backprop into earlier batches)."""
        x = self.input_dp(x)
        new_hidden: list[torch.Tensor] = []
        for i, rnn in enumerate(self.rnns):
            x, (h, c) = rnn(x, (hidden[2 * i], hidden[2 * i + 1]))  # (B, T, H)
            new_hidden += [h.detach(), c.detach()]
            if i < self.n_layers - 1:
                x = self.hidden_dps[i](x)
        return (x, *new_hidden)


class LinearDecoder(nn.Module):
    """Dropout then a linear layer to vocabulary logits: ``(B, T, E)`` -> ``(B, T, V)``.

    Args:
        tie_encoder: an embedding whose weight this decoder shares.
    """

    def __init__(
        self, n_out: int, n_hid: int, output_p: float = 0.1, tie_encoder: nn.Module | None = None, bias: bool = True
    ) -> None:
        super().__init__()
        self.decoder = nn.Linear(n_hid, n_out, bias=bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        if bias:
            nn.init.zeros_(self.decoder.bias)
        self.output_dp = RNNDropout(output_p)
        if tie_encoder is not None:
            self.decoder.weight = tie_encoder.weight
        self.keep_outputs = False
        self.last_dropped: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dropped = self.output_dp(x)
        self.last_dropped = dropped if (self.keep_outputs and self.training) else None
        return self.decoder(dropped)


class SequentialRNN(nn.Sequential):
    """A sequential model whose :meth:`reset` clears the hidden state of every part that has one."""

    def reset(self) -> None:
        for m in self.children():
            if hasattr(m, "reset"):
                m.reset()


class SentenceEncoder(nn.Module):
    """Read documents of any length in chunks of `bptt` tokens with an RNN encoder that keeps its state.

    Input ``(B, S)`` padded with `pad_idx` (at the start, at the end, or both); returns the outputs of the last
    `max_len` positions (rounded up to whole chunks) ``(B, S', E)`` and the padding mask ``(B, S')`` (True on
    padding).

    A text's result does not depend on the batch it is padded in: each row is first rotated so that its leading
    padding fills whole chunks (the rest moves to the end), every text then starts at a chunk boundary from a
    zero state, exactly as when it is read alone, and the padding after it cannot reach its outputs.
    """

    def __init__(self, bptt: int, module: nn.Module, pad_idx: int = 1, max_len: int | None = None) -> None:
        super().__init__()
        self.bptt, self.module, self.pad_idx, self.max_len = bptt, module, pad_idx, max_len

    def reset(self) -> None:
        if hasattr(self.module, "reset"):
            self.module.reset()

    def align(self, inp: torch.Tensor) -> torch.Tensor:
        """Rotate each row left by its leading padding modulo `bptt`: ``(B, S)`` -> ``(B, S)``."""
        sl = inp.shape[1]
        lead = (inp == self.pad_idx).int().cumprod(1).sum(1)  # (B,): padding before each text
        shift = lead % self.bptt  # (B,)
        if sl == 0:
            return inp
        # Always gather (a few integers per token): testing whether any row needs it would wait for the GPU.
        idx = (torch.arange(sl, device=inp.device)[None, :] + shift[:, None]) % sl  # (B, S)
        return inp.gather(1, idx)

    def forward(self, inp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inp = self.align(inp)
        sl = inp.shape[1]
        self.reset()
        keep_from = 0 if self.max_len is None else sl - self.max_len
        outs, masks = [], []
        for i in range(0, sl, self.bptt):
            chunk = inp[:, i : i + self.bptt]  # (B, t)
            out = self.module(chunk)  # (B, t, E)
            pad = chunk == self.pad_idx
            if hasattr(self.module, "mask_hidden"):
                self.module.mask_hidden(~pad.all(1))  # rows still in their leading padding keep a zero state
            if i + chunk.shape[1] > keep_from:
                outs.append(out)
                masks.append(pad)
        return torch.cat(outs, dim=1), torch.cat(masks, dim=1)


class PoolingLinearClassifier(nn.Module):
    """Concatenate the last, max-pooled and mean-pooled outputs, then linear blocks to the class scores.

    Args:
        dims: layer sizes, ``[3 * emb_sz, hidden..., n_classes]``.
        ps: dropout before each linear layer.
    """

    def __init__(self, dims: Sequence[int], ps: Sequence[float]) -> None:
        super().__init__()
        if len(ps) != len(dims) - 1:
            raise ConfigError(expected(f"{len(dims) - 1} dropout values (one per layer)", "ps", list(ps)))
        acts = [nn.ReLU(inplace=True)] * (len(dims) - 2) + [None]
        self.layers = nn.Sequential(
            *(LinBnDrop(dims[i], dims[i + 1], p=ps[i], act=acts[i]) for i in range(len(dims) - 1))
        )

    def forward(self, input: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out, mask = input  # (B, S, E), (B, S)
        real = (~mask).unsqueeze(-1)  # (B, S, 1)
        n = real.sum(1).clamp_min(1).to(out.dtype)  # (B, 1)
        avg = (out * real).sum(1) / n  # (B, E)
        mx = out.masked_fill(~real, float("-inf")).max(1).values  # (B, E)
        mx = torch.where(torch.isinf(mx), torch.zeros_like(mx), mx)
        pos = torch.arange(out.shape[1], device=out.device)  # (S,)
        last_idx = torch.where(real.squeeze(-1), pos, 0).max(1).values  # (B,): each text's last real position
        last = out[torch.arange(out.shape[0], device=out.device), last_idx]  # (B, E)
        x = torch.cat([last, mx, avg], dim=1)  # (B, 3E)
        return self.layers(x)


def _scaled_config(config: dict[str, Any], drop_mult: float) -> dict[str, Any]:
    return {k: (v * drop_mult if k in _DROPS else v) for k, v in config.items()}


#: The encoder architectures an exported text model can name (``arch="AWD_LSTM"`` in its recipe).
TEXT_ARCHS: dict[str, type] = {"AWD_LSTM": AWD_LSTM}


def _resolve_arch(arch: type | str) -> tuple[type, str | None]:
    """The architecture class and its name in :data:`TEXT_ARCHS` (None for a class of the user's)."""
    if isinstance(arch, str):
        if arch not in TEXT_ARCHS:
            raise ConfigError(expected("the name of a text architecture", "arch", arch, valid=list(TEXT_ARCHS)))
        return TEXT_ARCHS[arch], arch
    if not (isinstance(arch, type) and issubclass(arch, nn.Module)):
        raise ConfigError(expected("an nn.Module class or the name of one", "arch", arch, valid=list(TEXT_ARCHS)))
    name = next((k for k, v in TEXT_ARCHS.items() if v is arch), None)
    return arch, name


def _plain(config: dict[str, Any] | None) -> dict[str, Any] | None:
    # The recipe holds JSON values: a tuple of sizes becomes a list, which the constructors accept as well.
    return None if config is None else {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}


@register_model_factory()
def get_language_model(
    vocab_sz: int, config: dict[str, Any] | None = None, drop_mult: float = 1.0, arch: type | str = AWD_LSTM
) -> SequentialRNN:
    """An AWD-LSTM language model: ``(B, T)`` ids -> ``(B, T, vocab_sz)`` logits.

    Registered as the model factory ``"get_language_model"``: the model keeps its JSON arguments in
    ``model._ember_factory`` (the architecture by its name in :data:`TEXT_ARCHS`) so that an exported learner
    can be rebuilt; a model of an architecture of the user's keeps ``None`` there.

    Args:
        config: overrides of :data:`awd_lstm_lm_config`.
        drop_mult: multiplies every dropout probability.
        arch: the encoder class, or its name in :data:`TEXT_ARCHS`.
    """
    arch, arch_name = _resolve_arch(arch)
    cfg = _scaled_config({**awd_lstm_lm_config, **(config or {})}, drop_mult)
    output_p, tie, out_bias = cfg.pop("output_p"), cfg.pop("tie_weights"), cfg.pop("out_bias")
    encoder = arch(vocab_sz, **cfg)
    decoder = LinearDecoder(vocab_sz, cfg["emb_sz"], output_p, encoder.encoder if tie else None, out_bias)
    model = SequentialRNN(encoder, decoder)
    kwargs = {"vocab_sz": vocab_sz, "config": _plain(config), "drop_mult": drop_mult, "arch": arch_name}
    model._ember_factory = ("get_language_model", kwargs) if arch_name is not None else None
    return model


@register_model_factory()
def get_text_classifier(
    vocab_sz: int,
    n_class: int,
    seq_len: int = 72,
    config: dict[str, Any] | None = None,
    drop_mult: float = 1.0,
    lin_ftrs: Sequence[int] | None = None,
    ps: Sequence[float] | None = None,
    pad_idx: int = 1,
    max_len: int | None = 72 * 20,
    arch: type | str = AWD_LSTM,
) -> SequentialRNN:
    """An AWD-LSTM classifier: ``(B, S)`` ids padded at the start -> ``(B, n_class)`` scores.

    Registered as the model factory ``"get_text_classifier"`` (see :func:`get_language_model`).

    Args:
        seq_len: chunk length the encoder reads at a time.
        lin_ftrs: hidden sizes of the head (default ``[50]``).
        ps: dropout of each head layer (default ``output_p`` then 0.1 for each hidden layer).
        max_len: pool over at most the last `max_len` tokens (whole chunks).
        arch: the encoder class, or its name in :data:`TEXT_ARCHS`.
    """
    arch, arch_name = _resolve_arch(arch)
    cfg = _scaled_config({**awd_lstm_clas_config, **(config or {})}, drop_mult)
    output_p = cfg.pop("output_p")
    lin_ftrs = list(lin_ftrs) if lin_ftrs is not None else [50]
    ps = list(ps) if ps is not None else [output_p] + [0.1] * len(lin_ftrs)
    encoder = SentenceEncoder(seq_len, arch(vocab_sz, **cfg), pad_idx=pad_idx, max_len=max_len)
    head = PoolingLinearClassifier([3 * cfg["emb_sz"], *lin_ftrs, n_class], ps)
    model = SequentialRNN(encoder, head)
    kwargs = dict(vocab_sz=vocab_sz, n_class=n_class, seq_len=seq_len, config=_plain(config), drop_mult=drop_mult)
    kwargs.update(lin_ftrs=lin_ftrs, ps=ps, pad_idx=pad_idx, max_len=max_len, arch=arch_name)
    model._ember_factory = ("get_text_classifier", kwargs) if arch_name is not None else None
    return model


# ---------------------------------------------------------------------------------------------------------------------
# Pretrained weights in fastai's layout


class _ListUnpickler(pickle.Unpickler):
    """Unpickles plain data only (lists, strings, numbers): any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise EmberError(f"Refusing to load {module}.{name} from a vocabulary pickle: only a list of str is allowed.")


def read_itos_pickle(path: Any) -> list[str]:
    """Read a pickled list of tokens (fastai's ``itos_*.pkl``) without running any code from the file."""
    with open(path, "rb") as f:
        itos = _ListUnpickler(f).load()
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise EmberError(f"{path} does not hold a list of tokens.")
    return itos


def convert_fastai_awd_lstm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a fastai AWD-LSTM language-model state dict (``0.encoder.weight``, ``0.rnns.<i>.weight_hh_l0_raw``,
    ``1.decoder.weight`` ...) onto the keys of :func:`get_language_model`'s model.

    Accepts the state dict itself or a checkpoint ``{"model": state_dict, ...}``. The duplicate embedding
    (``0.encoder_dp.emb.weight``) and the dropped copies of the hidden weights are left out.

    Raises:
        EmberError: the dict does not look like a fastai AWD-LSTM.
    """
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if key == "0.encoder.weight":
            out["0.encoder.weight"] = value
        elif parts[:2] == ["0", "rnns"] and len(parts) >= 4:
            layer, name = parts[2], parts[-1]
            if name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
                out[f"0.rnns.{layer}.module.{name}"] = value
            elif name == "weight_hh_l0_raw":
                out[f"0.rnns.{layer}.module.parametrizations.weight_hh_l0.original"] = value
        elif key in ("1.decoder.weight", "1.decoder.bias"):
            out[key.replace("1.decoder.", "1.decoder.")] = value
    if "0.encoder.weight" not in out or not any(k.endswith(".original") for k in out):
        raise EmberError(
            "These weights are not a fastai AWD-LSTM language model (expected keys such as '0.encoder.weight' and "
            "'0.rnns.0.weight_hh_l0_raw')."
        )
    if "1.decoder.weight" not in out:
        out["1.decoder.weight"] = out["0.encoder.weight"]  # tied
    return out


def match_embeddings(
    state: dict[str, torch.Tensor], old_itos: Sequence[str], new_itos: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Re-index a language model's embedding and decoder from `old_itos` to `new_itos`.

    Words of the new vocabulary found in the old one keep their rows; the others get the mean row (and the
    mean decoder bias), a neutral start for words the pretrained model never saw.
    """
    old_index = {t: i for i, t in enumerate(old_itos)}
    idx = torch.tensor([old_index.get(t, -1) for t in new_itos])
    known = idx >= 0
    out = dict(state)
    for key in ("0.encoder.weight", "1.decoder.weight", "1.decoder.bias"):
        if key not in state:
            continue
        old = state[key]
        mean = old.float().mean(0).to(old.dtype)
        new = mean.expand(len(new_itos), *old.shape[1:]).clone()
        new[known] = old[idx[known]]
        out[key] = new
    return out
