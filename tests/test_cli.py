"""The `ember` command end to end on tiny image folders: train, predict, info, datasets, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

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


# ---------------------------------------------------------------------------------------------------
# segmentation: train a U-Net on the built-in shapes, predict masks, bad folders
# ---------------------------------------------------------------------------------------------------
SEG_TRAIN = ["--arch", "xresnet_tiny", "--no-pretrained", "--epochs", "1", "--size", "32", "--bs", "4", "--lr", "1e-2"]
SHAPE_CODES = ["background", "square", "disc", "triangle"]


def shapes(path):
    from ember.data.builtin import shapes_segmentation

    return shapes_segmentation(n_images=16, size=32, path=path)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_seg")
    data = shapes(root / "shapes")
    out = root / "shapes.ember"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["train", "segmentation", str(data), *SEG_TRAIN, "--out", str(out), "--workdir", str(root)])
    assert code == 0
    return root, data, out, printed.getvalue()


def test_train_segmentation_exports_a_model_and_a_report(segmenter):
    root, _, out, printed = segmenter
    assert out.exists()
    assert (root / "shapes_report" / "loss.png").exists()
    assert (root / "shapes_report" / "results.png").exists()
    assert "codes: background, square, disc, triangle" in printed
    assert "Validation foreground accuracy" in printed and "Dice" in printed


def test_predict_segmentation_writes_masks_of_class_ids(segmenter, capsys):
    root, data, out, _ = segmenter
    masks = root / "masks"
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "images"), "--out-dir", str(masks), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 16 and len(list(masks.glob("*.png"))) == 16
    import ember

    library, _, _ = ember.load_learner(out).predict_batch([results[0]["file"]])
    for r in results:
        assert len(r["classes"]) <= 3 and 0 < sum(q["share"] for q in r["classes"]) <= 1 + 1e-5
        assert {q["label"] for q in r["classes"]} <= set(SHAPE_CODES)
        img = Image.open(r["mask"])
        assert img.mode == "P" and img.size == (32, 32)
        ids = np.asarray(img)
        assert ids.min() >= 0 and ids.max() < len(SHAPE_CODES)
    first = np.asarray(Image.open(results[0]["mask"]))
    assert (first == library[0].numpy()).all()  # the command writes the library's prediction


def test_predict_segmentation_writes_each_mask_at_its_image_size(segmenter, capsys, tmp_path):
    import ember

    _, data, out, _ = segmenter
    src = np.asarray(Image.open(data / "images" / "0003.png").convert("RGB"))  # (32, 32, 3)
    pad = np.zeros((32, 8, 3), np.uint8)
    Image.fromarray(np.concatenate([pad, src, pad], 1)).save(tmp_path / "wide.png")  # (32, 48): a wider photo
    capsys.readouterr()
    assert main(["predict", str(out), str(tmp_path / "wide.png"), "--out-dir", str(tmp_path / "m"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)[0]
    img = Image.open(result["mask"])
    ids = np.asarray(img)  # (32, 48)
    assert img.size == (48, 32) and img.info.get("transparency") == 255
    assert (ids[:, :8] == 255).all() and (ids[:, 40:] == 255).all()  # the centre crop left these unseen
    centre, _, _ = ember.load_learner(out).predict(data / "images" / "0003.png")  # the same pixels, unpadded
    assert (ids[:, 8:40] == centre.numpy()).all()
    assert sum(q["share"] for q in result["classes"]) == pytest.approx(1.0, abs=1e-5)  # shares of what it saw


def test_predict_segmentation_default_folder_and_text(segmenter, capsys, tmp_path, monkeypatch):
    _, data, out, _ = segmenter
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "images" / "0003.png"), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(data / "images" / "0003.png")) and line.endswith("shapes_masks/0003.png")
    assert (tmp_path / "shapes_masks" / "0003.png").exists()


def test_info_lists_the_codes(segmenter, capsys):
    _, _, out, _ = segmenter
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert "MaskBlock (4 codes: background, square, disc, triangle)" in capsys.readouterr().out


def test_segmentation_label_suffix_codes_file_and_relative_folder(tmp_path, monkeypatch):
    from ember import cli

    data = shapes(tmp_path / "camvid_like")
    for mask in (data / "labels").glob("*.png"):
        mask.rename(mask.with_name(f"{mask.stem}_P.png"))
    (data / "names.txt").write_text(" ".join(SHAPE_CODES))  # whitespace-separated on one line
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(
        ["train", "segmentation", "camvid_like", "--label-suffix", "_P", "--codes", "names.txt", *SEG_TRAIN]
    )
    dls = cli._TASKS[args.task].dls(args)
    assert list(dls.vocab) == SHAPE_CODES and len(dls.train_ds) + len(dls.valid_ds) == 16
    x, y = dls.train.one_batch()
    assert x.shape[-2:] == y.shape[-2:] == (32, 32)


def _drop_labels(data):
    shutil.rmtree(data / "labels")
    return data / "labels"


def _drop_one_mask(data):
    (data / "labels" / "0005.png").unlink()
    return data / "labels" / "0005.png"


@pytest.mark.parametrize(
    "break_data,message", [(_drop_labels, "No labels folder"), (_drop_one_mask, "1 of 16 images have no mask")]
)
def test_bad_segmentation_folders_get_one_line_and_exit_2(tmp_path, capsys, break_data, message):
    data = shapes(tmp_path / "d")
    missing = break_data(data)
    code = main(["train", "segmentation", str(data), *SEG_TRAIN, "--out", str(tmp_path / "m.ember")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and str(missing) in err
    assert err.count("\n") == 1 and "Traceback" not in err
