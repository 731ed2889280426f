"""DynamicUnet and unet_learner: skip points found on any encoder, output at the input size (odd sizes too),
hooks that neither leak nor break copies, the options, training, freezing, predict and export."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ember.core.errors import ConfigError, EmberError
from ember.data.loaders import DataLoaders
from ember.layers import SelfAttention
from ember.losses import CrossEntropyLossFlat
from ember.vision.augment import Normalize
from ember.vision.learner import VisionLearner, create_body
from ember.vision.models.unet import DynamicUnet
from ember.vision.unet import create_unet_model, unet_learner


def _tiny_body(n_in: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return create_body("xresnet_tiny", n_in=n_in, pretrained=False)


class _Wrapped(nn.Module):
    """An encoder that is not a Sequential and applies a function between its modules (like a timm model)."""

    def __init__(self) -> None:
        super().__init__()
        body = _tiny_body()
        self.stem, self.stages = body[:3], body[3:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(F.relu(self.stem(x)))


@pytest.mark.parametrize("size", [(32, 32), (36, 44), (33, 47)])
def test_output_has_the_input_size(size):
    unet = DynamicUnet(_tiny_body(), n_out=3, img_size=size)
    assert len(unet.blocks) == 4 and unet.skip_sizes[0] == ((size[0] + 1) // 2, (size[1] + 1) // 2)
    assert unet(torch.randn(2, 3, *size)).shape == (2, 3, *size)
    assert unet(torch.randn(1, 3, 40, 40)).shape == (1, 3, 40, 40)  # another size than the probe's


def test_torchvision_and_wrapped_encoders():
    torch.manual_seed(0)
    unet = create_unet_model("resnet18", n_out=2, img_size=(36, 44), pretrained=False)
    assert unet.skip_sizes == [(18, 22), (9, 11), (5, 6), (3, 3)]
    assert unet.skip_channels == [64, 64, 128, 256]
    assert unet(torch.randn(1, 3, 36, 44)).shape == (1, 2, 36, 44)
    wrapped = DynamicUnet(_Wrapped(), n_out=2, img_size=(36, 44))
    assert wrapped.skip_sizes == [(18, 22), (9, 11), (5, 6), (3, 3)]
    assert wrapped(torch.randn(2, 3, 36, 44)).shape == (2, 2, 36, 44)
    convnext = create_unet_model("convnext_atto", n_out=2, img_size=(36, 44), pretrained=False)  # timm, stride-4 stem
    assert convnext.skip_sizes == [(9, 11), (4, 5), (2, 2)]
    assert convnext(torch.randn(2, 3, 36, 44)).shape == (2, 2, 36, 44)
    grey = DynamicUnet(_tiny_body(n_in=1), n_out=1, img_size=24, last_cross=True)
    assert grey(torch.randn(2, 1, 24, 24)).shape == (2, 1, 24, 24)


def test_probe_keeps_training_flags():
    body = _tiny_body()
    body[0].eval()  # a layer the user keeps in eval mode
    unet = DynamicUnet(body, n_out=2, img_size=32)
    assert not body[0].training and all(m.training for m in body[1].modules())
    assert unet.training


def test_hooks_do_not_leak():
    unet = DynamicUnet(_tiny_body(), n_out=2, img_size=32).eval()
    keys = list(unet.state_dict())
    n_hooks = sum(len(m._forward_hooks) for m in unet.encoder.modules())
    x = torch.randn(2, 3, 32, 32)
    y1, y2 = unet(x), unet(x)
    assert torch.equal(y1, y2)
    assert list(unet.state_dict()) == keys
    assert sum(len(m._forward_hooks) for m in unet.encoder.modules()) == n_hooks == len(unet.blocks)
    assert all(f is None for f in unet._store.feats)  # nothing kept after a forward
    unet.train()
    unet(x).sum().backward()  # a training step leaves nothing behind either ...
    assert all(f is None for f in unet._store.feats)
    unet.encoder(x)  # ... nor does running the encoder alone
    assert all(f is None for f in unet._store.feats)
    y1 = unet.eval()(x)  # (the training forward moved the batch norm statistics)

    twin = copy.deepcopy(unet)  # works after forwards with gradients
    assert list(twin.state_dict()) == keys
    assert torch.equal(twin(x), y1)
    twin_hooks = [h for m in twin.encoder.modules() for h in m._forward_hooks.values()]
    assert all(h.store is twin._store for h in twin_hooks)
    buf = io.BytesIO()
    torch.save(unet, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(x), y1)

    twin.remove_hooks()
    assert sum(len(m._forward_hooks) for m in twin.encoder.modules()) == 0
    with pytest.raises(EmberError):
        twin(x)
    assert torch.equal(unet(x), y1)  # the original keeps its hooks


def test_options_build_and_run():
    x = torch.randn(2, 3, 36, 44)
    sa = DynamicUnet(_tiny_body(), 2, (36, 44), self_attention=True)
    assert sum(isinstance(m, SelfAttention) for m in sa.modules()) == 1
    assert isinstance(sa.blocks[1].conv2[-1], SelfAttention)  # the third-to-last of 4 blocks
    blurred = DynamicUnet(_tiny_body(), 2, (36, 44), blur=True, blur_final=False)
    pads = [m for m in blurred.modules() if isinstance(m, nn.ReplicationPad2d)]
    assert len(pads) == 3  # every upsampling but the last block's and the final one
    bottle = DynamicUnet(_tiny_body(), 2, (36, 44), bottle=True)
    no_cross = DynamicUnet(_tiny_body(), 2, (36, 44), last_cross=False)
    assert no_cross.cross is None and bottle.final[0].in_channels == bottle.cross.convpath[-1][0].out_channels
    assert bottle.final[0].in_channels == (bottle.blocks[-1].n_out + 3) // 2
    regress = DynamicUnet(_tiny_body(), 3, (36, 44), y_range=(-1.0, 2.0))
    for model in (sa, blurred, bottle, no_cross, regress):
        assert model(x).shape[-2:] == (36, 44)
    out = regress(x * 100)
    assert out.min() >= -1.0 and out.max() <= 2.0


def test_bad_arguments():
    with pytest.raises(ConfigError, match="img_size"):
        DynamicUnet(_tiny_body(), 2, (0, 32))
    with pytest.raises(ConfigError, match="n_out"):
        DynamicUnet(_tiny_body(), 0, 32)
    with pytest.raises(ConfigError, match="unet_kwargs"):
        create_unet_model("xresnet_tiny", 2, 32, pretrained=False, blurr=True)
    with pytest.raises(ConfigError, match="feature map"):
        DynamicUnet(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), 2, 32)


def _seg_tensors(n: int, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with random pixels; the mask is 1 where channel 0 is above 0.5 (no pixel within 0.1 of it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, size, size, generator=g)
    x[:, 0] = (x[:, 0] > 0.5) * 0.6 + 0.4 * torch.rand(n, size, size, generator=g)
    return x, (x[:, 0] > 0.5).long()  # (n, 3, S, S), (n, S, S)


@pytest.fixture
def seg_dls():
    x, y = _seg_tensors(64)
    return DataLoaders.from_tensors((x[:48], y[:48]), (x[48:], y[48:]), bs=8, device="cpu")


def test_unet_learner_learns_a_trivial_segmentation(seg_dls, tmp_path):
    torch.manual_seed(0)
    learn = unet_learner(
        seg_dls, "xresnet_tiny", pretrained=False, n_out=2, loss_func=CrossEntropyLossFlat(axis=1), path=tmp_path
    )
    assert isinstance(learn, VisionLearner) and learn.model.img_size == (24, 24) and learn.model.n_in == 3
    assert learn.model_recipe["factory"] == "create_unet_model"
    learn.silent = True
    learn.fit_one_cycle(5, 2e-2)
    preds, targs, dec = learn.get_preds(with_decoded=True)
    assert preds.shape == (16, 2, 24, 24) and dec.shape == targs.shape == (16, 24, 24)
    assert dec.dtype == torch.int64
    assert (dec == targs).float().mean() > 0.9

    fname = learn.export("unet.ember", verbose=False)
    import ember

    loaded = ember.load_learner(fname)
    assert isinstance(loaded, VisionLearner) and isinstance(loaded.model, DynamicUnet)
    xb = seg_dls.valid.one_batch()[0]
    assert torch.allclose(loaded.predict_tensor(xb), learn.predict_tensor(xb), atol=1e-5)


def test_n_out_is_required_without_a_target_block(seg_dls):
    with pytest.raises(ConfigError, match="unet_learner"):
        unet_learner(seg_dls, "xresnet_tiny", pretrained=False, loss_func=CrossEntropyLossFlat(axis=1))


def test_freeze_trains_the_decoder_first(seg_dls):
    learn = unet_learner(seg_dls, "xresnet_tiny", pretrained=False, n_out=2, loss_func=CrossEntropyLossFlat(axis=1))
    learn.silent = True
    enc, dec = learn.param_groups()
    assert {id(p) for p in enc} == {id(p) for p in learn.model.encoder.parameters()}
    assert len(enc) + len(dec) == len(list(learn.model.parameters()))
    learn.freeze()
    convs = [m.weight for m in learn.model.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert not any(w.requires_grad for w in convs) and all(p.requires_grad for p in dec)
    before = [w.detach().clone() for w in convs]
    dec_before = learn.model.final[0].weight.detach().clone()
    learn.fit(1, 1e-3)
    assert all(torch.equal(w, b) for w, b in zip(convs, before, strict=True))
    assert not torch.equal(learn.model.final[0].weight, dec_before)
    learn.fine_tune(1, freeze_epochs=1)
    assert not all(torch.equal(w, b) for w, b in zip(convs, before, strict=True))  # then everything trains


def test_pretrained_callable_starts_frozen_and_normalized(seg_dls):
    from ember.vision.models import xresnet_tiny

    def arch(pretrained: bool = False) -> nn.Module:  # stands in for a model with pretrained weights
        return xresnet_tiny()

    learn = unet_learner(seg_dls, arch, n_out=2, img_size=24, loss_func=CrossEntropyLossFlat(axis=1))
    assert learn.model_recipe is None and learn.model.n_in == 3  # a callable cannot be named in a file
    assert any(isinstance(t, Normalize) for t in seg_dls.train.batch_tfms)
    assert not any(m.weight.requires_grad for m in learn.model.encoder.modules() if isinstance(m, nn.Conv2d))


def _mask_dls(root, codes=("background", "object")):
    from PIL import Image

    from ember.data.block import DataBlock
    from ember.data.items import FuncSplitter, get_image_files
    from ember.vision.core import ImageBlock, MaskBlock

    g = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        arr = g.integers(0, 256, size=(20, 28, 3), dtype=np.uint8)
        Image.fromarray(arr).save(root / f"{i:02d}.png")
    return DataBlock(
        blocks=(ImageBlock, MaskBlock(codes)),
        get_items=get_image_files,
        splitter=FuncSplitter(lambda p: int(p.stem) >= 9),
        get_y=lambda p: (np.asarray(Image.open(p))[..., 0] > 127).astype(np.uint8),
    ).dataloaders(root, bs=4, device="cpu", num_workers=0)


def test_predict_returns_masks(tmp_path):
    dls = _mask_dls(tmp_path / "data")
    learn = unet_learner(dls, "xresnet_tiny", pretrained=False)
    assert learn.model.n_out == 2 and learn.model.img_size == (20, 28)
    assert isinstance(learn.loss_func, CrossEntropyLossFlat) and learn.loss_func.axis == 1
    item = tmp_path / "data" / "10.png"
    mask, dec, probs = learn.predict(item)
    assert mask.shape == dec.shape == (20, 28) and mask.dtype == torch.int64
    assert probs.shape == (2, 20, 28) and torch.allclose(probs.sum(0), torch.ones(20, 28), atol=1e-5)
    assert torch.equal(mask, probs.argmax(0))
    masks, decs, all_probs = learn.predict_batch([item, tmp_path / "data" / "11.png"])
    assert len(masks) == 2 and decs.shape == (2, 20, 28) and torch.equal(masks[0], mask)
    assert torch.allclose(all_probs[0], probs, atol=1e-5)

    import ember

    loaded = ember.load_learner(learn.export(tmp_path / "seg.ember", verbose=False))
    mask2, _, probs2 = loaded.predict(item)
    assert torch.equal(mask2, mask) and torch.allclose(probs2, probs, atol=1e-5) and loaded.dls.vocab == list(dls.vocab)
