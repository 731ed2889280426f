"""Tests of ember.text.models: dropouts, AWD-LSTM state, the classifier's encoder and head, weight conversion."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch
from torch import nn

from ember.core.errors import EmberError
from ember.text.models import (
    AWD_LSTM,
    PoolingLinearClassifier,
    RNNDropout,
    WeightDropout,
    convert_fastai_awd_lstm,
    embedding_dropout,
    get_language_model,
    get_text_classifier,
    match_embeddings,
    read_itos_pickle,
)

SMALL = dict(emb_sz=8, n_hid=12, n_layers=2)


def test_rnn_dropout_shares_mask_over_time():
    torch.manual_seed(0)
    d = RNNDropout(0.5)
    out = d(torch.ones(4, 6, 10))
    assert torch.equal(out[:, :1].expand(-1, 6, -1), out)  # same mask at every step
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    d.eval()
    x = torch.randn(2, 3, 4)
    assert torch.equal(d(x), x)


def test_embedding_dropout_drops_whole_words():
    torch.manual_seed(0)
    w = torch.ones(50, 4)
    out = embedding_dropout(w, torch.arange(50)[None], 0.5, True, None)[0]  # (50, 4)
    rows = out.sum(1)
    assert set(rows.tolist()) <= {0.0, 8.0} and 0 < (rows == 0).sum() < 50
    assert torch.equal(embedding_dropout(w, torch.arange(50)[None], 0.5, False, None)[0], w)


def test_weight_dropout_train_vs_eval_and_gradients():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 6, batch_first=True)
    ref = nn.LSTM(4, 6, batch_first=True)
    ref.load_state_dict(lstm.state_dict())
    wd = WeightDropout(lstm, 0.5)
    x = torch.randn(2, 5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = wd(x)[0], wd(x)[0]
    assert not torch.allclose(a, b)  # a fresh mask each call
    a.sum().backward()
    assert lstm.parametrizations.weight_hh_l0.original.grad.abs().sum() > 0
    wd.eval()
    assert torch.allclose(wd(x)[0], ref(x)[0])


def test_weight_dropped_language_model_copies_and_keeps_its_weights_in_place():
    import copy

    torch.manual_seed(0)
    model = get_language_model(30, config=SMALL).train()
    lstm = model[0].rnns[0].module
    ptrs = [p.data_ptr() for p in model.parameters()]
    clone = copy.deepcopy(model)  # the RNN holds a dropped copy of its weight from the start
    model(torch.randint(0, 30, (2, 5))).sum().backward()
    # the RNN does not repack its weights into new memory (on a GPU it would at every call)
    assert lstm.flatten_parameters.__name__ == "_leave_weights_in_place"
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert all(w.grad_fn is None for w in lstm._flat_weights)  # and keeps no graph from the step
    model.to(torch.float64)
    assert all(w.grad_fn is None for w in lstm._flat_weights)  # nor after a move
    copy.deepcopy(lstm)
    model.float()
    again = copy.deepcopy(model)
    for m in (model, clone, again):
        m.eval()
    x = torch.randint(0, 30, (2, 5))
    assert torch.equal(again(x), model(x))
    assert clone[0]._graphs is None and again[0]._graphs is None


def test_recurrent_graphs_run_the_plain_path_off_cuda():
    from ember.text.graphs import RecurrentGraphs

    torch.manual_seed(0)
    enc = AWD_LSTM(30, **SMALL).train()
    graphs = RecurrentGraphs(enc._layers, [enc.input_dp, enc.rnns, enc.hidden_dps])
    x = torch.randn(2, 5, 8, requires_grad=True)
    hidden = [t for hc in enc._init_hidden(2, x) for t in hc]
    torch.manual_seed(1)
    out = graphs(x, *hidden)
    torch.manual_seed(1)
    ref = enc._layers(x, *hidden)
    assert len(out) == 1 + 2 * SMALL["n_layers"] and all(torch.equal(a, b) for a, b in zip(out, ref))
    assert graphs.skipped == {"not on CUDA": 1} and graphs.replays == 0 and not graphs.recordings


def test_awd_lstm_keeps_state_between_calls():
    torch.manual_seed(0)
    enc = AWD_LSTM(20, **SMALL).eval()
    x = torch.randint(2, 20, (3, 10))
    whole = enc(x)
    enc.reset()
    parts = torch.cat([enc(x[:, :4]), enc(x[:, 4:])], 1)
    assert whole.shape == (3, 10, 8)
    assert torch.allclose(whole, parts, atol=1e-6)
    enc.reset()
    assert not torch.allclose(enc(x[:, 4:]), whole[:, 4:])  # without the state the continuation differs
    assert enc(x[:1]).shape == (1, 10, 8)  # a new batch size starts a new state


def test_language_model_ties_weights_and_shapes():
    lm = get_language_model(30, config=SMALL)
    assert lm[1].decoder.weight is lm[0].encoder.weight
    assert lm(torch.randint(0, 30, (2, 7))).shape == (2, 7, 30)
    assert lm._ember_factory[0] == "get_language_model"
    lm.reset()
    assert lm[0].hidden is None


def test_sentence_encoder_ignores_leading_padding():
    torch.manual_seed(0)
    clas = get_text_classifier(30, 3, seq_len=4, config=SMALL, max_len=None).eval()
    doc = torch.randint(2, 30, (1, 4))
    padded = torch.cat([torch.full((1, 4), 1), doc], 1)  # a whole chunk of padding before the text
    both = torch.cat([padded, torch.randint(2, 30, (1, 8))], 0)
    out_alone, _ = clas[0](doc)
    out_pad, mask = clas[0](both)
    assert mask[0].tolist() == [True] * 4 + [False] * 4
    assert torch.allclose(out_pad[0, 4:], out_alone[0], atol=1e-6)
    assert torch.allclose(clas(both)[0], clas(doc)[0], atol=1e-5)  # same prediction with or without padding


@pytest.mark.parametrize("n_pad", [1, 3, 5, 6, 9])
def test_classifier_result_does_not_depend_on_the_batch(n_pad):
    # A text padded by any amount, at the start or at the end, gives what it gives alone.
    torch.manual_seed(0)
    clas = get_text_classifier(30, 3, seq_len=4, config=SMALL, max_len=None).eval()
    doc = torch.randint(2, 30, (1, 7))
    pads = torch.full((1, n_pad), 1)
    other = torch.randint(2, 30, (1, 7 + n_pad))
    alone = clas(doc)[0]
    for padded in (torch.cat([pads, doc], 1), torch.cat([doc, pads], 1)):
        batch = torch.cat([padded, other], 0)
        assert torch.allclose(clas(batch)[0], alone, atol=1e-5), padded
        assert torch.allclose(clas(batch)[1], clas(other)[0], atol=1e-5)


def test_sentence_encoder_aligns_leading_padding_to_chunks():
    enc = get_text_classifier(30, 2, seq_len=4, config=SMALL, max_len=None)[0]
    x = torch.tensor([[1, 1, 1, 1, 1, 1, 7, 8, 9, 10], [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]])
    aligned = enc.align(x)
    assert aligned[0].tolist() == [1, 1, 1, 1, 7, 8, 9, 10, 1, 1]  # 6 pads: 4 stay in front, 2 move to the end
    assert torch.equal(aligned[1], x[1])


def test_sentence_encoder_max_len_keeps_last_chunks():
    clas = get_text_classifier(30, 2, seq_len=4, config=SMALL, max_len=6).eval()
    out, mask = clas[0](torch.randint(2, 30, (2, 16)))
    assert out.shape == (2, 8, 8) and mask.shape == (2, 8)  # the last 6 tokens, rounded up to whole chunks


def test_pooling_head_ignores_padded_positions():
    torch.manual_seed(0)
    head = PoolingLinearClassifier([3 * 4, 2], [0.0]).eval()
    out = torch.randn(2, 5, 4)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    noisy = out.clone()
    noisy[0, :2] = 100.0
    assert torch.allclose(head((out, mask)), head((noisy, mask)))


def _fastai_layout(lm: nn.Module, module_raw: bool) -> dict[str, torch.Tensor]:
    """Write our model's weights the way fastai's AWD-LSTM language model names them."""
    sd = lm.state_dict()
    out = {"0.encoder.weight": sd["0.encoder.weight"], "0.encoder_dp.emb.weight": sd["0.encoder.weight"].clone()}
    for i in range(lm[0].n_layers):
        p = f"0.rnns.{i}.module."
        raw = sd[f"{p}parametrizations.weight_hh_l0.original"]
        out[f"0.rnns.{i}.{'module.' if module_raw else ''}weight_hh_l0_raw"] = raw
        out[f"{p}weight_hh_l0"] = raw * 0  # the dropped copy fastai also stores; must be ignored
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            out[p + name] = sd[p + name]
    out["1.decoder.weight"], out["1.decoder.bias"] = sd["1.decoder.weight"], sd["1.decoder.bias"]
    return out


@pytest.mark.parametrize("module_raw", [False, True])
def test_convert_fastai_layout(tmp_path, module_raw):
    torch.manual_seed(0)
    src = get_language_model(30, config=SMALL).eval()
    path = tmp_path / "lstm_fwd.pth"
    torch.save({"model": _fastai_layout(src, module_raw)}, path)
    dst = get_language_model(30, config=SMALL).eval()
    dst.load_state_dict(convert_fastai_awd_lstm(torch.load(path, weights_only=True)))
    x = torch.randint(0, 30, (2, 6))
    assert torch.allclose(src(x), dst(x))
    with pytest.raises(EmberError, match="fastai AWD-LSTM"):
        convert_fastai_awd_lstm({"weight": torch.zeros(1)})


def test_match_embeddings_copies_known_rows_and_means_the_rest():
    emb = torch.arange(12.0).view(4, 3)
    state = {"0.encoder.weight": emb, "1.decoder.weight": emb, "1.decoder.bias": torch.tensor([1.0, 2, 3, 6])}
    out = match_embeddings(state, ["a", "b", "c", "d"], ["c", "new", "a"])
    assert torch.equal(out["0.encoder.weight"][0], emb[2]) and torch.equal(out["0.encoder.weight"][2], emb[0])
    assert torch.allclose(out["0.encoder.weight"][1], emb.mean(0))
    assert out["1.decoder.bias"].tolist() == [3.0, 3.0, 1.0]


def test_read_itos_pickle_refuses_code(tmp_path):
    good = tmp_path / "itos.pkl"
    good.write_bytes(pickle.dumps(["xxunk", "the"]))
    assert read_itos_pickle(good) == ["xxunk", "the"]
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps([EmberError("x")]))
    with pytest.raises(EmberError, match="Refusing"):
        read_itos_pickle(bad)


class _StubRecording:
    """Stands in for a CUDA recording (this machine may have no GPU): remembers how it was made."""

    def __init__(self, recur, parts, args, params, bufs, pool, stream, warm_up):
        self.recur, self.pool, self.warm_up = recur, pool, warm_up


class _Identity(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g


class _StubReplay:
    @staticmethod
    def apply(owner, rec, *args):
        n = len(args) - sum(p.requires_grad for p in owner._parameters())
        outs = rec.recur(*args[:n])
        return (_Identity.apply(outs[0]), *outs[1:])


@pytest.fixture
def stub_graphs(monkeypatch):
    import ember.text.graphs as graphs_module

    monkeypatch.setattr(graphs_module, "_Recording", _StubRecording)
    monkeypatch.setattr(graphs_module, "_Replay", _StubReplay)
    pools = iter(range(100))
    monkeypatch.setattr(graphs_module.torch.cuda, "graph_pool_handle", lambda: next(pools))
    monkeypatch.setattr(graphs_module.torch.cuda, "Stream", lambda: None)
    torch.manual_seed(0)
    enc = AWD_LSTM(30, **SMALL).train()
    graphs = graphs_module.RecurrentGraphs(enc._layers, [enc.input_dp, enc.rnns, enc.hidden_dps], max_graphs=2)
    monkeypatch.setattr(graphs, "why_not", lambda args: None)  # as for training batches on a GPU

    def step(t: int) -> None:
        x = torch.randn(2, t, 8, requires_grad=True)
        graphs(x, *(h for hc in enc._init_hidden(2, x) for h in hc))[0].sum().backward()

    return enc, graphs, step


def test_recurrent_graphs_record_shapes_met_twice_and_drop_them_when_the_weights_change(stub_graphs):
    enc, graphs, step = stub_graphs
    for t in (5, 5, 6, 6, 7, 7):
        step(t)
    assert graphs.replays == 2 and graphs.skipped == {"rare shape": 3, "too many shapes": 1}
    assert [(r.pool, r.warm_up) for r in graphs.recordings.values()] == [(0, True), (0, False)]
    for p in enc.rnns[0].parameters():  # frozen: the recordings of the old trainable set can never replay
        p.requires_grad_(False)
    step(5)
    assert not graphs.recordings and graphs.skipped["rare shape"] == 4
    step(5)
    assert graphs.replays == 3 and [(r.pool, r.warm_up) for r in graphs.recordings.values()] == [(1, True)]


def test_a_failed_recording_stops_the_fit_and_says_how_to_go_on(stub_graphs, monkeypatch):
    import ember.text.graphs as graphs_module

    enc, graphs, step = stub_graphs

    def broken(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs_module, "_Recording", broken)
    step(5)
    with pytest.raises(EmberError, match=r"cuda_graphs = False.*fit again") as info:
        step(5)
    assert "not permitted" in str(info.value) and "not permitted" in graphs.failed and not graphs.recordings
