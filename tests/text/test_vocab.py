"""Tests of ember.text.vocab.Vocab."""

from __future__ import annotations

from collections import Counter

import pytest

from ember.core import recipe
from ember.core.errors import ConfigError, DataError
from ember.text.tokenize import SPECIAL_TOKENS
from ember.text.vocab import Vocab


def test_specials_first_then_by_frequency_min_freq_and_multiple_of_8():
    counts = Counter({"the": 5, "cat": 3, "dog": 3, "rare": 2, "xxbos": 9})
    v = Vocab.from_counter(counts)  # min_freq=3
    assert v.itos[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    assert v.itos[9:12] == ["the", "cat", "dog"]  # ties keep first-seen order; xxbos not repeated
    assert "rare" not in v
    assert len(v) % 8 == 0 and len(v) == 16
    assert v.unk_idx == 0 and v.pad_idx == 1


def test_max_vocab_and_validation():
    counts = Counter({f"w{i}": 100 - i for i in range(50)})
    v = Vocab.from_counter(counts, min_freq=1, max_vocab=20)
    assert v.itos[9:20] == [f"w{i}" for i in range(11)] and len(v) == 24
    with pytest.raises(ConfigError):
        Vocab.from_counter(counts, min_freq=0)
    with pytest.raises(ConfigError):
        Vocab.from_counter(counts, max_vocab=3)


def test_numericalize_textify_round_trip():
    v = Vocab.from_tokens([["xxbos", "a", "b", "a"]], min_freq=1)
    ids = v.numericalize(["xxbos", "a", "b", "zzz"])
    assert ids.tolist() == [2, 9, 10, 0]
    assert v.textify(ids) == "xxbos a b xxunk"
    assert v.numericalize_flat([["a"], ["b", "a"]]).tolist() == [9, 10, 9]
    with pytest.raises(DataError):
        v.textify([999])


def test_recipe_and_json_round_trip(tmp_path):
    v = Vocab.from_tokens([["x", "y", "y"]], min_freq=1)
    entry = recipe.dump(v)
    assert entry["type"] == "Vocab"
    w = recipe.load(entry)
    assert w == v and w.numericalize(["y", "q"]).tolist() == v.numericalize(["y", "q"]).tolist()
    assert Vocab.from_json(v.to_json(tmp_path / "v.json")) == v
