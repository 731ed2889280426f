"""Tests of the tabular model and learner: quality on penguins, predict, show_results, model recipes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from ember.core.errors import ConfigError, DataError
from ember.core.recipe import dump, load
from ember.data.builtin import penguins
from ember.metrics import accuracy
from ember.tabular import (
    Categorify,
    FillMissing,
    Normalize,
    TabularDataLoaders,
    TabularModel,
    emb_sz_rule,
    get_emb_sz,
    tabular_learner,
    tabular_model,
)

PROCS = [Categorify, FillMissing, Normalize]
CONTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


@pytest.fixture(scope="module")
def penguin_learner():
    torch.manual_seed(0)
    df = penguins()
    dls = TabularDataLoaders.from_df(
        df, y_names="species", cat_names=["island", "sex"], cont_names=CONTS, procs=PROCS, bs=32, seed=42, device="cpu"
    )
    learn = tabular_learner(dls, metrics=accuracy)
    learn.silent = True
    learn.fit_one_cycle(4, 1e-2)
    return learn


def test_penguins_accuracy_above_90_percent(penguin_learner):
    loss, acc = penguin_learner.validate()
    assert acc > 0.9
    assert loss < 0.4


def test_predict_a_series_and_a_dict_with_unseen_and_missing_values(penguin_learner):
    df = penguins()
    row = df.iloc[200]
    label, idx, probs = penguin_learner.predict(row)
    assert label == row["species"] and penguin_learner.dls.vocab[idx] == label
    assert probs.shape == (3,) and probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    odd = {"island": "Atlantis", "sex": None, "bill_length_mm": 46.0, "bill_depth_mm": None,
           "flipper_length_mm": 217, "body_mass_g": 5000}  # fmt: skip
    label2, _, probs2 = penguin_learner.predict(odd)
    assert label2 in penguin_learner.dls.vocab and torch.isfinite(probs2).all()
    with pytest.raises(DataError, match="body_mass_g"):
        penguin_learner.predict({k: v for k, v in odd.items() if k != "body_mass_g"})


def test_predict_df_matches_predict_and_get_preds(penguin_learner):
    df = penguins().dropna().iloc[:40]
    out = penguin_learner.predict_df(df)
    assert out["species_pred"].iloc[3] == penguin_learner.predict(df.iloc[3])[0]
    assert (out["species_pred"] == df["species"]).mean() > 0.9
    np.testing.assert_allclose(out[["p_Adelie", "p_Chinstrap", "p_Gentoo"]].sum(axis=1), 1.0, rtol=1e-5)
    preds, targs = penguin_learner.get_preds(dl=penguin_learner.test_dl(df))
    np.testing.assert_allclose(preds.numpy(), out[["p_Adelie", "p_Chinstrap", "p_Gentoo"]].to_numpy(), atol=1e-5)
    assert torch.equal(targs, penguin_learner.dls.processor.encode_y(df))
    empty = penguin_learner.predict_df(df.iloc[:0])  # a filter that kept no row: an empty table, not a crash
    assert len(empty) == 0 and list(empty.columns) == list(out.columns)


def test_show_results_table(penguin_learner):
    shown = penguin_learner.show_results(max_n=6, print_out=False)
    assert len(shown) == 6 and list(shown.columns[-2:]) == ["species", "species_pred"]
    assert set(shown["island"]) <= {"Biscoe", "Dream", "Torgersen", "#na#"}
    assert (shown["species"] == shown["species_pred"]).mean() >= 0.5


def test_model_recipe_rebuilds_the_same_model(penguin_learner):
    recipe = json.loads(json.dumps(penguin_learner.model_recipe))
    assert recipe["factory"] == "tabular_model"
    model = tabular_model(**recipe["kwargs"])
    model.load_state_dict(penguin_learner.model.state_dict())
    model.eval()
    xb = penguin_learner.dls.valid.one_batch()[:2]
    assert torch.allclose(model(*xb), penguin_learner.predict_tensor(xb), atol=1e-6)
    proc = load(json.loads(json.dumps(dump(penguin_learner.processor))))
    df = penguins().iloc[:20]
    for a, b in zip(proc.process(df), penguin_learner.processor.process(df)):
        assert torch.equal(a, b)
    state = json.loads(json.dumps(dump(penguin_learner.dls)))  # what export writes for the data
    assert state["type"] == "TabularDataLoaders" and state["data"]["processor"]["type"] == "tabular.TabularProcessor"


def test_regression_learner_fits_a_known_rule():
    rng = np.random.default_rng(0)
    n = 800
    df = pd.DataFrame({"g": rng.choice(["a", "b", "c"], n), "x": rng.normal(0, 1, n)})
    df["y"] = df["x"] * 2.0 + df["g"].map({"a": -1.0, "b": 0.0, "c": 1.0}) + rng.normal(0, 0.1, n)
    dls = TabularDataLoaders.from_df(df, y_names="y", cat_names=["g"], cont_names=["x"], procs=PROCS, bs=64, seed=0)
    torch.manual_seed(0)
    learn = tabular_learner(dls, layers=[32], y_range=(-8, 8))
    learn.silent = True
    learn.fit_one_cycle(8, 1e-2)
    assert learn.validate()[0] < 0.1  # the target's variance is about 4.7
    value, enc, raw = learn.predict({"g": "c", "x": 1.0})
    assert isinstance(value, float) and value == pytest.approx(3.0, abs=0.5)
    assert learn.model_recipe["kwargs"]["y_range"] == [-8.0, 8.0]


def test_multi_target_regression_predicts_a_list():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"x": rng.normal(0, 1, 200)})
    df["a"], df["b"] = df["x"] * 1.0, -df["x"]
    dls = TabularDataLoaders.from_df(df, y_names=["a", "b"], cont_names=["x"], procs=[Normalize], bs=32, seed=0)
    learn = tabular_learner(dls, layers=[16])
    learn.silent = True
    assert learn.model.layers[-1].out_features == 2
    learn.fit(1, 1e-3)
    value, _, raw = learn.predict({"x": 0.3})
    assert isinstance(value, list) and len(value) == 2 and raw.shape == (2,)
    assert set(learn.show_results(3, print_out=False).columns) >= {"a", "b", "a_pred", "b_pred"}


def test_tabular_model_shapes_and_options():
    model = TabularModel([(4, 3), (10, 5)], n_cont=2, out_sz=3, layers=[8, 6], ps=0.1, embed_p=0.1, bn_final=True)
    out = model(torch.randint(0, 4, (5, 2)), torch.randn(5, 2))
    assert out.shape == (5, 3)
    no_cont = TabularModel([(4, 3)], n_cont=0, out_sz=1, y_range=(0.0, 1.0))
    y = no_cont(torch.randint(0, 4, (7, 1)))
    assert y.shape == (7, 1) and (y > 0).all() and (y < 1).all()
    only_cont = TabularModel([], n_cont=3, out_sz=2, use_bn=False)
    assert only_cont(torch.zeros(4, 0, dtype=torch.long), torch.randn(4, 3)).shape == (4, 2)
    with pytest.raises(ConfigError, match="ps"):
        TabularModel([(4, 3)], 1, 1, layers=[8, 8], ps=[0.1])


def test_emb_sz_rule_and_get_emb_sz(penguin_learner):
    assert [emb_sz_rule(n) for n in (2, 4, 10, 100, 10**6)] == [2, 3, 6, 21, 600]
    sizes = get_emb_sz(penguin_learner.dls)
    assert sizes[0] == (4, 3)  # island: #na# + 3 islands
    assert get_emb_sz(penguin_learner.dls, {"island": 7})[0] == (4, 7)
    with pytest.raises(ConfigError, match="sz_dict"):
        get_emb_sz(penguin_learner.dls, {"nope": 2})


def test_tabular_learner_rejects_other_loaders_and_bad_config(penguin_learner, tiny_dls):
    with pytest.raises(ConfigError, match="TabularDataLoaders"):
        tabular_learner(tiny_dls)
    with pytest.raises(ConfigError, match="config"):
        tabular_learner(penguin_learner.dls, config={"dropout": 0.5})


def test_predict_batch_takes_a_dataframe_or_rows_and_matches_predict_df(penguin_learner):
    df = penguins().iloc[[0, 3, 150, 300]]  # row 3 has missing values
    ref = penguin_learner.predict_df(df)
    labels, idx, probs = penguin_learner.predict_batch(df)
    assert labels == ref["species_pred"].tolist() and idx.shape == (4,) and probs.shape == (4, 3)
    np.testing.assert_allclose(probs.numpy(), ref[["p_Adelie", "p_Chinstrap", "p_Gentoo"]].to_numpy(), atol=1e-6)
    for rows in ([df.iloc[i] for i in range(4)], df.to_dict("records")):
        labels2, idx2, probs2 = penguin_learner.predict_batch(rows, bs=3)
        assert labels2 == labels and torch.equal(idx2, idx) and torch.allclose(probs2, probs, atol=1e-6)
    pd.testing.assert_frame_equal(penguin_learner.predict_df(df.to_dict("records")), ref.reset_index(drop=True))
    with pytest.raises(DataError, match="pandas DataFrame"):
        penguin_learner.test_dl([1, 2])
    with pytest.raises(DataError, match="a list of rows"):
        penguin_learner.predict_batch("island")


def test_regression_predict_batch_gives_floats():
    df = pd.DataFrame({"x": np.linspace(0, 1, 64), "c": ["a", "b"] * 32})
    df["y"] = df.x * 2.0
    dls = TabularDataLoaders.from_df(df, y_names="y", cat_names=["c"], cont_names=["x"], bs=16, seed=0, device="cpu")
    learn = tabular_learner(dls, layers=[4])
    values, enc, _ = learn.predict_batch(df.head(3))
    assert all(isinstance(v, float) for v in values) and enc.shape == (3, 1)
    np.testing.assert_allclose(values, learn.predict_df(df.head(3))["y_pred"], rtol=1e-6)


def test_n_out_below_the_classes_and_batches_of_one_row_are_refused_before_training(penguin_learner):
    with pytest.raises(ConfigError, match=r"`n_out=1` is fewer than the 3 classes"):
        tabular_learner(penguin_learner.dls, n_out=1)
    df = penguins().dropna().iloc[:40]
    dls = TabularDataLoaders.from_df(df, y_names="species", cont_names=CONTS, procs=PROCS, bs=1, device="cpu")
    learn = tabular_learner(dls, layers=[4])
    before = [p.detach().clone() for p in learn.model.parameters()]
    with pytest.raises(DataError, match=r"BatchNorm.*bs=1"):
        learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    learn = tabular_learner(dls, layers=[4], config={"use_bn": False, "bn_cont": False})
    learn.silent = True
    learn.fit(1)  # no BatchNorm: a batch of one is fine


def test_interpretation_lists_the_worst_rows(penguin_learner, tmp_path):
    from ember.vision import ClassificationInterpretation

    interp = ClassificationInterpretation.from_learner(penguin_learner)
    assert interp.vocab == list(penguin_learner.dls.class_names)
    table = interp.plot_top_losses(5, fname=tmp_path / "top.csv")
    assert list(table.columns[-4:]) == ["actual", "predicted", "probability", "loss"]
    assert {"island", "bill_length_mm"} <= set(table.columns) and table["loss"].is_monotonic_decreasing
    # each row is the item whose loss it shows: the same values as the validation rows, decoded
    valid = penguin_learner.dls.items_table(list(zip(*penguin_learner.dls.valid.dataset.tensors[:2])))
    _, idxs = interp.top_losses(5)
    assert table["island"].tolist() == valid["island"].iloc[idxs.tolist()].tolist()
    # the training set (a shuffling loader): the rows are still those of the positions ranked
    on_train = ClassificationInterpretation.from_learner(penguin_learner, dl=0)
    train = penguin_learner.dls.items_table(list(zip(*penguin_learner.dls.train.dataset.tensors[:2])))
    _, idxs = on_train.top_losses(8)
    shown = on_train.plot_top_losses(8)
    assert shown["bill_length_mm"].tolist() == train["bill_length_mm"].iloc[idxs.tolist()].tolist()
