"""Tests of permutation importance: the order of the columns, repeatability, metrics and their direction, the
learner left as it was, column groups, the plot, and a linear model whose expected importance is known exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from ember.core.errors import ConfigError, DataError
from ember.data import DataLoaders
from ember.learner.learner import Learner
from ember.metrics.regression import R2Score, mae
from ember.tabular.data import TabularDataLoaders
from ember.tabular.interpret import permutation_importance, plot_importance
from ember.tabular.learner import tabular_learner
from ember.tabular.procs import Categorify, FillMissing, Normalize


def _table(n: int = 500, seed: int = 0) -> pd.DataFrame:
    """`y` depends strongly on `a`, weakly on the category `g` and not at all on `c` (which has missing values)."""
    rng = np.random.default_rng(seed)
    a, c = rng.normal(size=n), rng.normal(size=n)
    g = rng.choice(["x", "y", "z"], size=n)
    y = 2.0 * a + pd.Series(g).map({"x": -0.5, "y": 0.0, "z": 0.5}).to_numpy() + 0.1 * rng.normal(size=n)
    c[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"a": a, "g": g, "c": c, "y": y.astype("float32")})


@pytest.fixture(scope="module")
def learn():
    torch.manual_seed(0)
    dls = TabularDataLoaders.from_df(
        _table(),
        y_names="y",
        cat_names=["g"],
        cont_names=["a", "c"],
        procs=[Categorify, FillMissing, Normalize],
        bs=64,
        seed=0,
        device="cpu",
    )
    learn = tabular_learner(dls, layers=[32], metrics=[mae, R2Score()])
    learn.silent = True
    learn.fit_one_cycle(6, 3e-2)
    return learn


def test_strong_then_weak_then_irrelevant_column(learn):
    imp = learn.permutation_importance(seed=0)
    assert list(imp.columns) == ["column", "importance", "std", "score", "baseline"]
    assert list(imp["column"]) == ["a", "g", "c"]  # c_na goes with c by default
    a, g, c = imp["importance"]
    assert a > 1.0 and g > 0.05 and a > 5 * g
    assert abs(c) < 0.02 and abs(c) < 0.1 * g
    assert (imp["std"] >= 0).all() and imp["std"].iloc[0] > 0
    # the baseline is the validation loss; score - baseline is the importance (the loss: lower is better)
    assert imp["baseline"].iloc[0] == pytest.approx(learn.validate()[0], rel=1e-4)
    np.testing.assert_allclose(imp["score"] - imp["baseline"], imp["importance"], rtol=1e-9, atol=1e-9)
    assert imp.attrs["metric"] == "loss" and imp.attrs["lower_is_better"] is True


def test_same_seed_same_result_and_columns_independent(learn):
    one = learn.permutation_importance(seed=3, n_repeats=3)
    two = learn.permutation_importance(seed=3, n_repeats=3)
    pd.testing.assert_frame_equal(one, two)
    other = learn.permutation_importance(seed=4, n_repeats=3)
    assert not np.allclose(one["importance"], other["importance"])
    # a column's shuffles depend on the seed and its name only, not on which other columns are measured
    alone = learn.permutation_importance(seed=3, n_repeats=3, columns=["g"])
    assert list(alone["column"]) == ["g"]
    assert alone["importance"].iloc[0] == pytest.approx(one.set_index("column").loc["g", "importance"], rel=1e-6)


def test_metric_by_name_by_function_and_higher_is_better(learn):
    _, valid_mae, valid_r2 = learn.validate()
    by_name = learn.permutation_importance(metric="mae", seed=0)
    by_func = learn.permutation_importance(metric=mae, seed=0)
    pd.testing.assert_frame_equal(by_name, by_func)
    assert by_name["baseline"].iloc[0] == pytest.approx(valid_mae, rel=1e-5)

    r2 = learn.permutation_importance(metric="r2_score", seed=0)
    assert r2.attrs["lower_is_better"] is False
    assert r2["baseline"].iloc[0] == pytest.approx(valid_r2, rel=1e-5)
    assert list(r2["column"][:2]) == ["a", "g"]
    top = r2.iloc[0]
    assert top["score"] < top["baseline"] - 0.5  # shuffling `a` ruins R², so its importance is large and positive
    assert top["importance"] == pytest.approx(top["baseline"] - top["score"], rel=1e-9)


def test_unknown_metric_name_lists_the_valid_ones(learn):
    with pytest.raises(ConfigError, match=r"metric.*'accuracy'.*valid: 'mae', 'r2_score'"):
        learn.permutation_importance(metric="accuracy")
    with pytest.raises(ConfigError, match="n_repeats"):
        learn.permutation_importance(n_repeats=0)


def test_model_data_and_learner_left_as_they_were(learn):
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    tensors = [t.clone() for t in learn.dls.valid.dl.dataset.tensors]
    values, last = [list(v) for v in learn.recorder.values], list(learn.recorder.last_validation)
    r2_state = learn.metrics[1].compute()
    learn.model.train()
    learn.permutation_importance(metric="r2_score", seed=0, n_repeats=2)
    assert all(m.training for m in learn.model.modules())  # the mode of every layer is restored
    learn.model.eval()
    for k, v in learn.model.state_dict().items():  # BatchNorm running statistics included
        assert torch.equal(v, weights[k]), k
    for before, after in zip(tensors, learn.dls.valid.dl.dataset.tensors):
        assert torch.equal(before, after)
    assert learn.recorder.values == values and learn.recorder.last_validation == last
    assert learn.metrics[1].compute() == r2_state


def test_na_indicators_groups_and_column_errors(learn):
    apart = learn.permutation_importance(seed=0, n_repeats=2, group_na=False)
    assert sorted(apart["column"]) == ["a", "c", "c_na", "g"]
    assert abs(apart.set_index("column").loc["c_na", "importance"]) < 0.02
    both = learn.permutation_importance(seed=0, n_repeats=2, columns={"a+g": ["a", "g"], "c": ["c"]})
    assert list(both["column"]) == ["a+g", "c"]
    strong = learn.permutation_importance(seed=0, n_repeats=2, columns=["a"])
    assert both["importance"].iloc[0] > strong["importance"].iloc[0]  # shuffling g as well hurts more
    with pytest.raises(ConfigError, match=r"columns.*'b'.*valid: 'g', 'c_na', 'a', 'c'"):
        learn.permutation_importance(columns=["a", "b"])
    with pytest.raises(ConfigError, match="'c_na'.*group_na=False"):
        learn.permutation_importance(columns=["c", "c_na"])


def test_needs_labelled_rows(learn):
    unlabelled = learn.test_dl(_table(20, seed=1).drop(columns="y"))
    with pytest.raises(DataError, match="labelled data"):
        learn.permutation_importance(dl=unlabelled)


def test_plot(learn, tmp_path):
    fig = learn.plot_permutation_importance(k=2, fname=tmp_path / "imp.png", seed=0, n_repeats=2)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["g", "a"]  # the most important at the top
    assert [round(p.get_width(), 6) for p in ax.patches] == pytest.approx(
        list(learn.permutation_importance(seed=0, n_repeats=2)["importance"][:2][::-1]), rel=1e-5
    )
    assert "increase in loss" in ax.get_xlabel()
    assert (tmp_path / "imp.png").stat().st_size > 0
    with pytest.raises(DataError, match="imp"):
        plot_importance(pd.DataFrame({"x": [1.0]}))


def test_linear_model_matches_the_exact_expectation():
    """Any learner with 2-d inputs: for y ≈ x @ w under MSE, shuffling column j raises the loss on average by
    2 w_j² var(x_j) + 2 w_j cov(r, x_j) (r the residual), which n_repeats shuffles estimate."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1000, 3, generator=g), torch.tensor([3.0, 1.0, 0.0])
    y = x @ w + 0.5 * torch.randn(1000, generator=g)
    dls = DataLoaders.from_tensors((x[:500], y[:500]), (x[500:], y[500:]), bs=100, device="cpu")
    model = nn.Linear(3, 1, bias=False)
    model.weight.data = w[None].clone()
    learn = Learner(dls, nn.Sequential(model, nn.Flatten(0)), loss_func=nn.MSELoss())
    imp = permutation_importance(learn, n_repeats=200, seed=0, bs=128).set_index("column")
    assert list(imp.index) == ["input0[0]", "input0[1]", "input0[2]"]
    xv, yv = x[500:].double(), y[500:].double()
    r = yv - xv @ w.double()
    cov = ((r - r.mean())[:, None] * (xv - xv.mean(0))).mean(0)
    exact = 2 * w.double() ** 2 * xv.var(0, unbiased=False) + 2 * w.double() * cov
    tol = 4 * imp["std"].to_numpy() / np.sqrt(200) + 1e-6
    assert (np.abs(imp["importance"].to_numpy() - exact.numpy()) <= tol).all(), (imp["importance"], exact)
    assert imp.loc["input0[2]", "importance"] == 0.0 and imp.loc["input0[2]", "std"] == 0.0
    assert imp["baseline"].iloc[0] == pytest.approx(float(((r.float()) ** 2).mean()), rel=1e-5)
    pair = permutation_importance(learn, {"x0+x1": [(0, 0), (0, 1)]}, n_repeats=2, seed=0)
    assert pair["importance"].iloc[0] > imp.loc["input0[0]", "importance"]
    with pytest.raises(ConfigError, match=r"features\['bad'\].*\(0, 3\)"):
        permutation_importance(learn, {"bad": [(0, 3)]})
