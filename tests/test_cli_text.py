"""The `ember` command on tiny text corpora: classifiers (ULMFiT), language models, predictions and bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import pickle
import random
import re

import pandas as pd
import pytest
import torch

import ember
from ember.cli import main

POS = "good great lovely wonderful superb enjoyable delightful fine".split()
NEG = "bad awful terrible boring dull poor horrible weak".split()
COMMON = "the movie was and a film it plot acting very".split()
SMALL = ["--emb-sz", "16", "--n-hid", "24", "--n-layers", "2"]
# Enough batches for the head's batch-norm statistics to settle; learned at every seed tried (0-5).
CLAS = [*SMALL, "--no-pretrained", "--bs", "8", "--epochs", "6", "--lr", "1e-2"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta".split()


def review(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.choice(words + COMMON) for _ in range(rng.randint(8, 16))).capitalize() + "."


def write_classes(root, n=60, seed=0):
    """``root/pos/*.txt`` and ``root/neg/*.txt``: short reviews told apart by their adjectives."""
    rng = random.Random(seed)
    for name, words in (("pos", POS), ("neg", NEG)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i}.txt").write_text(review(rng, words), encoding="utf-8")
    return root


def write_imdb(root, n_train=12, n_valid=4, n_unsup=6):
    """The IMDb layout: train/{pos,neg,unsup}/ and test/{pos,neg}/."""
    rng = random.Random(1)
    for split, n in (("train", n_train), ("test", n_valid)):
        for name, words in (("pos", POS), ("neg", NEG)):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                (root / split / name / f"{i}.txt").write_text(review(rng, words), encoding="utf-8")
    (root / "train" / "unsup").mkdir()
    for i in range(n_unsup):
        (root / "train" / "unsup" / f"{i}.txt").write_text(review(rng, POS + NEG), encoding="utf-8")
    return root


def run(argv):
    """``ember ARGV``: (exit code, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in argv])
    return code, out.getvalue()


# ---------------------------------------------------------------------------------------------------
# a classifier from scratch, exported, and its predictions
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_text")
    data = write_classes(root / "reviews")
    out = root / "reviews.ember"
    code, printed = run(["train", "text-classifier", data, *CLAS, "--out", out, "--workdir", root])
    assert code == 0
    return root, data, out, printed


def test_train_classifier_from_class_folders(classifier):
    root, _, out, printed = classifier
    assert "Data: 96 training and 24 validation texts, classes: neg, pos" in printed
    assert "Training the head" not in printed  # from scratch: one fit_one_cycle, everything unfrozen
    acc = float(re.search(r"Validation accuracy ([\d.]+)", printed).group(1))
    assert acc >= 0.9
    assert (root / "reviews_report" / "loss.png").exists()
    assert "Most confused" not in printed  # two classes only


def test_predict_files_folders_and_texts_as_the_library_does(classifier, capsys):
    _, data, out, _ = classifier
    files = sorted((data / "pos").glob("*.txt"))[:3] + [data / "neg" / "0.txt"]
    capsys.readouterr()
    args = ["predict", out, *files[:3], data / "neg", "--text", "A lovely, wonderful film.", "--json", "--top-k", "1"]
    assert main([str(a) for a in args]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results) == 3 + 60 + 1
    assert results[0]["file"] == str(files[0]) and results[-1] == {
        "text": "A lovely, wonderful film.",
        "predictions": results[-1]["predictions"],
    }
    assert all(len(r["predictions"]) == 1 for r in results)
    texts = [f.read_text(encoding="utf-8") for f in files[:3]] + [
        f.read_text(encoding="utf-8") for f in sorted((data / "neg").rglob("*.txt"))
    ]
    labels, _, probs = ember.load_learner(out).predict_batch([*texts, "A lovely, wonderful film."])
    assert [r["predictions"][0]["label"] for r in results] == labels  # the command is the library's predict
    for r, p in zip(results, probs):
        assert r["predictions"][0]["probability"] == pytest.approx(p.max().item(), abs=1e-5)
    assert sum(label == "neg" for label in labels[3:-1]) >= 54 and labels[-1] == "pos"

    assert main(["predict", str(out), str(files[0]), "--text", "Awful and boring."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(rf"{re.escape(str(files[0]))}: pos [\d.]+, neg [\d.]+", lines[0])
    assert re.fullmatch(r'"Awful and boring\.": neg [\d.]+, pos [\d.]+', lines[1])


def test_predict_csv_inputs_and_out_csv(classifier, tmp_path, capsys):
    _, _, out, _ = classifier
    table = tmp_path / "new.csv"
    pd.DataFrame({"id": [1, 2], "review": ["Superb, delightful acting.", "Dull, poor plot."]}).to_csv(
        table, index=False
    )
    dest = tmp_path / "preds.csv"
    args = ["predict", out, table, "--text-col", "review", "--text", "Great, lovely film.", "--out", dest]
    assert main([str(a) for a in args]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{table}:0: pos") and printed[1].startswith(f"{table}:1: neg")
    with open(dest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["input"] for r in rows] == [f"{table}:0", f"{table}:1", "Great, lovely film."]
    assert [r["label"] for r in rows] == ["pos", "neg", "pos"]
    _, _, probs = ember.load_learner(out).predict_batch(
        ["Superb, delightful acting.", "Dull, poor plot.", "Great, lovely film."]
    )
    for r, p in zip(rows, probs):
        assert float(r["p_neg"]) == pytest.approx(p[0].item(), abs=1e-5)
        assert float(r["p_pos"]) == pytest.approx(p[1].item(), abs=1e-5)
        assert float(r["probability"]) == pytest.approx(p.max().item(), abs=1e-5)


def test_info_shows_classes_vocabulary_and_sizes(classifier, capsys):
    _, _, out, _ = classifier
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Text: classifier, 2 classes: neg, pos" in text
    assert re.search(r"Vocabulary: \d+ tokens \(", text) and "Tokenizer: WordTokenizer, rules: fix_html" in text
    assert "AWD_LSTM: emb_sz 16, n_hid 24, n_layers 2, drop_mult 0.5; reads texts 72 tokens at a time" in text


# ---------------------------------------------------------------------------------------------------
# a language model from scratch, and generation
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def language_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_lm")
    data = root / "corpus"
    (data / "more").mkdir(parents=True)
    for i in range(12):  # sub-folders are searched too
        (data / ("more" if i % 2 else ".") / f"{i}.txt").write_text(" ".join(WORDS * 6), encoding="utf-8")
    out = root / "lm.ember"
    args = [*SMALL, "--no-pretrained", "--drop-mult", "0", "--bs", "4", "--seq-len", "12", "--min-freq", "1"]
    code, printed = run(["train", "language-model", data, *args, "--epochs", "8", "--lr", "3e-2", "--out", out])
    assert code == 0
    return root, out, printed


def test_train_language_model_reports_accuracy_perplexity_and_a_sample(language_model):
    root, out, printed = language_model
    assert "Data: 11 training texts" in printed and "1 validation texts" in printed
    match = re.search(r"Validation accuracy ([\d.]+), perplexity ([\d.]+) \(loss ([\d.]+)\)", printed)
    acc, ppl, loss = map(float, match.groups())
    assert acc > 0.8 and ppl == pytest.approx(torch.tensor(loss).exp().item(), rel=1e-3)
    sample = (root / "lm_report" / "sample.txt").read_text(encoding="utf-8").strip()
    words = sample.split()  # the prompt, then up to 20 words (a generated xxbos is not shown)
    assert words[:8] == WORDS and 8 < len(words) <= 28 and set(words) <= set(WORDS)
    assert f"Sample (from 'alpha beta gamma delta epsilon zeta eta theta', temperature 0.75): {sample}" in printed
    assert (root / "lm_report" / "loss.png").exists()


def test_predict_continues_prompts(language_model, capsys):
    _, out, _ = language_model
    capsys.readouterr()
    args = ["predict", out, "--text", "alpha beta", "--text", "delta epsilon", "--n-words", "4", "--temperature", "0"]
    assert main([str(a) for a in args]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "alpha beta gamma delta epsilon zeta",
        "delta epsilon zeta eta theta alpha",
    ]
    lm = ember.load_learner(out)
    assert lm.predict("alpha beta", n_words=4, temperature=0) == "alpha beta gamma delta epsilon zeta"
    sampled = ["predict", out, "--text", "gamma", "--n-words", "6", "--seed", "3", "--json"]
    assert main([str(a) for a in sampled]) == 0
    first = json.loads(capsys.readouterr().out)
    assert main([str(a) for a in sampled]) == 0
    assert json.loads(capsys.readouterr().out) == first  # seeded: the same words again
    torch.manual_seed(3)
    assert first == [{"prompt": "gamma", "generated": lm.predict("gamma", n_words=6)}]


def test_predict_prompts_from_files_and_out_csv(language_model, tmp_path, capsys):
    _, out, _ = language_model
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("delta epsilon", encoding="utf-8")
    dest = tmp_path / "generated.csv"
    args = ["predict", out, prompt, "--text", "alpha beta", "--n-words", "2", "--temperature", "0", "--out", dest]
    capsys.readouterr()
    assert main([str(a) for a in args]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{prompt}: delta epsilon zeta eta", "alpha beta gamma delta"]
    with open(dest, newline="", encoding="utf-8") as f:
        assert list(csv.reader(f)) == [
            ["input", "prompt", "generated"],
            [str(prompt), "delta epsilon", "delta epsilon zeta eta"],
            ["", "alpha beta", "alpha beta gamma delta"],
        ]


def test_info_of_a_language_model(language_model, capsys):
    _, out, _ = language_model
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Text: language model, batches of 12 tokens" in text and "AWD_LSTM: emb_sz 16, n_hid 24, n_layers 2" in text


# ---------------------------------------------------------------------------------------------------
# ULMFiT: pretrained weights (fastai's layout), a fine-tuned language model, gradual unfreezing
# ---------------------------------------------------------------------------------------------------
ITOS = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj", "the", "movie", "good", "bad"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A small AWD-LSTM language model written as fastai writes the WikiText-103 one: (weights.pth, itos.pkl)."""
    from ember.text.models import get_language_model

    folder = tmp_path_factory.mktemp("wt")
    torch.manual_seed(1)
    sd = get_language_model(len(ITOS), config={"emb_sz": 16, "n_hid": 24, "n_layers": 2}).state_dict()
    state = {"0.encoder.weight": sd["0.encoder.weight"], "0.encoder_dp.emb.weight": sd["0.encoder.weight"].clone()}
    for i in range(2):
        p = f"0.rnns.{i}.module."
        state[f"0.rnns.{i}.weight_hh_l0_raw"] = sd[f"{p}parametrizations.weight_hh_l0.original"]
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            state[p + name] = sd[p + name]
    state["1.decoder.weight"], state["1.decoder.bias"] = sd["1.decoder.weight"], sd["1.decoder.bias"]
    torch.save(state, folder / "lstm_fwd.pth")
    (folder / "itos_wt103.pkl").write_bytes(pickle.dumps(ITOS))
    return folder / "lstm_fwd.pth", folder / "itos_wt103.pkl", sd


def _lstm_weights(state, prefix):
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and ".rnns." in k}


def test_ulmfit_fine_tunes_a_language_model_and_starts_the_classifier_from_its_encoder(tmp_path, pretrained):
    weights, vocab, sd = pretrained
    data = write_imdb(tmp_path / "imdb")
    out = tmp_path / "imdb.ember"
    args = [*SMALL, "--pretrained-files", weights, vocab, "--lm-epochs", "1", "--bs", "4", "--epochs", "1"]
    code, printed = run(["train", "text-classifier", data, *args, "--lr", "1e-2", "--out", out, "--workdir", tmp_path])
    assert code == 0
    assert "Data: 24 training and 8 validation texts, classes: neg, pos" in printed  # train/unsup is no class
    n_train, n_valid = map(int, re.search(r"Language model on every text: (\d+) training and (\d+)", printed).groups())
    assert n_train + n_valid == 24 + 8 + 6  # the language model reads the unlabelled texts too
    assert (
        "Training the embedding and decoder: 1 epoch(s)" in printed and "Language model: validation accuracy" in printed
    )
    assert "Training the head: 1 epoch(s), learning rate 1.00e-02" in printed and "every layer" not in printed
    encoder = torch.load(tmp_path / "imdb_report" / "lm_encoder.pth", weights_only=True)["encoder"]
    clas = ember.load_learner(out).model[0].module.state_dict()
    assert encoder.keys() == clas.keys()
    assert all(torch.equal(encoder[k], clas[k]) for k in encoder)  # the classifier starts from the LM's encoder
    # One epoch with the LSTMs frozen fine-tunes the embedding only: the LSTMs are still the pretrained ones.
    for key, value in _lstm_weights(sd, "0.").items():
        assert torch.equal(clas[key], value)
    movie = ember.load_learner(out).dls.vocab.stoi["movie"]
    assert not torch.equal(clas["encoder.weight"][movie], sd["0.encoder.weight"][ITOS.index("movie")])  # fine-tuned


def test_pretrained_classifier_from_a_csv_with_gradual_unfreezing(tmp_path, pretrained):
    weights, vocab, _ = pretrained
    rng = random.Random(2)
    texts = [review(rng, POS if i % 2 else NEG) for i in range(40)]
    df = pd.DataFrame(
        {"review": texts, "stars": ["5" if i % 2 else "1" for i in range(40)], "valid": [i >= 32 for i in range(40)]}
    )
    df.to_csv(tmp_path / "reviews.csv", index=False)
    out = tmp_path / "stars.ember"
    args = [*SMALL, "--pretrained-files", weights, vocab, "--lm-epochs", "0", "--bs", "8", "--epochs", "3"]
    cols = ["--text-col", "review", "--label-col", "stars", "--valid-col", "valid"]
    code, printed = run(
        ["train", "text-classifier", tmp_path / "reviews.csv", *args, *cols, "--lr", "1e-2", "--out", out]
    )
    assert code == 0
    assert "Data: 32 training and 8 validation texts, classes: 1, 5" in printed
    assert "Language model" not in printed
    stages = re.findall(r"Training (.+): 1 epoch\(s\), learning rate (.+)", printed)
    assert stages == [
        ("the head", "1.00e-02"),
        ("the last LSTM layer and the head", f"{5e-3 / 2.6**4:.2e} to 5.00e-03"),
        ("every layer", f"{5e-4 / 2.6**4:.2e} to 5.00e-04"),
    ]
    assert ember.load_learner(out).dls.classes == ["1", "5"]


@pytest.mark.parametrize(
    "task,extra",
    [("text-classifier", ["--lm-epochs", "0"]), ("text-classifier", ["--lm-epochs", "1"]), ("language-model", [])],
)
def test_pretrained_files_of_other_sizes_are_refused_in_one_line(tmp_path, capsys, pretrained, task, extra):
    weights, vocab, _ = pretrained
    data = write_classes(tmp_path / "d", n=4)
    argv = ["train", task, data, "--pretrained-files", weights, vocab, "--n-hid", "32", *extra, "--bs", "2"]
    code = main([str(a) for a in [*argv, "--n-layers", "2", "--emb-sz", "16", "--out", tmp_path / "m.ember"]])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "do not fit this model (size mismatch for" in captured.err and "--n-hid" in captured.err
    assert "Training" not in captured.out


def test_unfreezing_plan_spreads_the_epochs():
    from ember.cli.text import _lm_stages, _unfreezing_stages

    plan = _unfreezing_stages(5, 1e-2)
    assert [(f, n) for f, n, _, _ in plan] == [(-1, 1), (-2, 1), (None, 3)]
    assert plan[2][2] == slice(1e-2 / 20 / 2.6**4, 1e-2 / 20)
    assert [n for _, n, _, _ in _unfreezing_stages(1, 1e-2)] == [1, 0, -1]  # stages under 1 epoch are skipped
    assert [(f, n, lr) for f, n, lr, _ in _lm_stages(3, 2e-2, pretrained=True)] == [(-1, 1, 2e-2), (None, 2, 2e-3)]


def test_most_confused_counts_mistakes_per_pair():
    from types import SimpleNamespace

    from ember.vision.interpret import ClassificationInterpretation

    targs = torch.tensor([0, 0, 1, 2, 2, 2])
    preds = torch.eye(3)[[0, 1, 1, 1, 1, 0]]
    learn = SimpleNamespace(dls=SimpleNamespace(class_names=["a", "b", "c"]))
    interp = ClassificationInterpretation(learn, None, preds, targs, preds.argmax(1), torch.zeros(6))
    assert interp.most_confused() == [("c", "b", 2), ("a", "b", 1), ("c", "a", 1)]


# ---------------------------------------------------------------------------------------------------
# bad input: one line on stderr, exit code 2, nothing trained
# ---------------------------------------------------------------------------------------------------
def _one_class(tmp_path):
    (tmp_path / "d" / "pos").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "d" / "pos" / f"{i}.txt").write_text("Good.", encoding="utf-8")


def _csv_without_text(tmp_path):
    pd.DataFrame({"review": ["Good.", "Bad."], "label": ["pos", "neg"]}).to_csv(tmp_path / "d.csv", index=False)


@pytest.mark.parametrize(
    "setup,argv,message",
    [
        (None, ["text-classifier", "missing"], "No file or folder at"),
        (_one_class, ["text-classifier", "d"], "Found one class (pos)"),
        (_csv_without_text, ["text-classifier", "d.csv"], "has no column 'text' (columns: review, label)"),
        (
            _csv_without_text,
            ["text-classifier", "d.csv", "--label-col", "stars", "--text-col", "review"],
            "--label-col",
        ),
        (None, ["language-model", "missing"], "No file or folder at"),
        (None, ["text-classifier", "x", "--pretrained-files", "w.pth", "v.pkl"], "No file w.pth"),
    ],
)
def test_bad_training_input(tmp_path, capsys, monkeypatch, setup, argv, message):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    code = main(["train", *argv, "--no-pretrained" if "--pretrained-files" not in argv else "--pretrained", *SMALL])
    captured = capsys.readouterr()
    assert code == 2 and message in captured.err, captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and "Data:" not in captured.out


def test_pretrained_offline_without_files_fails_before_reading_anything(tmp_path, capsys, monkeypatch):
    import ember.data.external as external
    from ember.core.errors import DownloadError

    def offline(*args, **kwargs):
        raise DownloadError("no network")

    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(external, "untar_data", offline)
    data = write_classes(tmp_path / "d", n=3)
    code = main(["train", "text-classifier", str(data), "--out", str(tmp_path / "m.ember")])
    captured = capsys.readouterr()
    assert code == 2 and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert "not available offline" in captured.err and "--no-pretrained" in captured.err
    assert "--pretrained-files WEIGHTS.pth VOCAB.pkl" in captured.err and "Data:" not in captured.out


def test_bad_predict_input(classifier, tmp_path, capsys):
    _, _, out, _ = classifier
    _csv_without_text(tmp_path)
    for args, message in [
        ([tmp_path / "nope.txt"], "No file or folder at"),
        ([tmp_path / "d.csv"], "Name the text column with --text-col"),
        ([], "Nothing to predict"),
    ]:
        code = main(["predict", str(out), *map(str, args)])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
