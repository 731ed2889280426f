"""Tests of SubwordTokenizer (SentencePiece subwords) and its use by the text loaders and exported learners."""

from __future__ import annotations

import base64
import importlib.util
import json
import pickle
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

import ember
from ember.core.errors import ConfigError, DataError, EmberError
from ember.core.recipe import dump, load
from ember.learner.export import read_recipe
from ember.text.data import TextBlock, TextDataLoaders
from ember.text.learner import text_classifier_learner
from ember.text.tokenize import (
    SPECIAL_TOKENS,
    UNK,
    SubwordTokenizer,
    Tokenizer,
    WordTokenizer,
    tokenize_corpus,
    tokenize_texts,
)

needs_sp = pytest.mark.skipif(importlib.util.find_spec("sentencepiece") is None, reason="needs sentencepiece")

CORPUS = [
    "The cat sat on the mat. The dog sat on the log.",
    "A quick brown fox jumps over the lazy dog!",
    "Cats and dogs are friends; foxes are not.",
    "Unbelievable: the mat was flat and the log was wet.",
    "Seven seas, seventy sailors, and one small boat.",
    "Sailing boats float; cats prefer the mat by the fire.",
] * 4
SMALL = {"emb_sz": 16, "n_hid": 24, "n_layers": 2}


@pytest.fixture(scope="module")
def trained() -> SubwordTokenizer:
    return SubwordTokenizer(vocab_sz=80).setup(CORPUS)


def _review_df() -> pd.DataFrame:
    """Good reviews talk of sunshine, bad ones of thunder, in 1 to 3 rounds; the last 8 rows are for validation.

    Only the validation rows hold the character "§", so a model trained on the training rows cannot know it.
    """
    good, bad = "sunshine smiles bright warm".split(), "thunder rain dark cold".split()
    rows = []
    for i in range(48):
        words, label = (good, "pos") if i % 2 else (bad, "neg")
        k = (i // 2) % 4
        text = " ".join((words[k:] + words[:k]) * (1 + i % 3))
        rows.append({"text": ("§ " if i >= 40 else "") + text, "label": label, "is_valid": i >= 40})
    return pd.DataFrame(rows)


@needs_sp
def test_pieces_round_trip_to_the_text(trained):
    out = trained(CORPUS[:6] + ["The sailors sat on a flat boat."])  # the last text is unseen, its characters are not
    for text, pieces in zip(CORPUS[:6] + ["The sailors sat on a flat boat."], out):
        assert trained.decode(pieces) == text
        assert "".join(pieces).replace("▁", " ").strip() == text
    # Subwords, not characters: the trained pieces merge frequent character runs.
    assert sum(len(p) for p in out[0]) / len(out[0]) > 1.3
    assert len(trained.pieces) <= 80 and trained.pieces[0] == UNK


@needs_sp
def test_special_tokens_stay_single_pieces(trained):
    text = " ".join(SPECIAL_TOKENS) + " the xxmaj cat"
    pieces = trained([text])[0]
    assert [p for p in pieces if p.startswith("xx")] == [*SPECIAL_TOKENS, "xxmaj"]
    assert all(tok in trained.pieces for tok in SPECIAL_TOKENS)
    # Through a Tokenizer: the rules' marks come out whole, and xxbos leads.
    tok = Tokenizer(tok=SubwordTokenizer(vocab_sz=80)).setup(CORPUS)
    pieces = tok(["The CAT sat!!!!! on the mat"])[0]
    assert pieces[0] == "xxbos"
    # The corpus has no digit, so the repeat count "5" is an unknown character.
    assert [p for p in pieces if p.startswith("xx")] == ["xxbos", "xxmaj", "xxup", "xxrep", "xxunk"]
    assert "".join(pieces[1:]).replace("▁", " ").split() == "xxmaj the xxup cat sat xxrep xxunk ! on the mat".split()


@needs_sp
def test_unknown_characters_become_xxunk(trained):
    pieces = trained(["the cat 漢字"])[0]
    assert pieces[-1] == UNK and "漢" not in "".join(pieces)


@needs_sp
def test_untrained_tokenizer_and_bad_arguments_are_reported():
    tok = SubwordTokenizer(vocab_sz=64)
    assert tok.needs_setup and Tokenizer(tok=tok).needs_setup and not Tokenizer().needs_setup
    with pytest.raises(ConfigError, match=r"not trained yet.*setup\(train_texts\)"):
        tok(["hello"])
    with pytest.raises(ConfigError, match="not trained yet"):
        Tokenizer(tok=tok)(["hello"])
    with pytest.raises(ConfigError, match="vocab_sz"):
        SubwordTokenizer(vocab_sz=0)
    with pytest.raises(ConfigError, match="model_type"):
        SubwordTokenizer(model_type="wordpiece")
    with pytest.raises(ConfigError, match="char_coverage"):
        SubwordTokenizer(char_coverage=1.5)
    with pytest.raises(DataError, match=r"raise `vocab_sz`"):
        SubwordTokenizer(vocab_sz=12).setup(CORPUS)  # fewer pieces than characters + special tokens
    with pytest.raises(DataError, match="no text"):
        SubwordTokenizer(vocab_sz=64).setup(["", "  \n"])
    with pytest.raises(DataError, match="position 1"):
        SubwordTokenizer(vocab_sz=64).setup(["fine", 3])


@needs_sp
def test_setup_trains_once_and_default_size_fits_the_texts(trained):
    model = trained.sp_model
    assert trained.setup(["completely different words"]) is trained and trained.sp_model == model
    auto = SubwordTokenizer().setup(CORPUS)  # vocab_sz=None: from the number of characters and words
    n_chars = len(set("".join(CORPUS)))
    assert n_chars + len(SPECIAL_TOKENS) < len(auto.pieces) <= n_chars + len(SPECIAL_TOKENS) + 8
    bpe = SubwordTokenizer(vocab_sz=72, model_type="bpe").setup(CORPUS)
    assert bpe.decode(bpe([CORPUS[1]])[0]) == CORPUS[1] and bpe.sp_model != model


@needs_sp
def test_cache_dir_reuses_the_trained_model(tmp_path, monkeypatch):
    first = SubwordTokenizer(vocab_sz=80, cache_dir=tmp_path).setup(CORPUS)
    files = list(tmp_path.glob("subword-*.model"))
    assert len(files) == 1 and files[0].read_bytes() == first.sp_model

    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of reading the cache")

    again = SubwordTokenizer(vocab_sz=80, cache_dir=tmp_path)
    monkeypatch.setattr(again._spm.SentencePieceTrainer, "train", no_training)
    assert again.setup(CORPUS).sp_model == first.sp_model
    # Other settings are another model.
    with pytest.raises(AssertionError, match="trained again"):
        SubwordTokenizer(vocab_sz=72, cache_dir=tmp_path).setup(CORPUS)


@needs_sp
def test_a_given_model_file_needs_no_setup(trained, tmp_path):
    file = tmp_path / "sp.model"
    file.write_bytes(trained.sp_model)
    tok = SubwordTokenizer(sp_model=file)
    assert not tok.needs_setup and tok(CORPUS[:3]) == trained(CORPUS[:3])
    with pytest.raises(DataError, match="does not exist"):
        SubwordTokenizer(sp_model=tmp_path / "missing.model")
    with pytest.raises(DataError, match="could not be read"):
        SubwordTokenizer(sp_model=b"not a model")


@needs_sp
def test_pickles_for_worker_processes_and_parallel_tokenizing_matches(trained, monkeypatch):
    back = pickle.loads(pickle.dumps(trained))
    assert back(CORPUS) == trained(CORPUS) and back.sp_model == trained.sp_model
    tok = Tokenizer(tok=trained)
    monkeypatch.setattr("ember.text.tokenize._PARALLEL_MIN_CHARS", 1)
    assert tokenize_texts(CORPUS, tok=tok, n_workers=2) == tok(CORPUS)


@needs_sp
def test_tokenize_corpus_trains_on_the_texts_it_builds_a_vocab_from(tmp_path):
    tok = Tokenizer(tok=SubwordTokenizer(vocab_sz=80))
    train = tokenize_corpus(CORPUS, tok=tok, cache_dir=tmp_path)
    assert not tok.needs_setup
    pieces = tok(CORPUS)
    assert train.vocab.textify(train[0]) == " ".join(pieces[0])
    # Every piece of the model has an id, even those seen fewer than min_freq=3 times (or never).
    counts = Counter(p for toks in pieces for p in toks)
    assert any(counts[p] < 3 for p in tok.tok.pieces)
    assert all(p in train.vocab for p in tok.tok.pieces)
    assert train.vocab.itos[9] == counts.most_common(1)[0][0]  # the most frequent piece right after the specials
    # The cache key names the trained model: a second tokenizer trained alike hits the same cache entry.
    again = tokenize_corpus(CORPUS, tok=Tokenizer(tok=SubwordTokenizer(sp_model=tok.tok.sp_model)), cache_dir=tmp_path)
    assert isinstance(again.ids, np.memmap) and again.vocab == train.vocab
    assert len(list(tmp_path.iterdir())) == 1
    # With a given vocabulary the texts are not training texts: an untrained tokenizer is an error.
    with pytest.raises(ConfigError, match="tok=dls_lm.tokenizer"):
        tokenize_corpus(CORPUS, tok=Tokenizer(tok=SubwordTokenizer(vocab_sz=80)), vocab=train.vocab)


@needs_sp
def test_text_dataloaders_from_df_trains_on_the_training_split_and_a_classifier_learns(tmp_path):
    df = _review_df()
    tok = Tokenizer(tok=SubwordTokenizer(vocab_sz=64))
    dls = TextDataLoaders.from_df(df, tok=tok, bs=8, seed=0, device="cpu")
    assert dls.tokenizer is tok and not tok.needs_setup
    assert not any("§" in p for p in tok.tok.pieces)  # only the validation rows hold it
    assert all(p in dls.vocab for p in tok.tok.pieces)
    valid_ids = torch.cat([xb.flatten() for xb, _ in dls.valid])
    assert (valid_ids == dls.vocab.unk_idx).sum() == 8  # one xxunk per validation text: the "§"
    x, _ = dls.train.one_batch()
    texts = [dls.vocab.textify([i for i in row.tolist() if i != dls.vocab.pad_idx]) for row in x]
    assert all(t.startswith("xxbos ▁") for t in texts)
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, pretrained=False, config=SMALL, drop_mult=0.0, seq_len=8, path=tmp_path)
    learn.silent = True
    loss0 = learn.validate()[0]
    learn.unfreeze()
    learn.fit_one_cycle(12, 1e-2)
    loss, acc = learn.validate()[:2]
    assert loss < loss0 * 0.6 and acc >= 0.75
    # Exported and loaded: the same pieces, the same predictions, with no sentencepiece file beside it.
    file = learn.export("subword.ember", verbose=False)
    tok_recipe = read_recipe(file)["data"]["data"]["tokenizer"]["data"]["tok"]
    assert tok_recipe["type"] == "SubwordTokenizer"
    assert base64.b64decode(tok_recipe["data"]["sp_model"]) == tok.tok.sp_model
    loaded = ember.load_learner(file)
    new = ["warm sunshine and bright smiles", "cold thunder, dark rain", "Thunder!!!! §"]
    assert loaded.dls.tokenizer(new) == tok(new)
    for text in new:
        label, idx, probs = loaded.predict(text)
        ref_label, ref_idx, ref_probs = learn.predict(text)
        assert label == ref_label and torch.allclose(probs, ref_probs, atol=1e-6)


@needs_sp
def test_text_dataloaders_from_folder_trains_on_the_train_folder_only(tmp_path):
    for split, extra in (("train", ""), ("test", " Ω")):
        for label, words in (("pos", "sunshine and smiles"), ("neg", "thunder and rain")):
            folder = tmp_path / split / label
            folder.mkdir(parents=True)
            for i in range(4):
                (folder / f"{i}.txt").write_text(f"{words} number {i}{extra}", encoding="utf-8")
    tok = Tokenizer(tok=SubwordTokenizer(vocab_sz=64))
    dls = TextDataLoaders.from_folder(tmp_path, bs=4, min_freq=1, cache=tmp_path / "cache", device="cpu")
    assert isinstance(dls.tokenizer.tok, WordTokenizer)  # the default is unchanged
    dls = TextDataLoaders.from_folder(tmp_path, tok=tok, bs=4, min_freq=1, cache=tmp_path / "cache", device="cpu")
    assert dls.tokenizer is tok and not any("Ω" in p for p in tok.tok.pieces)
    x, y = next(iter(dls.valid))
    assert ((x == dls.vocab.unk_idx).sum(1) == 1).all()  # the test texts' "Ω"
    assert sorted(dls.classes) == ["neg", "pos"] and len(dls.train) == 2


@needs_sp
def test_text_block_setup_trains_the_subword_model_on_the_training_values():
    block = TextBlock(tok=Tokenizer(tok=SubwordTokenizer(vocab_sz=80)), min_freq=1)
    block.setup(CORPUS)
    assert not block.tok.needs_setup
    ids = block.encode(CORPUS[0])
    assert block.decode(ids) == " ".join(block.tok([CORPUS[0]])[0])
    again = load(json.loads(json.dumps(dump(block))))
    assert again.encode(CORPUS[0]).tolist() == ids.tolist()


@needs_sp
def test_recipe_round_trip_tokenizes_identically(trained):
    tok = Tokenizer(tok=trained, add_eos=True)
    data = json.loads(json.dumps(dump(tok)))
    entry = data["data"]["tok"]["data"]
    # The model travels as base64 text: 4/3 of its bytes (about 320 KB for a small vocabulary).
    assert len(entry["sp_model"]) == 4 * ((len(trained.sp_model) + 2) // 3)
    assert entry["special_toks"] == list(SPECIAL_TOKENS) and entry["vocab_sz"] == 80
    back = load(data)
    probe = [*CORPUS, "Brand NEW text, never seen!!!! 漢字"]
    assert back(probe) == tok(probe) and back.add_eos
    assert back.tok.settings() == trained.settings()
    untrained = load(json.loads(json.dumps(dump(SubwordTokenizer(vocab_sz=64)))))
    assert untrained.needs_setup and untrained.vocab_sz == 64


def test_missing_sentencepiece_says_how_to_install(monkeypatch):
    recipe = {"type": "SubwordTokenizer", "data": {"vocab_sz": 64, "sp_model": None}}
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # `import sentencepiece` now raises ImportError
    with pytest.raises(EmberError, match=r"pip install 'ember\[sentencepiece\]'"):
        SubwordTokenizer(vocab_sz=64)
    with pytest.raises(ConfigError, match=r"pip install 'ember\[sentencepiece\]'"):
        load(recipe)  # a learner exported with subwords, loaded where the extra is missing


@needs_sp
def test_language_model_predict_writes_plain_text_with_subwords():
    from ember.text.learner import language_model_learner

    tok = Tokenizer(tok=SubwordTokenizer(vocab_sz=80))
    dls = TextDataLoaders.from_texts(
        CORPUS[:20], CORPUS[20:], is_lm=True, bs=4, seq_len=8, tok=tok, min_freq=1, device="cpu", seed=0
    )
    learn = language_model_learner(dls, pretrained=False, config=SMALL)
    learn.silent = True
    learn.fit(1, 1e-2)
    text = learn.predict("The cat", n_words=6, temperature=0)
    assert "▁" not in text and text.lower().startswith("the cat")
    # The case marks come back on whole words, with single spaces (the prompt alone: n_words=0).
    assert learn.predict("The Cat sat WELL", n_words=0) == "The Cat sat WELL"
