"""Export and load of text learners: the loaded learner tokenizes, generates and classifies exactly as before."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ember
from ember.core.errors import ConfigError, DataError, ExportError
from ember.core.recipe import dump, load, registered_names
from ember.learner.export import read_recipe
from ember.losses import CrossEntropyLossFlat
from ember.text.data import TextBlock, TextDataLoaders
from ember.text.learner import LMLearner, TextLearner, language_model_learner, text_classifier_learner
from ember.text.models import AWD_LSTM, get_language_model, get_text_classifier
from ember.text.tokenize import RULES, SpacyTokenizer, Tokenizer, WordTokenizer, lowercase, replace_maj
from ember.text.vocab import Vocab

SMALL = {"emb_sz": 16, "n_hid": 24, "n_layers": 2}
WORDS = "alpha beta gamma delta epsilon zeta eta theta".split()
CLAS_TEXTS = [" ".join(WORDS[:4] if i % 2 else WORDS[4:]) * (1 + i % 3) for i in range(48)]
CLAS_LABELS = ["a" if i % 2 else "b" for i in range(48)]


class TinyArch(AWD_LSTM):
    """An encoder class of the user's: ember cannot name it in a file."""


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A language model trained briefly, its file, and the learner loaded back from it."""
    texts = [" ".join(WORDS * 6) for _ in range(12)]
    dls = TextDataLoaders.from_texts(texts[:10], texts[10:], is_lm=True, bs=4, seq_len=12, min_freq=1, device="cpu")
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lm")
    learn = language_model_learner(dls, pretrained=False, config=SMALL, drop_mult=0.0, path=path)
    learn.silent = True
    loss0 = learn.validate()[0]
    learn.fit_one_cycle(8, 3e-2)
    assert learn.validate()[0] < loss0 / 3
    file = learn.export("lm.ember", verbose=False)
    return learn, file, ember.load_learner(file)


@pytest.fixture(scope="module")
def clas(lm, tmp_path_factory):
    """A classifier on the language model's vocabulary, its file, and the learner loaded back from it."""
    dls = TextDataLoaders.from_texts(
        CLAS_TEXTS[:40], CLAS_TEXTS[40:], CLAS_LABELS[:40], CLAS_LABELS[40:], bs=8, vocab=lm[0].dls.vocab, device="cpu"
    )
    torch.manual_seed(0)
    learn = text_classifier_learner(
        dls, pretrained=False, config=SMALL, seq_len=8, max_len=64, path=tmp_path_factory.mktemp("clas")
    )
    learn.silent = True
    learn.unfreeze()
    learn.fit_one_cycle(8, 1e-2)  # learned for every seed tried (0-7); 6 epochs left some at chance
    file = learn.export("clas.ember", verbose=False)
    return learn, file, ember.load_learner(file)


# --- language model ----------------------------------------------------------------------------------------------
def test_lm_recipe_names_factory_learner_tokenizer_and_no_text(lm):
    learn, file, _ = lm
    rec = read_recipe(file)
    assert rec["application"] == "ember.text" and rec["learner"] == "LMLearner"
    kwargs = {"vocab_sz": len(learn.dls.vocab), "config": SMALL, "drop_mult": 0.0, "arch": "AWD_LSTM"}
    assert rec["model"] == {"factory": "get_language_model", "kwargs": kwargs} == learn.model_recipe
    assert rec["aliases"] == {"1.decoder.weight": "0.encoder.weight"}  # the tied decoder is stored once
    assert rec["loss"]["type"] == "CrossEntropyLossFlat"
    data = rec["data"]["data"]
    assert rec["data"]["type"] == "TextDataLoaders"
    assert set(data) == {"is_lm", "tokenizer", "vocab", "classes", "multi_label", "bs", "seq_len", "max_len"}
    assert data["is_lm"] and data["bs"] == 4 and data["seq_len"] == 12 and data["classes"] == []
    assert data["vocab"]["data"]["itos"] == learn.dls.vocab.itos
    tok = data["tokenizer"]["data"]
    assert tok["rules"] == list(RULES) and tok["tok"] == {"type": "WordTokenizer", "data": {}}
    assert tok["add_bos"] and not tok["add_eos"] and tok["special_tokens"][:3] == ["xxunk", "xxpad", "xxbos"]


def test_loaded_lm_is_an_inference_lm_learner_with_tied_weights(lm):
    learn, _, loaded = lm
    assert type(loaded) is LMLearner and type(loaded.dls) is TextDataLoaders
    assert isinstance(loaded.loss_func, CrossEntropyLossFlat)
    dls = loaded.dls
    assert dls.is_lm and dls.vocab == learn.dls.vocab and dls.bs == 4 and dls.seq_len == 12
    assert dls.tokenizer.settings() == learn.dls.tokenizer.settings()
    assert len(dls.train) == 0 and dls.valid is None
    assert loaded.model_recipe == learn.model_recipe
    for (k, a), (k2, b) in zip(learn.model.state_dict().items(), loaded.model.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert loaded.model[1].decoder.weight is loaded.model[0].encoder.weight


@pytest.mark.parametrize("temperature", [0.0, 0.7])
def test_lm_generates_the_same_text_after_loading(lm, temperature):
    learn, _, loaded = lm
    torch.manual_seed(3)
    ref = learn.predict("alpha beta", n_words=5, temperature=temperature)
    torch.manual_seed(3)
    out = loaded.predict("alpha beta", n_words=5, temperature=temperature)
    assert out == ref and out.startswith("alpha beta ") and len(out.split()) == 7
    if temperature == 0:
        assert out == "alpha beta gamma delta epsilon zeta eta"  # the model learned the sequence


def test_lm_test_dl_and_get_preds_match_the_original(lm):
    learn, _, loaded = lm
    texts = [" ".join(WORDS * 3), "gamma delta epsilon " * 5]
    dl = loaded.dls.test_dl(texts)
    x, y = dl.one_batch()
    n_tokens = 1 + 24 + 1 + 15  # each text starts with xxbos
    assert x.shape == y.shape == (3, (n_tokens - 1) // 3)  # min(bs=4, 40 // seq_len=12) rows, in one batch
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is the next token
    assert loaded.dls.vocab.textify(x[0, :4]) == "xxbos alpha beta gamma"
    preds, targs = loaded.get_preds(dl=dl)
    ref_preds, ref_targs = learn.get_preds(dl=learn.dls.test_dl(texts))
    assert preds.shape == (*x.shape, len(loaded.dls.vocab)) and torch.equal(targs, y)
    assert torch.allclose(preds, ref_preds, atol=1e-6) and torch.equal(targs, ref_targs)
    assert torch.allclose(preds.sum(-1), torch.ones(x.shape), atol=1e-5)  # probabilities
    with pytest.raises(DataError, match="at least 2 tokens"):
        loaded.dls.test_dl([""])


# --- classifier ----------------------------------------------------------------------------------------------------
def test_classifier_recipe_and_loaded_learner(clas):
    learn, file, loaded = clas
    rec = read_recipe(file)
    assert rec["learner"] == "TextLearner" and rec["model"]["factory"] == "get_text_classifier"
    kwargs = rec["model"]["kwargs"]
    assert kwargs == learn.model_recipe["kwargs"]
    assert kwargs["n_class"] == 2 and kwargs["seq_len"] == 8 and kwargs["max_len"] == 64 and kwargs["drop_mult"] == 0.5
    assert kwargs["arch"] == "AWD_LSTM" and kwargs["lin_ftrs"] == [50] and kwargs["ps"] == pytest.approx([0.2, 0.1])
    data = rec["data"]["data"]
    assert data["classes"] == ["a", "b"] and not data["is_lm"] and data["bs"] == 8 and data["seq_len"] is None
    assert type(loaded) is TextLearner and loaded.dls.classes == ["a", "b"] and loaded.dls.c == 2
    assert not loaded.dls.is_lm and loaded.dls.max_len is None and not loaded.dls.multi_label
    for a, b in zip(learn.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)


def test_classifier_predict_and_predict_batch_match_the_original(clas, tmp_path):
    learn, _, loaded = clas
    for text in (CLAS_TEXTS[0], CLAS_TEXTS[41], "Alpha beta, and an unknown word!"):
        label, idx, probs = loaded.predict(text)
        ref_label, ref_idx, ref_probs = learn.predict(text)
        assert label == ref_label and label in ("a", "b") and int(idx) == ["a", "b"].index(label) == int(ref_idx)
        assert probs.shape == (2,) and torch.allclose(probs, ref_probs, atol=1e-6)
    labels, idxs, probs = loaded.predict_batch(CLAS_TEXTS[40:], bs=3)
    ref_labels, ref_idxs, ref_probs = learn.predict_batch(CLAS_TEXTS[40:], bs=3)
    assert labels == ref_labels and torch.equal(idxs, ref_idxs) and torch.allclose(probs, ref_probs, atol=1e-6)
    assert sum(p == t for p, t in zip(labels, CLAS_LABELS[40:])) >= 6  # it learned; answers come back in order
    (tmp_path / "review.txt").write_text(CLAS_TEXTS[40], encoding="utf-8")
    assert loaded.predict(tmp_path / "review.txt")[0] == labels[0]


def test_classifier_test_dl_and_get_preds_match_the_original(clas):
    learn, _, loaded = clas
    ref_preds, ref_targs = learn.get_preds()  # the validation texts, in dataset order
    preds, targs = loaded.get_preds(dl=loaded.dls.test_dl(CLAS_TEXTS[40:]))
    assert targs is None and torch.allclose(preds, ref_preds, atol=1e-6)
    pairs = list(zip(CLAS_TEXTS[40:], CLAS_LABELS[40:]))
    dl = loaded.dls.test_dl(pairs, with_labels=True, bs=3)
    assert len(dl) == 3 and dl.dataset.max_len is None
    preds, targs, dec = loaded.get_preds(dl=dl, with_decoded=True)
    ref_preds3 = learn.get_preds(dl=learn.dls.test_dl(CLAS_TEXTS[40:], bs=3))[0]  # batched (and padded) alike
    assert torch.equal(targs, ref_targs) and torch.allclose(preds, ref_preds3, atol=1e-6)
    assert torch.equal(dec, preds.argmax(1)) and torch.equal(dec, ref_preds.argmax(1))
    with pytest.raises(DataError, match="not a training class"):
        loaded.dls.test_dl([("alpha", "c")], with_labels=True)
    with pytest.raises(DataError, match=r"\(text, label\) pair"):
        loaded.dls.test_dl(["alpha"], with_labels=True)
    with pytest.raises(DataError, match="item 1"):
        loaded.dls.test_dl(["alpha", 3])
    rows = loaded.dls.show_batch(loaded.dls.test_dl(["alpha beta"]).one_batch(), print_out=False)
    assert rows == [("xxbos alpha beta", "")]


def test_data_recipe_round_trip_without_a_learner(clas, lm):
    for learn in (clas[0], lm[0]):
        dls = load(dump(learn.dls))
        assert type(dls) is TextDataLoaders and dls.is_lm == learn.dls.is_lm
        texts = [" ".join(WORDS * 4), "beta " * 30]
        for a, b in zip(dls.test_dl(texts).one_batch(), learn.dls.test_dl(texts).one_batch()):
            assert torch.equal(a, b)
    with pytest.raises(ExportError, match="vocab"):
        TextDataLoaders.from_recipe({"tokenizer": dump(Tokenizer()), "bs": 8})


def test_max_len_and_multi_label_travel():
    vocab = Vocab.from_tokens([WORDS], min_freq=1)
    dls = TextDataLoaders.from_texts(CLAS_TEXTS[:8], None, CLAS_LABELS[:8], bs=4, vocab=vocab, max_len=5)
    dls.train.dataset.labels = torch.eye(2)[dls.train.dataset.labels]  # (N, 2) multi-hot targets
    back = load(dump(dls))
    assert back.max_len == 5 and back.multi_label and back.classes == ["a", "b"]
    (x, y) = back.test_dl([(CLAS_TEXTS[0], ["a", "b"]), ("alpha", "b")], with_labels=True).one_batch()
    assert x.shape[1] == 5 and torch.equal(y, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    model = get_text_classifier(len(vocab), 2, seq_len=4, config=SMALL)
    learn = TextLearner(back, model, loss_func=CrossEntropyLossFlat())
    assert learn._decode_targets(torch.tensor([[True, False], [True, True]])) == [["a"], ["a", "b"]]


# --- tokenizer ---------------------------------------------------------------------------------------------------
def _shout(text: str) -> str:
    return text.upper()


def _split_on_spaces(texts: list[str]) -> list[list[str]]:
    return [t.split() for t in texts]


def test_tokenizer_recipe_round_trip_keeps_rules_and_marks():
    tok = Tokenizer(rules=[replace_maj, lowercase], add_bos=False, add_eos=True)
    back = load(dump(tok))
    assert [r.__name__ for r in back.rules] == ["replace_maj", "lowercase"] and isinstance(back.tok, WordTokenizer)
    text = ["Hello there, I'm OK"]
    assert back(text) == tok(text) == [["xxmaj", "hello", "there", ",", "xxmaj", "i", "'m", "ok", "xxeos"]]
    assert load(dump(Tokenizer())).rules == Tokenizer().rules
    block = load(dump(TextBlock(Vocab(["xxunk", "xxpad", "hello"]), tok=tok, max_len=9)))
    assert block.tok(text) == tok(text) and block.max_len == 9 and block.vocab.itos[2] == "hello"


def test_tokenizer_with_a_rule_of_the_users_cannot_be_exported(lm, tmp_path):
    def lowercase(text: str) -> str:  # same name as ember's rule, but not ember's function
        return text.lower()

    for rule, name in ((_shout, "_shout"), (lambda t: t, "<lambda>"), (lowercase, "lowercase")):
        with pytest.raises(ExportError, match=rf"rule .*{name}.* not one of ember's rules"):
            dump(Tokenizer(rules=[replace_maj, rule]))
    with pytest.raises(ExportError, match=r"word tokenizer .*test_export_text\._split_on_spaces cannot"):
        dump(Tokenizer(tok=_split_on_spaces))
    with pytest.raises(ExportError, match=r"word tokenizer builtins\.str cannot"):
        dump(Tokenizer(tok=str))
    learn = lm[0]
    dls = load(dump(learn.dls))
    dls.tokenizer = Tokenizer(rules=[_shout])
    direct = LMLearner(dls, get_language_model(len(dls.vocab), config=SMALL), path=tmp_path)
    with pytest.raises(ExportError, match="_shout"):
        direct.export("bad.ember", verbose=False)
    assert not (tmp_path / "bad.ember").exists()


def test_tokenizer_recipe_refuses_unknown_rules_and_other_special_tokens():
    data = Tokenizer().to_recipe()
    with pytest.raises(ExportError, match="valid: 'fix_html'"):
        Tokenizer.from_recipe({**data, "rules": ["fix_html", "os.system"]})
    with pytest.raises(ExportError, match="special tokens"):
        Tokenizer.from_recipe({**data, "special_tokens": ["<unk>", "<pad>"]})
    assert {"Tokenizer", "WordTokenizer", "SpacyTokenizer"} <= set(registered_names())
    spacy_tok = SpacyTokenizer.__new__(SpacyTokenizer)  # spaCy itself is an optional extra, not needed here
    spacy_tok.lang = "de"
    assert dump(Tokenizer(tok=spacy_tok))["data"]["tok"] == {"type": "SpacyTokenizer", "data": {"lang": "de"}}


# --- models --------------------------------------------------------------------------------------------------------
def test_factories_take_arch_names_and_a_users_arch_needs_the_model_at_load(lm, tmp_path):
    m = get_text_classifier(30, 3, seq_len=4, config=SMALL, arch="AWD_LSTM")
    assert m._ember_factory[1]["arch"] == "AWD_LSTM" and isinstance(m[0].module, AWD_LSTM)
    direct = TextLearner(lm[0].dls, m)  # built without text_classifier_learner: the recipe comes from the model
    assert direct.model_recipe == {"factory": "get_text_classifier", "kwargs": m._ember_factory[1]}
    with pytest.raises(ConfigError, match="valid: 'AWD_LSTM'"):
        get_language_model(30, arch="GPT")
    learn = language_model_learner(lm[0].dls, arch=TinyArch, pretrained=False, config=SMALL, path=tmp_path)
    assert learn.model_recipe is None and learn.model._ember_factory is None
    file = learn.export("tiny.ember", verbose=False)
    with pytest.raises(ExportError, match="Pass the model"):
        ember.load_learner(file)
    model = get_language_model(len(lm[0].dls.vocab), config=SMALL, arch=TinyArch)
    loaded = ember.load_learner(file, model=model)
    assert type(loaded) is LMLearner and isinstance(loaded.model[0], TinyArch)
    assert loaded.predict("alpha", n_words=3, temperature=0) == learn.predict("alpha", n_words=3, temperature=0)


@pytest.mark.slow
def test_a_fresh_process_loads_and_predicts(clas, lm):
    learn, file, _ = clas
    code = (
        "import torch, ember\n"
        f"clas = ember.load_learner({str(file)!r})\n"
        "label, idx, probs = clas.predict('alpha beta gamma delta')\n"
        f"lm = ember.load_learner({str(lm[1])!r})\n"
        "print(type(clas).__name__, label, int(idx), lm.predict('alpha', n_words=3, temperature=0).replace(' ', '_'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    label, idx, _ = learn.predict("alpha beta gamma delta")
    text = lm[0].predict("alpha", n_words=3, temperature=0)
    assert out == ["TextLearner", label, str(int(idx)), text.replace(" ", "_")] and len(text.split()) == 4
