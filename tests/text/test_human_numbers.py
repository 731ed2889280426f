"""The RNN lesson's corpus and loaders, and the lesson's 2-layer GRU reaching 75% validation accuracy."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from ember.data.builtin import _number_words, human_numbers
from ember.text.data import TextDataLoaders
from ember.text.tokenize import read_text_files


@pytest.fixture(scope="module")
def corpus_texts(tmp_path_factory):
    path = human_numbers(tmp_path_factory.mktemp("hn"))
    # One number per line; the lesson reads one stream of words (line breaks would be tokens of their own).
    return [t.replace("\n", " ") for t in read_text_files([path / "train.txt", path / "valid.txt"])]


def test_number_words():
    assert _number_words(1) == "one"
    assert _number_words(8023) == "eight thousand twenty three"
    assert _number_words(9999) == "nine thousand nine hundred ninety nine"
    assert _number_words(110) == "one hundred ten"


def test_corpus_split(corpus_texts):
    train, valid = corpus_texts
    numbers = [n.strip() for n in train.split(",")][:-1]
    assert numbers[:2] == ["one", "two"] and numbers[-1] == "eight thousand" and len(numbers) == 8000
    assert len(valid.split(",")) - 1 == 1999 and valid.startswith("eight thousand one , ")


def test_lm_loader_streams_continue_exactly(corpus_texts):
    train, valid = corpus_texts
    dls = TextDataLoaders.from_texts([train], [valid], is_lm=True, bs=64, seq_len=20, min_freq=1, device="cpu")
    vocab = dls.vocab
    ds = dls.valid_ds
    n_tokens = int(ds.corpus.offsets[-1])
    assert 13000 < n_tokens < 13100  # the seeds: "the validation set contains 13,000 tokens"
    batches = list(dls.valid)
    assert vocab.textify(batches[0][0][0, :4]) == "xxbos eight thousand one"
    assert vocab.textify(batches[0][1][0, :3]) == "eight thousand one"  # y is x shifted by one
    L = ds.stream_len
    for k in range(len(batches) - 1):
        # For every stream s, the token after batch k's last position is batch k+1's first token.
        assert torch.equal(batches[k][1][:, -1], batches[k + 1][0][:, 0])
    ids = torch.as_tensor(ds.corpus.ids.astype("int64"))
    for s in (0, 1, 63):
        assert torch.equal(torch.cat([b[0][s] for b in batches]), ids[s * L : (s + 1) * L])
    for k, (xb, _) in enumerate(dls.train):  # training: random lengths, still continuous
        if k == 0:
            prev = _
            continue
        assert torch.equal(prev[:, -1], xb[:, 0])
        prev = _


class _SeqBN(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


class _GRU(nn.Module):
    """The lesson's last model: embedding, 2-layer GRU keeping its state, batch norm, output layer."""

    def __init__(self, nv: int, nh: int = 64) -> None:
        super().__init__()
        self.i_h, self.rnn = nn.Embedding(nv, nh), nn.GRU(nh, nh, 2, batch_first=True)
        self.bn, self.h_o = _SeqBN(nh), nn.Linear(nh, nv)
        self.h = None

    def reset(self) -> None:
        self.h = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, h = self.rnn(self.i_h(x), self.h)  # (B, T, nh)
        self.h = h.detach()
        return self.h_o(self.bn(out))  # (B, T, nv)


@pytest.mark.slow
def test_two_layer_gru_reaches_75_percent(corpus_texts):
    from ember.learner import Learner
    from ember.metrics import accuracy
    from ember.text.learner import ModelResetter

    train, valid = corpus_texts
    start = time.perf_counter()
    torch.manual_seed(0)
    dls = TextDataLoaders.from_texts([train], [valid], is_lm=True, bs=64, seq_len=20, min_freq=1, device="cpu", seed=0)
    learn = Learner(dls, _GRU(len(dls.vocab)), metrics=accuracy, cbs=[ModelResetter()])
    learn.silent = True
    learn.fit_one_cycle(10, 1e-2)
    acc = learn.recorder.values[-1][-1]
    assert acc >= 0.75, f"validation accuracy {acc:.3f}"
    assert time.perf_counter() - start < 120
