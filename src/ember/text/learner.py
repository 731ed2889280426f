"""Text learners: `language_model_learner` and `text_classifier_learner`, their callbacks and splitters.

ULMFiT in three steps::

    dls_lm = TextDataLoaders.from_folder(path, is_lm=True)
    learn = language_model_learner(dls_lm, AWD_LSTM, metrics=[accuracy, Perplexity()])
    learn.fine_tune(1, 2e-2); learn.save_encoder("ft")
    dls = TextDataLoaders.from_folder(path, vocab=dls_lm.vocab)
    learn = text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5); learn.load_encoder("ft")
    learn.fit_one_cycle(1, 2e-2); learn.freeze_to(-2); learn.fit_one_cycle(1, slice(1e-2 / 2.6**4, 1e-2)) ...

The RNN state is reset at the start of every training and validation phase (:class:`ModelResetter`), and
AR/TAR regularization (:class:`RNNRegularizer`) is added to the training loss.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, DownloadError, EmberError, expected
from ember.learner.callback import Callback
from ember.learner.callbacks import GatherPreds
from ember.learner.checkpoint import atomic_save, safe_load
from ember.learner.export import register_learner
from ember.learner.learner import Learner, _listify
from ember.text.data import ClassificationDataset, LMDataset, TextBlock, TextDataLoaders
from ember.text.models import (
    AWD_LSTM,
    LinearDecoder,
    convert_fastai_awd_lstm,
    get_language_model,
    get_text_classifier,
    match_embeddings,
    read_itos_pickle,
)
from ember.text.tokenize import BOS, PAD, TK_MAJ, TK_UP, Tokenizer

__all__ = [
    "ModelResetter",
    "RNNRegularizer",
    "awd_lstm_lm_split",
    "awd_lstm_clas_split",
    "TextLearner",
    "LMLearner",
    "load_pretrained_wt103",
    "pretrained_wt103_files",
    "language_model_learner",
    "text_classifier_learner",
    "decode_spec_tokens",
]


class ModelResetter(Callback):
    """Clear the model's hidden state before each training and validation phase and after fitting."""

    def _reset(self) -> None:
        if hasattr(self.learn.model, "reset"):
            self.learn.model.reset()

    def before_train(self) -> None:
        self._reset()

    def before_validate(self) -> None:
        self._reset()

    def after_fit(self) -> None:
        self._reset()


class RNNRegularizer(Callback):
    """Activation (AR) and temporal activation (TAR) regularization of an AWD-LSTM, during training.

    Adds ``alpha * mean(dropped_out ** 2)`` (the last layer's output after dropout, read from the
    :class:`~ember.text.models.LinearDecoder`) and ``beta * mean((raw[:, t] - raw[:, t-1]) ** 2)`` (the last
    layer's raw output, read from the :class:`~ember.text.models.AWD_LSTM`) to the loss.
    """

    run_valid = False

    def __init__(self, alpha: float = 2.0, beta: float = 1.0) -> None:
        self.alpha, self.beta = alpha, beta

    def before_fit(self) -> None:
        self._encoders = [m for m in self.learn.model.modules() if isinstance(m, AWD_LSTM)]
        self._decoders = [m for m in self.learn.model.modules() if isinstance(m, LinearDecoder)]
        for m in self._encoders + self._decoders:
            m.keep_outputs = True

    def after_loss(self) -> None:
        extra = None
        if self.alpha and self._decoders and self._decoders[0].last_dropped is not None:
            extra = self.alpha * self._decoders[0].last_dropped.float().pow(2).mean()
        if self.beta and self._encoders and self._encoders[0].last_raw is not None:
            raw = self._encoders[0].last_raw  # (B, T, E)
            if raw.shape[1] > 1:
                tar = self.beta * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
                extra = tar if extra is None else extra + tar
        if extra is not None:
            self.learn.loss_grad = self.learn.loss_grad + extra.to(self.learn.loss_grad.dtype)

    def after_fit(self) -> None:
        for m in self._encoders + self._decoders:
            m.keep_outputs = False
            if isinstance(m, AWD_LSTM):
                m.last_raw = None
            else:
                m.last_dropped = None


def _params(*modules: nn.Module) -> list[nn.Parameter]:
    # dict.fromkeys drops repeats in order: the tied decoder weight is the embedding's.
    return list(dict.fromkeys(p for m in modules for p in m.parameters()))


def awd_lstm_lm_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of a language model: one per LSTM layer, then the embedding with the decoder."""
    enc, dec = model[0], model[1]
    return [_params(rnn) for rnn in enc.rnns] + [_params(enc.encoder, dec)]


def awd_lstm_clas_split(model: nn.Module) -> list[list[nn.Parameter]]:
    """Parameter groups of a classifier: the embedding, one per LSTM layer, then the head (gradual unfreezing
    with ``freeze_to(-2)``, ``freeze_to(-3)`` ... trains the top layers first)."""
    enc = model[0].module
    return [_params(enc.encoder)] + [_params(rnn) for rnn in enc.rnns] + [_params(model[1])]


def _encoder_of(model: nn.Module) -> nn.Module:
    first = model[0]
    return first.module if hasattr(first, "module") and not isinstance(first, AWD_LSTM) else first


def _state_problem(module: nn.Module, state: Any) -> str | None:
    """Why `state` cannot be loaded into `module` (names or shapes that differ), or None; checked before loading,
    so that a refused file changes nothing."""
    if not isinstance(state, dict):
        return f"it holds a {type(state).__name__}, not a state dict"
    own = module.state_dict()
    missing, unexpected = [k for k in own if k not in state], [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} there, {tuple(v.shape)} here"
        for k, v in own.items()
        if k in state and isinstance(state[k], torch.Tensor) and state[k].shape != v.shape
    ]
    problems = [f"missing {missing[:3]}"] * bool(missing) + [f"unexpected {unexpected[:3]}"] * bool(unexpected)
    problems += [f"size mismatch for {'; '.join(shapes[:3])}"] * bool(shapes)
    return "; ".join(problems) or None


class _GatherStreams(GatherPreds):
    """Collect a language model's predictions batch by batch, joined along the time axis (``dim=1``)."""

    def after_pred(self) -> None:
        pred, (yb,) = self.learn.pred, self.learn.yb
        self._preds.append(pred.detach().float().cpu())
        self._targs.append(yb.detach().cpu())
        if self.with_input:
            self._inputs.append(self.learn.xb[0].detach().cpu())
        if self.with_loss:
            loss_func = self.learn.loss_func
            old = loss_func.reduction
            loss_func.reduction = "none"
            try:
                loss = loss_func(pred, yb).detach().float().cpu()
            finally:
                loss_func.reduction = old
            self._losses.append(loss.reshape(yb.shape))

    @staticmethod
    def _join(chunks: list[torch.Tensor]) -> torch.Tensor | None:
        return torch.cat(chunks, dim=1) if chunks else None

    @property
    def preds(self) -> Any:
        return self._join(self._preds)

    @property
    def targs(self) -> Any:
        return self._join(self._targs)

    @property
    def inputs(self) -> Any:
        return self._join(self._inputs)

    @property
    def losses(self) -> torch.Tensor | None:
        return self._join(self._losses)


@register_learner
class TextLearner(Learner):
    """A :class:`~ember.learner.Learner` for RNN text models: resets the hidden state at the right moments, adds
    AR/TAR regularization, saves and loads the encoder, and returns classifier predictions in dataset order.

    It is the classifier's learner: ``predict(text)`` gives ``(label, index, probabilities)`` and
    ``predict_batch(texts)`` the same for many texts. ``learn.export(path)`` writes the weights, the model recipe,
    the tokenizer, the vocabulary and the classes; ``ember.load_learner(path)`` gives back a learner that
    predicts exactly as this one.

    Attributes:
        model_recipe: ``{"factory": "get_language_model" | "get_text_classifier", "kwargs": {...}}`` to rebuild
            the model; taken from a model built by those factories (``None`` for an architecture of the user's).
    """

    model_recipe: dict[str, Any] | None = None

    def __init__(self, dls: TextDataLoaders, model: nn.Module, alpha: float = 2.0, beta: float = 1.0, **kwargs: Any):
        cbs = list(kwargs.pop("cbs", None) or [])
        cbs = [ModelResetter(), *cbs]
        if alpha or beta:
            cbs.append(RNNRegularizer(alpha, beta))
        super().__init__(dls, model, cbs=cbs, **kwargs)
        factory = getattr(model, "_ember_factory", None)
        if factory is not None:
            self.model_recipe = {"factory": factory[0], "kwargs": dict(factory[1])}

    def save_encoder(self, name: str) -> Path:
        """Save the encoder (embedding and LSTMs) to ``<path>/<model_dir>/<name>.pth``, with the vocabulary it was
        trained on (its tokens, so that :meth:`load_encoder` can refuse another vocabulary)."""
        vocab = _token_vocab(self.dls)
        state: dict[str, Any] = {"encoder": _encoder_of(self.model).state_dict()}
        if vocab is not None and hasattr(vocab, "itos"):
            state["vocab"] = list(vocab.itos)
        return atomic_save(state, self.path / self.model_dir / f"{name}.pth")

    def load_encoder(self, name: str) -> TextLearner:
        """Load an encoder saved by :meth:`save_encoder` (e.g. from the fine-tuned language model); returns self.

        The encoder's vocabulary must be these loaders' (the same tokens in the same order): every row of the
        embedding belongs to one token. Files written before the vocabulary was saved with the encoder are checked
        by size only. Nothing is changed when the encoder is refused.

        Raises:
            EmberError: the file is missing or its encoder does not fit (a different vocabulary or size).
        """
        path = Path(name) if str(name).endswith(".pth") else self.path / self.model_dir / f"{name}.pth"
        if not path.is_file():
            raise EmberError(f"No encoder at {path}; save one with learn.save_encoder({Path(name).stem!r}) first.")
        state = safe_load(path, self.dls.device)
        if not isinstance(state, dict) or "encoder" not in state:
            raise EmberError(f"{path} holds no encoder; write one with learn.save_encoder().")
        saved, vocab = state.get("vocab"), _token_vocab(self.dls)
        if saved is not None and vocab is not None and list(saved) != list(vocab.itos):
            first = next((i for i, (a, b) in enumerate(zip(saved, vocab.itos)) if a != b), min(len(saved), len(vocab)))
            where = (
                f"token {first} is {saved[first]!r} there and {vocab.itos[first]!r} here"
                if first < min(len(saved), len(vocab))
                else f"{len(saved)} tokens there, {len(vocab)} here"
            )
            raise EmberError(
                f"The encoder in {path} was trained on another vocabulary ({where}), so its embedding rows belong to "
                "other words. Build the classifier's loaders with the language model's vocabulary "
                "(e.g. TextDataLoaders.from_folder(..., vocab=dls_lm.vocab), or TextBlock(vocab=dls_lm.vocab))."
            )
        encoder = _encoder_of(self.model)
        problem = _state_problem(encoder, state["encoder"])
        if problem is not None:
            raise EmberError(
                f"The encoder in {path} does not fit this model: {problem}. Build the classifier's loaders with the "
                "language model's vocabulary (vocab=dls_lm.vocab) and the same architecture settings."
            )
        encoder.load_state_dict(state["encoder"])
        self.opt = None  # rebuilt on the next fit with the loaded weights
        return self

    def get_preds(
        self, dl: Any = None, *args: Any, reorder: bool = True, ds_idx: int | None = None, **kwargs: Any
    ) -> tuple:
        """As :meth:`Learner.get_preds`; classifier batches (sorted by length) are put back in dataset order.

        On language-model loaders (:class:`~ember.text.data.LMDataset`: `bs` contiguous streams read in batches
        of varying length) the batches are joined along the time axis, stream by stream: predictions
        ``(bs, L, vocab)``, targets and inputs ``(bs, L)``, per-token losses ``(bs, L)``, where ``L`` is the
        number of positions of each stream (``dl.dataset.stream_len``). Row ``s`` is stream ``s`` in order.
        """
        loader = self._preds_loader(dl, ds_idx)
        if isinstance(loader.dataset, LMDataset):
            names = ("with_input", "with_decoded", "with_loss", "act")
            if len(args) > len(names):
                raise ConfigError(f"get_preds takes at most {len(names) + 1} positional arguments.")
            opts = {**dict(zip(names, args)), **kwargs}
            allowed = (*names, "cbs")
            unknown = [k for k in opts if k not in allowed]
            if unknown:
                raise ConfigError(expected("an argument of get_preds", unknown[0], opts[unknown[0]], valid=allowed))
            return self._stream_preds(loader, **opts)
        out = super().get_preds(loader, *args, reorder=reorder, **kwargs)
        ds = loader.dataset
        if not (reorder and isinstance(ds, ClassificationDataset) and len(ds.order)):
            return out
        inv = torch.from_numpy(np.argsort(ds.order))
        return tuple(x[inv] if isinstance(x, torch.Tensor) and len(x) == len(inv) else x for x in out)

    def _stream_preds(
        self,
        loader: Any,
        with_input: bool = False,
        with_decoded: bool = False,
        with_loss: bool = False,
        act: Any = None,
        cbs: Any = None,
    ) -> tuple:
        gather = _GatherStreams(with_input=with_input, with_loss=with_loss)
        self._run_inference(loader, [gather, *_listify(cbs)])
        return self._gathered(gather, with_input, with_decoded, with_loss, act)

    def predict_batch(self, items: Any, *args: Any, **kwargs: Any) -> Any:
        """As :meth:`Learner.predict_batch`, for a list of texts (a single str is refused, not read as letters)."""
        if isinstance(items, (str, bytes)):
            raise DataError(
                f"Expected `items` to be a list of texts; received a single str ({items[:40]!r}). Use "
                "learn.predict(text) for one text, or wrap it in a list."
            )
        return super().predict_batch(items, *args, **kwargs)

    def _decode_targets(self, decoded: torch.Tensor) -> list[Any]:
        """Class indices ``(N,)`` -> class names; multi-label flags ``(N, C)`` -> lists of class names."""
        classes = getattr(self.dls, "classes", None)
        if not classes:
            return super()._decode_targets(decoded)
        if decoded.ndim > 1:
            return [[c for c, on in zip(classes, row.tolist()) if on] for row in decoded]
        return [classes[int(i)] for i in decoded.tolist()]


def decode_spec_tokens(tokens: Sequence[str]) -> list[str]:
    """Apply the case marks and drop ``xxbos``: ``["xxmaj", "hello", "xxup", "you"]`` -> ``["Hello", "YOU"]``."""
    out: list[str] = []
    mark = None
    for t in tokens:
        if t in (TK_MAJ, TK_UP):
            mark = t
            continue
        if t == BOS:
            continue
        out.append(t.capitalize() if mark == TK_MAJ else t.upper() if mark == TK_UP else t)
        mark = None
    return out


@register_learner
class LMLearner(TextLearner):
    """A language-model learner that can write text (:meth:`predict`)."""

    def predict(
        self,
        text: str,
        n_words: int = 20,
        temperature: float = 1.0,
        no_unk: bool = True,
        min_p: float | None = None,
        decoder: Any = decode_spec_tokens,
        only_last_word: bool = False,
    ) -> str:
        """Continue `text` with `n_words` tokens sampled from the model.

        Args:
            temperature: divides the logits; lower is more conservative, ``0`` always picks the likeliest word.
            no_unk: never write ``xxunk``.
            min_p: leave out words less likely than this (when no word reaches it, a warning says so and that
                word is drawn from them all).
            decoder: tokens -> display tokens (default: apply the case marks).

        Returns:
            The text followed by the generated words.

        Raises:
            ConfigError: `n_words`, `temperature` (negative) or `min_p` (outside [0, 1]) is invalid.
        """
        if isinstance(n_words, bool) or not isinstance(n_words, int) or n_words < 0:
            raise ConfigError(expected("an int >= 0", "n_words", n_words))
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
            raise ConfigError(expected("a number >= 0 (0: always the likeliest word)", "temperature", temperature))
        if min_p is not None and (
            isinstance(min_p, bool) or not isinstance(min_p, (int, float)) or not 0 <= min_p <= 1
        ):
            raise ConfigError(expected("None or a probability in [0, 1]", "min_p", min_p))
        if isinstance(text, (list, tuple)) or not isinstance(text, str):
            raise DataError(expected("a text (str) to continue", "text", text))
        vocab = self.dls.vocab
        tok = getattr(self.dls, "tokenizer", None) or Tokenizer()
        ids = vocab.numericalize(tok([text])[0]).to(self.dls.device)
        self.model.eval()
        self.model.reset()
        new_ids: list[int] = []
        warned = False
        # never written: padding and the fillers that round the vocabulary up to a multiple of 8 (``xxunk``
        # too with `no_unk`); an undertrained model may still give them some probability
        banned = [i for i, t in enumerate(vocab.itos) if t == PAD or t.startswith("xxfake")]
        if no_unk:
            banned.append(vocab.unk_idx)
        banned_t = torch.tensor(banned, dtype=torch.long, device=self.dls.device)
        with torch.no_grad():
            logits = self.model(ids[None])[0, -1]  # (V,)
            for _ in range(n_words):
                probs = torch.softmax(logits.float() / max(temperature, 1e-8), dim=-1)
                probs[banned_t] = 0.0
                if min_p is not None:
                    kept = probs.masked_fill(probs < min_p, 0.0)
                    if kept.sum() > 0:
                        probs = kept
                    elif not warned:  # as fastai: sample from every word rather than fail
                        warnings.warn(
                            f"No word is as likely as min_p={min_p}; sampling without min_p for those words.",
                            stacklevel=2,
                        )
                        warned = True
                nxt = int(probs.argmax()) if temperature == 0 else int(torch.multinomial(probs, 1))
                new_ids.append(nxt)
                logits = self.model(torch.tensor([[nxt]], device=self.dls.device))[0, -1]
        self.model.reset()
        toks = [vocab.itos[i] for i in new_ids]
        toks = toks if only_last_word else [*tok([text])[0], *toks]
        inner = getattr(tok, "tok", None)
        if hasattr(inner, "decode"):
            # Subword pieces join without spaces ("▁the ▁cat" -> "the cat"); the case marks are then words of the
            # text ("xxmaj the" -> "The"), applied after the pieces are joined.
            return " ".join(decoder(inner.decode([t for t in toks if t != BOS]).split()))
        return " ".join(decoder(toks))


def pretrained_wt103_files(fnames: Sequence[str | os.PathLike] | None = None) -> tuple[Path, Path]:
    """The weights (.pth) and vocabulary (.pkl) of the public WikiText-103 model: `fnames` when given, else
    the copy under ``ember_home()/data/wt103-fwd``, else downloaded there.

    Call it before reading a corpus to learn early whether the pretrained weights can be had.

    Raises:
        ConfigError: `fnames` is not two existing files.
        EmberError: the weights are neither cached nor downloadable (its ``__cause__`` is the DownloadError).
    """
    if fnames is not None:
        files = tuple(Path(f) for f in fnames)
        if len(files) != 2 or not all(f.is_file() for f in files):
            raise ConfigError(
                expected("two existing files (weights .pth, vocabulary .pkl)", "pretrained_fnames", fnames)
            )
        return files  # type: ignore[return-value]
    from ember.data.external import URLs, ember_home, untar_data

    folder = ember_home() / "data" / "wt103-fwd"
    if not folder.is_dir():
        try:
            folder = untar_data(URLs.WT103_FWD)
        except DownloadError as e:
            raise EmberError(
                f"The pretrained WikiText-103 weights are not available offline ({e}). Either pass "
                "pretrained=False to train from scratch, or place the unpacked archive "
                f"{URLs.WT103_FWD} (a .pth and a .pkl file) in {folder}, or pass "
                "pretrained_fnames=(weights.pth, itos.pkl)."
            ) from e
    pth, pkl = sorted(folder.rglob("*.pth")), sorted(folder.rglob("*.pkl"))
    if not pth or not pkl:
        raise EmberError(f"Expected a .pth weights file and a .pkl vocabulary file in {folder}.")
    return pth[0], pkl[0]


def load_pretrained_wt103(
    new_itos: Sequence[str], fnames: Sequence[str | os.PathLike] | None = None
) -> dict[str, torch.Tensor]:
    """The WikiText-103 AWD-LSTM language model's weights in ember's layout, re-indexed to `new_itos`."""
    wgts_file, itos_file = pretrained_wt103_files(fnames)
    state = torch.load(wgts_file, map_location="cpu", weights_only=True)
    return match_embeddings(convert_fastai_awd_lstm(state), read_itos_pickle(itos_file), new_itos)


def _load_pretrained(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load the WikiText-103 weights into `module`, or say which setting makes them not fit."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        lines = [line.strip() for line in str(e).splitlines()]
        first = next((line for line in lines if "size mismatch" in line or "key(s)" in line), lines[0])
        raise ConfigError(
            f"The pretrained WikiText-103 weights do not fit this model ({first}). They are an AWD-LSTM with the "
            "default sizes (emb_sz=400, n_hid=1152, n_layers=3): leave `config` at its defaults, or pass "
            "pretrained=False."
        ) from e


def _text_block(dls: Any) -> Any:
    """The :class:`~ember.text.data.TextBlock` input of loaders built by a ``DataBlock``, or None."""
    blocks = getattr(dls, "blocks", None) or []
    if getattr(dls, "n_inp", 1) == 1 and blocks and isinstance(blocks[0], TextBlock):
        return blocks[0]
    return None


def _token_vocab(dls: Any) -> Any:
    """The token vocabulary of text loaders: ``TextDataLoaders.vocab``, or a DataBlock's TextBlock's."""
    if isinstance(dls, TextDataLoaders):
        return dls.vocab
    block = _text_block(dls)
    return block.vocab if block is not None else None


def _multi_label(dls: Any) -> bool:
    if isinstance(dls, TextDataLoaders):
        return dls.multi_label
    targets = getattr(dls, "target_blocks", None) or []
    return bool(targets) and getattr(targets[0], "kind", None) == "multicategory"


def _check_dls(dls: Any, is_lm: bool) -> None:
    if not is_lm and not isinstance(dls, TextDataLoaders) and _text_block(dls) is not None:
        if _token_vocab(dls) is None:
            raise ConfigError("The loaders' TextBlock has no vocabulary; build them with DataBlock.dataloaders().")
        return
    if not isinstance(dls, TextDataLoaders):
        what = (
            "TextDataLoaders (is_lm=True)" if is_lm else "TextDataLoaders, or DataBlock loaders with a TextBlock input"
        )
        raise ConfigError(expected(what, "dls", type(dls).__name__))
    if dls.is_lm != is_lm:
        what = "language-model loaders (is_lm=True)" if is_lm else "classification loaders (is_lm=False)"
        raise ConfigError(f"Expected {what}; received the other kind of TextDataLoaders.")


def language_model_learner(
    dls: TextDataLoaders,
    arch: type | str = AWD_LSTM,
    config: dict[str, Any] | None = None,
    drop_mult: float = 1.0,
    pretrained: bool = True,
    pretrained_fnames: Sequence[str | os.PathLike] | None = None,
    metrics: Any = None,
    cuda_graphs: bool = True,
    **kwargs: Any,
) -> LMLearner:
    """A language-model learner on `dls`, starting from the WikiText-103 weights when `pretrained`.

    The learner's ``model_recipe`` names the factory and its arguments, so ``learn.export(path)`` writes a file
    that ``ember.load_learner`` rebuilds (an `arch` of your own is not named: pass ``model=`` when loading).

    Args:
        arch: the encoder class, or its name in :data:`~ember.text.models.TEXT_ARCHS`.
        config: overrides of :data:`~ember.text.models.awd_lstm_lm_config`.
        drop_mult: multiplies every dropout probability.
        pretrained_fnames: ``(weights.pth, itos.pkl)`` in fastai's layout, instead of the download.
        metrics: default ``[accuracy, Perplexity()]``.
        cuda_graphs: on a GPU, train the AWD-LSTM's recurrent layers through CUDA graphs (recorded per batch
            length, see :mod:`ember.text.graphs`); the results are the same, the steps faster. Set
            ``learn.model[0].cuda_graphs`` to change it later.
        kwargs: passed to :class:`TextLearner` (``alpha``, ``beta``, ``lr``, ``wd``, ``path`` ...).

    Raises:
        EmberError: `pretrained` and the weights can be neither found nor downloaded.
    """
    from ember.metrics import Perplexity, accuracy

    _check_dls(dls, is_lm=True)
    model = get_language_model(len(dls.vocab), config=config, drop_mult=drop_mult, arch=arch)
    if hasattr(model[0], "cuda_graphs"):
        model[0].cuda_graphs = bool(cuda_graphs)
    if pretrained:
        _load_pretrained(model, load_pretrained_wt103(dls.vocab.itos, pretrained_fnames))
    metrics = [accuracy, Perplexity()] if metrics is None else metrics
    learn = LMLearner(dls, model, splitter=awd_lstm_lm_split, metrics=metrics, **kwargs)
    if pretrained:
        learn.freeze()
    return learn


def text_classifier_learner(
    dls: TextDataLoaders,
    arch: type | str = AWD_LSTM,
    seq_len: int = 72,
    config: dict[str, Any] | None = None,
    drop_mult: float = 0.5,
    max_len: int | None = 72 * 20,
    lin_ftrs: Sequence[int] | None = None,
    ps: Sequence[float] | None = None,
    pretrained: bool = True,
    pretrained_fnames: Sequence[str | os.PathLike] | None = None,
    metrics: Any = None,
    n_out: int | None = None,
    **kwargs: Any,
) -> TextLearner:
    """A classifier learner on `dls`: an AWD-LSTM encoder reading `seq_len` tokens at a time, a pooling head.

    With `pretrained`, the encoder starts from the WikiText-103 weights; usually you then
    :meth:`~TextLearner.load_encoder` the one fine-tuned on your corpus. The model starts frozen to the head.

    Exportable like :func:`language_model_learner`'s; the loaded learner's ``predict(text)`` gives
    ``(label, index, probabilities)``.

    `dls` are classification :class:`~ember.text.data.TextDataLoaders`, or loaders built by a ``DataBlock`` whose
    input is a :class:`~ember.text.data.TextBlock` (the token vocabulary is the block's; the targets a
    ``CategoryBlock`` or a ``MultiCategoryBlock``).

    Args:
        arch: the encoder class, or its name in :data:`~ember.text.models.TEXT_ARCHS`.
        drop_mult: multiplies every dropout probability.
        max_len: the head pools over the last `max_len` tokens of each document (whole chunks).
        metrics: default ``accuracy`` (``accuracy_multi`` for multi-label targets).
        n_out: number of classes (default: ``len(dls.classes)``, or ``dls.c`` for DataBlock loaders).
    """
    from ember.metrics import accuracy, accuracy_multi

    _check_dls(dls, is_lm=False)
    vocab = _token_vocab(dls)
    if n_out is None:
        n_out = len(dls.classes) if isinstance(dls, TextDataLoaders) else dls.c
    if not n_out:
        raise ConfigError("Cannot tell the number of classes: these loaders have no `classes`; pass `n_out=`.")
    model = get_text_classifier(
        len(vocab), n_out, seq_len, config, drop_mult, lin_ftrs, ps, vocab.pad_idx, max_len, arch
    )
    if pretrained:
        state = load_pretrained_wt103(vocab.itos, pretrained_fnames)
        _load_pretrained(model[0].module, {k[2:]: v for k, v in state.items() if k.startswith("0.")})
    if metrics is None:
        metrics = accuracy_multi if _multi_label(dls) else accuracy
    learn = TextLearner(dls, model, splitter=awd_lstm_clas_split, metrics=metrics, **kwargs)
    learn.freeze()
    return learn
