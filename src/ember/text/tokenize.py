"""Tokenizing many texts: on every core, from DataFrames and folders, and into flat corpora cached on disk.

:func:`tokenize_texts` runs a :class:`~ember.text.tokenizers.Tokenizer` in worker processes when there is enough
text to pay for them; :func:`tokenize_corpus` tokenizes and numericalizes texts (or text files) into a
:class:`TokenizedCorpus` and keeps it on disk under a key of the inputs and settings.

The special tokens and preprocessing rules are in :mod:`ember.text.rules`, the tokenizers in
:mod:`ember.text.tokenizers` and :mod:`ember.text.subword`, the cache keys in :mod:`ember.text.cache_keys`; every
name stays importable from here.

>>> Tokenizer()(["Hello WORLD, it's grrrreat!"])
[['xxbos', 'xxmaj', 'hello', 'xxup', 'world', ',', 'it', "'s", 'g', 'xxrep', '4', 'r', 'eat', '!']]
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ember.core.errors import ConfigError, DataError, expected
from ember.text.cache_keys import (
    _cache_key,
    _callable_id,
    _const_repr,  # noqa: F401  (kept importable from here)
    _describe,
)
from ember.text.rules import (
    BOS,
    DEFAULT_RULES,
    EOS,
    FLD,
    PAD,
    RULES,
    SPECIAL_TOKENS,
    TK_MAJ,
    TK_REP,
    TK_UP,
    TK_WREP,
    UNK,
    _patterns,
    fix_html,
    lowercase,
    replace_all_caps,
    replace_maj,
    replace_rep,
    replace_wrep,
    rm_useless_spaces,
    spec_add_spaces,
)
from ember.text.subword import SubwordTokenizer
from ember.text.tokenizers import SpacyTokenizer, Tokenizer, WordTokenizer, _check_texts

__all__ = [
    "UNK",
    "PAD",
    "BOS",
    "EOS",
    "FLD",
    "TK_REP",
    "TK_WREP",
    "TK_UP",
    "TK_MAJ",
    "SPECIAL_TOKENS",
    "fix_html",
    "replace_rep",
    "replace_wrep",
    "spec_add_spaces",
    "rm_useless_spaces",
    "replace_all_caps",
    "replace_maj",
    "lowercase",
    "DEFAULT_RULES",
    "RULES",
    "WordTokenizer",
    "Tokenizer",
    "SpacyTokenizer",
    "SubwordTokenizer",
    "tokenize_texts",
    "tokenize_df",
    "read_text_files",
    "tokenize_folder",
    "TokenizedCorpus",
    "tokenize_corpus",
]

# Texts above this many characters in all are tokenized by worker processes; below it the pool costs more
# than it saves.
_PARALLEL_MIN_CHARS = 2_000_000


# Joins a text's tokens in a worker: one string per text pickles far faster than a list of strings.
_SEP = "\x00"


def _tokenize_joined(tok: Tokenizer, texts: list[str]) -> tuple[list[str], list[int]]:
    """Worker body: each text's tokens joined by ``\\x00``, and their numbers (to check the split)."""
    out = tok(texts)
    return [_SEP.join(toks) for toks in out], [len(toks) for toks in out]


def _picklable(obj: Any) -> bool:
    import pickle

    try:
        pickle.dumps(obj)  # only to hand the tokenizer to the worker processes; nothing is stored
    except Exception:
        return False
    return True


def tokenize_texts(texts: Sequence[str], tok: Tokenizer | None = None, n_workers: int | None = None) -> list[list[str]]:
    """Tokenize many texts, on every core when there is enough text to pay for the worker processes.

    Args:
        texts: the texts.
        tok: a :class:`Tokenizer` (default: ``Tokenizer()``, the fast word tokenizer with the default rules).
        n_workers: worker processes; ``None`` uses every core, ``0`` or ``1`` tokenizes in this process.

    Returns:
        One list of tokens per text, in order.
    """
    _check_texts(texts)
    tok = tok if tok is not None else Tokenizer()
    texts = list(texts)
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0):
        raise ConfigError(expected("None or an int >= 0", "n_workers", n_workers))
    n_workers = (os.cpu_count() or 1) if n_workers is None else n_workers
    total = sum(len(t) for t in texts if isinstance(t, str))
    if n_workers <= 1 or total < _PARALLEL_MIN_CHARS or len(texts) < 2:
        return tok(texts)
    if not _picklable(tok):
        warnings.warn(
            f"The tokenizer {tok!r} cannot be sent to worker processes (it is not picklable: a lambda or a nested "
            "function?), so the texts are tokenized in this process. Define its functions at the top level of a "
            "module to use every core, or pass n_workers=0 to silence this warning.",
            stacklevel=2,
        )
        return tok(texts)
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    _patterns()  # built once here, inherited by forked workers
    # Chunks of similar total length, a few per worker so that uneven texts still balance.
    n_chunks = min(len(texts), n_workers * 4)
    bounds = np.linspace(0, len(texts), n_chunks + 1).astype(int)
    chunks = [texts[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    out: list[list[str]] = []
    with ProcessPoolExecutor(max_workers=n_workers) as pool:
        for joined, counts in pool.map(partial(_tokenize_joined, tok), chunks):
            for s, n in zip(joined, counts):
                toks = s.split(_SEP) if n else []
                if len(toks) != n:  # a token held the separator: tokenize that text here instead
                    toks = tok([texts[len(out)]])[0]
                out.append(toks)
    return out


def tokenize_df(
    df: Any,
    text_cols: str | Sequence[str],
    tok: Tokenizer | None = None,
    n_workers: int | None = None,
    mark_fields: bool | None = None,
) -> list[list[str]]:
    """Tokenize the text column(s) of a DataFrame, one token list per row.

    Args:
        text_cols: a column name or several; several are joined, each preceded by ``xxfld <n>``.
        mark_fields: add the ``xxfld`` marks (default: when there is more than one column).

    Raises:
        DataError: a column is missing or holds a missing value.
    """
    cols = [text_cols] if isinstance(text_cols, str) else list(text_cols)
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(expected("columns of the DataFrame", "text_cols", missing, valid=list(df.columns)))
    for c in cols:
        bad = df[c].isna()
        if bad.any():
            row = df.index[bad.to_numpy().nonzero()[0][0]]
            raise DataError(f"Column {c!r} has a missing text at row {row!r}; fill or drop it first.")
    mark = len(cols) > 1 if mark_fields is None else mark_fields
    if mark:
        parts = [f"{FLD} {i + 1} " + df[c].astype(str) for i, c in enumerate(cols)]
        texts = parts[0]
        for p in parts[1:]:
            texts = texts + " " + p
        texts = texts.tolist()
    else:
        texts = df[cols[0]].astype(str).tolist()
    return tokenize_texts(texts, tok=tok, n_workers=n_workers)


def read_text_files(files: Sequence[str | os.PathLike]) -> list[str]:
    """Read UTF-8 text files; a file that is not valid UTF-8 is reported by name."""
    texts = []
    for f in files:
        try:
            texts.append(Path(f).read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataError(f"{f} is not valid UTF-8 text ({e}); convert it or leave it out.") from e
    return texts


def _text_files(path: Path, extensions: Sequence[str], folders: Sequence[str] | None) -> list[Path]:
    roots = [path / f for f in folders] if folders else [path]
    exts = {e.lower() for e in extensions}
    return sorted(p for r in roots for p in r.rglob("*") if p.suffix.lower() in exts and p.is_file())


def tokenize_folder(
    path: str | os.PathLike,
    extensions: Sequence[str] = (".txt",),
    folders: Sequence[str] | None = None,
    tok: Tokenizer | None = None,
    n_workers: int | None = None,
) -> tuple[list[Path], list[list[str]]]:
    """Tokenize every text file under `path` (or under its subfolders `folders`).

    Returns:
        ``(files, tokens)``: the files in sorted order and one token list per file.
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"Expected `path` to be a folder of text files; {path} is not a folder.")
    files = _text_files(path, extensions, folders)
    return files, tokenize_texts(read_text_files(files), tok=tok, n_workers=n_workers)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenized and numericalized corpora, cached on disk.


@dataclass
class TokenizedCorpus:
    """Token ids of many texts, stored flat: text ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.

    Attributes:
        ids: int32 token ids of every text, one after another (a memory-mapped array when read from the cache).
        offsets: int64 start of each text in `ids`, plus the total length at the end (``len(texts) + 1`` values).
        vocab: the :class:`~ember.text.vocab.Vocab` the ids refer to.
    """

    ids: np.ndarray
    offsets: np.ndarray
    vocab: Any

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def subset(self, idxs: Sequence[int] | np.ndarray) -> TokenizedCorpus:
        """The texts at `idxs`, copied into a new flat array (same vocab)."""
        idxs = np.asarray(idxs, dtype=np.int64)
        starts, lens = self.offsets[idxs], np.diff(self.offsets)[idxs]
        return TokenizedCorpus(self.ids[_gather_index(starts, lens)], _offsets(lens), self.vocab)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _gather_index(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Indices of the concatenation of the slices ``[starts[i], starts[i] + lens[i])`` (vectorized, no loop)."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    # Each output position = its slice's start + (position - where that slice begins in the output).
    out_starts = _offsets(lens)[:-1]
    return np.repeat(starts - out_starts, lens) + np.arange(total, dtype=np.int64)


def tokenize_corpus(
    texts: Sequence[str] | None = None,
    tok: Tokenizer | None = None,
    vocab: Any = None,
    min_freq: int = 3,
    max_vocab: int = 60000,
    n_workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    files: Sequence[str | os.PathLike] | None = None,
) -> TokenizedCorpus:
    """Tokenize and numericalize texts (or text files) into a flat :class:`TokenizedCorpus`, with a disk cache.

    With `cache_dir`, the ids, offsets and vocabulary are written under ``cache_dir/<key>/`` where the key
    hashes the inputs (the texts, or the files' paths, sizes and modification times) and every setting
    (tokenizer, rules, vocabulary). A later call with the same inputs memory-maps the ids and returns at once.

    When the vocabulary is built here (`vocab` is None), these are training texts: a tokenizer that learns from
    data and is not trained yet (:class:`SubwordTokenizer`) is trained on them first (``tok.setup``).

    Args:
        texts: the texts; or give `files` instead.
        vocab: a :class:`~ember.text.vocab.Vocab` to use; ``None`` builds one from these texts.
        min_freq: least count for a word to enter a built vocabulary.
        max_vocab: most words in a built vocabulary.
        files: text files to read (instead of `texts`).

    Raises:
        ConfigError: neither or both of `texts` and `files` given.
    """
    from ember.text.vocab import Vocab

    if (texts is None) == (files is None):
        raise ConfigError("Expected exactly one of `texts` and `files`; received " + ("both." if texts else "neither."))
    tok = tok if tok is not None else Tokenizer()
    if vocab is None and getattr(tok, "needs_setup", False):
        # Before the cache key: the key names the trained model, not the untrained settings.
        if texts is None:
            texts = read_text_files(files)
        tok.setup(texts)
    tok_id = _tokenizer_id(tok)
    if cache_dir is not None and tok_id is None:
        unknown = tok._unidentified() if isinstance(tok, Tokenizer) else [_describe(tok)]
        warnings.warn(
            f"Tokens are not cached: the output of {', '.join(unknown)} cannot be identified (a lambda, a nested "
            "function or closure, or an object without a settings() method), so a cached result could be stale. "
            "Define it as a function at the top level of a module to cache the tokens.",
            stacklevel=2,
        )
        cache_dir = None
    settings = {"tok": tok_id, "min_freq": min_freq, "max_vocab": max_vocab}
    settings["vocab"] = vocab.itos if vocab is not None else None
    folder: Path | None = None
    if cache_dir is not None:
        if files is not None:
            stats = [(str(Path(f).resolve()), os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
            key = _cache_key("files", json.dumps(stats), settings)
        else:
            key = _cache_key("texts", list(texts), settings)
        folder = Path(cache_dir) / key
        if (folder / "meta.json").is_file():
            ids = np.load(folder / "ids.npy", mmap_mode="r")
            offsets = np.load(folder / "offsets.npy")
            return TokenizedCorpus(ids, offsets, Vocab.from_json(folder / "vocab.json"))
    if texts is None:
        texts = read_text_files(files)
    tokens = tokenize_texts(texts, tok=tok, n_workers=n_workers)
    if vocab is None:
        vocab = _build_vocab(tokens, tok, min_freq=min_freq, max_vocab=max_vocab)
    lens = np.fromiter((len(t) for t in tokens), dtype=np.int64, count=len(tokens))
    ids = vocab.numericalize_flat(tokens)
    corpus = TokenizedCorpus(ids, _offsets(lens), vocab)
    if folder is not None:
        _write_cache(folder, corpus)
        corpus.ids = np.load(folder / "ids.npy", mmap_mode="r")
    return corpus


def _tokenizer_id(tok: Any) -> Any:
    """:meth:`Tokenizer.settings` (or another tokenizer's ``settings()``, or a function's id); None when the output
    cannot be identified."""
    if isinstance(tok, Tokenizer):
        return tok.settings() if tok.cacheable else None
    if hasattr(tok, "settings"):
        return tok.settings()
    return _callable_id(tok)


def _build_vocab(tokens: Iterable[Sequence[str]], tok: Any = None, min_freq: int = 3, max_vocab: int = 60000) -> Any:
    """The :class:`~ember.text.vocab.Vocab` of tokenized training texts, made by the tokenizer `tok`.

    Words need `min_freq` occurrences; the pieces of a subword model (:class:`SubwordTokenizer`, alone or inside a
    :class:`Tokenizer`) all get an id, the rare and the unseen ones after the others: the model chose them as its
    vocabulary, and whatever it emits for a new text must not become ``xxunk``.
    """
    from ember.text.vocab import Vocab

    counts: Counter = Counter()
    for toks in tokens:
        counts.update(toks)
    pieces = getattr(tok, "pieces", None) if isinstance(tok, SubwordTokenizer) else None
    if isinstance(tok, Tokenizer) and isinstance(tok.tok, SubwordTokenizer):
        pieces = tok.tok.pieces
    for piece in pieces or ():
        counts[piece] = max(counts[piece], min_freq)
    return Vocab.from_counter(counts, min_freq=min_freq, max_vocab=max_vocab)


def _write_cache(folder: Path, corpus: TokenizedCorpus) -> None:
    """Write to a temporary folder renamed at the end, so an interrupted run never leaves a half cache."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    np.save(tmp / "ids.npy", np.ascontiguousarray(corpus.ids, dtype=np.int32))
    np.save(tmp / "offsets.npy", corpus.offsets)
    corpus.vocab.to_json(tmp / "vocab.json")
    (tmp / "meta.json").write_text(json.dumps({"n_texts": len(corpus), "n_tokens": int(corpus.offsets[-1])}))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
