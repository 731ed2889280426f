"""Export and load of tabular learners: the loaded learner processes and predicts new rows exactly as before."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import ember
from ember.core.errors import ConfigError, DataError, ExportError
from ember.core.recipe import dump, load
from ember.data.builtin import penguins
from ember.learner.export import read_recipe
from ember.losses import CrossEntropyLossFlat, MSELossFlat
from ember.tabular import (
    Categorify,
    FillMissing,
    Normalize,
    TabularDataLoaders,
    TabularLearner,
    tabular_learner,
    tabular_model,
)

PROCS = [Categorify, FillMissing, Normalize]
CONTS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
ODD_ROW = {"island": "Atlantis", "sex": None, "bill_length_mm": 46.0, "bill_depth_mm": None,
           "flipper_length_mm": 217, "body_mass_g": 5000}  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A penguin classifier trained briefly, its file, and the learner loaded back from it."""
    torch.manual_seed(0)
    df = penguins()
    dls = TabularDataLoaders.from_df(
        df, y_names="species", cat_names=["island", "sex"], cont_names=CONTS, procs=PROCS, bs=32, seed=42, device="cpu"
    )
    learn = tabular_learner(dls, layers=[32, 16], path=tmp_path_factory.mktemp("tab"))
    learn.silent = True
    learn.fit_one_cycle(2, 1e-2)
    path = learn.export("penguins.ember", verbose=False)
    return learn, path, ember.load_learner(path)


def test_recipe_names_the_application_learner_factory_and_data(exported):
    learn, path, _ = exported
    rec = read_recipe(path)
    assert rec["application"] == "ember.tabular" and rec["learner"] == "TabularLearner"
    assert rec["model"] == {"factory": "tabular_model", "kwargs": learn.model_recipe["kwargs"]}
    assert rec["loss"]["type"] == "CrossEntropyLossFlat"
    data = rec["data"]
    assert data["type"] == "TabularDataLoaders" and data["data"]["bs"] == 32
    proc = data["data"]["processor"]["data"]
    assert proc["y_vocab"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert proc["cat_names"] == ["island", "sex"] and proc["all_cat_names"] == learn.dls.cat_names
    assert "bill_length_mm_na" in proc["all_cat_names"]  # FillMissing's indicator columns are part of the inputs
    assert set(data["data"]) == {"processor", "bs"}  # no training rows travel with the model


def test_loaded_learner_is_an_inference_tabular_learner(exported):
    learn, _, loaded = exported
    assert type(loaded) is TabularLearner and type(loaded.dls) is TabularDataLoaders
    assert isinstance(loaded.loss_func, CrossEntropyLossFlat)
    assert loaded.processor is loaded.dls.processor
    assert loaded.dls.vocab == learn.dls.vocab and loaded.dls.c == 3 and loaded.dls.n_inp == 2
    assert loaded.dls.cat_names == learn.dls.cat_names and loaded.dls.cont_names == CONTS
    assert len(loaded.dls.train.dataset) == 0 and loaded.dls.valid is None and loaded.dls.bs == 32
    assert loaded.model_recipe == learn.model_recipe
    for (k, a), (k2, b) in zip(learn.model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_predict_a_row_gives_the_same_answer(exported):
    learn, _, loaded = exported
    df = penguins()
    for row in (df.iloc[0], df.iloc[200], ODD_ROW):  # a Series, another, and a dict with unseen/missing values
        label, idx, probs = loaded.predict(row)
        ref_label, ref_idx, ref_probs = learn.predict(row)
        assert label == ref_label and idx == ref_idx
        assert probs.shape == (3,) and torch.allclose(probs, ref_probs, atol=1e-6)


def test_predict_df_gives_the_same_table(exported):
    learn, _, loaded = exported
    df = penguins().iloc[::7]
    out, ref = loaded.predict_df(df), learn.predict_df(df)
    assert list(out.columns) == ["species_pred", "p_Adelie", "p_Chinstrap", "p_Gentoo"]
    assert (out.index == df.index).all() and (out["species_pred"] == ref["species_pred"]).all()
    np.testing.assert_allclose(out.iloc[:, 1:].to_numpy(float), ref.iloc[:, 1:].to_numpy(float), atol=1e-6)


def test_test_dl_and_get_preds_give_the_same_predictions_and_targets(exported):
    learn, _, loaded = exported
    df = penguins()
    dl = loaded.test_dl(df)  # with the target column: labels are encoded too
    assert dl.bs == 1024 and len(dl.dataset) == len(df)
    preds, targs = loaded.get_preds(dl=dl)
    ref_preds, ref_targs = learn.get_preds(dl=learn.test_dl(df))
    assert torch.allclose(preds, ref_preds, atol=1e-6) and torch.equal(targs, ref_targs)
    assert torch.equal(targs, learn.dls.processor.encode_y(df))
    # the loaders' own test_dl (default batch size: twice the exported training one), without labels
    dl2 = loaded.dls.test_dl(df.drop(columns="species"))
    assert dl2.bs == 64
    preds2, targs2 = loaded.get_preds(dl=dl2)
    assert targs2 is None and torch.allclose(preds2, ref_preds, atol=1e-6)
    shown = loaded.show_results(max_n=5, dl=loaded.test_dl(df.iloc[:5]), print_out=False)
    ref_shown = learn.show_results(max_n=5, dl=learn.test_dl(df.iloc[:5]), print_out=False)
    assert shown.equals(ref_shown) and list(shown["species"]) == list(df["species"].iloc[:5])


def test_regression_with_two_targets_and_y_range_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    df = pd.DataFrame({"g": rng.choice(["a", "b"], n), "x": rng.normal(0, 1, n)})
    df["y1"] = df["x"] * 2.0 + (df["g"] == "a") * 1.0
    df["y2"] = -df["x"]
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(df, y_names=["y1", "y2"], cat_names=["g"], cont_names=["x"], bs=16, seed=0)
    learn = tabular_learner(dls, layers=[8], y_range=(-6, 6), path=tmp_path)
    learn.silent = True
    learn.fit_one_cycle(1, 1e-2)
    loaded = ember.load_learner(learn.export("reg.ember", verbose=False))
    assert isinstance(loaded.loss_func, MSELossFlat) and loaded.dls.c == 2 and loaded.dls.vocab is None
    value, enc, raw = loaded.predict({"g": "b", "x": 0.5})
    ref_value, ref_enc, ref_raw = learn.predict({"g": "b", "x": 0.5})
    assert isinstance(value, list) and len(value) == 2 and value == pytest.approx(ref_value, abs=1e-6)
    assert torch.allclose(raw, ref_raw, atol=1e-6)
    out, ref = loaded.predict_df(df), learn.predict_df(df)
    assert list(out.columns) == ["y1_pred", "y2_pred"]
    np.testing.assert_allclose(out.to_numpy(), ref.to_numpy(), atol=1e-6)
    preds, targs = loaded.get_preds(dl=loaded.test_dl(df))
    assert preds.shape == (n, 2) and targs.shape == (n, 2)
    assert torch.equal(targs, torch.tensor(df[["y1", "y2"]].to_numpy(np.float32)))


def test_data_recipe_round_trip_without_a_learner(exported):
    learn, _, _ = exported
    dls = load(dump(learn.dls))
    df = penguins().iloc[:30]
    for a, b in zip(dls.test_dl(df).one_batch(), learn.dls.test_dl(df).one_batch()):
        assert torch.equal(a, b)
    with pytest.raises(ExportError, match="processor"):
        TabularDataLoaders.from_recipe({"bs": 8})


def test_processor_comes_from_the_loaders_unless_set(exported):
    learn, _, _ = exported
    model = tabular_model(**learn.model_recipe["kwargs"])
    direct = TabularLearner(learn.dls, model)  # built without tabular_learner
    assert direct.processor is learn.dls.processor
    other = load(dump(learn.dls.processor))
    direct.processor = other
    assert direct.processor is other and direct.dls.processor is learn.dls.processor
    bare = ember.data.DataLoaders.from_tensors((torch.zeros(4, 2), torch.zeros(4)), device="cpu")
    with pytest.raises(ConfigError, match="no preprocessing"):
        TabularLearner(bare, model, loss_func=MSELossFlat()).processor  # noqa: B018


def test_column_names_that_are_not_strings_are_refused_with_a_hint(tmp_path):
    df = pd.DataFrame({0: ["a", "b"] * 20, 1: np.linspace(0, 1, 40), "y": [0, 1] * 20})
    dls = TabularDataLoaders.from_df(df, y_names="y", cat_names=[0], cont_names=[1], bs=8, seed=0, device="cpu")
    learn = tabular_learner(dls, layers=[4], path=tmp_path)
    with pytest.raises(ExportError, match=r"column 0.*astype\(str\)"):
        learn.export("ints.ember", verbose=False)
    assert not (tmp_path / "ints.ember").exists()


@pytest.mark.slow
def test_a_fresh_process_loads_and_predicts(exported):
    learn, path, _ = exported
    code = (
        "import ember\n"
        "from ember.data.builtin import penguins\n"
        f"learn = ember.load_learner({str(path)!r})\n"
        "label, idx, probs = learn.predict(penguins().iloc[200])\n"
        "print(type(learn).__name__, label, idx, ' '.join(f'{p:.6f}' for p in probs.tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    label, idx, probs = learn.predict(penguins().iloc[200])
    assert out[:3] == ["TabularLearner", label, str(idx)]
    assert [float(p) for p in out[3:]] == pytest.approx(probs.tolist(), abs=1e-5)


def test_a_loaded_learner_refuses_to_train_and_keeps_its_weights(exported):
    _, _, loaded = exported
    assert len(loaded.dls.train) == 0 and list(loaded.dls.train) == []  # no empty batch either
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    ref = loaded.predict_df(penguins().head(3))
    for train in (lambda: loaded.fit(1), lambda: loaded.fit_one_cycle(1), lambda: loaded.lr_find(show_plot=False)):
        with pytest.raises(DataError, match=r"needs training rows.*load_learner.*from_df"):
            train()
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in before.items())
    pd.testing.assert_frame_equal(loaded.predict_df(penguins().head(3)), ref)


def test_date_categories_export_and_predict_the_same(tmp_path):
    df = pd.DataFrame({"when": pd.date_range("2020-01-01", periods=40), "x": np.arange(40.0), "y": ["a", "b"] * 20})
    dls = TabularDataLoaders.from_df(df, y_names="y", cat_names=["when"], cont_names=["x"], seed=0, device="cpu")
    learn = tabular_learner(dls, layers=[4], path=tmp_path)
    loaded = ember.load_learner(learn.export("dates.ember", verbose=False))
    pd.testing.assert_frame_equal(loaded.predict_df(df), learn.predict_df(df))
    assert loaded.processor.proc(Categorify).vocabs["when"][1] == pd.Timestamp("2020-01-01")
