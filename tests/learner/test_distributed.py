"""Distributed data parallel training: batch slicing per process, and real two-process runs on the CPU (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ember.distributed import _chunk_bounds, _generators, is_main_process, num_distrib, rank_distrib, shard_loader

WORKER = Path(__file__).with_name("distrib_worker.py")


def test_chunks_are_equal_and_skip_tiny_batches():
    for n in range(1, 20):
        for world in (1, 2, 3, 4):
            bounds = [_chunk_bounds(n, r, world) for r in range(world)]
            if n // world < 2:  # a process would compute fewer than two items (batch norm): skipped everywhere
                assert bounds == [None] * world
                continue
            assert bounds[0][0] == 0 and bounds[-1][1] == n - n % world
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert {stop - start for start, stop in bounds} == {n // world}


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert rank_distrib() == 0 and num_distrib() == 1 and is_main_process()


def _slices_cover_the_batches(dl, world):
    """Each process's slices, put back together in rank order, are the single process's batches."""
    import copy

    gens = _generators(dl)
    start = [g.get_state() for g in gens], copy.deepcopy(getattr(dl.dataset, "_rng", None))

    def rewind():  # every process starts from the same shuffling state (DistributedTrainer broadcasts it)
        torch.manual_seed(0)
        for g, s in zip(gens, start[0]):
            g.set_state(s)
        if start[1] is not None:
            dl.dataset._rng = copy.deepcopy(start[1])

    rewind()
    whole = [tuple(t.clone() for t in b) for b in dl]
    per_rank = []
    for rank in range(world):
        rewind()
        sharded = shard_loader(dl, rank, world)
        batches = list(sharded)
        assert len(batches) == len(sharded)
        per_rank.append(batches)
    kept = [b for b in whole if b[0].shape[0] // world >= 2]  # too small to split: skipped by every process
    assert all(len(b) == len(kept) for b in per_rank)
    for i, batch in enumerate(kept):
        for j, t in enumerate(batch):
            n = t.shape[0] - t.shape[0] % world  # equal slices: the last items of an uneven batch are left out
            assert torch.equal(torch.cat([per_rank[r][i][j] for r in range(world)]), t[:n])


@pytest.mark.parametrize("n", [64, 65, 66])
def test_shard_map_style_loader(n):
    from ember.data import DataLoaders

    x, y = torch.arange(n).float()[:, None], torch.arange(n)
    dls = DataLoaders.from_tensors((x, y), bs=16, device="cpu")
    _slices_cover_the_batches(dls.train, world=2)
    _slices_cover_the_batches(dls.train, world=3)


def test_shard_table_loader():
    import pandas as pd

    from ember.tabular import TabularDataLoaders

    df = pd.DataFrame({"a": range(50), "c": ["x", "y"] * 25, "y": range(50)})
    dls = TabularDataLoaders.from_df(
        df, y_names="y", cat_names=["c"], cont_names=["a"], bs=16, seed=0, device="cpu", y_block="regression"
    )
    sharded = shard_loader(dls.train, 0, 2)
    assert type(sharded) is type(dls.train) and sharded.bs == dls.train.bs
    _slices_cover_the_batches(dls.train, world=2)


def test_shard_language_model_loader():
    from ember.text.data import TextDataLoaders

    texts = [f"one two three {i} four five six" for i in range(30)]
    dls = TextDataLoaders.from_texts(texts, is_lm=True, bs=6, seq_len=5, min_freq=1, n_workers=1, seed=0, device="cpu")
    _slices_cover_the_batches(dls.train, world=2)  # each process keeps its own streams, batch after batch


@pytest.mark.parametrize("n", [21, 24])
def test_shard_text_classifier_loader(n):
    from ember.text.data import TextDataLoaders

    texts = [" ".join(["word"] * (1 + i % 7)) for i in range(n)]
    labels = ["a", "b"] * (n // 2) + ["a"] * (n % 2)
    dls = TextDataLoaders.from_texts(texts, None, labels, bs=8, min_freq=1, n_workers=1, seed=0, device="cpu")
    assert dls.train.dataset.last_batch_size == (5 if n == 21 else 8)
    _slices_cover_the_batches(dls.train, world=2)
    _slices_cover_the_batches(dls.train, world=3)  # 21: the last batch (5 texts) is skipped and not counted


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """One launch of two processes that train each kind in turn (starting processes is the slow part)."""
    out = tmp_path_factory.mktemp("distrib")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER)]
    res = subprocess.run([*cmd, str(out), *KINDS], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return out


KINDS = ("tensors", "table", "lm", "odd")


def _weights(run: Path) -> list[dict[str, torch.Tensor]]:
    w = [torch.load(run / f"weights_{r}.pt") for r in (0, 1)]
    assert w[0].keys() == w[1].keys()
    for k in w[0]:  # the processes hold the same weights
        assert torch.equal(w[0][k], w[1][k]), k
    return w


def _single_process(kind: str, out: Path):
    sys.path.insert(0, str(WORKER.parent))
    try:
        from distrib_worker import build
    finally:
        sys.path.remove(str(WORKER.parent))
    learn = build(kind, out)
    learn.silent = True
    learn.fit(2)
    return learn


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["tensors", "table"])
def test_two_processes_train_like_one(kind, two_process_runs, tmp_path):
    run = two_process_runs / kind
    w0, _ = _weights(run)
    single_learn = _single_process(kind, tmp_path)
    single = single_learn.model.state_dict()
    for k in w0:  # the weights one process gets with the same batches
        torch.testing.assert_close(w0[k], single[k], rtol=1e-4, atol=1e-5)
    printed = [(run / f"stdout_{r}.txt").read_text() for r in (0, 1)]
    assert "valid_loss" in printed[0] and printed[1] == ""  # progress in process 0 only
    import copy

    import ember

    # exported once, by process 0 (a model class from a script is rebuilt by the caller)
    model = copy.deepcopy(single_learn.model) if kind == "tensors" else None
    loaded = ember.load_learner(run / "model.ember", model=model)
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, w0[k])
    if kind == "tensors":
        log = (run / "history.csv").read_text().splitlines()
        assert len(log) == 3  # a header and two epochs, written by process 0 alone


@pytest.mark.slow
def test_two_processes_language_model(two_process_runs):
    run = two_process_runs / "lm"
    _weights(run)
    assert (run / "model.ember").exists()


@pytest.mark.slow
def test_two_processes_odd_batches_dropout_and_accumulation(two_process_runs):
    import json

    run = two_process_runs / "odd"
    _weights(run)  # the same weights: both processes stepped on the same batches
    seen = [json.loads((run / f"seen_{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 3
    orders = []
    for e0, e1 in zip(*seen):
        assert len(e0) == len(e1) == 7  # 100 items: 6 batches of 15 (7 each, one left out), then 10 (5 each)
        for b0, b1 in zip(e0, e1):
            assert len(b0) == len(b1) and not set(b0) & set(b1)  # equal, disjoint slices of one batch
        items = [i for b0, b1 in zip(e0, e1) for i in b0 + b1]
        assert len(items) == len(set(items)) == 6 * 14 + 10  # no item twice in an epoch
        orders.append(items)
    assert orders[0] != orders[1]  # reshuffled each epoch, the same way in both processes
