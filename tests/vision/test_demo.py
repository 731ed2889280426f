"""The `ember demo` job: a quick run on a subset, and (slow) the full run's accuracy goal."""

from __future__ import annotations

import os

import pytest
import torch

from ember.demo import mnist_resnet, run_demo

PLOTS = ("batch", "lr_find", "loss", "confusion", "results", "top_losses")


@pytest.fixture
def ember_home(tmp_path_factory, monkeypatch):
    # one materialized copy of the digits for the whole module
    home = tmp_path_factory.getbasetemp() / "ember_home"
    monkeypatch.setenv("EMBER_HOME", str(home))
    return home


def test_mnist_resnet_shapes():
    model = mnist_resnet()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == 41_132  # the seeds' lesson-7 network
    wide = mnist_resnet(n_out=3, width=2)
    assert wide(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    assert 3 * 41_132 < sum(p.numel() for p in wide.parameters()) < 5 * 41_132


def test_demo_pipeline_on_a_subset(ember_home, tmp_path, capsys):
    out = run_demo(tmp_path / "out", epochs=1, subset=100, bs=16, lr=1e-2, lr_find_iters=3, width=1, verbose=True)
    assert out["files"]["model"].endswith("mnist.ember")
    for key in PLOTS:
        path = out["files"][key]
        assert path.endswith(".png") and (tmp_path / "out" / path.rsplit("/", 1)[-1]).stat().st_size > 1000
    assert 0.0 <= out["accuracy"] <= 1.0 and out["epochs"] == 1 and out["lr"] == 1e-2
    assert len(out["predictions"]) == 3
    for _name, digit, label, prob in out["predictions"]:
        assert digit in "012" and label in [str(d) for d in range(10)] and 0.0 < prob <= 1.0
    printed = capsys.readouterr().out
    assert "ember demo: validation accuracy" in printed and "Total params" in printed


@pytest.mark.slow
def test_demo_reaches_its_accuracy_goal(ember_home, tmp_path):
    torch.set_num_threads(os.cpu_count() or 1)  # the demo as a user runs it: every core (one per test elsewhere)
    out = run_demo(tmp_path / "out", verbose=False)
    assert out["accuracy"] >= 0.985, out
