"""Collaborative-filtering data: (user, item, rating) rows turned once into codes, and loaders that slice them.

A batch is ``(x, y)``: ``x`` int64 ``(B, 2)`` (user code, item code), ``y`` float32 ``(B,)`` ratings. Codes
come from a vocabulary of every user and every item of the table, with ``#na#`` at 0 as in the tabular
:class:`~ember.tabular.procs.Categorify` (which does the work, so the encoding exports the same way).

>>> dls = CollabDataLoaders.from_df(ratings, bs=64, seed=42)   # doctest: +SKIP
>>> x, y = dls.one_batch()                                     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ember.core.device import default_device
from ember.core.errors import DataError, ExportError, expected
from ember.core.recipe import dump, load, register_recipe
from ember.data.loaders import DataLoaders
from ember.tabular.data import (
    SliceLoader,
    check_bs,
    check_dl_kwargs,
    print_table,
    random_split_idx,
    read_csv,
    split_read_csv_kwargs,
    tensor_loader,
)
from ember.tabular.procs import Categorify, TabularProcessor, _check_frame, _missing_col, check_numeric, lookup

__all__ = ["CollabDataLoaders"]


@register_recipe()
class CollabDataLoaders(DataLoaders):
    """Training and validation loaders over ratings; build them with :meth:`from_df` or :meth:`from_csv`.

    Export writes the user/item coding, the column names, the mean rating and the ratings per item
    (:meth:`to_recipe`); loading gives inference loaders with no ratings (:meth:`from_recipe`) with which
    ``predict``, ``bias``, ``weight``, ``top_items`` and ``item_pca`` work as before export.

    Attributes:
        processor: the fitted encoding of users and items (and the rating column), exportable.
        user_name, item_name, rating_name: the columns.
        rating_mean: the mean training rating (what an unknown user or item can be given).
        item_counts: ratings per item code (``#na#`` included), from the whole table.
    """

    processor: TabularProcessor

    @classmethod
    def from_df(
        cls,
        ratings: pd.DataFrame,
        valid_pct: float = 0.2,
        user_name: str | None = None,
        item_name: str | None = None,
        rating_name: str | None = None,
        seed: int | None = None,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        device: torch.device | str | None = None,
        path: str | os.PathLike = ".",
        **dl_kwargs: Any,
    ) -> CollabDataLoaders:
        """Encode the users and items of `ratings` and split it at random.

        Args:
            ratings: one row per rating.
            valid_pct: the share of rows held out for validation.
            user_name, item_name, rating_name: the columns; those not given are the first, second and third
                columns (a ``user, item, rating, ...`` table), or the first column not named when that one is
                named for another role.
            seed: makes the split and the shuffling repeatable.
            bs: training batch size (validation: `val_bs`, default ``2 * bs``).

        Raises:
            DataError: a column is missing, one column is named for two roles, a rating is missing or not a number.
        """
        if not isinstance(ratings, pd.DataFrame):
            raise DataError(expected("a pandas DataFrame", "ratings", type(ratings).__name__))
        user_name, item_name, rating_name = _column_names(ratings, user_name, item_name, rating_name)
        bs = check_bs(bs)
        val_bs = None if val_bs is None else check_bs(val_bs, "val_bs")
        check_dl_kwargs(dl_kwargs, "CollabDataLoaders.from_df")
        check_numeric(ratings, rating_name, "rating_name")
        # Users and items are identifiers by nature: no cap on their number.
        cat = Categorify(max_vocab=10**9)
        proc = TabularProcessor([user_name, item_name], y_names=rating_name, procs=[cat], y_kind="regression")
        # Every user and item gets an embedding row, including those that only appear in validation.
        cats, _, ys = proc.setup(ratings)
        train_idx, valid_idx = random_split_idx(len(ratings), valid_pct, seed)
        if len(train_idx) == 0:
            raise DataError("The ratings table is empty (or `valid_pct` leaves no training row).")
        device = default_device(device)
        t_idx, v_idx = torch.from_numpy(train_idx), torch.from_numpy(valid_idx)
        train_t = (cats[t_idx], ys[t_idx])
        valid_t = (cats[v_idx], ys[v_idx])
        if device.type != "cpu" and not dl_kwargs.get("num_workers"):
            train_t = tuple(t.to(device) for t in train_t)
            valid_t = tuple(t.to(device) for t in valid_t)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        kinds = ("tabular_cat", "regression")
        drop = len(train_idx) > bs
        train = SliceLoader(
            tensor_loader(train_t, bs, shuffle=shuffle, drop_last=drop, generator=gen, **dl_kwargs),
            device=device,
            n_inp=1,
            kinds=kinds,
            split=0,
        )
        valid = None
        if len(valid_idx):
            valid = SliceLoader(
                tensor_loader(valid_t, val_bs or 2 * bs, shuffle=False, **dl_kwargs),
                device=device,
                n_inp=1,
                kinds=kinds,
                split=1,
            )
        dls = cls(train, valid, device=device, n_inp=1)
        dls.processor = proc
        dls.user_name, dls.item_name, dls.rating_name = user_name, item_name, rating_name
        for dl in dls.loaders:
            dl.to_table = dls._batch_table
        dls.rating_mean = float(ys[t_idx].mean())
        dls.item_counts = np.bincount(cats[:, 1].numpy(), minlength=dls.n_items)
        dls.path = path
        return dls

    @classmethod
    def from_csv(cls, csv: str | os.PathLike, **kwargs: Any) -> CollabDataLoaders:
        """Read a CSV file with pandas and call :meth:`from_df`.

        Keyword arguments of ``pandas.read_csv`` that :meth:`from_df` does not take (``sep="\\t"``, ``header``,
        ``names``, ``encoding``, …) go to ``read_csv``; the others to :meth:`from_df`.
        """
        read_kwargs = split_read_csv_kwargs(kwargs, cls.from_df)
        return cls.from_df(read_csv(csv, **read_kwargs), **kwargs)

    # ---------------------------------------------------------------------------------------------
    @property
    def loss_func(self) -> Any:
        from ember.losses import MSELossFlat

        return MSELossFlat()

    @property
    def classes(self) -> dict[str, list[Any]]:
        """The vocabulary of users and of items (``#na#`` first), by column name."""
        return self.processor.proc(Categorify).vocabs

    @property
    def n_users(self) -> int:
        return len(self.classes[self.user_name])

    @property
    def n_items(self) -> int:
        return len(self.classes[self.item_name])

    def encode(self, values: Any, is_item: bool = True) -> np.ndarray:
        """Users or items to their codes; 0 for those not in the vocabulary."""
        vocab = self.classes[self.item_name if is_item else self.user_name]
        values = values if isinstance(values, (pd.Series, np.ndarray)) else list(values)
        return lookup(vocab[1:], values) + 1

    def decode(self, codes: torch.Tensor | np.ndarray, is_item: bool = True) -> np.ndarray:
        """Codes back to users or items."""
        cat = self.processor.proc(Categorify)
        return cat.decode(self.item_name if is_item else self.user_name, codes)

    def unknown_message(self, users: pd.Series, items: pd.Series, u: np.ndarray, i: np.ndarray) -> str | None:
        """The DataError message naming users (code `u` 0) and items (code `i` 0) not in the vocabulary, or None."""
        bad_u = list(dict.fromkeys(pd.Series(users)[u == 0].tolist()))[:5]
        bad_i = list(dict.fromkeys(pd.Series(items)[i == 0].tolist()))[:5]
        named = ((self.user_name, bad_u), (self.item_name, bad_i))
        parts = [f"{name} {bad!r}" for name, bad in named if bad]
        if not parts:
            return None
        users_known = self.classes[self.user_name]
        example = f"known {self.user_name}s look like {users_known[1]!r}" if len(users_known) > 1 else ""
        return (
            f"Unknown {' and '.join(parts)}: the model has no factors for them (check the type too"
            f"{': ' + example if example else ''})."
        )

    def test_dl(self, ratings: pd.DataFrame, with_labels: bool | None = None, bs: int | None = None) -> SliceLoader:
        """A loader over new (user, item[, rating]) rows, coded as the training rows were, for
        ``learn.get_preds(dl=...)``: batches are ``(x,)``, or ``(x, y)`` with the ratings.

        Args:
            ratings: a DataFrame with the user and item columns (and the rating column for `with_labels`).
            with_labels: keep the ratings (for a test loss); default: when the rating column is there and not empty.

        Raises:
            DataError: a column is missing, or a user or item is not in the vocabulary (the model has no factors
                for it: drop those rows, or use ``learn.predict(ratings, unknown="mean")``).
        """
        _check_frame(ratings)
        for arg, c in (("user_name", self.user_name), ("item_name", self.item_name)):
            if c not in ratings.columns:
                raise DataError(_missing_col(arg, c, ratings))
        r = self.rating_name
        if with_labels is None:
            with_labels = r in ratings.columns and not ratings[r].isna().all()
        elif with_labels and r not in ratings.columns:
            raise DataError(_missing_col("rating_name", r, ratings))
        if with_labels:
            check_numeric(ratings, r, "rating_name")
        cats, _, ys = self.processor.process(ratings, with_y=bool(with_labels))
        u, i = cats[:, 0].numpy(), cats[:, 1].numpy()
        msg = self.unknown_message(ratings[self.user_name], ratings[self.item_name], u, i)
        if msg:
            u_in, i_in = (
                f"ratings[{self.user_name!r}].isin(known_users)",
                f"ratings[{self.item_name!r}].isin(known_items)",
            )
            keep = f"ratings[{u_in} & {i_in}]"
            raise DataError(
                f"{msg} Drop those rows first ({keep}, the known ones in dls.classes), or use "
                'learn.predict(ratings, unknown="mean").'
            )
        tensors = (cats,) if ys is None else (cats, ys)
        kinds = ("tabular_cat", "regression")[: len(tensors)]
        dl = SliceLoader(
            tensor_loader(tensors, check_bs(bs or 2 * (self.bs or 32)), shuffle=False),
            device=self.device,
            n_inp=1,
            kinds=kinds,
            split=1,
        )
        dl.to_table = self._batch_table
        return dl

    def _batch_table(self, batch: Sequence[torch.Tensor], max_n: int | None = None) -> pd.DataFrame:
        """A batch ``(x[, y])`` as a table: user, item (and rating)."""
        x = batch[0][:max_n].cpu()
        df = pd.DataFrame({self.user_name: self.decode(x[:, 0], is_item=False), self.item_name: self.decode(x[:, 1])})
        if len(batch) > 1:
            df[self.rating_name] = batch[1][:max_n].cpu().float().numpy()
        return df

    def show_batch(self, max_n: int = 10, print_out: bool = True) -> pd.DataFrame:
        """The first `max_n` ratings of a training batch as a table (user, item, rating)."""
        df = self._batch_table(self.train.one_batch(), max_n)
        if print_out:
            print_table(df)
        return df

    # -- export ---------------------------------------------------------------------------------------
    def to_recipe(self) -> dict[str, Any]:
        """What inference and analysis need, as JSON values (no ratings)."""
        return {
            "processor": dump(self.processor),
            "names": [self.user_name, self.item_name, self.rating_name],
            "rating_mean": float(self.rating_mean),
            "item_counts": [int(n) for n in self.item_counts],
            "bs": self.bs,
        }

    @classmethod
    def from_recipe(cls, data: dict[str, Any]) -> CollabDataLoaders:
        """Inference loaders: an empty training loader, no validation loader, and the exported coding."""
        missing = [k for k in ("processor", "names", "rating_mean", "item_counts") if k not in data]
        if missing:
            raise ExportError(f"The ratings data recipe lacks {missing}; the file is incomplete.")
        proc = load(data["processor"])
        if not isinstance(proc, TabularProcessor) or proc.proc(Categorify) is None:
            raise ExportError(expected("a TabularProcessor with a Categorify", "processor", type(proc).__name__))
        bs = int(data.get("bs") or 64)
        tensors = (torch.zeros((0, 2), dtype=torch.int64), torch.zeros(0, dtype=torch.float32))  # (0, 2), (0,)
        kinds = ("tabular_cat", "regression")
        train = SliceLoader(tensor_loader(tensors, bs, shuffle=False), device="cpu", n_inp=1, kinds=kinds, split=0)
        dls = cls(train, None, device="cpu", n_inp=1)
        dls.processor = proc
        dls.user_name, dls.item_name, dls.rating_name = data["names"]
        train.to_table = dls._batch_table
        dls.rating_mean = float(data["rating_mean"])
        dls.item_counts = np.asarray(data["item_counts"], dtype=np.int64)
        if len(dls.item_counts) != dls.n_items:
            raise ExportError(
                f"The ratings data recipe counts {len(dls.item_counts)} items but codes {dls.n_items}; "
                "the file is inconsistent."
            )
        return dls


def _column_names(
    ratings: pd.DataFrame, user_name: str | None, item_name: str | None, rating_name: str | None
) -> tuple[Any, Any, Any]:
    """The user, item and rating columns: those given; the others by position (the first, second and third columns,
    fastai's defaults), or, when that column is already named for another role, the first column not named.

    Raises:
        DataError: a named column is missing, the table has too few columns, or one column is named for two roles.
    """
    given = {"user_name": user_name, "item_name": item_name, "rating_name": rating_name}
    for arg, c in given.items():
        if c is not None and c not in ratings.columns:
            raise DataError(_missing_col(arg, c, ratings))
    taken = {c for c in given.values() if c is not None}
    free = [c for c in ratings.columns if c not in taken]
    names = {}
    columns = list(ratings.columns)
    for position, (arg, c) in enumerate(given.items()):
        if c is None and position < len(columns) and columns[position] in free:
            c = columns[position]
            free.remove(c)
        if c is None:
            if not free:
                raise DataError(
                    f"Expected a ratings table with user, item and rating columns; received columns "
                    f"{list(ratings.columns)}, which leave no column for `{arg}`. Name the columns with user_name=, "
                    "item_name=, rating_name=."
                )
            c = free.pop(0)
        names[arg] = c
    args = list(names)
    for a in range(3):
        for b in range(a + 1, 3):
            if names[args[a]] == names[args[b]]:
                raise DataError(
                    f"`{args[a]}` and `{args[b]}` are both the column {names[args[a]]!r}: a rating pairs a user with "
                    "an item, so each role needs its own column. Name the right ones with user_name=, item_name=, "
                    "rating_name=."
                )
    return names["user_name"], names["item_name"], names["rating_name"]
