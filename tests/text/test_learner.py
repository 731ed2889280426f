"""Tests of ember.text.learner: training, generation, encoder transfer, regularization, pretrained weights."""

from __future__ import annotations

import pickle

import pytest
import torch

from ember.core.errors import ConfigError, DataError, DownloadError, EmberError
from ember.learner import Callback
from ember.text.data import TextDataLoaders
from ember.text.learner import (
    RNNRegularizer,
    decode_spec_tokens,
    language_model_learner,
    text_classifier_learner,
)

SMALL = dict(emb_sz=16, n_hid=24, n_layers=2)
WORDS = "alpha beta gamma delta epsilon zeta eta theta".split()


@pytest.fixture
def lm_dls():
    texts = [" ".join(WORDS * 6) for _ in range(12)]
    return TextDataLoaders.from_texts(texts[:10], texts[10:], is_lm=True, bs=4, seq_len=12, min_freq=1, device="cpu")


def _lm(dls, tmp_path, **kwargs):
    torch.manual_seed(0)
    learn = language_model_learner(dls, pretrained=False, config=SMALL, drop_mult=0.0, path=tmp_path, **kwargs)
    learn.silent = True
    return learn


def test_language_model_learner_cuda_graphs_switch_changes_nothing_on_the_cpu(lm_dls, tmp_path):
    on, off = _lm(lm_dls, tmp_path), _lm(lm_dls, tmp_path, cuda_graphs=False)
    assert on.model[0].cuda_graphs is True and off.model[0].cuda_graphs is False
    for learn in (on, off):
        torch.manual_seed(1)
        learn.fit(1, 1e-2)
    assert on.model[0]._graphs is None  # made for CUDA inputs only
    for a, b in zip(on.model.parameters(), off.model.parameters()):
        assert torch.equal(a, b)


def test_language_model_learns_and_generates(lm_dls, tmp_path):
    learn = _lm(lm_dls, tmp_path)
    loss0, acc0, _ = learn.validate()
    learn.fit_one_cycle(8, 3e-2)
    loss, acc, ppl = learn.validate()
    assert acc0 < 0.3 and acc > 0.9 and loss < loss0 / 3
    assert ppl == pytest.approx(float(torch.tensor(loss).exp()), rel=1e-4)
    text = learn.predict("alpha beta", n_words=4, temperature=0)
    assert text == "alpha beta gamma delta epsilon zeta"
    assert learn.model[0].hidden is None  # predict leaves no state behind


def test_generation_never_writes_padding_or_fillers(lm_dls, tmp_path):
    learn = _lm(lm_dls, tmp_path)
    itos = learn.dls.vocab.itos
    special = [i for i, t in enumerate(itos) if t in ("xxpad", "xxunk") or t.startswith("xxfake")]
    assert any(itos[i].startswith("xxfake") for i in special)  # the vocabulary was rounded up to a multiple of 8
    with torch.no_grad():  # a model that prefers them to every word
        learn.model[1].decoder.bias[special] = 50.0
    raw = learn.predict("alpha", n_words=30, temperature=1.0, decoder=list, only_last_word=True)
    words = raw.split()  # the generated tokens themselves, case and repetition marks not applied
    assert len(words) == 30 and not {"xxpad", "xxunk"} & set(words)
    assert not any(w.startswith("xxfake") for w in words)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_language_model_trains_in_mixed_precision_on_the_cpu(lm_dls, tmp_path, precision):
    # torch's CPU LSTM refuses a float32 input under bfloat16 autocast on processors without bfloat16 support;
    # the encoder hands its LSTMs the autocast type, so mixed precision works everywhere.
    learn = _lm(lm_dls, tmp_path, precision=precision)
    loss0 = learn.validate()[0]
    learn.fit_one_cycle(4, 3e-2)
    loss = learn.validate()[0]
    assert loss < loss0 and torch.isfinite(torch.tensor(loss))
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())


def test_model_resetter_clears_state_before_each_phase(lm_dls, tmp_path):
    learn = _lm(lm_dls, tmp_path)
    seen = []

    class Spy(Callback):
        order = 5

        def before_train(self):
            seen.append(("train", self.learn.model[0].hidden is None))

        def before_validate(self):
            seen.append(("valid", self.learn.model[0].hidden is None))

    learn.fit(2, 1e-3, cbs=[Spy()])
    assert seen == [("train", True), ("valid", True)] * 2


def test_rnn_regularizer_adds_ar_and_tar(lm_dls, tmp_path):
    learn = _lm(lm_dls, tmp_path, alpha=2.0, beta=1.0)
    got = []

    class Capture(Callback):
        order = 50

        def after_loss(self):
            if self.learn.training:
                enc, dec = self.learn.model[0], self.learn.model[1]
                raw, dropped = enc.last_raw, dec.last_dropped
                expected_extra = 2.0 * dropped.pow(2).mean() + (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
                got.append(float((self.learn.loss_grad - self.learn.loss - expected_extra).detach()))
                raise __import__("ember.learner", fromlist=["x"]).CancelFitException()

    learn.fit(1, 1e-3, cbs=[Capture()])
    assert got and abs(got[0]) < 1e-5
    assert learn.model[0].last_raw is None and not learn.model[0].keep_outputs  # released after fit
    assert any(isinstance(c, RNNRegularizer) for c in learn.cbs)


def _clas_dls(vocab):
    texts = [" ".join(WORDS[:4] if i % 2 else WORDS[4:]) * (1 + i % 3) for i in range(48)]
    labels = ["a" if i % 2 else "b" for i in range(48)]
    return TextDataLoaders.from_texts(texts[:40], texts[40:], labels[:40], labels[40:], bs=8, vocab=vocab, device="cpu")


def test_encoder_transfer_splits_and_classifier(lm_dls, tmp_path):
    lm = _lm(lm_dls, tmp_path)
    assert len(lm.param_groups()) == 3  # 2 LSTM layers, then embedding + tied decoder
    lm.save_encoder("enc")
    dls = _clas_dls(lm_dls.vocab)
    torch.manual_seed(0)
    clas = text_classifier_learner(dls, pretrained=False, config=SMALL, seq_len=8, path=tmp_path)
    clas.silent = True
    assert len(clas.param_groups()) == 4  # embedding, 2 LSTM layers, head
    clas.load_encoder("enc")
    assert torch.equal(clas.model[0].module.encoder.weight, lm.model[0].encoder.weight)
    # Frozen to the head at first; freeze_to(-2) opens the last LSTM layer too.
    trainable = [p.requires_grad for g in clas.param_groups() for p in g]
    assert sum(trainable) == sum(p.numel() > 0 for p in clas.param_groups()[-1])
    clas.freeze_to(-2)
    assert all(p.requires_grad for p in clas.param_groups()[2]) and not any(
        p.requires_grad for p in clas.param_groups()[1]
    )
    clas.unfreeze()
    clas.fit_one_cycle(8, 1e-2)
    preds, targs = clas.get_preds()
    assert targs.tolist() == [0 if i % 2 else 1 for i in range(40, 48)]  # back in dataset order
    assert (preds.argmax(1) == targs).float().mean() >= 0.75
    other = TextDataLoaders.from_texts(["x y z"] * 8, ["x"], ["a"] * 8, ["a"], bs=4, min_freq=1, device="cpu")
    other_clas = text_classifier_learner(other, pretrained=False, config=SMALL, n_out=2, path=tmp_path)
    with pytest.raises(EmberError, match="vocab=dls_lm.vocab"):
        other_clas.load_encoder("enc")
    with pytest.raises(ConfigError):
        text_classifier_learner(lm_dls, pretrained=False)


def test_load_encoder_refuses_another_vocabulary_of_the_same_size(lm_dls, tmp_path):
    from ember.text.vocab import Vocab

    lm = _lm(lm_dls, tmp_path)
    lm.save_encoder("enc")
    itos = list(lm_dls.vocab.itos)
    i, j = itos.index("alpha"), itos.index("beta")
    itos[i], itos[j] = itos[j], itos[i]  # same size, two words swapped
    clas = text_classifier_learner(_clas_dls(Vocab(itos)), pretrained=False, config=SMALL, seq_len=8, path=tmp_path)
    before = clas.model[0].module.encoder.weight.clone()
    with pytest.raises(EmberError, match="another vocabulary.*'alpha'"):
        clas.load_encoder("enc")
    assert torch.equal(clas.model[0].module.encoder.weight, before)  # left as it was
    # A file written before the vocabulary was saved with the encoder still loads.
    torch.save({"encoder": lm.model[0].state_dict()}, tmp_path / "old.pth")
    clas.load_encoder(tmp_path / "old.pth")
    assert torch.equal(clas.model[0].module.encoder.weight, lm.model[0].encoder.weight)


def _fastai_layout(lm, module_raw: bool) -> dict:
    """Our language model's weights under fastai's AWD-LSTM key names."""
    sd = lm.state_dict()
    out = {"0.encoder.weight": sd["0.encoder.weight"], "0.encoder_dp.emb.weight": sd["0.encoder.weight"].clone()}
    for i in range(lm[0].n_layers):
        p = f"0.rnns.{i}.module."
        out[f"0.rnns.{i}.{'module.' if module_raw else ''}weight_hh_l0_raw"] = sd[
            f"{p}parametrizations.weight_hh_l0.original"
        ]
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            out[p + name] = sd[p + name]
    out["1.decoder.weight"], out["1.decoder.bias"] = sd["1.decoder.weight"], sd["1.decoder.bias"]
    return out


def _write_wt103(folder, lm, itos):
    folder.mkdir(parents=True)
    torch.save(_fastai_layout(lm, module_raw=False), folder / "lstm_fwd.pth")
    (folder / "itos_wt103.pkl").write_bytes(pickle.dumps(itos))
    return folder / "lstm_fwd.pth", folder / "itos_wt103.pkl"


def test_pretrained_from_local_files_remaps_vocab(lm_dls, tmp_path, monkeypatch):
    from ember.text.models import get_language_model

    torch.manual_seed(1)
    itos = ["xxunk", "xxpad", "xxbos", "alpha", "beta", "other", "words", "here"]
    src = get_language_model(len(itos), config=SMALL)
    files = _write_wt103(tmp_path / "wt", src, itos)
    learn = language_model_learner(lm_dls, config=SMALL, pretrained_fnames=files, path=tmp_path)
    emb, vocab = learn.model[0].encoder.weight, lm_dls.vocab
    assert torch.equal(emb[vocab.stoi["alpha"]], src[0].encoder.weight[3])
    assert torch.allclose(emb[vocab.stoi["gamma"]], src[0].encoder.weight.mean(0))
    assert learn.frozen_to == -1  # pretrained language models start with the body frozen
    # The same files in EMBER_HOME are found without a download.
    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "home"))
    _write_wt103(tmp_path / "home" / "data" / "wt103-fwd", src, itos)
    learn2 = language_model_learner(lm_dls, config=SMALL, path=tmp_path)
    assert torch.equal(learn2.model[0].encoder.weight, emb)
    # Weights of other sizes than the model's: a ConfigError naming the setting, for both learners.
    other = {**SMALL, "n_hid": 32}
    with pytest.raises(ConfigError, match="do not fit.*config"):
        language_model_learner(lm_dls, config=other, pretrained_fnames=files, path=tmp_path)
    with pytest.raises(ConfigError, match="do not fit.*config"):
        text_classifier_learner(_clas_dls(lm_dls.vocab), config=other, pretrained_fnames=files, path=tmp_path)


def test_pretrained_offline_says_how_to_proceed(lm_dls, tmp_path, monkeypatch):
    import ember.data.external as external

    monkeypatch.setenv("EMBER_HOME", str(tmp_path / "home"))

    def offline(*args, **kwargs):
        raise DownloadError("no network")

    monkeypatch.setattr(external, "untar_data", offline)
    with pytest.raises(EmberError, match="pretrained=False"):
        language_model_learner(lm_dls, config=SMALL)


def test_decode_spec_tokens():
    assert decode_spec_tokens(["xxbos", "xxmaj", "hello", "xxup", "you", "there"]) == ["Hello", "YOU", "there"]


def test_interpretation_names_classes_and_lists_texts(tmp_path):
    from ember.vision import ClassificationInterpretation

    texts = [" ".join(WORDS[:4] if i % 2 else WORDS[4:]) * (1 + i % 3) for i in range(48)]
    labels = ["pos" if i % 2 else "neg" for i in range(48)]
    dls = TextDataLoaders.from_texts(texts[:40], texts[40:], labels[:40], labels[40:], bs=4, min_freq=1, device="cpu")
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, pretrained=False, config=SMALL, seq_len=8, path=tmp_path)
    learn.silent = True
    learn.fit(1, 1e-3)
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.vocab == ["neg", "pos"]  # the classes, not the token vocabulary
    assert sum(n for *_, n in interp.most_confused()) + int(interp.confusion_matrix().trace()) == 8
    table = interp.plot_top_losses(8, fname=tmp_path / "top.csv")
    assert list(table.columns) == ["text", "actual", "predicted", "probability", "loss"]
    assert table["loss"].is_monotonic_decreasing and (tmp_path / "top.csv").is_file()
    # Validation batches are sorted by length: each row must still show its own item's text.
    for text, actual in zip(table["text"], table["actual"]):
        assert actual == ("pos" if "alpha" in text else "neg")
    assert sorted(map(len, table["text"])) != [len(table["text"][0])] * 8  # texts of several lengths


def test_classifier_on_data_block_loaders_with_a_text_block(lm_dls, tmp_path):
    import pandas as pd

    from ember.data import CategoryBlock, ColReader, ColSplitter, DataBlock, MultiCategoryBlock
    from ember.text.data import TextBlock

    lm = _lm(lm_dls, tmp_path)
    lm.save_encoder("enc")
    df = pd.DataFrame(
        {
            "title": ["alpha beta", "epsilon zeta"] * 10,
            "body": [" ".join(WORDS[:4]), " ".join(WORDS[4:])] * 10,
            "label": ["a;x", "b"] * 10,
            "is_valid": [False] * 16 + [True] * 4,
        }
    )
    block = TextBlock.from_df(["title", "body"], vocab=lm_dls.vocab)
    dls = DataBlock(
        blocks=(block, MultiCategoryBlock(label_delim=";")),
        get_y=ColReader("label"),
        splitter=ColSplitter(),
    ).dataloaders(df, bs=4, num_workers=0, device="cpu")
    # The block reads both columns of the row itself ("1" and "2" are not in the language model's vocabulary).
    assert block.decode(block.encode(df.iloc[0])).startswith("xxbos xxfld xxunk alpha beta xxfld xxunk alpha")
    clas = text_classifier_learner(dls, pretrained=False, config=SMALL, seq_len=8, path=tmp_path)
    clas.silent = True
    clas.load_encoder("enc")  # the block's vocabulary is the language model's
    assert torch.equal(clas.model[0].module.encoder.weight, lm.model[0].encoder.weight)
    assert len(clas.param_groups()) == 4
    clas.fit(1, 1e-3)
    block = dls.blocks[0]  # the loaders' own copy of the block, set up on the training rows
    n = len(block._cache)
    for i in range(5):
        clas.predict(pd.Series({"title": f"alpha {i}", "body": "beta gamma"}))
    assert len(block._cache) == n  # predictions are not kept
    # the training texts' ids are kept under a 16-byte digest of each text, not under the text itself
    assert n > 0 and all(isinstance(k, bytes) and len(k) == 16 for k in block._cache)
    train_row = df.iloc[0]
    assert any(block.encode(train_row) is ids for ids in block._cache.values())
    single = DataBlock(
        blocks=(TextBlock.from_df("title", min_freq=1), CategoryBlock()),
        get_y=ColReader("label"),
        splitter=ColSplitter(),
    ).dataloaders(df, bs=4, num_workers=0, device="cpu")
    assert text_classifier_learner(single, pretrained=False, config=SMALL).model[0].module.encoder.num_embeddings
    with pytest.raises(EmberError, match="another vocabulary"):
        text_classifier_learner(single, pretrained=False, config=SMALL, path=tmp_path).load_encoder("enc")


def test_language_model_get_preds_joins_the_batches_of_each_stream(lm_dls, tmp_path):
    dls = lm_dls.new(seq_len=10)  # 24 positions per stream: batches of 10, 10 and 4 tokens
    learn = _lm(dls, tmp_path)
    ds = dls.valid.dataset
    L, V = ds.stream_len, len(dls.vocab)
    assert L % 10
    inputs, preds, targs, losses = learn.get_preds(with_input=True, with_loss=True)
    assert preds.shape == (4, L, V) and targs.shape == inputs.shape == losses.shape == (4, L)
    ids = torch.as_tensor(ds.corpus.ids.astype("int64"))
    assert torch.equal(inputs[1], ids[L : 2 * L]) and torch.equal(targs[1], ids[L + 1 : 2 * L + 1])
    assert torch.allclose(preds.sum(-1), torch.ones(4, L), atol=1e-4)  # probabilities
    assert losses.mean().item() == pytest.approx(learn.validate()[0], rel=1e-3)


def test_generation_checks_temperature_and_min_p(lm_dls, tmp_path):
    learn = _lm(lm_dls, tmp_path)
    with pytest.raises(ConfigError, match="temperature"):
        learn.predict("alpha", n_words=2, temperature=-1)
    with pytest.raises(ConfigError, match="min_p"):
        learn.predict("alpha", n_words=2, min_p=1.5)
    with pytest.warns(UserWarning, match="min_p=0.99"):  # no word is that likely: sampled from them all
        text = learn.predict("alpha", n_words=3, min_p=0.99)
    assert len(text.split()) == 4
    with pytest.raises(DataError, match="single str"):
        learn.predict_batch("alpha beta")
