"""Text loaders: contiguous streams for language models, length-bucketed padded batches for classifiers.

Both datasets are iterable and yield *whole batches* (tuples of tensors); a torch ``DataLoader`` with
``batch_size=None`` passes them through, and :class:`~ember.data.loaders.DeviceLoader` moves them to the
device. Each iteration re-plans the epoch (document order, sequence lengths, buckets) with index
arithmetic on flat token-id arrays: no per-token Python work, no per-item collation.

Language model (:class:`LMDataset`): the documents (each starting with ``xxbos``) are joined into one
stream, shuffled by document each training epoch, and cut into `bs` contiguous streams; batch ``k`` holds
positions ``[b_k, b_{k+1})`` of every stream, so batch ``k + 1`` continues batch ``k`` in every row and the
hidden state can be carried over. ``y`` is ``x`` shifted by one token. During training the batch
lengths vary randomly around `seq_len` (the number of batches per epoch stays fixed).

Classification (:class:`ClassificationDataset`): documents are grouped with others of similar length
(training: shuffled, then sorted within chunks of ``50 * bs``; validation: fully sorted, longest first) and
padded **at the start** with ``xxpad``; the classifier reads the state at each text's last real token and pools
over the non-padding positions, and gives a text the same result whatever batch it is padded in.
Long documents are kept whole (the model reads them in chunks).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import dump, load, register_recipe
from ember.data.loaders import DataLoaders, DeviceLoader
from ember.text.tokenize import (
    FLD,
    PAD,
    UNK,
    TokenizedCorpus,
    Tokenizer,
    _build_vocab,
    _gather_index,
    _text_files,
    read_text_files,
    tokenize_corpus,
)
from ember.text.vocab import Vocab

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LMDataset",
    "ClassificationDataset",
    "TextDataLoaders",
    "TextBlock",
    "lm_dataloaders",
    "classification_dataloaders",
]


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


def _loader(ds: IterableDataset, device: Any, split: int, kinds: tuple[str, ...]) -> DeviceLoader:
    dl = DataLoader(ds, batch_size=None, num_workers=0, pin_memory=False)
    return DeviceLoader(dl, device=device, n_inp=1, kinds=kinds, split=split)


def _resized_loader(dl: DeviceLoader, **settings: Any) -> DeviceLoader:
    """A copy of `dl` over ``dl.dataset.resized(**settings)``: same device, transforms, kinds and workers."""
    ds = dl.dataset
    if not callable(getattr(ds, "resized", None)):
        raise ConfigError(
            f"The loader's dataset ({type(ds).__name__}) cannot change its batch size: it has no `resized` method."
        )
    old = dl.dl
    return dl.new(
        dl=DataLoader(ds.resized(**settings), batch_size=None, num_workers=old.num_workers, pin_memory=old.pin_memory)
    )


def lm_dataloaders(
    train: TokenizedCorpus,
    valid: TokenizedCorpus | None,
    bs: int = 64,
    seq_len: int = 72,
    device: Any = None,
    seed: int | None = None,
    random_seq_len: bool = True,
) -> TextDataLoaders:
    """Language-model loaders over tokenized corpora (training shuffled, with random lengths unless
    `random_seq_len` is False)."""
    train_ds = LMDataset(train, bs, seq_len, shuffle=True, random_seq_len=random_seq_len, seed=seed)
    valid_ds = LMDataset(valid, bs, seq_len) if valid is not None else None
    return TextDataLoaders._build(train_ds, valid_ds, device, is_lm=True)


def classification_dataloaders(
    train: TokenizedCorpus,
    train_labels: torch.Tensor,
    valid: TokenizedCorpus | None,
    valid_labels: torch.Tensor | None,
    classes: Sequence[str],
    bs: int = 64,
    device: Any = None,
    max_len: int | None = None,
    seed: int | None = None,
) -> TextDataLoaders:
    """Classification loaders over tokenized corpora and their labels."""
    pad = train.vocab.pad_idx
    train_ds = ClassificationDataset(train, train_labels, bs, shuffle=True, pad_idx=pad, max_len=max_len, seed=seed)
    valid_ds = None
    if valid is not None:
        valid_ds = ClassificationDataset(valid, valid_labels, bs * 2, pad_idx=pad, max_len=max_len)
    dls = TextDataLoaders._build(train_ds, valid_ds, device, is_lm=False)
    dls.classes = list(classes)
    if dls.multi_label:
        from ember.losses import BCEWithLogitsLossFlat

        dls.loss_func = BCEWithLogitsLossFlat()
    return dls


@register_recipe()
class TextDataLoaders(DataLoaders):
    """`DataLoaders` for text: a language model (``is_lm=True``) or a classifier.

    Export writes what inference needs (:meth:`to_recipe`: the tokenizer, the vocabulary, the classes and the
    batch settings, no text); loading gives inference loaders (:meth:`from_recipe`) whose :meth:`test_dl`
    tokenizes and batches new texts exactly as these do.

    Attributes:
        vocab: the :class:`~ember.text.vocab.Vocab`.
        tokenizer: the :class:`~ember.text.tokenize.Tokenizer` that made the token ids.
        is_lm: language-model loaders.
        classes: the class names (classification).
        seq_len: language model: the mean batch length; classification: None.
        max_len: classification: the last `max_len` tokens of a text are kept (None: all).
        loss_func: the default loss (flattened cross-entropy; binary cross-entropy for multi-label).
    """

    is_lm: bool = False
    classes: list[str]
    seq_len: int | None = None
    max_len: int | None = None

    @property
    def vocab(self) -> Vocab:  # the token vocabulary (the generic DataLoaders' `vocab` is a target block's)
        return self._text_vocab

    @property
    def class_names(self) -> list[str] | None:
        """The classes (``vocab`` here is the token vocabulary); None for a language model."""
        return list(self.classes) if self.classes else None

    @property
    def c(self) -> int | None:
        return len(self.classes) if self.classes else None

    def items_table(self, samples: Sequence[tuple]) -> pd.DataFrame:
        """Items as a loader gives them (``(ids, ...)`` each) -> a table with their texts (column ``text``)."""
        import pandas as pd

        return pd.DataFrame({"text": [self.decode_text(s[0]) for s in samples]})

    def decode_text(self, ids: torch.Tensor, max_tokens: int | None = None) -> str:
        """Token ids of one text (one row of a batch) -> the text, padding left out, the last `max_tokens` kept."""
        pad = self.vocab.pad_idx
        kept = [t for t in ids.tolist() if t != pad]
        return self.vocab.textify(kept[-max_tokens:] if max_tokens else kept)

    @classmethod
    def _build(cls, train_ds: Any, valid_ds: Any, device: Any, is_lm: bool) -> TextDataLoaders:
        from ember.losses import CrossEntropyLossFlat

        kinds = ("text", "text") if is_lm else ("text", "category")
        train = _loader(train_ds, None, 0, kinds)
        valid = _loader(valid_ds, None, 1, kinds) if valid_ds is not None else None
        dls = cls(train, valid, device=device)
        dls._text_vocab, dls.is_lm, dls.classes = train_ds.vocab, is_lm, []
        dls.seq_len = getattr(train_ds, "seq_len", None) if is_lm else None
        dls.max_len = None if is_lm else getattr(train_ds, "max_len", None)
        dls.tokenizer = Tokenizer()
        dls.loss_func = CrossEntropyLossFlat()
        return dls

    @property
    def bs(self) -> int | None:
        """The batch size: the training set's (the number of streams for a language model)."""
        return getattr(self.train.dataset, "bs", None)

    @property
    def multi_label(self) -> bool:
        """Classification with several labels per text (multi-hot targets)."""
        labels = getattr(self.train.dataset, "labels", None)
        return bool(getattr(self.train.dataset, "multi_label", labels is not None and labels.ndim > 1))

    # -- other batch sizes -------------------------------------------------------------------------------------
    def new(self, bs: int | None = None, seq_len: int | None = None, **kwargs: Any) -> TextDataLoaders:
        """A copy whose datasets are rebuilt with batch size `bs` and, for a language model, mean batch length
        `seq_len` (``None`` keeps a setting); these loaders are left as they are.

        Text datasets yield whole batches, so the generic rebuild of the torch ``DataLoader`` (``batch_size=``)
        does not apply: each dataset is ``resized`` instead. The validation set keeps its ratio to the training
        batch size (twice for a classifier, the same for a language model) and takes the new `seq_len`.
        Shuffling, random lengths, ``max_len``, padding, labels and the state of a seeded generator carry over
        (the generator is copied: both loaders draw the same random numbers from here on). The vocabulary, tokenizer,
        classes, loss and device are those of these loaders.

        Raises:
            ConfigError: `bs` or `seq_len` is not a positive int, `seq_len` is given for classification loaders,
                or another keyword is given.
        """
        if kwargs:
            name = next(iter(kwargs))
            raise ConfigError(
                expected(
                    "a setting of TextDataLoaders.new",
                    name,
                    kwargs[name],
                    valid=["bs", "seq_len"],
                    hint="Text loaders batch inside their datasets; build new loaders (from_texts, from_df, ...) "
                    "to change anything else.",
                )
            )
        if bs is not None:
            _check_int("bs", bs)
        if seq_len is not None:
            if not self.is_lm:
                raise ConfigError(
                    expected(
                        "None for classification loaders",
                        "seq_len",
                        seq_len,
                        hint="seq_len applies to language-model loaders only (is_lm=True); pass bs alone.",
                    )
                )
            _check_int("seq_len", seq_len)
        lm = {"seq_len": seq_len} if self.is_lm else {}
        out = type(self).__new__(type(self))
        out.__dict__.update(self.__dict__)
        out.classes = list(self.classes)
        out.train = _resized_loader(self.train, bs=bs, **lm)
        if self.valid is not None:
            valid_bs = None
            if bs is not None:
                old_valid_bs = getattr(self.valid.dataset, "bs", None) or self.bs
                valid_bs = max(1, round(bs * old_valid_bs / self.bs))
            out.valid = _resized_loader(self.valid, bs=valid_bs, **lm)
        if self.is_lm and seq_len is not None:
            out.seq_len = seq_len
        return out

    # -- new texts ---------------------------------------------------------------------------------------------
    def test_dl(
        self, items: Sequence[Any], with_labels: bool = False, bs: int | None = None, n_workers: int | None = None
    ) -> DeviceLoader:
        """A loader over new texts, tokenized with these loaders' tokenizer and vocabulary (no shuffling).

        Classification: batches of texts of similar length padded at the start, ``(x,)`` or, with labels,
        ``(x, y)``; ``learn.get_preds(dl=...)`` gives the predictions back in the order of `items`. Language
        model: the texts joined into one stream (each starting with ``xxbos``), cut into at most `bs` rows of at
        least ``seq_len`` tokens (one row when the texts are shorter), in one batch ``(x, y)`` with ``y`` the next
        token (as in validation, the last few tokens that do not fill a row are left out).

        Args:
            items: texts (str) or paths of text files; with `with_labels`, ``(text, label)`` pairs (for a
                multi-label classifier the label is a list of class names).
            with_labels: classification: the items carry labels to encode (a language model's targets are
                always its next tokens).
            bs: the batch size (default: the training one).
            n_workers: tokenizing processes (see :func:`~ember.text.tokenize.tokenize_texts`).

        Raises:
            DataError: an item is not a text, a label is not a class, or there is no text.
        """
        _check_texts(items, "items")
        items = list(items)
        bs = bs if bs is not None else self.bs or 64
        _check_int("bs", bs)
        labels = None
        if with_labels and not self.is_lm:
            for i, item in enumerate(items):
                if not (isinstance(item, (tuple, list)) and len(item) == 2):
                    raise DataError(expected("a (text, label) pair", f"items[{i}]", item))
            items, raw = [t for t, _ in items], [y for _, y in items]
            if self.multi_label:
                labels = _encode_multi_labels(raw, self.classes)
            else:
                labels = _encode_labels(raw, self.classes, "test")
        texts = [_read_text(x, i) for i, x in enumerate(items)]
        if not texts:
            raise DataError("test_dl needs at least one text; received an empty list.")
        corpus = tokenize_corpus(texts, tok=self.tokenizer, vocab=self.vocab, n_workers=n_workers)
        if self.is_lm:
            n_tokens = int(corpus.offsets[-1])
            if n_tokens < 2:
                raise DataError(f"A language model's test texts need at least 2 tokens; received {n_tokens}.")
            seq_len = self.seq_len or 72
            rows = max(1, min(bs, (n_tokens - 1) // seq_len))
            # One batch: every row's full length at once, so that get_preds gathers rows of equal length.
            ds: IterableDataset = LMDataset(corpus, rows, seq_len=max(1, (n_tokens - 1) // rows))
            kinds = ("text", "text")
        else:
            ds = ClassificationDataset(corpus, labels, bs, pad_idx=self.vocab.pad_idx, max_len=self.max_len)
            kinds = ("text", "category")
        return DeviceLoader(
            DataLoader(ds, batch_size=None, num_workers=0), device=self.device, n_inp=1, kinds=kinds, split=1
        )

    # -- export ------------------------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        """What inference needs, as JSON values: tokenizer, vocabulary, classes and batch settings (no text).

        Raises:
            ExportError: the tokenizer uses a rule or word tokenizer of the user's own (the message names it).
        """
        tok = getattr(self, "tokenizer", None) or Tokenizer()
        return {
            "is_lm": bool(self.is_lm),
            "tokenizer": dump(tok),
            "vocab": dump(self.vocab),
            "classes": [str(c) for c in self.classes],
            "multi_label": self.multi_label,
            "bs": self.bs,
            "seq_len": self.seq_len,
            "max_len": self.max_len,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> TextDataLoaders:
        """Inference loaders: no text, but :meth:`test_dl`, ``predict`` and decoding work as before export."""
        for key in ("tokenizer", "vocab"):
            if not data.get(key):
                raise ExportError(f"The text data recipe has no `{key}`; the file is incomplete.")
        vocab, tok = load(data["vocab"]), load(data["tokenizer"])
        if not isinstance(vocab, Vocab):
            raise ExportError(expected("a Vocab", "vocab", type(vocab).__name__))
        is_lm = bool(data.get("is_lm", False))
        bs, seq_len, max_len = int(data.get("bs") or 64), data.get("seq_len"), data.get("max_len")
        ds = _NoTexts(vocab, bs, seq_len, max_len, bool(data.get("multi_label", False)))
        dls = cls._build(ds, None, "cpu", is_lm=is_lm)
        dls.classes = list(data.get("classes") or [])
        dls.tokenizer = tok
        if dls.multi_label:
            from ember.losses import BCEWithLogitsLossFlat

            dls.loss_func = BCEWithLogitsLossFlat()
        return dls

    @classmethod
    def from_texts(
        cls,
        train_texts: Sequence[str],
        valid_texts: Sequence[str] | None = None,
        train_labels: Sequence[Any] | None = None,
        valid_labels: Sequence[Any] | None = None,
        is_lm: bool = False,
        bs: int = 64,
        seq_len: int = 72,
        tok: Tokenizer | None = None,
        vocab: Vocab | None = None,
        min_freq: int = 3,
        max_vocab: int = 60000,
        max_len: int | None = None,
        n_workers: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: Any = None,
        seed: int | None = None,
        random_seq_len: bool = True,
    ) -> TextDataLoaders:
        """Loaders from lists of texts (and labels, for a classifier). The vocabulary is built on the training
        texts unless `vocab` is given (e.g. the language model's, to fine-tune a classifier from it).

        Args:
            is_lm: language-model loaders (``y`` is ``x`` shifted by one token) instead of classification ones.
            seq_len: language model: mean batch length (exact for validation).
            random_seq_len: language model: vary the training batches' lengths around `seq_len`.
            max_len: classification: keep only the last `max_len` tokens of each text.
            cache_dir: keep the token ids on disk there (see :func:`~ember.text.tokenize.tokenize_corpus`).
            seed: seed of the shuffling (``None``: torch's global generator).
        """
        _check_int("bs", bs)
        for name, value in (("train_texts", train_texts), ("valid_texts", valid_texts)):
            _check_texts(value, name)
        if vocab is not None:
            _check_vocab(vocab)
        kw = {"tok": tok, "min_freq": min_freq, "max_vocab": max_vocab, "n_workers": n_workers, "cache_dir": cache_dir}
        train_texts = list(train_texts)
        if not train_texts:
            raise DataError("There is no training text: `train_texts` is empty.")
        train = tokenize_corpus(train_texts, vocab=vocab, **kw)
        valid = tokenize_corpus(list(valid_texts), vocab=train.vocab, **kw) if valid_texts is not None else None
        if is_lm:
            dls = lm_dataloaders(train, valid, bs, seq_len, device, seed, random_seq_len)
        else:
            if train_labels is None:
                raise ConfigError("A classifier needs labels: pass `train_labels` (or use is_lm=True).")
            train_labels = list(train_labels)
            _check_labels(train_labels, "train")
            if valid_labels is not None:
                valid_labels = list(valid_labels)
                _check_labels(valid_labels, "valid")
            if any(isinstance(c, (list, tuple)) for c in train_labels):  # several labels per text
                classes = sorted({str(c) for cs in train_labels for c in _label_list(cs)})
                ytrain = _encode_multi_labels(train_labels, classes, "train")
                yvalid = _encode_multi_labels(valid_labels, classes, "valid") if valid is not None else None
            else:
                classes = sorted({str(c) for c in train_labels})
                ytrain = _encode_labels(train_labels, classes, "train")
                yvalid = _encode_labels(valid_labels, classes, "valid") if valid is not None else None
            dls = classification_dataloaders(train, ytrain, valid, yvalid, classes, bs, device, max_len, seed)
        dls.tokenizer = tok if tok is not None else Tokenizer()
        return dls

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        train: str = "train",
        valid: str = "test",
        is_lm: bool = False,
        bs: int = 64,
        seq_len: int = 72,
        classes: Sequence[str] | None = None,
        extensions: Sequence[str] = (".txt",),
        cache: bool | str | os.PathLike = True,
        **kwargs: Any,
    ) -> TextDataLoaders:
        """Loaders from the IMDb layout: ``path/<train>/<class>/*.txt`` and ``path/<valid>/<class>/*.txt``.

        For a classifier, the classes are the subfolders of `valid` (so an unlabelled ``train/unsup`` is left
        out) unless given. A language model reads every text file under `train` and `valid`.

        Args:
            cache: keep the token ids on disk (``True``: under ``<EMBER_HOME>/cache/text``; or a folder);
                the cache key covers the files' paths, sizes and modification times and every setting.
            kwargs: passed to :meth:`from_texts`-like settings (``tok``, ``vocab``, ``min_freq``, ``max_vocab``,
                ``max_len``, ``n_workers``, ``device``, ``seed``).
        """
        unknown = [k for k in kwargs if k not in _FOLDER_SETTINGS]
        if unknown:
            raise ConfigError(
                expected(
                    "a setting of TextDataLoaders.from_folder", unknown[0], kwargs[unknown[0]], valid=_FOLDER_SETTINGS
                )
            )
        path = Path(path)
        for name in (train, valid):
            if not (path / name).is_dir():
                raise DataError(f"Expected a folder {path / name} (the `{'train' if name == train else 'valid'}` set).")
        cache_dir = _cache_dir(cache)
        if is_lm:
            tfiles = _text_files(path / train, extensions, None)
            vfiles = _text_files(path / valid, extensions, None)
        else:
            if classes is None:
                classes = sorted(p.name for p in (path / valid).iterdir() if p.is_dir())
            classes = list(classes)
            if not classes:
                raise DataError(f"Found no class subfolders in {path / valid}; expected e.g. {path / valid}/pos/.")
            tfiles = _text_files(path / train, extensions, classes)
            vfiles = _text_files(path / valid, extensions, classes)
        if not tfiles:
            raise DataError(f"Found no {'/'.join(extensions)} files under {path / train}.")
        if kwargs.get("vocab") is not None:
            _check_vocab(kwargs["vocab"])
        corpus_kw = {k: kwargs[k] for k in ("tok", "min_freq", "max_vocab", "n_workers") if k in kwargs}
        tcorpus = tokenize_corpus(files=tfiles, vocab=kwargs.get("vocab"), cache_dir=cache_dir, **corpus_kw)
        vcorpus = tokenize_corpus(files=vfiles, vocab=tcorpus.vocab, cache_dir=cache_dir, **corpus_kw)
        device, seed = kwargs.get("device"), kwargs.get("seed")
        if is_lm:
            rand = kwargs.get("random_seq_len", True)
            dls = lm_dataloaders(tcorpus, vcorpus, bs, seq_len, device, seed, rand)
        else:
            ytrain = _encode_labels([f.parent.name for f in tfiles], classes, "train")
            yvalid = _encode_labels([f.parent.name for f in vfiles], classes, "valid")
            max_len = kwargs.get("max_len")
            dls = classification_dataloaders(tcorpus, ytrain, vcorpus, yvalid, classes, bs, device, max_len, seed)
        dls.tokenizer = kwargs.get("tok") or Tokenizer()
        return dls

    @classmethod
    def from_df(
        cls,
        df: Any,
        text_col: str | Sequence[str] = "text",
        label_col: str | None = "label",
        is_lm: bool = False,
        valid_col: str | None = "is_valid",
        valid_pct: float = 0.2,
        seed: int | None = None,
        label_delim: str | None = None,
        **kwargs: Any,
    ) -> TextDataLoaders:
        """Loaders from a DataFrame: text column(s), a label column (classification) and a boolean column saying
        which rows are for validation (else a random `valid_pct` of the rows, drawn with `seed`).

        Args:
            text_col: a column, or several: they are joined, each preceded by ``xxfld <n>`` (as in
                :func:`~ember.text.tokenize.tokenize_df`).
            valid_col: booleans (or the strings ``"True"``/``"False"``, or 0/1) marking the validation rows.
            label_delim: multi-label classification: each label is a string of class names joined by this
                (``"pos;fun"`` with ``";"``); the loss is then binary cross-entropy.
            kwargs: passed to :meth:`from_texts`.

        Raises:
            DataError: a column is missing, a row has no text or no label, the validation column is not boolean,
                or no row is left for training.
        """
        cols = [text_col] if isinstance(text_col, str) else list(text_col)
        missing = [c for c in cols if c not in df.columns]
        if not cols or missing:
            raise DataError(expected("columns of the DataFrame", "text_col", text_col, valid=list(df.columns)))
        if valid_col is not None and valid_col in df.columns:
            is_valid = _bool_column(df[valid_col], valid_col)
        else:
            rng = np.random.default_rng(seed)
            is_valid = np.zeros(len(df), dtype=bool)
            is_valid[rng.permutation(len(df))[: int(round(valid_pct * len(df)))]] = True
        if len(df) and is_valid.all():
            where = f"column {valid_col!r} marks every row as validation" if valid_col in df.columns else "valid_pct"
            raise DataError(f"No row is left for training: {where}. Mark some rows False (training).")
        for c in cols:
            bad = df[c].isna().to_numpy()
            if bad.any():
                raise DataError(f"Column {c!r} has a missing text at row {df.index[bad.nonzero()[0][0]]!r}.")
        if len(cols) == 1:
            texts = df[cols[0]].astype(str).to_numpy()
        else:
            texts = np.array(
                [" ".join(f"{FLD} {k + 1} {v}" for k, v in enumerate(row)) for row in df[cols].astype(str).to_numpy()],
                dtype=object,
            )
        labels = None
        if not is_lm:
            if label_col is None or label_col not in df.columns:
                raise DataError(expected("a column of the DataFrame", "label_col", label_col, valid=list(df.columns)))
            bad = df[label_col].isna().to_numpy()
            if bad.any():
                row = df.index[bad.nonzero()[0][0]]
                raise DataError(f"Column {label_col!r} has a missing label at row {row!r}; fill or drop that row.")
            labels = df[label_col].to_numpy()
            if label_delim is not None:
                labels = np.array([[p for p in str(v).split(label_delim) if p] for v in labels] + [None], dtype=object)[
                    :-1
                ]
        elif label_delim is not None:
            raise ConfigError("`label_delim` applies to classification; a language model (is_lm=True) has no labels.")
        return cls.from_texts(
            texts[~is_valid].tolist(),
            texts[is_valid].tolist() if is_valid.any() else None,
            labels[~is_valid].tolist() if labels is not None else None,
            labels[is_valid].tolist() if labels is not None and is_valid.any() else None,
            is_lm=is_lm,
            seed=seed,
            **kwargs,
        )

    @classmethod
    def from_csv(cls, path: str | os.PathLike, csv_fname: str = "texts.csv", **kwargs: Any) -> TextDataLoaders:
        """Read ``path/csv_fname`` with pandas and call :meth:`from_df`."""
        import pandas as pd

        file = Path(path) / csv_fname
        if not file.is_file():
            raise DataError(f"Expected a CSV file at {file}; it does not exist.")
        return cls.from_df(pd.read_csv(file), **kwargs)

    def show_batch(
        self, batch: Sequence[torch.Tensor] | None = None, max_n: int = 4, max_tokens: int = 40, print_out: bool = True
    ) -> list[tuple[str, str]]:
        """Decode a batch (default: the first training batch) into ``(text, target)`` rows; for a language model
        the target is the text shifted by one token. Padding is left out. Returns the rows (and prints them as
        a table when `print_out`).
        """
        batch = batch if batch is not None else self.train.one_batch()
        xb, yb = batch[0], batch[1] if len(batch) > 1 else None
        rows = []
        for i in range(min(max_n, xb.shape[0])):
            text = self.vocab.textify(xb[i, :max_tokens]) if self.is_lm else self.decode_text(xb[i], max_tokens)
            if yb is None:
                target = ""
            elif self.is_lm:
                target = self.vocab.textify(yb[i, :max_tokens])
            elif yb.ndim > 1:
                target = ";".join(c for c, on in zip(self.classes, yb[i].tolist()) if on)
            else:
                target = self.classes[int(yb[i])] if self.classes else str(int(yb[i]))
            rows.append((text, target))
        if print_out:
            from rich.console import Console
            from rich.table import Table

            table = Table("text", "text_" if self.is_lm else "category", show_lines=True)
            for text, target in rows:
                table.add_row(text, target)
            Console().print(table)
        return rows


def _encode_labels(labels: Sequence[Any] | None, classes: Sequence[str], split: str) -> torch.Tensor:
    if labels is None:
        raise ConfigError(f"A classifier needs `{split}_labels`.")
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for i, label in enumerate(labels):
        j = index.get(str(label))
        if j is None:
            raise DataError(
                f"The {split} label {label!r} (item {i}) is not a training class; valid: {', '.join(classes)}."
            )
        out.append(j)
    return torch.tensor(out, dtype=torch.long)


def _label_list(names: Any) -> list[Any]:
    return [names] if isinstance(names, str) or not isinstance(names, (list, tuple)) else list(names)


def _encode_multi_labels(labels: Sequence[Any], classes: Sequence[str], split: str = "test") -> torch.Tensor:
    """Lists of class names -> multi-hot floats ``(N, C)``."""
    index = {c: i for i, c in enumerate(classes)}
    out = torch.zeros(len(labels), len(classes))
    for i, names in enumerate(labels):
        for name in _label_list(names):
            j = index.get(str(name))
            if j is None:
                valid = ", ".join(classes)
                raise DataError(f"The {split} label {name!r} (item {i}) is not a training class; valid: {valid}.")
            out[i, j] = 1.0
    return out


def _bool_column(col: Any, name: str) -> np.ndarray:
    """A validation column as booleans: bools, 0/1, or the strings "True"/"False" (any case); DataError otherwise."""
    if col.dtype == bool:
        return col.to_numpy()
    out = []
    for row, v in zip(col.index, col.tolist()):
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            out.append(v.strip().lower() == "true")
        elif isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)) and v in (0, 1):
            out.append(bool(v))
        else:
            raise DataError(
                f"Column {name!r} should say which rows are for validation (True/False); row {row!r} holds {v!r}."
            )
    return np.array(out, dtype=bool)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _check_labels(labels: Sequence[Any], split: str) -> None:
    """DataError naming the first missing label (None or NaN: it would otherwise become a class "nan")."""
    for i, label in enumerate(labels):
        if _is_missing(label):
            raise DataError(f"The {split} label of item {i} is missing ({label!r}); fill or drop that row first.")


def _check_texts(texts: Any, name: str) -> None:
    if isinstance(texts, (str, bytes)):
        raise DataError(
            f"Expected `{name}` to be a list of texts; received a single {type(texts).__name__} ({texts[:40]!r}). "
            "Wrap it in a list: [text]."
        )


def _read_text(item: Any, i: int) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, os.PathLike):
        return read_text_files([item])[0]
    raise DataError(f"Expected item {i} to be a text (str) or a text file path; received a {type(item).__name__}.")


# The keywords of TextDataLoaders.from_folder besides its own arguments.
_FOLDER_SETTINGS = ("tok", "vocab", "min_freq", "max_vocab", "max_len", "n_workers", "device", "seed", "random_seq_len")


def _check_vocab(vocab: Any) -> None:
    """ConfigError unless `vocab` is a Vocab holding the unknown and padding tokens (their ids are used everywhere)."""
    if not isinstance(vocab, Vocab):
        raise ConfigError(expected("a Vocab", "vocab", type(vocab).__name__))
    missing = [t for t in (UNK, PAD) if t not in vocab]
    if missing:
        raise ConfigError(
            f"The vocabulary lacks the special token(s) {', '.join(missing)}: unknown words and padding would take "
            "the ids of real words. Build it with Vocab.from_tokens / Vocab.from_counter (which put the special "
            "tokens first), or add them: Vocab([*SPECIAL_TOKENS, *words])."
        )


def _cache_dir(cache: bool | str | os.PathLike | None) -> Path | None:
    if cache is True:
        from ember.data.external import ember_home

        return ember_home() / "cache" / "text"
    if not cache:
        return None
    return Path(cache)


# ---------------------------------------------------------------------------------------------------------------------
# TextBlock: texts as the input of a DataBlock (classification).


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
