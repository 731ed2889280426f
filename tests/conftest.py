"""Shared fixtures: tiny data and tiny models, so the whole suite runs in minutes on two cores."""

from __future__ import annotations

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")
torch.set_num_threads(1)  # tiny models gain nothing from threads; one avoids oversubscribing small CI machines


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts with one torch thread, whatever an earlier test set."""
    torch.set_num_threads(1)


def make_classification(n: int = 256, n_features: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A linearly separable-ish two-class problem."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, n_features, generator=g)
    y = (x[:, 0] - 0.5 * x[:, 1] > 0).long()
    return x, y


@pytest.fixture
def tiny_dls():
    from ember.data import DataLoaders

    x, y = make_classification(320)
    return DataLoaders.from_tensors((x[:256], y[:256]), (x[256:], y[256:]), bs=32, device="cpu")


def tiny_model(n_in: int = 8, n_out: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, 16), nn.ReLU(), nn.BatchNorm1d(16), nn.Linear(16, n_out))


@pytest.fixture
def tiny_learner(tiny_dls, tmp_path):
    from ember.learner import Learner

    learn = Learner(tiny_dls, tiny_model(), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True
    return learn
