"""Tests of ember.collab: loaders, models, the learner's predictions and analysis, and recovery of known factors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ember.collab import (
    CollabDataLoaders,
    EmbeddingDotBias,
    EmbeddingNN,
    collab_learner,
    embedding_dot_bias,
    embedding_nn,
)
from ember.core.errors import ConfigError, DataError
from ember.core.recipe import dump, load
from ember.data.builtin import synthetic_ratings


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return synthetic_ratings(200, 100, n_factors=2, density=0.5, noise=0.3, seed=0)


@pytest.fixture(scope="module")
def trained(ratings):
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=0, device="cpu")
    learn = collab_learner(dls, n_factors=4, y_range=(0.5, 5.5))
    learn.silent = True
    learn.fit_one_cycle(6, 3e-2, wd=0.05)
    return learn


def test_loaders_encode_users_and_items(ratings):
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0, device="cpu")
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("user", "item", "rating")
    assert dls.n_users == ratings["user"].nunique() + 1 and dls.n_items == ratings["item"].nunique() + 1
    x, y = dls.one_batch()
    assert x.dtype == torch.int64 and x.shape == (64, 2) and y.dtype == torch.float32 and y.shape == (64,)
    assert dls.n_inp == 1 and len(dls.valid.dataset) == round(len(ratings) * 0.2)
    assert dls.rating_mean == pytest.approx(ratings["rating"].mean(), abs=0.05)
    shown = dls.show_batch(3, print_out=False)
    row = ratings[(ratings.user == shown.user.iloc[0]) & (ratings.item == shown["item"].iloc[0])]
    assert row["rating"].iloc[0] == pytest.approx(shown["rating"].iloc[0], rel=1e-5)


def test_loaders_name_missing_columns_and_bad_ratings(ratings, tmp_path):
    with pytest.raises(DataError, match="movie"):
        CollabDataLoaders.from_df(ratings, item_name="movie")
    bad = ratings.head(50).copy()
    bad.loc[3, "rating"] = np.nan
    with pytest.raises(DataError, match="`rating`.*missing"):
        CollabDataLoaders.from_df(bad)
    path = tmp_path / "r.csv"
    ratings.head(100).to_csv(path, index=False)
    assert CollabDataLoaders.from_csv(path, bs=16).one_batch()[0].shape == (16, 2)


def test_model_recovers_the_signal_of_synthetic_ratings(trained, ratings):
    mse = trained.validate()[0]
    noise_var = ratings.attrs["noise_var"]  # 0.09: what a perfect model would score
    assert mse < noise_var * 1.5 + 0.01
    assert mse < 0.2 * ratings["rating"].var()  # far below predicting the mean


def test_predict_pairs_and_unknowns(trained, ratings):
    u, i, r = ratings.iloc[0]
    one = trained.predict((int(u), int(i)))
    assert isinstance(one, float) and one == pytest.approx(r, abs=1.2)
    many = trained.predict(ratings.head(5))
    assert many.shape == (5,) and many[0] == pytest.approx(one, abs=1e-5)
    assert trained.predict([(int(u), int(i)), (1, 2)]).shape == (2,)
    with pytest.raises(DataError, match=r"Unknown user \[9999\]"):
        trained.predict((9999, 1))
    with pytest.raises(DataError, match=r"item \['x'\]"):
        trained.predict([(1, "x")])
    mixed = trained.predict([(9999, 1), (int(u), int(i))], unknown="mean")
    assert mixed[0] == pytest.approx(trained.dls.rating_mean) and mixed[1] == pytest.approx(one, abs=1e-5)
    with pytest.raises(ConfigError, match="unknown"):
        trained.predict((1, 1), unknown="zero")


def test_show_results(trained):
    df = trained.show_results(max_n=5, print_out=False)
    assert list(df.columns) == ["user", "item", "rating", "rating_pred"]
    assert len(df) == 5 and ((df.rating - df.rating_pred).abs() < 1.5).all()


def test_bias_weight_and_top_items(trained):
    b = trained.bias([1, 2, 3])
    w = trained.weight([1, 2, 3])
    assert b.shape == (3,) and w.shape == (3, 4)
    assert torch.allclose(trained.weight([2], is_item=False), trained.model.u_weight.weight[2:3].detach())
    top, bottom = trained.top_items(5), trained.bottom_items(5)
    assert list(top.columns) == ["item", "bias", "n_ratings"]
    assert top["bias"].is_monotonic_decreasing and bottom["bias"].is_monotonic_increasing
    assert top["bias"].iloc[0] > bottom["bias"].iloc[0]
    assert (trained.top_items(5, min_ratings=45)["n_ratings"] >= 45).all()
    with pytest.raises(DataError, match="Unknown item"):
        trained.bias([123456])


def test_item_pca(trained):
    pca = trained.item_pca(3)
    assert list(pca.columns) == ["item", "pc1", "pc2", "pc3"] and len(pca) == trained.dls.n_items - 1
    ratios = pca.attrs["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1 + 1e-6
    coords = torch.tensor(pca[["pc1", "pc2", "pc3"]].to_numpy())
    gram = coords.T @ coords
    assert torch.allclose(gram - torch.diag(torch.diag(gram)), torch.zeros(3, 3, dtype=gram.dtype), atol=1e-3)
    fig = trained.plot_item_pca(n_items=10)
    assert len(fig.axes[0].texts) == 10
    with pytest.raises(ConfigError, match="`n`"):
        trained.item_pca(99)


def test_model_recipes_rebuild_the_models(trained):
    recipe = json.loads(json.dumps(trained.model_recipe))
    assert recipe["factory"] == "embedding_dot_bias"
    model = embedding_dot_bias(**recipe["kwargs"])
    model.load_state_dict(trained.model.state_dict())
    x = trained.dls.valid.one_batch()[0]
    assert torch.allclose(model(x), trained.predict_tensor(x), atol=1e-6)
    proc = load(json.loads(json.dumps(dump(trained.dls.processor))))
    assert proc.cat_names == ["user", "item"]
    state = json.loads(json.dumps(dump(trained.dls)))  # what export writes for the data
    assert state["data"]["rating_mean"] == pytest.approx(trained.dls.rating_mean)


def test_models_shapes():
    m = EmbeddingDotBias(3, 5, 7, y_range=(0.0, 5.0))
    out = m(torch.tensor([[1, 2], [4, 6]]))
    assert out.shape == (2,) and (out > 0).all() and (out < 5).all()
    nn_model = EmbeddingNN([(5, 3), (7, 4)], layers=[8])
    assert nn_model(torch.tensor([[1, 2], [4, 6], [0, 0]])).shape == (3,)
    rebuilt = embedding_nn(emb_szs=[[5, 3], [7, 4]], layers=[8], y_range=[0, 1])
    assert rebuilt(torch.tensor([[1, 2], [4, 6]])).shape == (2,)
    with pytest.raises(ConfigError, match="n_users"):
        EmbeddingDotBias(3, 0, 7)


def test_nn_learner_trains(ratings):
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=256, seed=0, device="cpu")
    learn = collab_learner(dls, use_nn=True, layers=[32], y_range=(0.5, 5.5))
    learn.silent = True
    assert isinstance(learn.model, EmbeddingNN) and learn.model_recipe["factory"] == "embedding_nn"
    before = learn.validate()[0]
    learn.fit_one_cycle(3, 1e-2)
    assert learn.validate()[0] < 0.7 * before
    with pytest.raises(ConfigError, match="dot-product"):
        learn.top_items()
    assert learn.weight([1, 2]).shape == (2, learn.model_recipe["kwargs"]["emb_szs"][1][1])


def test_default_columns_are_the_ones_not_already_named(ratings):
    reordered = ratings.head(60)[["rating", "user", "item"]]
    dls = CollabDataLoaders.from_df(reordered, rating_name="rating", user_name="user", bs=16)
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("user", "item", "rating")
    dls = CollabDataLoaders.from_df(reordered, rating_name="rating", bs=16)
    assert (dls.user_name, dls.item_name) == ("user", "item")
    # MovieLens as in the lesson: columns user, movie, rating, timestamp, title and item_name="title"; the rating
    # is still the third column (not the first one left over, the movie ids)
    movielens = ratings.head(60).rename(columns={"item": "movie"})[["user", "movie", "rating"]]
    movielens = movielens.assign(timestamp=0, title="t" + movielens["movie"].astype(str))
    dls = CollabDataLoaders.from_df(movielens, item_name="title", bs=16)
    assert (dls.user_name, dls.item_name, dls.rating_name) == ("user", "title", "rating")
    with pytest.raises(DataError, match=r"`user_name` and `item_name` are both the column 'user'"):
        CollabDataLoaders.from_df(ratings, user_name="user", item_name="user")
    with pytest.raises(DataError, match=r"`item_name` and `rating_name` are both"):
        CollabDataLoaders.from_df(ratings, item_name="rating", rating_name="rating")
    with pytest.raises(DataError, match=r"no column for `rating_name`"):
        CollabDataLoaders.from_df(ratings[["user", "item"]])
    with pytest.raises(DataError, match=r"`rating_name`.*'stars'"):
        CollabDataLoaders.from_df(ratings, rating_name="stars")


def test_test_dl_scores_a_held_out_table_and_predict_batch_matches_predict(trained, ratings):
    held = ratings.iloc[:7]
    dl = trained.dls.test_dl(held)
    preds, targs = trained.get_preds(dl=dl)
    np.testing.assert_allclose(preds.reshape(-1).numpy(), trained.predict(held), atol=1e-5)
    assert torch.allclose(targs, torch.tensor(held["rating"].to_numpy(), dtype=torch.float32))
    unlabelled = trained.test_dl(held.drop(columns="rating"), bs=3)
    assert len(unlabelled) == 3 and len(unlabelled.one_batch()) == 1
    assert trained.get_preds(dl=unlabelled)[1] is None
    shown = trained.show_results(dl=unlabelled, print_out=False)
    assert list(shown.columns) == ["user", "item", "rating_pred"]
    ans, dec, out = trained.predict_batch([(1, 2), (3, 4)])
    assert ans == pytest.approx(trained.predict([(1, 2), (3, 4)]).tolist(), abs=1e-6) and dec.shape == out.shape == (2,)
    with pytest.raises(DataError, match=r"Unknown user \[9999\].*Drop those rows"):
        trained.dls.test_dl(pd.DataFrame({"user": [1, 9999], "item": [2, 3]}))
    with pytest.raises(DataError, match=r"`user` holds str values.*number"):
        trained.dls.test_dl(held.astype({"user": str}))


def test_from_csv_passes_read_csv_options_on(ratings, tmp_path):
    path = tmp_path / "u.data"
    ratings.head(100).to_csv(path, sep="\t", header=False, index=False)
    dls = CollabDataLoaders.from_csv(path, sep="\t", header=None, names=["user", "item", "rating"], bs=16)
    assert dls.one_batch()[0].shape == (16, 2) and dls.rating_name == "rating"
    with pytest.raises(ConfigError, match=r"unknown keyword.*\['foo'\]"):
        CollabDataLoaders.from_df(ratings, foo=1)


def test_bad_arguments_are_named(trained):
    dls = trained.dls
    with pytest.raises(ConfigError, match=r"`config`.*\['foo'\]"):
        collab_learner(dls, use_nn=True, config={"foo": 1})
    with pytest.raises(ConfigError, match=r"`emb_szs`.*\['usr'\].*'user', 'item'"):
        collab_learner(dls, use_nn=True, emb_szs={"usr": 5})
    with pytest.raises(ConfigError, match="y_range"):
        collab_learner(dls, y_range=5)
    with pytest.raises(DataError, match=r"a list of items.*\[1\]"):
        trained.bias(1)
    with pytest.raises(ConfigError, match="components"):
        trained.plot_item_pca(components=(0, 1))
