"""SentencePiece subword tokenization (an optional extra): :class:`SubwordTokenizer`, trained on the texts."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import register_recipe
from ember.text.cache_keys import _cache_key
from ember.text.rules import SPECIAL_TOKENS, UNK
from ember.text.tokenizers import _check_text, _untrained_error

__all__ = ["SubwordTokenizer"]


def _import_sentencepiece() -> Any:
    try:
        import sentencepiece
    except ImportError as e:
        raise ConfigError(
            "SubwordTokenizer needs the sentencepiece package, which is not installed. Run "
            "`pip install 'ember[sentencepiece]'`, or use the default WordTokenizer()."
        ) from e
    return sentencepiece


_SP_MODEL_TYPES = ("unigram", "bpe", "char", "word")


@register_recipe()
class SubwordTokenizer:
    """SentencePiece subwords (an optional extra: ``pip install 'ember[sentencepiece]'``), learned from the texts.

    :meth:`setup` trains a SentencePiece model on the training texts; ember's special tokens are declared to it as
    user-defined symbols, so ``xxmaj``, ``xxbos`` ... always come out as single pieces. Use it as the word tokenizer
    of a :class:`Tokenizer`; ``TextDataLoaders`` and ``TextBlock`` train it on the training split, before any text is
    tokenized. Pieces carry SentencePiece's ``▁`` where a space was, so :meth:`decode` gives the text back.

    Export writes the trained model into the recipe as base64 text (4/3 of the model file: about 320 KB for a small
    vocabulary, most of it SentencePiece's Unicode normalization table), so a loaded learner tokenizes exactly as the
    one that was exported.

    >>> tok = SubwordTokenizer(vocab_sz=200).setup(train_texts)  # doctest: +SKIP
    >>> tok(["unbelievable"])  # doctest: +SKIP
    [['▁un', 'believ', 'able']]

    Args:
        vocab_sz: the most pieces in the model (fewer when the texts do not support that many). ``None``: a quarter
            of the number of distinct words, at most 30,000 and at least the characters plus the special tokens.
        model_type: SentencePiece's algorithm: ``"unigram"``, ``"bpe"``, ``"char"`` or ``"word"``.
        char_coverage: the share of characters the model covers (the rarest others become ``xxunk``). ``None``:
            0.99999, or 0.9995 when the texts hold more than 1,000 distinct characters (e.g. Chinese, Japanese).
        max_sentence_len: training reads each line of a text as a sentence; longer lines are cut to this many
            bytes.
        special_toks: the tokens kept whole (default: ember's :data:`SPECIAL_TOKENS`).
        cache_dir: keep trained models there, keyed by the texts and settings; training again on the same texts
            reads the model back instead. ``None``: train in memory, write nothing.
        sp_model: an already trained model: its bytes or the path of a ``.model`` file (no :meth:`setup` needed).

    Raises:
        ConfigError: sentencepiece is not installed, or an argument is invalid.
    """

    name = "subword"

    def __init__(
        self,
        vocab_sz: int | None = None,
        model_type: str = "unigram",
        char_coverage: float | None = None,
        max_sentence_len: int = 20000,
        special_toks: Sequence[str] | None = None,
        cache_dir: str | os.PathLike | None = None,
        sp_model: bytes | str | os.PathLike | None = None,
    ) -> None:
        self._spm = _import_sentencepiece()
        if vocab_sz is not None and (isinstance(vocab_sz, bool) or not isinstance(vocab_sz, int) or vocab_sz < 1):
            raise ConfigError(expected("None or an int >= 1", "vocab_sz", vocab_sz))
        if model_type not in _SP_MODEL_TYPES:
            raise ConfigError(expected("a SentencePiece model type", "model_type", model_type, valid=_SP_MODEL_TYPES))
        if char_coverage is not None and not (isinstance(char_coverage, (int, float)) and 0 < char_coverage <= 1):
            raise ConfigError(expected("None or a number in (0, 1]", "char_coverage", char_coverage))
        if isinstance(max_sentence_len, bool) or not isinstance(max_sentence_len, int) or max_sentence_len < 16:
            raise ConfigError(expected("an int >= 16 (bytes)", "max_sentence_len", max_sentence_len))
        specials = tuple(SPECIAL_TOKENS if special_toks is None else special_toks)
        if not all(isinstance(t, str) and t and not t.isspace() for t in specials):
            raise ConfigError(expected("a list of non-empty str", "special_toks", special_toks))
        self.vocab_sz, self.model_type, self.char_coverage = vocab_sz, model_type, char_coverage
        self.max_sentence_len, self.special_toks = max_sentence_len, specials
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.sp_model: bytes | None = None  # the trained model (a serialized SentencePiece ModelProto)
        self._proc: Any = None
        self._pieces: list[str] = []
        self._digest = ""
        if sp_model is not None:
            self._load(_read_sp_model(sp_model))

    @property
    def needs_setup(self) -> bool:
        """Whether the model still has to be trained (:meth:`setup`)."""
        return self.sp_model is None

    @property
    def pieces(self) -> list[str]:
        """Every piece of the trained model, in SentencePiece id order (the unknown piece written ``xxunk``)."""
        return list(self._pieces)

    def _load(self, model: bytes) -> None:
        try:
            proc = self._spm.SentencePieceProcessor(model_proto=model)
        except (RuntimeError, TypeError) as e:
            raise DataError(f"The SentencePiece model could not be read ({e}); give the bytes of a .model file.") from e
        pieces = [proc.id_to_piece(i) for i in range(proc.get_piece_size())]
        # SentencePiece's own unknown piece ("<unk>") becomes ember's, so that a Vocab maps it to xxunk.
        if proc.unk_id() >= 0:
            pieces[proc.unk_id()] = UNK
        self.sp_model, self._proc, self._pieces = bytes(model), proc, pieces
        self._digest = hashlib.blake2b(self.sp_model, digest_size=16).hexdigest()

    def _train_options(self, texts: list[str]) -> dict[str, Any]:
        chars: set[str] = set()
        for t in texts:
            chars.update(t)
        coverage = self.char_coverage
        if coverage is None:
            coverage = 0.9995 if len(chars) > 1000 else 0.99999
        vocab_sz = self.vocab_sz
        if vocab_sz is None:
            words: set[str] = set()
            for t in texts:
                words.update(t.split())
            floor = len(chars) + len(self.special_toks) + 1  # every character, the special tokens, the unknown piece
            vocab_sz = max(floor, min(30000, len(words) // 4))
            vocab_sz += -vocab_sz % 8
        return {
            "model_type": self.model_type,
            "vocab_size": vocab_sz,
            "character_coverage": float(coverage),
            "max_sentence_length": self.max_sentence_len,
            "user_defined_symbols": list(self.special_toks),
            # vocab_size is the most pieces: a small corpus gives fewer instead of failing.
            "hard_vocab_limit": False,
            # Only the unknown piece: ember adds xxbos/xxeos itself and pads with xxpad.
            "unk_id": 0,
            "bos_id": -1,
            "eos_id": -1,
            "pad_id": -1,
        }

    def _sentences(self, texts: list[str]) -> Iterable[str]:
        """Each non-empty line of each text, cut to `max_sentence_len` bytes (SentencePiece skips longer ones)."""
        # A UTF-8 character takes at most 4 bytes, so chunks of max_sentence_len // 4 characters always fit.
        limit, chunk = self.max_sentence_len, max(1, self.max_sentence_len // 4)
        for text in texts:
            for line in text.splitlines():
                if not line.strip():
                    continue
                if len(line) <= chunk or len(line.encode("utf-8")) <= limit:
                    yield line
                else:
                    yield from (line[i : i + chunk] for i in range(0, len(line), chunk))

    def setup(self, texts: Iterable[str]) -> SubwordTokenizer:
        """Train the model on `texts` (the training split) unless it is already trained; returns self.

        Raises:
            DataError: the texts are not strings, are empty, or cannot support `vocab_sz` (the message says
                what to change).
        """
        if not self.needs_setup:
            return self
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        options = self._train_options(texts)
        file = None
        if self.cache_dir is not None:
            file = self.cache_dir / f"subword-{_cache_key('subword', texts, options)}.model"
            if file.is_file():
                self._load(file.read_bytes())
                return self
        sentences = list(self._sentences(texts))
        if not sentences:
            raise DataError("SubwordTokenizer.setup received no text to learn from; give it the training texts.")
        import io

        out = io.BytesIO()
        try:
            self._spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=out, minloglevel=2, **options
            )
        except RuntimeError as e:
            raise DataError(
                f"SentencePiece could not train on these texts with vocab_sz={options['vocab_size']} "
                f"(model_type={self.model_type!r}): {e}. A vocabulary must hold at least every kept character and "
                "the special tokens: raise `vocab_sz`, or lower `char_coverage`."
            ) from e
        self._load(out.getvalue())
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            tmp = file.with_name(f".{file.name}.tmp-{os.getpid()}")
            tmp.write_bytes(self.sp_model)
            os.replace(tmp, file)  # never a half-written model under the final name
        return self

    def __call__(self, texts: Iterable[str]) -> list[list[str]]:
        if self._proc is None:
            raise _untrained_error()
        pieces = self._pieces
        # Ids, then pieces: unknown characters come out as xxunk rather than as their own surface strings.
        return [list(map(pieces.__getitem__, ids)) for ids in self._proc.encode(list(texts))]

    def decode(self, tokens: Sequence[str]) -> str:
        """Pieces -> text: the inverse of calling the tokenizer (up to SentencePiece's normalization)."""
        if self._proc is None:
            raise _untrained_error()
        return self._proc.decode_pieces(list(tokens))

    def settings(self) -> dict[str, Any]:
        """What identifies this tokenizer's output (part of the cache key): the trained model's digest."""
        if self.sp_model is not None:
            return {"name": self.name, "model": self._digest}
        return {"name": self.name, "untrained": self.to_recipe()}

    def __repr__(self) -> str:
        state = f"{len(self._pieces)} pieces" if self.sp_model is not None else "not trained"
        return f"SubwordTokenizer(vocab_sz={self.vocab_sz}, model_type={self.model_type!r}; {state})"

    # The SentencePiece processor is rebuilt from the model bytes in worker processes rather than pickled.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.to_recipe(), "cache_dir": str(self.cache_dir) if self.cache_dir is not None else None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        other = type(self).from_recipe(state)
        self.__dict__.update(other.__dict__)
        self.cache_dir = Path(state["cache_dir"]) if state.get("cache_dir") else None

    def to_recipe(self) -> dict[str, Any]:
        """The settings and the trained model as base64 text (``None`` before :meth:`setup`)."""
        model = base64.b64encode(self.sp_model).decode("ascii") if self.sp_model is not None else None
        return {
            "vocab_sz": self.vocab_sz,
            "model_type": self.model_type,
            "char_coverage": self.char_coverage,
            "max_sentence_len": self.max_sentence_len,
            "special_toks": list(self.special_toks),
            "sp_model": model,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> SubwordTokenizer:
        """Rebuild what :meth:`to_recipe` wrote.

        Raises:
            ConfigError: sentencepiece is not installed (the message says how to install it).
            ExportError: the model text is not valid base64.
        """
        model = data.get("sp_model")
        if model is not None:
            try:
                model = base64.b64decode(model.encode("ascii"), validate=True)
            except (AttributeError, UnicodeEncodeError, binascii.Error) as e:
                raise ExportError(f"The exported SubwordTokenizer's model is not valid base64 text ({e}).") from e
        return cls(
            vocab_sz=data.get("vocab_sz"),
            model_type=data.get("model_type", "unigram"),
            char_coverage=data.get("char_coverage"),
            max_sentence_len=data.get("max_sentence_len", 20000),
            special_toks=data.get("special_toks"),
            sp_model=model,
        )


def _read_sp_model(model: bytes | str | os.PathLike) -> bytes:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise DataError(f"Expected `sp_model` to be a SentencePiece .model file; {path} does not exist.")
        return path.read_bytes()
    raise ConfigError(expected("the bytes or the path of a SentencePiece model", "sp_model", type(model).__name__))
