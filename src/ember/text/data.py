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

This module holds :class:`TextDataLoaders` and the loader factories; the datasets live in
:mod:`ember.text.datasets`, the checks and encoding of texts and labels in :mod:`ember.text.inputs`, and the
DataBlock input :class:`~ember.text.block.TextBlock` in :mod:`ember.text.block` (all importable from here).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from ember.core.errors import ConfigError, DataError, ExportError, expected
from ember.core.recipe import dump, load, register_recipe
from ember.data.loaders import DataLoaders, DeviceLoader
from ember.text.block import TextBlock, _text_block_base, _text_key  # noqa: F401  (kept importable from here)
from ember.text.datasets import ClassificationDataset, LMDataset, _check_int, _NoTexts
from ember.text.inputs import (
    _bool_column,
    _check_labels,
    _check_texts,
    _check_vocab,
    _encode_labels,
    _encode_multi_labels,
    _is_missing,  # noqa: F401  (kept importable from here)
    _label_list,
    _read_text,
)
from ember.text.tokenize import FLD, TokenizedCorpus, Tokenizer, _text_files, tokenize_corpus
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


# The keywords of TextDataLoaders.from_folder besides its own arguments.
_FOLDER_SETTINGS = ("tok", "vocab", "min_freq", "max_vocab", "max_len", "n_workers", "device", "seed", "random_seq_len")


def _cache_dir(cache: bool | str | os.PathLike | None) -> Path | None:
    if cache is True:
        from ember.data.external import ember_home

        return ember_home() / "cache" / "text"
    if not cache:
        return None
    return Path(cache)
