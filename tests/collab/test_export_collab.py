"""Export and load of collab learners: predictions and the analysis helpers give the same answers after loading."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import ember
from ember.collab import CollabDataLoaders, CollabLearner, EmbeddingDotBias, EmbeddingNN, collab_learner
from ember.core.errors import ConfigError, DataError, ExportError
from ember.core.recipe import dump, load
from ember.data.builtin import synthetic_ratings
from ember.learner.export import read_recipe
from ember.losses import MSELossFlat


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return synthetic_ratings(60, 40, n_factors=2, density=0.4, noise=0.3, seed=0)


@pytest.fixture(scope="module")
def exported(ratings, tmp_path_factory):
    """A dot-product recommender trained briefly, its file, and the learner loaded back from it."""
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=0, device="cpu")
    learn = collab_learner(dls, n_factors=4, y_range=(0.5, 5.5), path=tmp_path_factory.mktemp("collab"))
    learn.silent = True
    learn.fit_one_cycle(2, 3e-2, wd=0.05)
    path = learn.export("ratings.ember", verbose=False)
    return learn, path, ember.load_learner(path)


def test_recipe_names_the_application_learner_factory_and_data(exported, ratings):
    learn, path, _ = exported
    rec = read_recipe(path)
    assert rec["application"] == "ember.collab" and rec["learner"] == "CollabLearner"
    assert rec["model"] == {"factory": "embedding_dot_bias", "kwargs": learn.model_recipe["kwargs"]}
    assert rec["loss"]["type"] == "MSELossFlat"
    data = rec["data"]["data"]
    assert rec["data"]["type"] == "CollabDataLoaders" and data["names"] == ["user", "item", "rating"]
    assert data["rating_mean"] == pytest.approx(learn.dls.rating_mean) and data["bs"] == 64
    assert data["item_counts"] == learn.dls.item_counts.tolist() and sum(data["item_counts"]) == len(ratings)


def test_loaded_learner_is_an_inference_collab_learner(exported):
    learn, _, loaded = exported
    assert type(loaded) is CollabLearner and type(loaded.dls) is CollabDataLoaders
    assert isinstance(loaded.model, EmbeddingDotBias) and isinstance(loaded.loss_func, MSELossFlat)
    d, ref = loaded.dls, learn.dls
    assert (d.user_name, d.item_name, d.rating_name) == ("user", "item", "rating")
    assert (d.n_users, d.n_items) == (ref.n_users, ref.n_items) and d.classes == ref.classes
    assert d.rating_mean == ref.rating_mean and np.array_equal(d.item_counts, ref.item_counts)
    assert len(d.train.dataset) == 0 and d.valid is None and d.bs == 64
    assert loaded.model_recipe == learn.model_recipe


def test_predict_gives_the_same_ratings(exported, ratings):
    learn, _, loaded = exported
    user, item = ratings["user"].iloc[0], ratings["item"].iloc[0]
    assert loaded.predict((user, item)) == pytest.approx(learn.predict((user, item)), abs=1e-6)
    pairs = list(zip(ratings["user"].iloc[:25], ratings["item"].iloc[:25]))
    np.testing.assert_allclose(loaded.predict(pairs), learn.predict(pairs), atol=1e-6)
    np.testing.assert_allclose(loaded.predict(ratings.iloc[:25]), learn.predict(pairs), atol=1e-6)
    mixed = [(user, item), (10**6, item), (user, 10**6)]
    out = loaded.predict(mixed, unknown="mean")
    np.testing.assert_allclose(out, learn.predict(mixed, unknown="mean"), atol=1e-6)
    assert out[1] == out[2] == pytest.approx(learn.dls.rating_mean)
    with pytest.raises(DataError, match="Unknown user"):
        loaded.predict((10**6, item))


def test_analysis_helpers_give_the_same_answers(exported, ratings):
    learn, _, loaded = exported
    items = sorted(ratings["item"].unique())[:5]
    assert torch.equal(loaded.bias(items), learn.bias(items))
    assert torch.equal(
        loaded.bias([ratings["user"].iloc[0]], is_item=False), learn.bias([ratings["user"].iloc[0]], False)
    )
    assert torch.equal(loaded.weight(items), learn.weight(items)) and loaded.weight(items).shape == (5, 4)
    top, ref_top = loaded.top_items(5, min_ratings=3), learn.top_items(5, min_ratings=3)
    assert top.equals(ref_top) and (top["n_ratings"] >= 3).all() and top["bias"].is_monotonic_decreasing
    assert loaded.bottom_items(5).equals(learn.bottom_items(5))
    pca, ref_pca = loaded.item_pca(2), learn.item_pca(2)
    assert pca.equals(ref_pca) and pca.attrs["explained_variance_ratio"] == ref_pca.attrs["explained_variance_ratio"]
    with pytest.raises(DataError, match="Unknown item"):
        loaded.bias([10**6])


def test_mlp_model_round_trips(ratings, tmp_path):
    torch.manual_seed(0)
    dls = CollabDataLoaders.from_df(ratings, bs=64, seed=1, device="cpu")
    learn = collab_learner(dls, use_nn=True, layers=[8], y_range=(0.5, 5.5), path=tmp_path)
    learn.silent = True
    learn.fit_one_cycle(1, 1e-2)
    loaded = ember.load_learner(learn.export("nn.ember", verbose=False))
    assert isinstance(loaded.model, EmbeddingNN) and read_recipe(tmp_path / "nn.ember")["model"]["factory"] == (
        "embedding_nn"
    )
    pairs = list(zip(ratings["user"].iloc[:30], ratings["item"].iloc[:30]))
    np.testing.assert_allclose(loaded.predict(pairs), learn.predict(pairs), atol=1e-6)
    items = sorted(ratings["item"].unique())[:3]
    assert torch.equal(loaded.weight(items), learn.weight(items))
    with pytest.raises(ConfigError, match="dot-product model"):
        loaded.bias(items)


def test_data_recipe_round_trip_and_refusals(exported):
    learn, _, _ = exported
    dls = load(dump(learn.dls))
    codes = dls.encode([learn.dls.classes["item"][1], "never seen"])
    assert codes.tolist() == [1, 0]
    good = dump(learn.dls)["data"]
    with pytest.raises(ExportError, match="lacks"):
        CollabDataLoaders.from_recipe({k: v for k, v in good.items() if k != "item_counts"})
    with pytest.raises(ExportError, match="inconsistent"):
        CollabDataLoaders.from_recipe({**good, "item_counts": good["item_counts"][:-1]})


@pytest.mark.slow
def test_a_fresh_process_loads_and_predicts(exported, ratings):
    learn, path, _ = exported
    user, item = int(ratings["user"].iloc[3]), int(ratings["item"].iloc[3])
    code = (
        "import ember\n"
        f"learn = ember.load_learner({str(path)!r})\n"
        f"print(type(learn).__name__, learn.predict(({user}, {item})), learn.top_items(1)['item'].iloc[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "CollabLearner"
    assert float(out[1]) == pytest.approx(learn.predict((user, item)), abs=1e-6)
    assert out[2] == str(learn.top_items(1)["item"].iloc[0])


def test_a_loaded_learner_refuses_to_train_and_scores_new_ratings(exported, ratings):
    learn, _, loaded = exported
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    with pytest.raises(DataError, match=r"needs training rows.*CollabDataLoaders.from_df"):
        loaded.fit(1)
    with pytest.raises(DataError, match="needs training rows"):
        loaded.lr_find(show_plot=False)
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in before.items())
    dl = loaded.dls.test_dl(ratings.head(9))
    preds, targs = loaded.get_preds(dl=dl)
    assert torch.allclose(preds, learn.get_preds(dl=learn.dls.test_dl(ratings.head(9)))[0], atol=1e-6)
    assert targs.shape == (9,) and len(loaded.show_results(dl=dl, print_out=False)) == 9
