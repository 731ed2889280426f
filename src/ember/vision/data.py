"""`ImageDataLoaders` and `SegmentationDataLoaders`: one-line factories for the common ways image data is laid out.

Each factory builds a :class:`~ember.data.DataBlock` with an :class:`~ember.vision.core.ImageBlock` input
and returns its :class:`~ember.data.DataLoaders`; anything less common is a DataBlock away.

>>> dls = ImageDataLoaders.from_folder(path, item_tfms=Resize(224))          # doctest: +SKIP
>>> dls = ImageDataLoaders.from_name_func(path, fnames, label_func=is_cat)   # doctest: +SKIP
>>> dls = SegmentationDataLoaders.from_label_func(path, fnames, label_func, codes=codes)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ember.core.errors import ConfigError, DataError, expected
from ember.data.block import CategoryBlock, DataBlock, MultiCategoryBlock
from ember.data.items import (
    ColReader,
    ColSplitter,
    GrandparentSplitter,
    RandomSplitter,
    RegexLabeller,
    get_image_files,
    parent_label,
    using_attr,
)
from ember.data.loaders import DataLoaders
from ember.vision.core import ImageBlock, MaskBlock

__all__ = ["ImageDataLoaders", "SegmentationDataLoaders"]

PathLike = str | os.PathLike


def _random_splitter(valid_pct: float | None, seed: int | None) -> RandomSplitter:
    return RandomSplitter(valid_pct=0.2 if valid_pct is None else valid_pct, seed=seed)


def _target_block(vocab: Sequence[Any] | None, y_block: Any = None, label_delim: str | None = None) -> Any:
    if y_block is not None:
        return y_block() if isinstance(y_block, type) else y_block
    if label_delim is not None:
        return MultiCategoryBlock(vocab=vocab, label_delim=label_delim)
    return CategoryBlock(vocab=vocab)


class ImageDataLoaders(DataLoaders):
    """Factories of image classification :class:`~ember.data.DataLoaders` (the returned objects are plain
    ``DataLoaders``; this class only groups the constructors).

    Every factory takes ``item_tfms`` and ``batch_tfms`` (added after the blocks' own), ``img_mode``
    ("RGB" or "L"), and ``**kwargs`` for :meth:`DataBlock.dataloaders` (``bs``, ``num_workers``, ``device``,
    ``cache`` …).
    """

    @staticmethod
    def _build(
        source: Any,
        get_items: Callable[[Any], Any] | None,
        splitter: Callable[[Any], Any],
        get_x: Any,
        get_y: Any,
        y_block: Any,
        item_tfms: Any,
        batch_tfms: Any,
        img_mode: str,
        **kwargs: Any,
    ) -> DataLoaders:
        dblock = DataBlock(
            blocks=(ImageBlock(mode=img_mode), y_block),
            get_items=get_items,
            splitter=splitter,
            get_x=get_x,
            get_y=get_y,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return dblock.dataloaders(source, **kwargs)

    @classmethod
    def from_folder(
        cls,
        path: PathLike,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: Any = None,
        batch_tfms: Any = None,
        img_mode: str = "RGB",
        **kwargs: Any,
    ) -> DataLoaders:
        """Images in ``path/<train>/<label>/*`` and ``path/<valid>/<label>/*`` (an ImageNet-style folder).

        With `valid_pct`, the folders' split is ignored and a random fraction of every image found under
        `path` is kept for validation instead.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataError(f"Cannot read images from {path}: no such folder.")
        if valid_pct is None:
            for sub in (train, valid):
                if not (path / sub).is_dir():
                    raise DataError(
                        f"Expected the folder {path / sub} (images in <{sub}>/<label>/). "
                        "Pass train=/valid= with your folder names, or valid_pct=0.2 to split at random."
                    )
            splitter: Any = GrandparentSplitter(train_name=train, valid_name=valid)
            folders: list[str] | None = [train, valid]
        else:
            splitter = _random_splitter(valid_pct, seed)
            folders = None
        return cls._build(
            path,
            partial(get_image_files, folders=folders),
            splitter,
            None,
            parent_label,
            CategoryBlock(vocab=vocab),
            item_tfms,
            batch_tfms,
            img_mode,
            **kwargs,
        )

    @classmethod
    def from_path_func(
        cls,
        path: PathLike,
        fnames: Sequence[PathLike],
        label_func: Callable[[Any], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: Any = None,
        batch_tfms: Any = None,
        img_mode: str = "RGB",
        **kwargs: Any,
    ) -> DataLoaders:
        """Images `fnames`, labelled by ``label_func(path_of_the_file)``, split at random."""
        if not callable(label_func):
            raise ConfigError(expected("a function", "label_func", label_func))
        fnames = _as_paths(path, fnames)
        return cls._build(
            fnames,
            None,
            _random_splitter(valid_pct, seed),
            None,
            label_func,
            CategoryBlock(vocab=vocab),
            item_tfms,
            batch_tfms,
            img_mode,
            **kwargs,
        )

    @classmethod
    def from_name_func(
        cls,
        path: PathLike,
        fnames: Sequence[PathLike],
        label_func: Callable[[str], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: Any = None,
        batch_tfms: Any = None,
        img_mode: str = "RGB",
        **kwargs: Any,
    ) -> DataLoaders:
        """Images `fnames`, labelled by ``label_func(file_name)`` (the name only, e.g. ``"Cat_12.jpg"``).

        >>> ImageDataLoaders.from_name_func(path, fnames, lambda n: n[0].isupper())   # doctest: +SKIP
        """
        if not callable(label_func):
            raise ConfigError(expected("a function", "label_func", label_func))
        return cls.from_path_func(
            path,
            fnames,
            using_attr(label_func, "name"),
            valid_pct=valid_pct,
            seed=seed,
            vocab=vocab,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
            img_mode=img_mode,
            **kwargs,
        )

    @classmethod
    def from_path_re(cls, path: PathLike, fnames: Sequence[PathLike], pat: str, **kwargs: Any) -> DataLoaders:
        """Images `fnames`, labelled by the first group of the regular expression `pat` searched in the full path."""
        return cls.from_path_func(path, fnames, RegexLabeller(pat), **kwargs)

    @classmethod
    def from_name_re(cls, path: PathLike, fnames: Sequence[PathLike], pat: str, **kwargs: Any) -> DataLoaders:
        """Images `fnames`, labelled by the first group of `pat` searched in the file name.

        >>> ImageDataLoaders.from_name_re(path, fnames, r"^(.+)_\\d+\\.jpg$")   # doctest: +SKIP
        """
        return cls.from_path_func(path, fnames, using_attr(RegexLabeller(pat), "name"), **kwargs)

    @classmethod
    def from_df(
        cls,
        df: Any,
        path: PathLike = ".",
        valid_pct: float = 0.2,
        seed: int | None = None,
        fn_col: int | str = 0,
        folder: PathLike | None = None,
        suff: str = "",
        label_col: int | str = 1,
        label_delim: str | None = None,
        y_block: Any = None,
        valid_col: int | str | None = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: Any = None,
        batch_tfms: Any = None,
        img_mode: str = "RGB",
        **kwargs: Any,
    ) -> DataLoaders:
        """Images named in a DataFrame: file names in `fn_col` (under ``path/folder``, plus `suff`), labels in
        `label_col`.

        Args:
            label_delim: the labels are several per row, separated by this (multi-label classification).
            y_block: the target block (default: a category, or a multi-category with `label_delim`).
            valid_col: a boolean column marking the validation rows (instead of a random split).
        """
        if not (hasattr(df, "iloc") and hasattr(df, "columns")):
            raise ConfigError(expected("a pandas DataFrame", "df", type(df).__name__))
        pref = Path(path) / folder if folder is not None else Path(path)
        splitter = ColSplitter(valid_col) if valid_col is not None else _random_splitter(valid_pct, seed)
        return cls._build(
            df,
            None,
            splitter,
            ColReader(fn_col, pref=pref, suff=suff),
            ColReader(label_col, label_delim=label_delim),
            _target_block(vocab, y_block, label_delim),
            item_tfms,
            batch_tfms,
            img_mode,
            **kwargs,
        )

    @classmethod
    def from_csv(
        cls,
        path: PathLike,
        csv_fname: PathLike = "labels.csv",
        header: str | int | None = "infer",
        delimiter: str | None = None,
        **kwargs: Any,
    ) -> DataLoaders:
        """Like :meth:`from_df`, with the table read from ``path/csv_fname`` (other arguments as from_df)."""
        import pandas as pd

        csv = Path(path) / csv_fname
        if not csv.is_file():
            raise DataError(f"Cannot read the labels: no file {csv}.")
        df = pd.read_csv(csv, header=header) if delimiter is None else pd.read_csv(csv, header=header, sep=delimiter)
        return cls.from_df(df, path=path, **kwargs)

    @classmethod
    def from_lists(
        cls,
        path: PathLike,
        fnames: Sequence[PathLike],
        labels: Sequence[Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        y_block: Any = None,
        vocab: Sequence[Any] | None = None,
        item_tfms: Any = None,
        batch_tfms: Any = None,
        img_mode: str = "RGB",
        **kwargs: Any,
    ) -> DataLoaders:
        """Images `fnames` (relative to `path`) with their `labels`, given as two lists of the same length."""
        fnames = _as_paths(path, fnames)
        labels = list(labels)
        if len(labels) != len(fnames):
            raise DataError(expected(f"{len(fnames)} labels (one per file)", "len(labels)", len(labels)))
        pairs = list(zip(fnames, labels))
        return cls._build(
            pairs,
            None,
            _random_splitter(valid_pct, seed),
            _first,
            _second,
            _target_block(vocab, y_block),
            item_tfms,
            batch_tfms,
            img_mode,
            **kwargs,
        )


class SegmentationDataLoaders(DataLoaders):
    """Factories of semantic segmentation :class:`~ember.data.DataLoaders`: images with a mask each.

    The target is a :class:`~ember.vision.core.MaskBlock`, so ``dls.vocab`` is the codes, ``dls.c`` their
    number and ``dls.loss_func`` ``CrossEntropyLossFlat(axis=1)``. Item and batch transforms move every
    mask with its image (nearest-neighbour sampling keeps its class ids).
    """

    @classmethod
    def from_label_func(
        cls,
        path: PathLike,
        fnames: Sequence[PathLike],
        label_func: Callable[[Any], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        codes: Sequence[Any] | None = None,
        item_tfms: Any = None,
        batch_tfms: Any = None,
        img_mode: str = "RGB",
        **kwargs: Any,
    ) -> DataLoaders:
        """Images `fnames` (relative to `path`), each with the mask ``label_func(image_path)``, split at random.

        Args:
            label_func: the path of an image -> its mask (a file whose pixels are class ids, or an array).
            codes: the class names, id ``i`` being ``codes[i]``; ``None`` names them "0", "1", … up to the
                largest id in the training masks (which are all read once to find it).
            kwargs: passed to :meth:`DataBlock.dataloaders` (``bs``, ``num_workers``, ``device``, ``cache`` …).

        >>> path = shapes_segmentation()                                                 # doctest: +SKIP
        >>> codes = (path / "codes.txt").read_text().split()                             # doctest: +SKIP
        >>> dls = SegmentationDataLoaders.from_label_func(                               # doctest: +SKIP
        ...     path, get_image_files(path / "images"), lambda p: path / "labels" / f"{p.stem}.png", codes=codes)
        """
        if not callable(label_func):
            raise ConfigError(expected("a function", "label_func", label_func))
        fnames = _as_paths(path, fnames)
        return ImageDataLoaders._build(
            fnames,
            None,
            _random_splitter(valid_pct, seed),
            None,
            label_func,
            MaskBlock(codes=codes),
            item_tfms,
            batch_tfms,
            img_mode,
            **kwargs,
        )


def _first(pair: tuple) -> Any:
    return pair[0]


def _second(pair: tuple) -> Any:
    return pair[1]


def _as_paths(path: PathLike, fnames: Sequence[PathLike]) -> list[Path]:
    """`fnames` as paths, joined to `path` when relative."""
    base = Path(path)
    out = [Path(f) if Path(f).is_absolute() else base / f for f in fnames]
    if not out:
        raise DataError(f"No file names given (under {base}).")
    return out
