"""Tests of ember.text.tokenize: rules, the word tokenizer, parallel tokenization and the on-disk cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ember.core.errors import ConfigError, DataError
from ember.text import tokenize as tk
from ember.text.tokenize import (
    BOS,
    TK_MAJ,
    TK_REP,
    TK_UP,
    TK_WREP,
    Tokenizer,
    WordTokenizer,
    tokenize_corpus,
    tokenize_df,
    tokenize_folder,
    tokenize_texts,
)


def test_rules_on_whole_strings():
    assert tk.fix_html("a&amp;b #39;x<br />y") == "a&b 'x\ny"
    assert tk.replace_rep("cooool") == f"c {TK_REP} 4 o l"
    assert tk.replace_rep("cool") == "cool"  # fewer than 4 repeats are left alone
    assert tk.replace_wrep("so so so so good") == f"{TK_WREP} 4 so good"
    assert tk.replace_wrep("so so so good") == "so so so good"
    assert tk.spec_add_spaces("a/b#c") == "a / b # c"
    assert tk.rm_useless_spaces("a    b  c") == "a b c"
    assert tk.replace_all_caps("I SAID NO") == f"I {TK_UP} SAID {TK_UP} NO"
    assert tk.replace_maj("Hello there Bob") == f"{TK_MAJ} Hello there {TK_MAJ} Bob"


def test_case_rules_are_unicode_aware():
    toks = Tokenizer(add_bos=False)(["Élan ÉTÉ straße"])[0]
    assert toks == [TK_MAJ, "élan", TK_UP, "été", "straße"]


def test_word_tokenizer_splits_punctuation_and_clitics():
    out = WordTokenizer()(["Don't stop: 3.14 isn't pi... she's here -- ok?"])
    assert out == [["Do", "n't", "stop", ":", "3.14", "is", "n't", "pi", "...", "she", "'s", "here", "--", "ok", "?"]]
    assert WordTokenizer()(["", "   "]) == [[], []]


def test_tokenizer_adds_special_tokens_and_lowercases():
    toks = Tokenizer()(["Hello WORLD, it's grrrreat!"])[0]
    assert toks == [BOS, TK_MAJ, "hello", TK_UP, "world", ",", "it", "'s", "g", TK_REP, "4", "r", "eat", "!"]
    assert Tokenizer(add_bos=False, add_eos=True)(["a"])[0] == ["a", "xxeos"]
    assert Tokenizer(rules=[])(["Hi"])[0] == [BOS, "Hi"]


def test_tokenizer_rejects_non_strings():
    with pytest.raises(DataError, match="position 1"):
        Tokenizer()(["ok", 3])
    with pytest.raises(ConfigError):
        Tokenizer(tok=42)


def test_parallel_tokenization_matches_serial(monkeypatch):
    monkeypatch.setattr(tk, "_PARALLEL_MIN_CHARS", 10)  # force the worker pool on a tiny corpus
    texts = [f"Text number {i} says HELLO, doesn't it?" for i in range(40)] + [""]
    parallel = tokenize_texts(texts, n_workers=2)

    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise AssertionError("n_workers=0 must not start processes")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    assert parallel == tokenize_texts(texts, n_workers=0)


def test_tokenize_df_marks_fields_and_reports_missing():
    df = pd.DataFrame({"title": ["A b"], "body": ["c d"]})
    toks = tokenize_df(df, ["title", "body"], n_workers=0)[0]
    assert toks == [BOS, "xxfld", "1", TK_MAJ, "a", "b", "xxfld", "2", "c", "d"]
    assert tokenize_df(df, "body", n_workers=0) == [[BOS, "c", "d"]]
    with pytest.raises(DataError, match="nope"):
        tokenize_df(df, "nope")
    with pytest.raises(DataError, match="row 1"):
        tokenize_df(pd.DataFrame({"t": ["x", None]}), "t")


def test_tokenize_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.txt").write_text("One two.")
    (tmp_path / "b.txt").write_text("Three")
    (tmp_path / "skip.csv").write_text("x")
    files, toks = tokenize_folder(tmp_path, n_workers=0)
    assert [f.name for f in files] == ["1.txt", "b.txt"]
    assert toks == [[BOS, TK_MAJ, "one", "two", "."], [BOS, TK_MAJ, "three"]]
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(DataError, match="bad.txt"):
        tokenize_folder(tmp_path, n_workers=0)


def test_corpus_layout_and_cache(tmp_path, monkeypatch):
    texts = ["the cat sat", "the dog sat on the cat", "a"]
    corpus = tokenize_corpus(texts, min_freq=1, n_workers=0, cache_dir=tmp_path)
    assert len(corpus) == 3
    assert corpus.lengths().tolist() == [4, 7, 2]  # with xxbos
    assert corpus.vocab.textify(corpus[1]) == "xxbos the dog sat on the cat"
    assert isinstance(corpus.ids, np.memmap)  # read back from the cache file
    sub = corpus.subset([2, 0])
    assert sub.vocab.textify(sub.ids) == "xxbos a xxbos the cat sat"

    # Second call: served from the cache, the tokenizer is never run.
    def boom(*args, **kwargs):
        raise AssertionError("tokenized again")

    monkeypatch.setattr(tk, "tokenize_texts", boom)
    again = tokenize_corpus(texts, min_freq=1, n_workers=0, cache_dir=tmp_path)
    assert np.array_equal(again.ids, corpus.ids) and again.vocab == corpus.vocab
    # Another setting is another key.
    with pytest.raises(AssertionError, match="tokenized again"):
        tokenize_corpus(texts, min_freq=2, n_workers=0, cache_dir=tmp_path)
    with pytest.raises(ConfigError):
        tokenize_corpus()


def test_corpus_cache_from_files_tracks_changes(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("one two")
    c1 = tokenize_corpus(files=[f], min_freq=1, cache_dir=tmp_path / "cache")
    f.write_text("one two three four")
    c2 = tokenize_corpus(files=[f], min_freq=1, cache_dir=tmp_path / "cache")
    assert len(c1.ids) == 3 and len(c2.ids) == 5
