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
    assert tk.replace_rep("coool") == f"c {TK_REP} 3 o l"  # from 3 repeats, as in fastai
    assert tk.replace_rep("cool wait...") == "cool wait..."  # an ellipsis stays one token
    assert tk.replace_wrep("so so so so good") == f"{TK_WREP} 4 so good"
    assert tk.replace_wrep("so so so good") == f"{TK_WREP} 3 so good"
    assert tk.replace_wrep("so so good") == "so so good"
    assert tk.replace_wrep("no no no no!") == f"{TK_WREP} 4 no!"
    assert tk.replace_wrep("very very very, nice") == f"{TK_WREP} 3 very, nice"
    assert tk.replace_wrep("no no none") == "no no none"
    assert tk.spec_add_spaces("a/b#c") == "a / b # c"
    assert tk.rm_useless_spaces("a    b  c") == "a b c"
    assert tk.replace_all_caps("I SAID NO") == f"I {TK_UP} SAID {TK_UP} NO"
    assert tk.replace_maj("Hello there Bob") == f"{TK_MAJ} Hello there {TK_MAJ} Bob"
    assert tk.replace_maj("I saw A cat") == "I saw A cat"  # a single capital gets no mark


# Reference tokens from fastai 2.8.12's Tokenizer(WordTokenizer()) (spaCy 3.8), which made the WikiText-103
# vocabulary of the pretrained language model.
FASTAI_TOKENS = {
    "I DON'T LIKE IT": ["i", TK_UP, "do", "n't", TK_UP, "like", TK_UP, "it"],
    "IT'S BAD": [TK_UP, "it", "'s", TK_UP, "bad"],
    "WON'T": [TK_UP, "wo", "n't"],
    "I'M here": [TK_UP, "i", "'m", "here"],
    "CAN'T": [TK_UP, "ca", "n't"],
    "O'Brien came": ["o'brien", "came"],
    "rock'n'roll": ["rock'n'roll"],
    "students' books": ["students", "'", "books"],
    "don\u2019t": ["do", "n\u2019t"],
    "it\u2019s": ["it", "\u2019s"],
    "DON\u2019T": [TK_UP, "do", "n\u2019t"],
    "I\u2019m fine": [TK_MAJ, "i", "\u2019m", "fine"],
    "Don't": [TK_MAJ, "do", "n't"],
    "I didn't like it": ["i", "did", "n't", "like", "it"],
    "A cat.": ["a", "cat", "."],
    "no no no no!": [TK_WREP, "4", "no", "!"],
    "very very very very, good": [TK_WREP, "4", "very", ",", "good"],
    "He said no no no.": [TK_MAJ, "he", "said", TK_WREP, "3", "no", "."],
    "Wow!!!": [TK_MAJ, "wow", TK_REP, "3", "!"],
    "1000 dollars": ["1", TK_REP, "3", "0", "dollars"],
    "a <br /><br />b\n\nc": ["a", "\n\n", "b", "\n\n", "c"],
    "a\nb\tc": ["a", "\n", "b", "\t", "c"],
    "Hello WORLD, it's grrrreat!": [
        TK_MAJ,
        "hello",
        TK_UP,
        "world",
        ",",
        "it",
        "'s",
        "g",
        TK_REP,
        "4",
        "r",
        "eat",
        "!",
    ],
}


@pytest.mark.parametrize("text", list(FASTAI_TOKENS))
def test_tokens_match_fastai(text):
    assert Tokenizer()([text])[0] == [BOS, *FASTAI_TOKENS[text]]


def test_combining_marks_stay_within_words():
    word = WordTokenizer()
    assert word(["\u0939\u093f\u0928\u094d\u0926\u0940 \u092d\u093e\u0937\u093e"])[0] == [
        "\u0939\u093f\u0928\u094d\u0926\u0940",
        "\u092d\u093e\u0937\u093e",
    ]  # Hindi: vowel signs and virama
    assert word(["\u0645\u064f\u062d\u064e\u0645\u0651\u064e\u062f"])[0] == [
        "\u0645\u064f\u062d\u064e\u0645\u0651\u064e\u062f"
    ]  # vowelled Arabic
    assert Tokenizer()(["cafe\u0301 CAFE\u0301"])[0] == [BOS, "cafe\u0301", TK_UP, "cafe\u0301"]  # NFD accents
    assert Tokenizer()(["\u0130stanbul"])[0] == [BOS, TK_MAJ, "i\u0307stanbul"]


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
    with pytest.raises(DataError, match="single str"):
        Tokenizer()("hello world")
    with pytest.raises(DataError, match="single str"):
        tokenize_texts("hello world")


def test_parallel_tokenization_matches_serial(monkeypatch):
    monkeypatch.setattr(tk, "_PARALLEL_MIN_CHARS", 10)  # force the worker pool on a tiny corpus
    texts = [f"Text number {i} says HELLO, doesn't it?" for i in range(40)] + [""]
    parallel = tokenize_texts(texts, n_workers=2)

    import concurrent.futures

    def no_pool(*args, **kwargs):
        raise AssertionError("n_workers=0 must not start processes")

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", no_pool)
    assert parallel == tokenize_texts(texts, n_workers=0)


class _WholeText:
    """A word tokenizer whose tokens hold spaces (and, for one text, the NUL character)."""

    def __call__(self, texts):
        return [[t.strip()] if t.strip() else [] for t in texts]


def test_parallel_tokenization_keeps_any_token_and_falls_back_for_unpicklable(monkeypatch):
    monkeypatch.setattr(tk, "_PARALLEL_MIN_CHARS", 10)
    texts = [f"Hello WORLD, it's text {i}" for i in range(20)] + ["a\x00b c", ""]
    tok = Tokenizer(tok=_WholeText(), rules=[])
    assert tokenize_texts(texts, tok=tok, n_workers=2) == tokenize_texts(texts, tok=tok, n_workers=0)
    assert tokenize_texts(texts, tok=tok, n_workers=2)[0] == [BOS, "Hello WORLD, it's text 0"]
    local = Tokenizer(tok=lambda xs: [x.split() for x in xs])  # cannot be sent to a worker process
    with pytest.warns(UserWarning, match="not picklable"):
        out = tokenize_texts(texts, tok=local, n_workers=2)
    assert out == tokenize_texts(texts, tok=local, n_workers=0)


def test_tokenize_df_marks_fields_and_reports_missing():
    df = pd.DataFrame({"title": ["A b"], "body": ["c d"]})
    toks = tokenize_df(df, ["title", "body"], n_workers=0)[0]
    assert toks == [BOS, "xxfld", "1", "a", "b", "xxfld", "2", "c", "d"]
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


def _shout_rule(t):
    return t.replace("good", "GOODWORD")


def _other_rule(t):
    return t.replace("good", "zyx")


def test_cache_key_follows_the_code_of_rules_and_tokenizers(tmp_path):
    texts = ["a good film", "good good"]
    a = tokenize_corpus(texts, tok=Tokenizer(rules=[_shout_rule, *tk.DEFAULT_RULES]), min_freq=1, cache_dir=tmp_path)
    # The same name with another body, as when a function is redefined in a notebook: another key.
    _other_rule.__name__ = _other_rule.__qualname__ = _shout_rule.__qualname__
    b = tokenize_corpus(texts, tok=Tokenizer(rules=[_other_rule, *tk.DEFAULT_RULES]), min_freq=1, cache_dir=tmp_path)
    assert "goodword" in a.vocab.itos and "zyx" in b.vocab.itos and "goodword" not in b.vocab.itos
    assert len(list(tmp_path.iterdir())) == 2

    # Lambdas, closures and objects without settings() cannot be identified: tokenized every time, never cached.
    for tok in (
        Tokenizer(rules=[lambda t: t.replace("good", "yxw"), *tk.DEFAULT_RULES]),
        Tokenizer(tok=lambda xs: [list(x) for x in xs]),
        Tokenizer(tok=_WholeText()),
    ):
        assert not tok.cacheable
        with pytest.warns(UserWarning, match="not cached"):
            c = tokenize_corpus(texts, tok=tok, min_freq=1, cache_dir=tmp_path)
        assert c.vocab != a.vocab
    assert "yxw" in tokenize_corpus(texts, tok=Tokenizer(rules=[lambda t: t.replace("good", "yxw")]), min_freq=1).vocab
    assert len(list(tmp_path.iterdir())) == 2
    assert Tokenizer().cacheable and Tokenizer(rules=[str.lower]).cacheable


def test_text_ends_are_stripped_and_the_cache_key_ignores_the_hash_seed():
    assert Tokenizer()(["Hello there\n", "\n<br />fine<br />"]) == [
        ["xxbos", "xxmaj", "hello", "there"],
        ["xxbos", "fine"],
    ]
    # A set's repr follows the process's hash seed; the digest of a rule's code writes its sets sorted.
    assert tk._const_repr(frozenset({"the", "a", "of"})) == "{'a', 'of', 'the'}"
    assert tk._const_repr(("x", frozenset({"b", "a"}))) == "('x', {'a', 'b'})"
