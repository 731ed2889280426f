"""TextBlock: texts (strings, text files or DataFrame columns) as the input of a DataBlock (classification)."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.core.recipe import dump, load, register_recipe
from ember.text.inputs import _check_vocab
from ember.text.tokenize import FLD, Tokenizer, _build_vocab, read_text_files
from ember.text.vocab import Vocab

__all__ = ["TextBlock"]


def _text_block_base() -> type:
    from ember.data.block import TransformBlock

    return TransformBlock


def _text_key(text: str) -> bytes:
    """A 16-byte digest standing for a text in a cache, so that the cache does not hold the texts themselves."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@register_recipe()
class TextBlock(_text_block_base()):
    """Texts (strings, or paths of text files) as a DataBlock input: token ids, padded at the start per batch.

    :meth:`setup` tokenizes the training texts (on every core) and builds the vocabulary, unless one is given, and
    keeps their token ids (keyed by a digest of each text, not the text); any other text (validation, prediction)
    is tokenized when encoded and not kept (the ``Datasets`` cache keeps the validation set's), so a deployed
    model's memory does not grow with its requests.
    For language models, and for length-sorted batches, use :class:`TextDataLoaders`.

    Args:
        vocab: a vocabulary to use (e.g. the language model's); ``None`` builds one from the training texts.
        tok: the tokenizer (default ``Tokenizer()``).
        min_freq: least count of a word in the built vocabulary.
        max_vocab: most words in the built vocabulary.
        max_len: keep at most the last `max_len` tokens of a text.
        text_cols: read the text from these column(s) of each item (a DataFrame row); several are joined, each
            preceded by ``xxfld <n>``, as :func:`~ember.text.tokenize.tokenize_df` does. ``None``: items are texts.

    Raises:
        ConfigError: `vocab` lacks the special tokens ``xxunk``/``xxpad``.
    """

    kind = "text"

    def __init__(
        self,
        vocab: Vocab | None = None,
        tok: Tokenizer | None = None,
        min_freq: int = 3,
        max_vocab: int = 60000,
        max_len: int | None = None,
        text_cols: str | Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        if vocab is not None:
            _check_vocab(vocab)
        self.vocab, self.tok = vocab, tok if tok is not None else Tokenizer()
        self.min_freq, self.max_vocab, self.max_len = min_freq, max_vocab, max_len
        if text_cols is not None and not isinstance(text_cols, str):
            text_cols = list(text_cols)
            if not text_cols or not all(isinstance(c, str) for c in text_cols):
                raise ConfigError(expected("a column name or a non-empty list of them", "text_cols", text_cols))
        self.text_cols = text_cols
        self._cache: dict[str, torch.Tensor] = {}

    @classmethod
    def from_df(cls, text_cols: str | Sequence[str] = "text", **kwargs: Any) -> TextBlock:
        """A block for texts in DataFrame column(s): it reads `text_cols` from each row itself (several columns are
        joined with ``xxfld`` marks), so the DataBlock needs no ``get_x``; a ``get_x`` that gives the text works too.
        """
        return cls(text_cols=text_cols, **kwargs)

    @classmethod
    def from_folder(cls, path: str | os.PathLike | None = None, **kwargs: Any) -> TextBlock:
        """A block for text files (items are paths; ``get_items`` lists the ``.txt`` files)."""
        block = cls(**kwargs)
        block.path = path
        return block

    def _text(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (Path, os.PathLike)):
            return read_text_files([value])[0]
        if self.text_cols is not None and hasattr(value, "__getitem__") and not isinstance(value, (list, tuple)):
            cols = [self.text_cols] if isinstance(self.text_cols, str) else self.text_cols
            parts = []
            for c in cols:
                try:
                    part = value[c]
                except (KeyError, IndexError, TypeError) as e:
                    raise DataError(
                        f"TextBlock reads the column {c!r} (text_cols={self.text_cols!r}), which this item lacks; "
                        f"received {type(value).__name__}: {value!r:.80}"
                    ) from e
                if part is None or (isinstance(part, float) and math.isnan(part)):
                    raise DataError(f"The column {c!r} has a missing text in item {value!r:.80}; fill or drop it.")
                parts.append(str(part))
            if len(parts) == 1:
                return parts[0]
            return " ".join(f"{FLD} {i + 1} {p}" for i, p in enumerate(parts))
        hint = "" if self.text_cols is not None else " (for DataFrame rows use TextBlock.from_df(text_cols))"
        raise DataError(
            f"Expected a text (str) or a text file path{hint}; received {type(value).__name__}: {value!r:.60}"
        )

    def setup(self, train_values: Sequence[Any]) -> None:
        from ember.text.tokenize import tokenize_texts

        texts = [self._text(v) for v in train_values]
        if self.vocab is None and getattr(self.tok, "needs_setup", False):
            self.tok.setup(texts)  # a subword model learns its pieces from the training texts only
        tokens = tokenize_texts(texts, tok=self.tok)
        if self.vocab is None:
            self.vocab = _build_vocab(tokens, self.tok, min_freq=self.min_freq, max_vocab=self.max_vocab)
        self._cache = {_text_key(text): self._ids(toks) for text, toks in zip(texts, tokens)}

    def _ids(self, toks: list[str]) -> torch.Tensor:
        ids = self.vocab.numericalize(toks)
        return ids[-self.max_len :] if self.max_len is not None else ids

    def encode(self, value: Any) -> torch.Tensor:
        if self.vocab is None:
            raise ConfigError("TextBlock has no vocabulary yet: it is built by setup() on the training texts.")
        text = self._text(value)
        ids = self._cache.get(_text_key(text))
        return ids if ids is not None else self._ids(self.tok([text])[0])

    def collate(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Pad at the start to the longest text of the batch: ``(B, T)``."""
        width = max(max(len(x) for x in xs), 1)
        out = torch.full((len(xs), width), self.vocab.pad_idx, dtype=torch.long)
        for i, x in enumerate(xs):
            if len(x):
                out[i, width - len(x) :] = x
        return out

    def decode(self, x: torch.Tensor) -> str:
        return self.vocab.textify([t for t in x.tolist() if t != self.vocab.pad_idx])

    def to_recipe(self) -> dict[str, Any]:
        return {
            "vocab": self.vocab.itos if self.vocab is not None else None,
            "min_freq": self.min_freq,
            "max_vocab": self.max_vocab,
            "max_len": self.max_len,
            "tok": dump(self.tok),
            "text_cols": self.text_cols,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> TextBlock:
        vocab = Vocab(data["vocab"]) if data.get("vocab") else None
        if data.get("tok"):
            tok = load(data["tok"])
        else:  # the earlier layout: default rules, only the xxbos/xxeos settings written
            tok = Tokenizer(add_bos=data.get("add_bos", True), add_eos=data.get("add_eos", False))
        return cls(vocab, tok, data["min_freq"], data["max_vocab"], data.get("max_len"), data.get("text_cols"))
