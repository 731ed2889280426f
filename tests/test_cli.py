"""The `ember` command end to end on tiny image folders: train, predict, info, datasets, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ember.cli import main


def make_folder(root, n=10, classes=("blue", "red"), size=16):
    rng = np.random.default_rng(0)
    colors = {"blue": (20, 40, 220), "red": (220, 30, 30), "green": (30, 200, 40)}
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = np.clip(np.array(colors[c]) + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


TRAIN = ["--arch", "xresnet_tiny", "--no-pretrained", "--size", "16", "--bs", "8", "--epochs", "3", "--lr", "1e-2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_folder(root / "data", n=40)  # enough batches for batch-norm statistics to settle
    out = root / "colors.ember"
    code = main(["train", "image-classifier", str(data), *TRAIN, "--out", str(out), "--workdir", str(root)])
    assert code == 0
    return root, data, out


def test_train_exports_a_model_and_a_report(trained, capsys):
    root, _, out = trained
    assert out.exists()
    assert (root / "colors_report" / "confusion_matrix.png").exists()
    assert (root / "colors_report" / "loss.png").exists()


def test_predict_json_and_top_k(trained, capsys):
    _, data, out = trained
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "red"), str(data / "blue" / "0.png"), "--json", "--top-k", "2"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 41
    assert all(len(r["predictions"]) == 2 for r in results)
    assert {q["label"] for r in results for q in r["predictions"]} == {"blue", "red"}
    import ember

    files = [r["file"] for r in results]
    labels, _, probs = ember.load_learner(out).predict_batch(files)
    assert [r["predictions"][0]["label"] for r in results] == labels  # the command is the library's predict
    for r, p in zip(results, probs):
        top = p.max().item()
        assert r["predictions"][0]["probability"] == pytest.approx(top, abs=1e-5)
        assert r["predictions"][0]["probability"] >= r["predictions"][1]["probability"]


def test_info(trained, capsys):
    _, _, out = trained
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 classes: blue, red" in text and "Parameters:" in text


@pytest.mark.parametrize(
    "setup,args,message",
    [
        (lambda root: None, ["missing"], "No folder at"),
        (lambda root: make_folder(root / "d", classes=("red",)), ["d"], "one class"),
    ],
)
def test_bad_folders_get_one_line_and_exit_2(tmp_path, capsys, setup, args, message):
    setup(tmp_path)
    code = main(["train", "image-classifier", str(tmp_path / args[0]), *TRAIN, "--out", str(tmp_path / "m.ember")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_unknown_architecture_names_the_closest(tmp_path, capsys):
    data = make_folder(tmp_path / "d", n=3)
    code = main(
        ["train", "image-classifier", str(data), "--arch", "resnt18", "--no-pretrained", "--out", str(tmp_path / "m")]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Unknown architecture 'resnt18'" in err and "resnet18" in err


def test_unreadable_images_few_skipped_many_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "d", n=30)
    (data / "red" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "m.ember"
    with pytest.warns(UserWarning, match="Skipping 1 unreadable"):
        assert (
            main(
                [
                    "train",
                    "image-classifier",
                    str(data),
                    *TRAIN[:-4],
                    "--epochs",
                    "1",
                    "--lr",
                    "1e-2",
                    "--out",
                    str(out),
                    "--workdir",
                    str(tmp_path),
                ]
            )
            == 0
        )
    for i in range(10):
        (data / "blue" / f"bad{i}.png").write_bytes(b"\x89PNG broken")
    code = main(["train", "image-classifier", str(data), *TRAIN, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "11 of 71 images cannot be read" in err


def test_datasets_list_and_unknown(capsys):
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "mnist_5k" in out and "PETS" in out
    assert main(["datasets", "get", "mnistt_5k"]) == 2
    assert "Unknown dataset" in capsys.readouterr().err
