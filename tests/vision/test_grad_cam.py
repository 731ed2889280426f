"""Grad-CAM: the heatmap of a model that tells bright-left from bright-right images lights up the bright side."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ember.core.errors import ConfigError
from ember.data.block import CategoryBlock, DataBlock
from ember.data.items import RandomSplitter, get_image_files, parent_label
from ember.vision.core import ImageBlock
from ember.vision.learner import VisionLearner

SIZE = 16


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    root = tmp_path_factory.mktemp("sides")
    rng = np.random.default_rng(0)
    for label in ("left", "none", "right"):  # with "none", a bar on the right is evidence, not just "not left"
        (root / label).mkdir()
        for i in range(24):
            img = rng.normal(40, 10, size=(SIZE, SIZE)).clip(0, 255)
            top, h = rng.integers(0, 8), rng.integers(5, 9)
            if label != "none":
                img[top : top + h, slice(1, 7) if label == "left" else slice(9, 15)] = 220
            Image.fromarray(img.astype(np.uint8)).save(root / label / f"{i}.png")
    return root


def _learner(path, tmp_path, seed: int = 0) -> VisionLearner:
    torch.manual_seed(seed)  # the loaders' shuffling too, whatever ran before
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=RandomSplitter(valid_pct=0.25, seed=0),
    ).dataloaders(path, bs=8, device="cpu")
    torch.manual_seed(seed)
    body = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    learn = VisionLearner(dls, nn.Sequential(body, head), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True
    learn.fit_one_cycle(8, 1e-2)
    return learn


def test_grad_cam_points_at_the_evidence(sides, tmp_path):
    learn = _learner(sides, tmp_path)
    for label, bright in (("left", range(0, 8)), ("right", range(8, 16))):
        cams = []
        for i in range(6):
            cam, idx = learn.grad_cam(sides / label / f"{i}.png")
            assert cam.shape == (SIZE, SIZE) and 0 <= float(cam.min()) and float(cam.max()) <= 1
            assert learn.dls.vocab[idx] == label
            assert int(cam.flatten().argmax()) % SIZE in bright, (label, i)  # the hottest point is on the bar's side
            cams.append(cam)
        cam = torch.stack(cams).mean(0)
        on, off = cam[:, list(bright)].sum(), cam[:, [c for c in range(SIZE) if c not in bright]].sum()
        assert float(on) > float(off), label  # and most of the heat (from 1.3x to far more over seeds 0-7)
    _, idx = learn.grad_cam(sides / "left" / "0.png", cls="right")
    assert idx == 2
    fig = learn.show_grad_cam(sides / "left" / "0.png", fname=tmp_path / "cam.png")
    assert fig.axes[0].get_title() == "left" and (tmp_path / "cam.png").stat().st_size > 1000
    assert learn.grad_cam(sides / "left" / "0.png", layer=learn.model[0][2])[0].shape == (SIZE, SIZE)
    with pytest.raises(ConfigError, match="cls"):
        learn.grad_cam(sides / "left" / "0.png", cls="up")
    with pytest.raises(ConfigError, match="cls"):
        learn.grad_cam(sides / "left" / "0.png", cls=5)
    with pytest.raises(ConfigError, match="feature maps"):
        learn.grad_cam(sides / "left" / "0.png", layer=learn.model[1][2])
    assert not any(m._forward_hooks for m in learn.model.modules())  # no hook left behind


def test_grad_cam_on_frozen_layers_and_before_an_in_place_operation(sides, tmp_path):
    learn = _learner(sides, tmp_path)
    body = learn.model[0]
    body[1].inplace = True  # the ReLU after the first convolution now rewrites its output
    item = sides / "left" / "1.png"
    for p in body.parameters():
        p.requires_grad_(False)  # a frozen body: its outputs need no gradient, Grad-CAM still gets one
    cam, idx = learn.grad_cam(item, layer=body[0])
    # by hand: the first convolution's maps before the ReLU, and the class score's gradient with respect to them
    x = learn._encode_items([item])[0]
    learn.model.eval()
    acts = body[0](x).detach().requires_grad_()
    score = learn.model[1](body[3](body[2](torch.relu(acts))))[0, idx]
    (grads,) = torch.autograd.grad(score, acts)
    manual = torch.relu((grads[0].mean(dim=(1, 2))[:, None, None] * acts[0].detach()).sum(0))
    manual = (manual - manual.min()) / (manual.max() - manual.min())
    assert torch.allclose(cam, manual, atol=1e-5)
    assert learn.grad_cam(item, cls=np.int64(1))[1] == 1  # NumPy ints (and 0-d tensors) name a class too
    with pytest.raises(ConfigError, match="did not run"):
        learn.grad_cam(item, layer=nn.Conv2d(1, 4, 3))  # a layer the model never calls
