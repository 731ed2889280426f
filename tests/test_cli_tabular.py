"""`ember train tabular` and `ember predict` on CSV files, end to end on the built-in penguins table."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from ember.cli import main

TRAIN = ["--epochs", "2", "--lr", "3e-2", "--layers", "32", "--bs", "32", "--seed", "0"]
INPUTS = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex", "year"]


def run(argv):
    """``(exit code, stdout)`` of the command."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main([str(a) for a in argv])
    return code, printed.getvalue()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from ember.data.builtin import penguins

    root = tmp_path_factory.mktemp("cli_tab")
    df = penguins()
    df.to_csv(root / "penguins.csv", index=False)
    new = df.iloc[::20].copy()  # 18 rows, missing values included
    new["species"] = new["species"].where(np.arange(len(new)) % 3 != 0)  # a target column with gaps: ignored
    new["note"] = "extra"  # an extra column: ignored
    new.to_csv(root / "new.csv", index=False)
    return root


@pytest.fixture(scope="module")
def classifier(data):
    out = data / "species.ember"
    argv = ["train", "tabular", data / "penguins.csv", "--y", "species", *TRAIN]
    code, printed = run([*argv, "--out", out, "--workdir", data])
    assert code == 0
    return out, printed


def library_preds(model, csv):
    import ember

    return ember.load_learner(model).predict_df(pd.read_csv(csv))


def test_train_prints_the_choices_and_exports_a_model_and_a_report(data, classifier):
    out, printed = classifier
    assert out.exists() and (data / "species_report" / "loss.png").exists()
    assert "Target 'species': category (text values)" in printed
    assert "Categorical columns (3): island, sex, year" in printed  # year: 3 distinct integers
    assert "Continuous columns (4): bill_length_mm, bill_depth_mm, flipper_length_mm, body_mass_g" in printed
    assert "275 training and 69 validation rows" in printed
    assert "category, 3 classes: Adelie, Chinstrap, Gentoo" in printed
    accuracy = float(printed.split("Validation accuracy ")[1].split()[0])
    assert accuracy > 0.9


def test_predict_text_is_the_library_prediction(data, classifier, capsys):
    out, _ = classifier
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "new.csv"), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = library_preds(out, data / "new.csv")
    assert len(lines) == len(expected) == 18
    for i, (line, label) in enumerate(zip(lines, expected["species_pred"]), start=1):
        where, shown = line.split(": ")
        assert where == f"{data / 'new.csv'} row {i}"
        top = shown.split(", ")
        assert len(top) == 2 and top[0].split()[0] == label
        assert float(top[0].split()[1]) >= float(top[1].split()[1])


def test_predict_json_matches_predict_df(data, classifier, capsys):
    out, _ = classifier
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "new.csv"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = library_preds(out, data / "new.csv")
    assert [r["row"] for r in results] == list(range(1, 19))
    for r, (_, want) in zip(results, expected.iterrows()):
        assert len(r["predictions"]) == 3  # --top-k 3, all the classes
        assert r["predictions"][0]["label"] == want["species_pred"]
        for q in r["predictions"]:
            assert q["probability"] == pytest.approx(want[f"p_{q['label']}"], abs=1e-5)


def test_predict_out_writes_the_rows_with_predictions(data, classifier, capsys):
    out, _ = classifier
    dest = data / "preds.csv"
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "new.csv"), str(data / "new.csv"), "--out", str(dest)]) == 0
    assert "Wrote 36 rows" in capsys.readouterr().err
    table = pd.read_csv(dest)
    expected = library_preds(out, data / "new.csv")
    assert list(table.columns[:1]) == ["file"] and {"note", "species_pred", "species_probability"} <= set(table)
    assert list(table["species_pred"]) == list(expected["species_pred"]) * 2
    best = expected[["p_Adelie", "p_Chinstrap", "p_Gentoo"]].max(axis=1)
    assert np.allclose(table["species_probability"], list(best) * 2, atol=1e-6)
    assert np.allclose(
        table["bill_length_mm"], list(pd.read_csv(data / "new.csv")["bill_length_mm"]) * 2, equal_nan=True
    )


def test_info_shows_target_columns_and_classes(classifier, capsys):
    out, _ = classifier
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Target: species (category)" in text
    assert "Classes (3): Adelie, Chinstrap, Gentoo" in text
    assert "Categorical columns (3) (+4 missing-value flags): island, sex, year" in text
    assert "Continuous columns (4): bill_length_mm" in text


def test_regression_target_with_explicit_columns(data, capsys):
    out = data / "bill.ember"
    code, printed = run(
        [
            "train",
            "tabular",
            data / "penguins.csv",
            "--y",
            "bill_length_mm",
            "--cat",
            "species,island",
            "--cont",
            "bill_depth_mm,flipper_length_mm",
            "--y-range",
            "30,60",
            *TRAIN,
            "--out",
            out,
            "--workdir",
            data,
        ]
    )
    assert code == 0
    assert "Dropped 2 row(s) with no 'bill_length_mm' value." in printed
    assert "Target 'bill_length_mm': regression (decimal numbers)" in printed
    assert "Categorical columns" not in printed  # both lists given: nothing split automatically
    assert "target bill_length_mm (regression), 2 categorical and 2 continuous columns" in printed
    assert "Validation RMSE" in printed
    rmse = float(printed.split("Validation RMSE ")[1].split()[0])
    assert rmse < 10  # bills are 32 to 60 mm long
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "new.csv"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    expected = library_preds(out, data / "new.csv")["bill_length_mm_pred"]
    got = [r["values"]["bill_length_mm"] for r in results]
    assert np.allclose(got, expected, atol=1e-4) and all(30 <= v <= 60 for v in got)
    assert main(["predict", str(out), str(data / "new.csv")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"{data / 'new.csv'} row 1: bill_length_mm ")
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Target: bill_length_mm (regression)" in text and "Categorical columns (2): species, island" in text


def test_valid_col_marks_the_validation_rows_and_integer_targets_are_classes(tmp_path):
    from ember.data.builtin import penguins

    df = penguins()
    df["is_valid"] = np.where(df["year"] == 2009, "yes", "no")
    df["id"] = [f"p{i}" for i in range(len(df))]
    df.to_csv(tmp_path / "p.csv", index=False)
    argv = ["train", "tabular", tmp_path / "p.csv", "--y", "year", "--valid-col", "is_valid", "--ignore", "id"]
    code, printed = run([*argv, *TRAIN, "--epochs", "1", "--out", tmp_path / "m.ember", "--workdir", tmp_path])
    assert code == 0
    n_valid = int((df["year"] == 2009).sum())
    assert f"{len(df) - n_valid} training and {n_valid} validation rows" in printed
    assert "Target 'year': category (whole numbers, 3 distinct (at most --max-card 20))" in printed
    assert "Categorical columns (3): species, island, sex" in printed  # neither is_valid nor id is an input
    assert "classes: 2007, 2008, 2009" in printed


def test_an_identifier_column_is_pointed_out(tmp_path):
    from ember.data.builtin import penguins

    df = penguins()
    df["name"] = [f"penguin {i}" for i in range(len(df))]
    df.to_csv(tmp_path / "p.csv", index=False)
    argv = ["train", "tabular", tmp_path / "p.csv", "--y", "species", *TRAIN, "--epochs", "1"]
    code, printed = run([*argv, "--out", tmp_path / "m.ember", "--workdir", tmp_path])
    assert code == 0
    assert "Note: 'name' has 344 distinct values in 344 rows: an identifier? Drop it with --ignore." in printed


def test_semicolon_files_are_read(data, classifier, tmp_path, capsys):
    out, _ = classifier
    pd.read_csv(data / "new.csv").to_csv(tmp_path / "semi.csv", sep=";", index=False)
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "semi.csv"), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 18


def test_other_learners_are_left_to_other_predictors(tiny_learner, classifier):
    import ember
    from ember.cli import tabular

    assert not tabular._is_tabular(tiny_learner)
    assert tabular._is_tabular(ember.load_learner(classifier[0]))
    assert tabular.info_lines({"data": {"type": "DataBlockLoaders"}}) == []


def _lacking_a_column(root):
    pd.read_csv(root / "new.csv").drop(columns=["body_mass_g"]).to_csv(root / "lacking.csv", index=False)
    return ["predict", root / "species.ember", root / "lacking.csv"]


def _text_in_a_number_column(root):
    df = pd.read_csv(root / "new.csv")
    df["bill_depth_mm"] = df["bill_depth_mm"].astype(object)
    df.loc[df.index[4], "bill_depth_mm"] = "deep"
    df.to_csv(root / "texty.csv", index=False)
    return ["predict", root / "species.ember", root / "texty.csv"]


def _header_only(root):
    (root / "header.csv").write_text(",".join(INPUTS) + "\n")
    return ["predict", root / "species.ember", root / "header.csv"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (lambda r: ["train", "tabular", r / "missing.csv", "--y", "species"], "No CSV file at"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "specie"], "Did you mean species?"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "species", "--cat", "isle"], "--cat 'isle'"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "species", "--cont", "island"], "'Torgersen'"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "sex", "--cat", "sex"], "both --y and --cat"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "species", "--valid-col", "sex"], "true/false"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "species", "--layers", "20,x"], "--layers"),
        (lambda r: ["train", "tabular", r / "penguins.csv", "--y", "island", "--y-kind", "regression"], "not a num"),
        (_lacking_a_column, "lacks the column(s) body_mass_g"),
        (_text_in_a_number_column, "holds 'deep' (row 5)"),
        (lambda r: ["predict", r / "species.ember"], "Give the CSV files"),
        (_header_only, "no rows to predict"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(data, classifier, capsys, argv, message):
    argv = [str(a) for a in argv(data)]
    if argv[0] == "train":
        argv += ["--out", str(data / "never.ember"), "--workdir", str(data)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (data / "never.ember").exists()
