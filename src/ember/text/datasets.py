"""The iterable text datasets behind :class:`~ember.text.data.TextDataLoaders`: each yields whole batches.

:class:`LMDataset` cuts a corpus into `bs` contiguous streams read in batches of about `seq_len` tokens (``y`` is
``x`` shifted by one token); :class:`ClassificationDataset` groups documents of similar length and pads them at the
start; ``_NoTexts`` stands for the training set of inference loaders rebuilt from an exported file.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

from ember.core.errors import ConfigError, DataError, expected
from ember.text.tokenize import TokenizedCorpus, _gather_index
from ember.text.vocab import Vocab

__all__ = ["LMDataset", "ClassificationDataset"]


def _check_int(name: str, value: Any, low: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(expected(f"an int >= {low}", name, value))


class LMDataset(IterableDataset):
    """Batches ``(x, y)`` of shape ``(bs, seq_len)`` from `bs` contiguous streams over a corpus.

    Args:
        corpus: the token ids.
        bs: number of streams (rows of a batch).
        seq_len: mean length of a batch (columns).
        shuffle: shuffle the documents at each iteration (training).
        random_seq_len: draw each batch's length around `seq_len` (training).
        seed: seed of the shuffling and lengths; ``None`` draws from torch's global generator.
    """

    def __init__(
        self,
        corpus: TokenizedCorpus,
        bs: int = 64,
        seq_len: int = 72,
        shuffle: bool = False,
        random_seq_len: bool = False,
        seed: int | None = None,
    ) -> None:
        _check_int("bs", bs)
        _check_int("seq_len", seq_len)
        self.corpus, self.bs, self.seq_len = corpus, bs, seq_len
        self.shuffle, self.random_seq_len = shuffle, random_seq_len
        self._rng = np.random.default_rng(seed) if seed is not None else None
        n_tokens = int(corpus.offsets[-1])
        self.stream_len = (n_tokens - 1) // bs  # L: positions per stream (one token is kept for the last y)
        if self.stream_len < 1:
            raise DataError(
                f"The language-model corpus has {n_tokens} tokens, too few for {bs} streams; "
                "use a smaller `bs` or more text."
            )
        self.n_batches = math.ceil(self.stream_len / seq_len)
        self.boundaries: np.ndarray = np.zeros(0, dtype=np.int64)

    @property
    def vocab(self) -> Vocab:
        return self.corpus.vocab

    def __len__(self) -> int:
        return self.n_batches

    def _generator(self) -> np.random.Generator:
        if self._rng is not None:
            return self._rng
        return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))

    def resized(self, bs: int | None = None, seq_len: int | None = None) -> LMDataset:
        """The same corpus and settings cut into `bs` streams of mean batch length `seq_len` (``None``: keep).

        The shuffling generator is copied, not shared: this dataset's epochs stay as they would have been.
        """
        ds = type(self)(
            self.corpus,
            self.bs if bs is None else bs,
            self.seq_len if seq_len is None else seq_len,
            shuffle=self.shuffle,
            random_seq_len=self.random_seq_len,
        )
        ds._rng = copy.deepcopy(self._rng)
        return ds

    def plan(self) -> tuple[torch.Tensor, np.ndarray]:
        """The epoch's stream ``(bs * L + 1,)`` as a tensor and the batch boundaries ``(n_batches + 1,)``."""
        corpus, rng = self.corpus, None
        if self.shuffle or self.random_seq_len:
            rng = self._generator()
        if self.shuffle and len(corpus) > 1:
            order = rng.permutation(len(corpus))
            stream = np.asarray(corpus.ids)[_gather_index(corpus.offsets[order], corpus.lengths()[order])]
        else:
            stream = np.asarray(corpus.ids)
        stream = torch.from_numpy(np.ascontiguousarray(stream[: self.bs * self.stream_len + 1], dtype=np.int64))
        L, n = self.stream_len, self.n_batches
        if self.random_seq_len and n > 1:
            # Mostly seq_len, sometimes half of it, jittered; then scaled so that the n lengths cover L exactly.
            base = np.where(rng.random(n) < 0.95, self.seq_len, self.seq_len / 2)
            lens = np.maximum(rng.normal(base, 5), min(5, self.seq_len))
            bounds = np.rint(np.concatenate([[0.0], np.cumsum(lens)]) * (L / lens.sum())).astype(np.int64)
            bounds = np.maximum.accumulate(bounds)
            bounds[-1] = L
        else:
            bounds = np.minimum(np.arange(n + 1, dtype=np.int64) * self.seq_len, L)
        return stream, bounds

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream, bounds = self.plan()
        self.boundaries = bounds
        L = self.stream_len
        xs = stream[: self.bs * L].view(self.bs, L)  # (bs, L): row s is stream s
        ys = stream[1 : self.bs * L + 1].view(self.bs, L)  # the next token of each position
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if b > a:
                yield xs[:, a:b].contiguous(), ys[:, a:b].contiguous()  # (bs, T), (bs, T)


class ClassificationDataset(IterableDataset):
    """Padded batches ``(x, y)`` of documents of similar length: ``x`` is ``(B, T)`` padded at the start.

    Args:
        corpus: the token ids.
        labels: one target per document (class ids ``(N,)`` or multi-label floats ``(N, C)``); ``None`` for
            unlabelled texts (batches are then ``(x,)``).
        bs: batch size.
        shuffle: training order (random chunks sorted by length); otherwise fully sorted, longest first.
        pad_idx: the padding id.
        max_len: keep at most the last `max_len` tokens of a document (``None``: keep everything).
        seed: seed of the shuffling.
    """

    def __init__(
        self,
        corpus: TokenizedCorpus,
        labels: torch.Tensor | None,
        bs: int = 64,
        shuffle: bool = False,
        pad_idx: int = 1,
        max_len: int | None = None,
        seed: int | None = None,
    ) -> None:
        _check_int("bs", bs)
        if labels is not None and len(labels) != len(corpus):
            raise DataError(f"Expected one label per text; received {len(labels)} labels for {len(corpus)} texts.")
        if len(corpus) == 0:
            raise DataError("The classification dataset has no text.")
        self.corpus, self.labels, self.bs, self.shuffle = corpus, labels, bs, shuffle
        self.pad_idx, self.max_len = pad_idx, max_len
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.order: np.ndarray = np.zeros(0, dtype=np.int64)  # document order of the last iteration

    @property
    def vocab(self) -> Vocab:
        return self.corpus.vocab

    def __len__(self) -> int:
        return math.ceil(len(self.corpus) / self.bs)

    @property
    def last_batch_size(self) -> int:
        """The number of texts in an epoch's last batch (the others hold `bs`)."""
        return len(self.corpus) - (len(self) - 1) * self.bs if len(self.corpus) else 0

    def resized(self, bs: int | None = None) -> ClassificationDataset:
        """The same documents, labels and settings in batches of `bs` (``None``: keep); the shuffling
        generator is copied, not shared."""
        ds = type(self)(
            self.corpus,
            self.labels,
            self.bs if bs is None else bs,
            shuffle=self.shuffle,
            pad_idx=self.pad_idx,
            max_len=self.max_len,
        )
        ds._rng = copy.deepcopy(self._rng)
        return ds

    def plan(self) -> list[np.ndarray]:
        """The document indices of each batch, for one epoch."""
        lens, bs = self.corpus.lengths(), self.bs
        if not self.shuffle:
            order = np.argsort(-lens, kind="stable")
            return [order[i : i + bs] for i in range(0, len(order), bs)]
        rng = self._rng if self._rng is not None else np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        perm = rng.permutation(len(lens))
        chunk = bs * 50
        parts = [perm[i : i + chunk] for i in range(0, len(perm), chunk)]
        order = np.concatenate([p[np.argsort(-lens[p], kind="stable")] for p in parts])
        batches = [order[i : i + bs] for i in range(0, len(order), bs)]
        # Random batch order, but the batch holding the longest document first: memory problems show at once.
        first = int(np.argmax([lens[b].max() for b in batches]))
        rest = [batches[i] for i in rng.permutation(len(batches)) if i != first]
        return [batches[first], *rest]

    def collate(self, idxs: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Left-padded ids ``(B, T)`` and the targets of documents `idxs` (the ids alone when unlabelled)."""
        lens = self.corpus.lengths()[idxs]
        starts = self.corpus.offsets[idxs]
        if self.max_len is not None:
            cut = np.maximum(lens - self.max_len, 0)
            starts, lens = starts + cut, lens - cut
        width = max(int(lens.max()), 1)
        x = np.full((len(idxs), width), self.pad_idx, dtype=np.int64)
        mask = np.arange(width)[None, :] >= (width - lens)[:, None]  # (B, T): True on the real tokens
        x[mask] = np.asarray(self.corpus.ids)[_gather_index(starts, lens)]  # row-major fill == concatenation order
        if self.labels is None:
            return (torch.from_numpy(x),)
        return torch.from_numpy(x), self.labels[torch.from_numpy(idxs)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        batches = self.plan()
        self.order = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        for idxs in batches:
            yield self.collate(idxs)


class _NoTexts(IterableDataset):
    """The training set of inference loaders (rebuilt from an exported file): no batch, but the settings."""

    def __init__(self, vocab: Vocab, bs: int, seq_len: int | None, max_len: int | None, multi_label: bool) -> None:
        self.vocab, self.bs, self.seq_len, self.max_len = vocab, bs, seq_len, max_len
        self.multi_label = multi_label

    def __len__(self) -> int:
        return 0

    def resized(self, bs: int | None = None, seq_len: int | None = None) -> _NoTexts:
        """The same settings with another batch size and (language model) `seq_len` (``None``: keep)."""
        if bs is not None:
            _check_int("bs", bs)
        if seq_len is not None:
            _check_int("seq_len", seq_len)
        return type(self)(
            self.vocab,
            self.bs if bs is None else bs,
            self.seq_len if seq_len is None else seq_len,
            self.max_len,
            self.multi_label,
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return iter(())
