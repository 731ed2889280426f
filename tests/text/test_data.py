"""Tests of ember.text.data: the language-model and classification loaders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ember.core.errors import DataError
from ember.text.data import ClassificationDataset, LMDataset, TextDataLoaders
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
