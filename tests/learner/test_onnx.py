"""ONNX export: the graph matches ember's outputs, with the loaders' normalization baked in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ember.data import DataLoaders
from ember.learner import Learner
from ember.vision.augment import Normalize

ort = pytest.importorskip("onnxruntime")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.body(x))


def make_learner(tmp_path, normalize=True):
    torch.manual_seed(0)
    x, y = torch.rand(40, 3, 8, 8), torch.randint(0, 3, (40,))
    dls = DataLoaders.from_tensors((x, y), (x, y), bs=8, device="cpu")
    if normalize:
        dls.train.batch_tfms = dls.valid.batch_tfms = [Normalize()]  # statistics from the first training batch
        dls.train.kinds = dls.valid.kinds = ("image", "category")
    learn = Learner(dls, Net(), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True
    learn.fit(1, 1e-2)
    return learn, x


@pytest.mark.parametrize("normalize", [True, False])
def test_onnx_matches_the_model(tmp_path, normalize):
    learn, x = make_learner(tmp_path, normalize)
    learn.model.train()
    path = learn.export_onnx("net.onnx", dynamo=False)
    assert learn.model.training  # the export leaves the model as it was
    sess = ort.InferenceSession(str(path))
    out = sess.run(None, {"input": x[:5].numpy()})[0]  # raw images in [0, 1]; the graph normalizes
    xb = x[:5]
    if normalize:
        norm = learn.dls.valid.batch_tfms[0]
        assert norm.ready and not torch.allclose(norm.mean, torch.zeros(3))
        xb = norm((xb,), ("image",), 1)[0]
    learn.model.eval()
    with torch.no_grad():
        ref = learn.model(xb).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert sess.run(None, {"input": x[:1].numpy()})[0].shape == (1, 3)  # dynamic batch size


@pytest.mark.slow
def test_onnx_with_the_default_exporter(tmp_path):
    learn, x = make_learner(tmp_path)
    path = learn.export_onnx("net.onnx")
    out = ort.InferenceSession(str(path)).run(None, {"input": x[:4].numpy()})[0]
    xb = learn.dls.valid.batch_tfms[0]((x[:4],), ("image",), 1)[0]
    learn.model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(out, learn.model(xb).numpy(), atol=1e-4)
