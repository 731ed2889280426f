"""Tests of the built-in tabular and ratings data: penguins() and synthetic_ratings()."""

from __future__ import annotations

import numpy as np
import pytest

from ember.core.errors import DataError
from ember.data.builtin import penguins, synthetic_ratings


def test_penguins_is_the_palmer_table():
    df = penguins()
    assert df.shape == (344, 8)
    assert list(df.columns) == [
        "species", "island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"
    ]  # fmt: skip
    assert df["species"].value_counts().to_dict() == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}
    assert df["bill_length_mm"].isna().sum() == 2 and df["sex"].isna().sum() == 11
    assert df["body_mass_g"].max() == 6300


def test_synthetic_ratings_shape_ids_and_determinism():
    df = synthetic_ratings(50, 40, n_factors=3, density=0.25, noise=0.2, seed=3)
    assert len(df) == 500 and list(df.columns) == ["user", "item", "rating"]
    assert df["user"].between(1, 50).all() and df["item"].between(1, 40).all()
    assert not df.duplicated(["user", "item"]).any()
    assert df["rating"].between(0.5, 5.5).all()
    assert df.attrs["noise_var"] == pytest.approx(0.04)
    again = synthetic_ratings(50, 40, n_factors=3, density=0.25, noise=0.2, seed=3)
    assert df.equals(again)
    assert not df.equals(synthetic_ratings(50, 40, n_factors=3, density=0.25, noise=0.2, seed=4))


def test_synthetic_ratings_signal_and_noise():
    clean = synthetic_ratings(100, 80, density=0.5, noise=0.0, seed=0)
    noisy = synthetic_ratings(100, 80, density=0.5, noise=0.5, seed=0)
    assert (clean[["user", "item"]].to_numpy() == noisy[["user", "item"]].to_numpy()).all()
    inside = (noisy["rating"] > 0.5) & (noisy["rating"] < 5.5) & (clean["rating"] > 0.5) & (clean["rating"] < 5.5)
    diff = (noisy["rating"] - clean["rating"])[inside]
    assert diff.std() == pytest.approx(0.5, rel=0.1)  # the noise is exactly what was asked
    assert clean["rating"].std() > 0.9  # and the signal dominates it
    assert abs(clean["rating"].mean() - 3.0) < 0.3


def test_default_size_is_movielens_100k_like():
    df = synthetic_ratings()
    assert df["user"].nunique() == 943 and df["item"].max() <= 1682
    assert 99_000 < len(df) < 101_000


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"n_users": 0}, "n_users"), ({"density": 1.5}, "density"), ({"noise": -1.0}, "noise")]
)
def test_synthetic_ratings_rejects_bad_arguments(kwargs, name):
    with pytest.raises(DataError, match=name):
        synthetic_ratings(**kwargs)


def test_penguins_needs_no_network(monkeypatch):
    import socket

    def no_net(*args, **kwargs):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", no_net)
    assert np.isfinite(penguins()["bill_depth_mm"].dropna()).all()
