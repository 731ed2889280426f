"""`ember train collab`, `ember predict` and `ember info` on ratings: tiny synthetic tables, end to end."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from ember.cli import main
from ember.cli.collab import _default_y_range, _pick_columns

#: Tiny but learnable: 60 users, 40 items, half of the pairs rated, little noise.
TRAIN = ["--epochs", "4", "--lr", "1e-1", "--n-factors", "8", "--bs", "64"]


def ratings() -> pd.DataFrame:
    from ember.data.builtin import synthetic_ratings

    return synthetic_ratings(n_users=60, n_items=40, n_factors=4, density=0.5, noise=0.3, seed=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("collab_cli")
    df = ratings()
    csv = root / "ratings.csv"
    df.to_csv(csv, index=False)
    out = root / "stars.ember"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # capsys is per test: capture the module fixture's output here
        code = main(["train", "collab", str(csv), *TRAIN, "--out", str(out), "--workdir", str(root)])
    assert code == 0
    return root, df, out, printed.getvalue()


def assert_user_error(code: int, err: str, message: str) -> None:
    assert code == 2
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("ember: error: ") and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------------------------------
def test_train_exports_a_model_and_a_report(trained):
    root, _, out, text = trained
    assert out.exists()
    assert (root / "stars_report" / "loss.png").exists()
    assert (root / "stars_report" / "item_pca.png").exists()
    assert "Data: 1200 ratings (960 training, 240 validation) by 60 users of 40 items, from 0.5 to 5.5" in text
    assert "columns: user 'user', item 'item', rating 'rating'" in text
    # ratings 0.5 to 5.5 widened by an eighth of their span on each side
    assert "a dot product of 8 factors with biases; predictions in y range (-0.125, 6.125) (from the ratings" in text
    assert re.search(r"highest: (\d+ \([+-]\d\.\d\d\), ){4}\d+ \([+-]\d\.\d\d\)", text)
    assert re.search(r"lowest: (\d+ \([+-]\d\.\d\d\), ){4}\d+ \([+-]\d\.\d\d\)", text)


def test_the_model_learns_and_the_report_is_the_library_s_figure(trained):
    import ember
    from ember.tabular.data import random_split_idx

    _, df, out, text = trained
    printed = float(re.search(r"Validation MSE (\d+\.\d+), RMSE (\d+\.\d+)", text).group(1))
    _, valid_idx = random_split_idx(len(df), 0.2, 42)  # the split the command made (--seed 42, --valid-pct 0.2)
    valid = df.iloc[valid_idx]
    learn = ember.load_learner(out)
    mse = float(np.mean((learn.predict(valid) - valid["rating"].to_numpy()) ** 2))
    assert printed == pytest.approx(mse, abs=1e-4)
    assert mse < 0.5 * df["rating"].var()  # far below always predicting the mean
    # the biases the report ranks are the model's: the highest listed has the largest bias of the listed ones
    top = [int(x) for x in re.findall(r"(\d+) \(", text.split("highest: ")[1].splitlines()[0])]
    biases = learn.bias(top).tolist()
    assert biases == sorted(biases, reverse=True)


def test_default_y_range_is_half_a_star_around_one_to_five():
    assert _default_y_range(1.0, 5.0) == (0.5, 5.5)
    assert _default_y_range(0.0, 1.0) == (-0.125, 1.125)
    assert _default_y_range(3.0, 3.0) == (2.5, 3.5)


def test_default_columns_are_the_first_ones_not_named():
    df = pd.DataFrame({"stars": [4.0], "customer": ["a"], "product": ["x"], "ts": [0]})

    def pick(**named):
        args = argparse.Namespace(**{"user_col": None, "item_col": None, "rating_col": None, **named})
        return _pick_columns(df, args, "f.csv")

    assert pick() == ("stars", "customer", "product")
    assert pick(rating_col="stars") == ("customer", "product", "stars")
    assert pick(user_col="product", rating_col="stars") == ("product", "customer", "stars")


def test_custom_columns_use_nn_and_y_range(tmp_path, capsys):
    df = ratings().rename(columns={"user": "customer", "item": "product", "rating": "stars"})
    df.insert(0, "ts", np.arange(len(df)))  # not one of the three: ignored
    csv, out = tmp_path / "shop.csv", tmp_path / "shop.ember"
    df.to_csv(csv, index=False)
    args = ["--user-col", "customer", "--item-col", "product", "--rating-col", "stars", "--use-nn", "--layers", "16"]
    args += ["--y-range", "0,6", "--epochs", "1", "--lr", "1e-2", "--n-factors", "5", "--valid-pct", "0.25"]
    assert main(["train", "collab", str(csv), *args, "--out", str(out), "--workdir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "Data: 1200 ratings (900 training, 300 validation)" in text
    assert "columns: user 'customer', item 'product', rating 'stars'" in text
    assert (
        "an MLP on embeddings of 5 (users) and 5 (items), layers [16]; predictions in y range (0, 6) (--y-range)"
        in text
    )
    assert "Validation MSE" in text and "highest:" not in text  # no biases in the MLP model
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "Ratings: 60 users (column 'customer'), 40 items (column 'product'), ratings in 'stars'" in info
    assert "Y range: 0 to 6" in info
    df.head(4).to_csv(tmp_path / "pairs.csv", index=False)
    assert main(["predict", str(out), str(tmp_path / "pairs.csv"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["user"], r["item"]) for r in rows] == list(zip(df["customer"][:4], df["product"][:4]))
    assert all(0 <= r["prediction"] <= 6 for r in rows)


def test_no_validation_set_and_a_narrow_y_range_warns(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    ratings().to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="beyond --y-range 1,5"):
        code = main(
            ["train", "collab", str(csv), "--valid-pct", "0", "--y-range", "1,5", "--epochs", "1", "--lr", "1e-2"]
            + ["--out", str(tmp_path / "m.ember"), "--workdir", str(tmp_path)]
        )
    assert code == 0
    assert "No validation set (--valid-pct 0)" in capsys.readouterr().out


def test_lr_find(tmp_path, capsys):
    csv = tmp_path / "r.csv"
    ratings().to_csv(csv, index=False)
    plot = tmp_path / "lr.png"
    assert main(["lr-find", "collab", str(csv), "--plot", str(plot), "--workdir", str(tmp_path)]) == 0
    assert plot.exists() and "valley:" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------------
# predict and info
# ---------------------------------------------------------------------------------------------------
def pairs_file(tmp_path, df, extra_rows=()):
    pairs = df[["item", "user"]].head(6).copy()  # columns in another order, plus one to ignore
    pairs["note"] = "x"
    if extra_rows:
        pairs = pd.concat([pairs, pd.DataFrame(extra_rows)], ignore_index=True)
    path = tmp_path / "pairs.csv"
    pairs.to_csv(path, index=False)
    return path, pairs


def test_predict_text_json_and_csv_are_the_library_s_predict(trained, tmp_path, capsys):
    import ember

    _, df, out, _ = trained
    path, pairs = pairs_file(tmp_path, df)
    expected = ember.load_learner(out).predict(pairs[["user", "item"]])
    assert main(["predict", str(out), str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{u} {i} -> {p:.3f}" for u, i, p in zip(pairs["user"], pairs["item"], expected)]
    assert main(["predict", str(out), str(path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["user"], r["item"]) for r in rows] == list(zip(pairs["user"], pairs["item"]))
    assert [r["prediction"] for r in rows] == pytest.approx(expected, abs=1e-5)
    dest = tmp_path / "preds" / "out.csv"
    assert main(["predict", str(out), str(path), "--out", str(dest)]) == 0
    written = pd.read_csv(dest)
    assert list(written.columns) == ["item", "user", "note", "prediction"]
    assert written["prediction"].to_numpy() == pytest.approx(expected, abs=1e-6)
    assert "Wrote 6 predictions" in capsys.readouterr().err


def test_unknown_users_and_items(trained, tmp_path, capsys):
    _, df, out, _ = trained
    path, _ = pairs_file(tmp_path, df, [{"item": 1, "user": 999, "note": "y"}, {"item": 777, "user": 1, "note": "z"}])
    code = main(["predict", str(out), str(path)])
    err = capsys.readouterr().err
    assert_user_error(code, err, "2 of 8 rows of")
    assert "user never seen in training: 999" in err and "item never seen in training: 777" in err
    assert "--unknown skip" in err
    assert main(["predict", str(out), str(path), "--unknown", "skip", "--json"]) == 0
    captured = capsys.readouterr()
    assert len(json.loads(captured.out)) == 6
    assert "Skipped 2 of 8 rows" in captured.err
    assert main(["predict", str(out), str(path), "--unknown", "mean"]) == 0
    captured = capsys.readouterr()
    import ember

    mean = ember.load_learner(out).dls.rating_mean
    assert captured.out.splitlines()[-2:] == [f"999 1 -> {mean:.3f}", f"1 777 -> {mean:.3f}"]
    assert "2 of 8 rows" in captured.err


def test_info(trained, capsys):
    _, _, out, _ = trained
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Learner: CollabLearner" in text
    assert "Ratings: 60 users (column 'user'), 40 items (column 'item'), ratings in 'rating'" in text
    assert "Y range: -0.125 to 6.125" in text
    assert re.search(r"Mean training rating: \d\.\d{3}", text)


# ---------------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit code 2, before any training
# ---------------------------------------------------------------------------------------------------
BAD_TRAIN = [
    ("missing.csv", None, [], "No ratings file at"),
    ("r.csv", "user,item,rating\n1,1,4\n", ["--item-col", "movie"], "has no column 'movie' (--item-col)"),
    ("r.csv", "user,item,rating\n1,1,4\n2,1,good\n", [], "The rating column 'rating' of"),
    ("r.csv", "user,item,rating\n1,1,4\n2,,3\n", [], "lack a user, an item or a finite rating (line 3)"),
    ("r.csv", "user,item\n1,1\n", [], "needs user, item and rating columns"),
    ("r.csv", "", [], "is empty"),
    ("r.csv", "user,item,rating\n1,1,4\n", ["--y-range", "5,1"], "--y-range must be two numbers"),
    ("r.csv", "user,item,rating\n1,1,4\n", ["--layers", "8"], "--layers sets the widths of the --use-nn model"),
    ("r.csv", "user,item,rating\n1,1,4\n", ["--valid-pct", "1"], "--valid-pct must be at least 0 and below 1"),
    ("r.csv", "user,item,rating\n1,1,4\n", ["--user-col", "item", "--item-col", "item"], "three different columns"),
]


@pytest.mark.parametrize("name,content,args,message", BAD_TRAIN)
def test_bad_ratings_get_one_line_and_exit_2(tmp_path, capsys, name, content, args, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    out = tmp_path / "m.ember"
    code = main(["train", "collab", str(tmp_path / name), *args, "--out", str(out), "--lr", "1e-2"])
    assert_user_error(code, capsys.readouterr().err, message)
    assert not out.exists()


@pytest.mark.parametrize(
    "content,inputs,message",
    [
        ("user,movie\n1,2\n", ["pairs.csv"], "has no column 'item': the model was trained on the columns 'user'"),
        (None, ["pairs.csv"], "No pairs file at"),
        ("user,item\n1,2\n", ["pairs.csv", "pairs.csv"], "Give one CSV file of (user, item) pairs"),
        ("user,item\n1,2\n,3\n", ["pairs.csv"], "lack a user or an item (line 3)"),
    ],
)
def test_bad_pairs_get_one_line_and_exit_2(trained, tmp_path, capsys, content, inputs, message):
    _, _, out, _ = trained
    if content is not None:
        (tmp_path / "pairs.csv").write_text(content)
    code = main(["predict", str(out), *(str(tmp_path / i) for i in inputs)])
    assert_user_error(code, capsys.readouterr().err, message)
