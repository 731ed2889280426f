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
import os
import sys
from pathlib import Path

import torch


def build(kind: str, out: Path):
    """The learner of `kind`, built the same way in every process (and by the single-process reference)."""
    from torch import nn

    from ember import set_seed
    from ember.data import DataLoaders
    from ember.learner import SGD, CSVLogger, Learner

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
    raise SystemExit(f"unknown kind {kind}")


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
                learn.fit(2)
                learn.export(out / "model.ember")
        weights = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
        torch.save(weights, out / f"weights_{rank}.pt")
    barrier()
    teardown_distrib()


if __name__ == "__main__":
    main()
