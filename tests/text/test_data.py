"""Tests of ember.text.data: the language-model and classification loaders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ember.core.errors import ConfigError, DataError
from ember.text.data import ClassificationDataset, LMDataset, TextDataLoaders, lm_dataloaders
from ember.text.tokenize import TokenizedCorpus, _offsets
from ember.text.vocab import Vocab


def _corpus(lengths: list[int]) -> TokenizedCorpus:
    """Documents of consecutive ids, so positions can be read off the values."""
    ids = np.arange(sum(lengths), dtype=np.int32)
    return TokenizedCorpus(ids, _offsets(np.array(lengths)), Vocab([str(i) for i in range(max(sum(lengths), 16))]))


def test_lm_batches_are_contiguous_streams_with_shifted_targets():
    corpus = _corpus([10] * 100)  # 1000 tokens 0..999
    ds = LMDataset(corpus, bs=4, seq_len=7)
    batches = list(ds)
    assert len(batches) == len(ds) == 36  # L = 999 // 4 = 249 positions per stream, ceil(249 / 7)
    x = torch.cat([b[0] for b in batches], 1)  # (4, 249)
    y = torch.cat([b[1] for b in batches], 1)
    assert torch.equal(x[:, 0], torch.tensor([0, 249, 498, 747]))  # stream s starts at s * L
    assert torch.equal(y, x + 1)
    assert torch.equal(x, torch.arange(4 * 249).view(4, 249))


def test_lm_training_batches_continue_each_other_with_random_lengths():
    corpus = _corpus(list(range(3, 40)))  # documents of different lengths, shuffled each epoch
    ds = LMDataset(corpus, bs=5, seq_len=12, shuffle=True, random_seq_len=True, seed=0)
    stream, bounds = ds.plan()
    L = ds.stream_len
    for _epoch in range(2):
        batches = list(ds)
        lens = [b[0].shape[1] for b in batches]
        assert len(batches) == len(ds) and sum(lens) == L
        assert len(set(lens)) > 1  # lengths vary
        for k in range(len(batches) - 1):
            yk, xn = batches[k][1], batches[k + 1][0]
            # For every stream s: the token after batch k's last position is batch k+1's first token.
            assert torch.equal(yk[:, -1], xn[:, 0])
        # Documents stay whole: every document's ids appear as a consecutive run.
        flat = torch.cat([b[0] for b in batches], 1).reshape(-1)
        starts = corpus.offsets[:-1]
        pos = {int(v): i for i, v in enumerate(flat.tolist())}
        for s, n in zip(starts[:5], corpus.lengths()[:5]):
            if s in pos and s + n - 1 in pos:
                assert pos[s + n - 1] - pos[s] == n - 1
    first = [list(ds)[0][0][0, :5].tolist() for _ in range(2)]
    assert first[0] != first[1]  # a new document order each epoch


def test_lm_too_small_corpus():
    with pytest.raises(DataError, match="streams"):
        LMDataset(_corpus([3]), bs=8)


def test_classification_batches_sorted_and_left_padded():
    lengths = [5, 2, 9, 3, 7, 1, 4]
    corpus = _corpus(lengths)
    labels = torch.arange(7)
    valid = ClassificationDataset(corpus, labels, bs=3, pad_idx=1000)
    batches = list(valid)
    assert [b[0].shape for b in batches] == [(3, 9), (3, 4), (1, 1)]
    x, y = batches[0]
    assert y.tolist() == [2, 4, 0]  # longest first
    assert x[1].tolist() == [1000, 1000] + list(range(19, 26))  # padding at the start, the text at the end
    assert valid.order.tolist() == [2, 4, 0, 6, 3, 1, 5]
    train = ClassificationDataset(corpus, labels, bs=3, shuffle=True, pad_idx=1000, seed=0, max_len=4)
    tb = list(train)
    assert tb[0][0].shape[1] == 4 and max(b[0].shape[1] for b in tb) == 4  # max_len keeps the last 4 tokens
    assert sorted(torch.cat([b[1] for b in tb]).tolist()) == list(range(7))


def test_from_df_classifier_and_show_batch():
    df = pd.DataFrame(
        {
            "text": [f"This movie is {'great' if i % 2 else 'awful'} number {i}" for i in range(40)],
            "label": ["pos" if i % 2 else "neg" for i in range(40)],
            "is_valid": [i >= 32 for i in range(40)],
        }
    )
    dls = TextDataLoaders.from_df(df, "text", "label", bs=8, min_freq=1, device="cpu", seed=0)
    assert dls.classes == ["neg", "pos"] and dls.c == 2 and not dls.is_lm
    assert len(dls.train) == 4 and len(dls.valid) == 1
    xb, yb = dls.one_batch()
    assert xb.dtype == torch.long and xb.shape[0] == 8 and yb.shape == (8,)
    rows = dls.show_batch(max_n=2, print_out=False)
    assert rows[0][0].startswith("xxbos xxmaj this movie is") and rows[0][1] in ("pos", "neg")
    assert "great" in rows[0][0] if rows[0][1] == "pos" else "awful" in rows[0][0]
    with pytest.raises(DataError, match="not a training class"):
        TextDataLoaders.from_texts(["a"], ["b"], ["x"], ["y"], min_freq=1, device="cpu")


def test_from_df_multi_label_several_text_columns_and_bad_rows():
    df = pd.DataFrame(
        {
            "title": ["Good", "Bad", "Great", "Awful"] * 5,
            "text": ["good movie", "bad film", "great good", "awful bad"] * 5,
            "label": ["pos;fun", "neg", "pos", "neg;sad"] * 5,
            "is_valid": ["False"] * 16 + ["True"] * 4,  # as read back from a CSV file with strings
        }
    )
    dls = TextDataLoaders.from_df(df, ["title", "text"], label_delim=";", bs=4, min_freq=1, device="cpu", seed=0)
    assert dls.multi_label and dls.classes == ["fun", "neg", "pos", "sad"]
    assert type(dls.loss_func).__name__ == "BCEWithLogitsLossFlat"
    assert len(dls.train_ds.corpus) == 16 and len(dls.valid_ds.corpus) == 4
    assert dls.train_ds.labels[0].tolist() == [1.0, 0.0, 1.0, 0.0]  # "pos;fun"
    assert dls.vocab.textify(dls.train_ds.corpus[0]) == "xxbos xxfld 1 xxmaj good xxfld 2 good movie"
    missing = df.copy()
    missing.loc[3, "label"] = np.nan
    with pytest.raises(DataError, match="missing label at row 3"):
        TextDataLoaders.from_df(missing, bs=4, min_freq=1)
    with pytest.raises(DataError, match="No row is left for training"):
        TextDataLoaders.from_df(df.assign(is_valid=True), bs=4, min_freq=1)
    with pytest.raises(DataError, match="row 0 holds 'maybe'"):
        TextDataLoaders.from_df(df.assign(is_valid="maybe"), bs=4, min_freq=1)


def test_loaders_refuse_a_single_string_a_vocab_without_specials_and_unknown_settings(tmp_path):
    with pytest.raises(DataError, match="single str"):
        TextDataLoaders.from_texts("hello world", is_lm=True, bs=1, min_freq=1)
    with pytest.raises(ConfigError, match="xxunk, xxpad"):
        TextDataLoaders.from_texts(["the movie good"] * 4, ["bad"], ["a"] * 4, ["a"], vocab=Vocab(["the", "movie"]))
    (tmp_path / "train" / "pos").mkdir(parents=True)
    (tmp_path / "test" / "pos").mkdir(parents=True)
    with pytest.raises(ConfigError, match="min_freqq.*'min_freq'"):
        TextDataLoaders.from_folder(tmp_path, min_freqq=1)


def test_from_folder_imdb_layout_lm_and_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "home"))
    for split, n in (("train", 6), ("test", 2)):
        for label in ("pos", "neg"):
            (tmp_path / "imdb" / split / label).mkdir(parents=True)
            for i in range(n):
                (tmp_path / "imdb" / split / label / f"{i}.txt").write_text(f"A {label} review {i} here.")
    (tmp_path / "imdb" / "train" / "unsup").mkdir()
    (tmp_path / "imdb" / "train" / "unsup" / "0.txt").write_text("No label at all.")
    clas = TextDataLoaders.from_folder(tmp_path / "imdb", bs=4, min_freq=1, device="cpu")
    assert clas.classes == ["neg", "pos"]  # the unlabelled folder is not a class
    assert len(clas.train_ds.corpus) == 12 and len(clas.valid_ds.corpus) == 4
    assert (tmp_path / "home" / "cache" / "text").is_dir()
    lm = TextDataLoaders.from_folder(tmp_path / "imdb", is_lm=True, bs=2, seq_len=5, min_freq=1, device="cpu")
    assert lm.is_lm and len(lm.train_ds.corpus) == 13  # every train file, unlabelled included
    x, y = lm.one_batch()
    assert torch.equal(x[:, 1:], y[:, :-1])
    with pytest.raises(DataError, match="valid"):
        TextDataLoaders.from_folder(tmp_path / "imdb", valid="nope")


def test_from_csv(tmp_path):
    pd.DataFrame({"text": ["a b c"] * 10, "label": ["x", "y"] * 5}).to_csv(tmp_path / "texts.csv", index=False)
    dls = TextDataLoaders.from_csv(tmp_path, valid_col=None, bs=2, min_freq=1, device="cpu", seed=1)
    assert len(dls.train_ds.corpus) == 8 and len(dls.valid_ds.corpus) == 2
    with pytest.raises(DataError, match="CSV"):
        TextDataLoaders.from_csv(tmp_path, csv_fname="nope.csv")


def test_text_block_in_a_data_block():
    from ember.core import recipe
    from ember.data.block import CategoryBlock, DataBlock
    from ember.text.data import TextBlock

    df = pd.DataFrame({"text": [f"{'good' if i % 2 else 'bad'} film {'very ' * (i % 4)}" for i in range(20)]})
    df["label"] = ["pos" if i % 2 else "neg" for i in range(20)]
    dblock = DataBlock(
        blocks=(TextBlock.from_df("text", min_freq=1), CategoryBlock()),
        get_x=lambda r: r["text"],
        get_y=lambda r: r["label"],
    )
    dls = dblock.dataloaders(df, bs=4, num_workers=0, device="cpu")
    xb, yb = dls.one_batch()
    assert xb.dtype == torch.long and xb.shape[0] == 4 and yb.shape == (4,)
    block = dls.blocks[0]
    row = xb[int((xb == block.vocab.pad_idx).sum(1).argmax())]
    assert row[0] == block.vocab.pad_idx and row[-1] != block.vocab.pad_idx  # padded at the start
    assert block.decode(row).startswith("xxbos")
    again = recipe.load(recipe.dump(block))
    assert again.vocab == block.vocab and torch.equal(again.encode("good film"), block.encode("good film"))


# -- TextDataLoaders.new: other batch sizes -------------------------------------------------------------------------


def _lm_dls() -> TextDataLoaders:
    train, valid = _corpus(list(range(3, 40))), _corpus([30] * 10)
    return lm_dataloaders(train, valid, bs=2, seq_len=5, device="cpu", seed=0)


def _epoch(dl) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in b) for b in dl]


def test_new_language_model_loaders_other_bs_and_seq_len():
    dls, twin = _lm_dls(), _lm_dls()  # twin: what dls would give had new() not been called
    new = dls.new(bs=4, seq_len=10)
    assert type(new) is TextDataLoaders and new.is_lm and new.bs == 4 and new.seq_len == 10
    assert new.vocab is dls.vocab and new.tokenizer is dls.tokenizer and new.loss_func is dls.loss_func
    assert new.device == dls.device and new.train.split == 0 and new.valid.split == 1
    tds = new.train_ds
    assert tds.shuffle and tds.random_seq_len and tds.stream_len == (int(tds.corpus.offsets[-1]) - 1) // 4
    assert tds._rng is not dls.train_ds._rng  # copied, with the same state
    assert tds._rng.bit_generator.state == dls.train_ds._rng.bit_generator.state
    for _epoch_i in range(2):
        batches = _epoch(new.train)
        assert len(batches) == len(new.train) == -(-tds.stream_len // 10)
        assert all(x.shape[0] == 4 and x.shape == y.shape for x, y in batches)
        assert sum(x.shape[1] for x, _ in batches) == tds.stream_len
        for k in range(len(batches) - 1):
            assert torch.equal(batches[k][1][:, -1], batches[k + 1][0][:, 0])  # each row continues its stream
    valid = _epoch(new.valid)
    vds = new.valid_ds
    assert vds.bs == 4 and vds.seq_len == 10 and not vds.shuffle  # an LM's valid bs is the training one
    assert [x.shape for x, _ in valid[:-1]] == [(4, 10)] * (len(valid) - 1)
    x = torch.cat([b[0] for b in valid], 1)
    assert torch.equal(x, torch.arange(4 * vds.stream_len).view(4, vds.stream_len))  # contiguous streams
    # The original loaders are untouched: same settings, same batches as a twin never resized.
    assert dls.bs == 2 and dls.seq_len == 5 and dls.train_ds.bs == 2 and dls.valid_ds.bs == 2
    for a, b in zip(_epoch(dls.train) + _epoch(dls.valid), _epoch(twin.train) + _epoch(twin.valid)):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    # None keeps a setting.
    only_len = dls.new(seq_len=8)
    assert only_len.bs == 2 and only_len.seq_len == 8 and only_len.valid_ds.bs == 2


def _clas_df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": [f"This movie is {'great ' * (i % 5)}number {i}" for i in range(40)],
            "label": ["pos" if i % 2 else "neg" for i in range(40)],
            "is_valid": [i >= 32 for i in range(40)],
        }
    )


def test_new_classification_loaders_other_bs():
    dls = TextDataLoaders.from_df(_clas_df(), bs=8, max_len=6, min_freq=1, device="cpu", seed=0)
    new = dls.new(bs=3)
    assert new.bs == 3 and new.valid_ds.bs == 6  # the valid set keeps twice the training bs
    assert new.classes == dls.classes and new.classes is not dls.classes and new.c == 2 and not new.is_lm
    assert new.seq_len is None and new.max_len == 6 and new.vocab is dls.vocab
    tds = new.train_ds
    assert (
        tds.shuffle and tds.max_len == 6 and tds.pad_idx == dls.train_ds.pad_idx and tds.labels is dls.train_ds.labels
    )
    for _epoch_i in range(2):
        batches = _epoch(new.train)
        assert len(batches) == len(new.train) == 11
        assert sorted(x.shape[0] for x, _ in batches) == [2] + [3] * 10 and all(x.shape[1] <= 6 for x, _ in batches)
        assert sorted(tds.order.tolist()) == list(range(32))  # every document once per epoch
        assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(dls.train_ds.labels.tolist())
    valid = _epoch(new.valid)
    assert [x.shape[0] for x, _ in valid] == [6, 2] and not new.valid_ds.shuffle
    assert dls.bs == 8 and dls.valid_ds.bs == 16 and len(dls.train) == 4  # the original is untouched
    assert [x.shape[0] for x, _ in _epoch(dls.train)] == [8] * 4


def test_new_checks_its_arguments():
    lm = _lm_dls()
    clas = TextDataLoaders.from_df(_clas_df(), bs=8, min_freq=1, device="cpu", seed=0)
    with pytest.raises(ConfigError, match="language-model loaders only"):
        clas.new(bs=4, seq_len=10)
    with pytest.raises(ConfigError, match=r"`shuffle`.*'bs', 'seq_len'"):
        lm.new(bs=4, shuffle=False)
    for bad in (0, -2, 2.5, True, "4"):
        with pytest.raises(ConfigError, match="`bs`"):
            clas.new(bs=bad)
    with pytest.raises(ConfigError, match="`seq_len`"):
        lm.new(seq_len=0)
    with pytest.raises(DataError, match="streams"):
        lm.new(bs=10_000)  # more streams than tokens
    assert lm.bs == 2 and clas.bs == 8


def test_new_on_inference_loaders_from_an_export():
    lm = TextDataLoaders.from_recipe(_lm_dls().to_recipe())
    new = lm.new(bs=3, seq_len=9)
    assert new.valid is None and new.bs == 3 and new.seq_len == 9 and new.is_lm and len(new.train) == 0
    assert lm.bs == 2 and lm.seq_len == 5
    clas = TextDataLoaders.from_recipe(TextDataLoaders.from_df(_clas_df(), bs=8, min_freq=1, device="cpu").to_recipe())
    small = clas.new(bs=4)
    assert small.bs == 4 and small.classes == clas.classes and small.tokenizer is clas.tokenizer
    assert small.test_dl(["a great movie"] * 10).dataset.bs == 4  # test loaders follow the new batch size
    with pytest.raises(ConfigError, match="language-model"):
        clas.new(seq_len=9)


def test_learners_train_on_new_loaders(tmp_path):
    from ember.text.learner import language_model_learner, text_classifier_learner

    words = "alpha beta gamma delta epsilon zeta eta theta".split()
    texts = [" ".join(words * 3) for _ in range(6)]
    lm = TextDataLoaders.from_texts(texts[:5], texts[5:], is_lm=True, bs=4, seq_len=12, min_freq=1, device="cpu")
    small = dict(emb_sz=8, n_hid=12, n_layers=1)
    torch.manual_seed(0)
    learn = language_model_learner(lm.new(bs=2, seq_len=8), pretrained=False, config=small, path=tmp_path)
    learn.silent = True
    learn.fit(1, 1e-2)
    assert all(np.isfinite(v) for v in learn.validate())
    labels = ["a", "b"] * 6
    clas = TextDataLoaders.from_texts(texts * 2, texts[:2], labels, labels[:2], bs=4, min_freq=1, device="cpu")
    learn = text_classifier_learner(clas.new(bs=3), pretrained=False, config=small, seq_len=8, path=tmp_path)
    learn.silent = True
    learn.fit(1, 1e-2)
    assert all(np.isfinite(v) for v in learn.validate())
