"""One process of a distributed test run, launched by ``torch.distributed.run`` from test_distributed.py.

Usage: ``python -m torch.distributed.run --standalone --nproc_per_node=2 distrib_worker.py OUT_DIR KIND...`` where
each KIND is ``tensors`` (a small regression network on tensors), ``table`` (a tabular model) or ``lm`` (a tiny
AWD-LSTM language model), trained one after the other in the same process group (joined here once, so the
learners' ``distrib_ctx`` find it joined). For each kind, each process writes its final weights to
``OUT_DIR/<kind>/weights_<rank>.pt`` and what it printed to ``OUT_DIR/<kind>/stdout_<rank>.txt``; process 0
also exports ``OUT_DIR/<kind>/model.ember`` (and the ``tensors`` learner logs a CSV there).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import torch


def build(kind: str, out: Path):
    """The learner of `kind`, built the same way in every process (and by the single-process reference)."""
    from torch import nn

    from ember import set_seed
    from ember.data import DataLoaders
    from ember.learner import SGD, CSVLogger, GradientAccumulation, Learner

    global SeenItems
    SeenItems = _seen_items_class()
    set_seed(0)
    if kind == "tensors":
        x = torch.randn(70, 4)
        y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(70, 1)
        dls = DataLoaders.from_tensors((x[:60], y[:60]), (x[60:], y[60:]), bs=16, device="cpu")
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
        return Learner(dls, model, loss_func=nn.MSELoss(), opt_func=SGD, lr=0.05, path=out, cbs=[CSVLogger()])
    if kind == "table":
        import numpy as np
        import pandas as pd

        from ember.tabular import TabularDataLoaders, tabular_learner

        rng = np.random.default_rng(0)
        df = pd.DataFrame({"a": rng.normal(size=90), "c": rng.choice(["x", "y", "z"], 90)})
        df["y"] = 2 * df["a"] + (df["c"] == "x") + 0.1 * rng.normal(size=90)
        dls = TabularDataLoaders.from_df(
            df, y_names="y", cat_names=["c"], cont_names=["a"], bs=20, valid_pct=0.2, seed=0, device="cpu"
        )
        # no batch norm: on the CPU its statistics are per process, and this run is compared with one process
        config = {"use_bn": False, "bn_cont": False}
        return tabular_learner(dls, layers=[8], config=config, opt_func=SGD, lr=0.05, path=out)
    if kind == "lm":
        from ember.text.data import TextDataLoaders
        from ember.text.learner import language_model_learner

        texts = [" ".join(["one two three four five"] * (3 + i % 4)) for i in range(40)]
        dls = TextDataLoaders.from_texts(
            texts[:32], texts[32:], is_lm=True, bs=4, seq_len=8, min_freq=1, n_workers=1, seed=0, device="cpu"
        )
        config = {"emb_sz": 8, "n_hid": 8, "n_layers": 1}
        return language_model_learner(dls, pretrained=False, config=config, path=out)
    if kind == "odd":
        # an odd batch size (15 = 7 + 7, one item left out), dropout, a loader without a generator of its own,
        # gradient accumulation over two batches, three epochs, and a record of the items each process computed
        x = torch.randn(100, 4)
        x[:, 0] = torch.arange(100.0)  # the item's id, read back by SeenItems
        y = x[:, 1:2] - x[:, 2:3]
        dls = DataLoaders.from_tensors((x, y), (x[:20], y[:20]), bs=15, device="cpu")
        model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
        cbs = [SeenItems(), GradientAccumulation(n_acc=28)]
        return Learner(dls, model, loss_func=nn.MSELoss(), opt_func=SGD, lr=1e-3, path=out, cbs=cbs)
    raise SystemExit(f"unknown kind {kind}")


def _seen_items_class():
    from ember.learner import Callback

    class SeenItems(Callback):
        """Records the ids (first input column) of the items of each training batch, per epoch."""

        def before_fit(self) -> None:
            self.epochs: list[list[list[int]]] = []

        def before_train(self) -> None:
            self.epochs.append([])

        def before_batch(self) -> None:
            if self.learn.training:
                self.epochs[-1].append(self.learn.xb[0][:, 0].long().tolist())

    return SeenItems


SeenItems = None  # defined lazily (ember is imported inside build)


def main() -> None:
    from ember.distributed import barrier, setup_distrib, teardown_distrib

    root, kinds = Path(sys.argv[1]), sys.argv[2:]
    rank = int(os.environ.get("RANK", 0))
    torch.set_num_threads(1)
    setup_distrib()
    for kind in kinds:
        out = root / kind
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
        barrier()
        with open(out / f"stdout_{rank}.txt", "w") as printed, contextlib.redirect_stdout(printed):
            learn = build(kind, out)
            with learn.distrib_ctx():
                learn.fit(3 if kind == "odd" else 2)
                learn.export(out / "model.ember")
        weights = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
        torch.save(weights, out / f"weights_{rank}.pt")
        seen = [cb for cb in learn.cbs if type(cb).__name__ == "SeenItems"]
        if seen:
            (out / f"seen_{rank}.json").write_text(json.dumps(seen[0].epochs))
    barrier()
    teardown_distrib()


if __name__ == "__main__":
    main()
