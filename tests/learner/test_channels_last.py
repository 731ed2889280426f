"""ChannelsLast: a conv net trains and predicts in the channels-last memory format, with unchanged results."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ember.data import DataLoaders
from ember.learner import ChannelsLast, Learner

CL = torch.channels_last


def _conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )


def _images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.rand(n, 3, 8, 8, generator=g) + y[:, None, None, None] * 0.5  # (N, 3, 8, 8)
    return x, y


def _learner(tmp_path) -> Learner:
    dls = DataLoaders.from_tensors(_images(32, 0), _images(16, 1), bs=8, device="cpu")
    learn = Learner(dls, _conv_net(), loss_func=nn.CrossEntropyLoss(), path=tmp_path)
    learn.silent = True
    return learn


def test_fit_in_channels_last_predicts_like_channels_first(tmp_path):
    learn = _learner(tmp_path)
    assert learn.to_channels_last() is learn
    learn.to_channels_last()
    assert sum(isinstance(c, ChannelsLast) for c in learn.cbs) == 1  # added once

    seen: list[bool] = []
    hook = learn.model[0].register_forward_hook(lambda m, inp, out: seen.append(inp[0].is_contiguous(memory_format=CL)))
    learn.fit(2, 1e-2)
    hook.remove()
    assert seen and all(seen)  # every batch, training and validation
    conv = learn.model[0]
    assert conv.weight.is_contiguous(memory_format=CL) and not conv.weight.is_contiguous()
    assert len(learn.recorder.losses) == 8 and all(math.isfinite(v) for v in learn.recorder.losses)
    assert all(math.isfinite(v) for v in learn.recorder.values[-1][:2])  # train and valid loss

    plain = copy.deepcopy(learn.model)
    for p in plain.parameters():
        p.data = p.data.contiguous()
    assert plain[0].weight.is_contiguous()
    plain.eval()
    preds, _ = learn.get_preds(act=lambda x: x)
    with torch.no_grad():
        ref = plain(learn.dls.valid.dataset.tensors[0])
    assert torch.allclose(preds, ref, atol=1e-5)


def test_state_of_an_earlier_fit_is_converted_too(tmp_path):
    learn = _learner(tmp_path)
    learn.fit(1, 1e-2)  # Adam's moments exist, channels-first
    learn.to_channels_last().fit(1, 1e-2)
    weight = learn.model[0].weight
    for v in learn.opt.state[weight].values():
        if v.ndim == 4:
            assert v.is_contiguous(memory_format=CL)
    assert torch.isfinite(weight).all()


def test_integer_and_non_image_inputs_pass_through():
    cb = ChannelsLast()
    cb.learn = type("L", (), {})()
    ints = torch.zeros(2, 3, 4, 5, dtype=torch.long)
    flat = torch.zeros(2, 3)
    cb.learn.xb = (ints, flat)
    cb.before_batch()
    assert cb.learn.xb[0] is ints and cb.learn.xb[1] is flat
