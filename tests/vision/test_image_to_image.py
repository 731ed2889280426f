"""Image to image (restoration): two ImageBlocks kept aligned by the transforms, degraded training pairs, a U-Net
that denoises better than doing nothing, the perceptual FeatureLoss, predict / show_results / export."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.core.errors import ConfigError, EmberError
from ember.data.block import DataBlock
from ember.data.items import RandomSplitter, get_image_files
from ember.learner.export import load_learner, read_recipe
from ember.losses import MSELossFlat
from ember.vision.augment import (
    Normalize,
    RandomResizedCrop,
    Resize,
    aug_transforms,
    imagenet_stats,
)
from ember.vision.core import ImageBlock, load_image
from ember.vision.losses import FeatureLoss, gram_matrix
from ember.vision.restore import degrade_images
from ember.vision.unet import unet_learner

SIZE = 32


def _save(t: torch.Tensor, path: Path) -> None:
    arr = (t.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (H, W, C)
    Image.fromarray(arr).save(path)


def _smooth_images(folder: Path, n: int, seed: int = 0, noisy: Path | None = None, sigma: float = 0.2) -> None:
    """`n` smooth random colour images (a 3x3 grid of colours blown up bicubically) and, in `noisy`, the same
    with Gaussian noise."""
    folder.mkdir(parents=True)
    if noisy is not None:
        noisy.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        small = torch.rand(1, 3, 3, 3, generator=g)
        img = F.interpolate(small, size=(SIZE, SIZE), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        _save(img, folder / f"{i:02d}.png")
        if noisy is not None:
            _save(img + sigma * torch.randn(img.shape, generator=g), noisy / f"{i:02d}.png")


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("clean")
    _smooth_images(root / "hr", 24)
    return root / "hr"


def _dblock(target_folder: Path, item_tfms=None, batch_tfms=None) -> DataBlock:
    return DataBlock(
        blocks=(ImageBlock, ImageBlock),
        get_items=get_image_files,
        get_y=lambda p: target_folder / p.name,
        splitter=RandomSplitter(valid_pct=0.25, seed=0),
        item_tfms=item_tfms if item_tfms is not None else Resize(SIZE),
        batch_tfms=batch_tfms,
    )


# ------------------------------------------------------------------------------------------------ the data


def test_image_target_gives_channels_and_mse(clean, tmp_path):
    copies = tmp_path / "copies"
    degrade_images(clean, copies, size=None, quality=None, n_workers=0, progress=False)
    dls = _dblock(clean).dataloaders(copies, bs=4, device="cpu")
    assert dls.c == 3 and isinstance(dls.loss_func, MSELossFlat)
    assert ImageBlock(mode="L").n_out == 1


def test_augmentation_keeps_an_identity_pair_identical(clean, tmp_path):
    """Inputs that are lossless copies of their targets stay equal to them after flips, warps, zoom, lighting
    and normalization: one geometry and one lighting draw per pair."""
    copies = tmp_path / "copies"
    degrade_images(clean, copies, size=None, quality=None, n_workers=0, progress=False)
    assert torch.equal(load_image(copies / "03.png"), load_image(clean / "03.png"))
    tfms = [*aug_transforms(max_zoom=2.0, max_lighting=0.4, p_affine=1.0, p_lighting=1.0)]
    dls = _dblock(clean, batch_tfms=[*tfms, Normalize.from_stats(*imagenet_stats)]).dataloaders(
        copies, bs=6, device="cpu"
    )
    torch.manual_seed(0)
    x, y = dls.train.one_batch()
    assert x.shape == y.shape == (6, 3, SIZE, SIZE)
    assert torch.equal(x, y)
    # the same items as training (split 0) and as validation (split 1): the augmentation did change them
    ds = dls.train_ds
    aug = plain = ds.collate([ds[i] for i in range(6)])
    for t in dls.train.batch_tfms:
        aug, plain = t(aug, ("image", "image"), 0), t(plain, ("image", "image"), 1)
    assert torch.equal(aug[0], aug[1]) and float((aug[0] - plain[0]).abs().mean()) > 0.05
    dx, dy = dls.train.decode((x, y))
    assert torch.equal(dx, dy) and 0 <= float(dx.min()) and float(dx.max()) <= 1 + 1e-6


def test_normalize_is_decoded_back_for_input_and_target(clean, tmp_path):
    degraded = tmp_path / "lr"
    degrade_images(clean, degraded, size=16, quality=(30, 60), n_workers=0, progress=False)
    norm = Normalize.from_stats(*imagenet_stats)
    dls = _dblock(clean, batch_tfms=[norm]).dataloaders(degraded, bs=4, device="cpu", shuffle=False)
    x, y = dls.valid.one_batch()
    mean, std = torch.tensor(imagenet_stats[0]).view(1, 3, 1, 1), torch.tensor(imagenet_stats[1]).view(1, 3, 1, 1)
    assert abs(float(y.mean())) < 3 and float(((y * std + mean) - (x * std + mean)).abs().mean()) < 0.1
    dx, dy = dls.valid.decode((x, y))
    names = [Path(p).name for p in dls.valid_ds.items][:4]
    targets = torch.stack([load_image(clean / n) for n in names]).float() / 255  # Resize(32) leaves 32px alone
    assert torch.allclose(dy, targets, atol=1e-5)
    assert dx.shape == dy.shape and 0 <= float(dx.min()) and float(dx.max()) <= 1 + 1e-6
    samples = dls.valid.decode_batch((x, y), max_n=2)
    assert samples[0][1].dtype == torch.float32 and samples[0][1].shape == (3, SIZE, SIZE)


def test_pairs_of_different_sizes_get_the_same_window(clean, tmp_path):
    """A 16-pixel input and its 32-pixel target: random crops take the same part of both (relative to their
    size), and a batch warp without `size` keeps each at its size."""
    small = tmp_path / "small"
    degrade_images(clean, small, size=16, quality=None, n_workers=0, progress=False)
    assert Image.open(small / "00.png").size == (16, 16)
    crop = RandomResizedCrop(24, min_scale=0.3)
    dls = _dblock(clean, item_tfms=crop).dataloaders(small, bs=6, device="cpu")
    torch.manual_seed(1)
    x, y = dls.train.one_batch()
    assert x.shape == y.shape == (6, 3, 24, 24)
    aligned = float((x - y).abs().mean())
    shifted = float((x - y.roll(6, dims=-1)).abs().mean())
    assert aligned < 0.03 and aligned < shifted / 2, (aligned, shifted)
    # without any item resize, a batch warp warps both the same way at their own sizes
    dls = _dblock(clean, item_tfms=[], batch_tfms=aug_transforms(p_affine=1.0, max_lighting=0)).dataloaders(
        small, bs=6, device="cpu"
    )
    torch.manual_seed(2)
    x, y = dls.train.one_batch()
    assert x.shape == (6, 3, 16, 16) and y.shape == (6, 3, SIZE, SIZE)
    down = F.interpolate(y, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    assert float((x - down).abs().mean()) < 0.04


# ------------------------------------------------------------------------------------------- degrade_images


def test_degrade_images_shrinks_compresses_and_is_reproducible(clean, tmp_path):
    out = degrade_images(clean, tmp_path / "a", size=16, quality=(5, 20), n_workers=0, progress=False)
    assert [p.name for p in out] == sorted(p.name for p in clean.iterdir())
    assert all(p.suffix == ".png" and Image.open(p).size == (16, 16) for p in out)
    again = degrade_images(clean, tmp_path / "b", size=16, quality=(5, 20), n_workers=2, progress=False)
    assert all(torch.equal(load_image(p), load_image(q)) for p, q in zip(out, again))  # processes, same result
    lossless = degrade_images(clean, tmp_path / "c", size=16, quality=None, n_workers=0, progress=False)
    src = load_image(clean / "05.png").float()
    jpeg, plain = load_image(out[5]).float(), load_image(lossless[5]).float()
    assert float((jpeg - plain).abs().mean()) > 0.5  # the JPEG artefacts are kept, losslessly
    down = F.interpolate(src[None], size=(16, 16), mode="bilinear", antialias=True, align_corners=False)[0]
    assert float((plain - down).abs().mean()) < 6  # a plain downsizing otherwise


def test_degrade_images_numbers_jpeg_files_and_errors(clean, tmp_path):
    numbered = degrade_images(clean, tmp_path / "n", size=None, quality=None, draw_number=True, n_workers=0,
                              progress=False)  # fmt: skip
    diffs = [float((load_image(p).float() - load_image(clean / p.name).float()).abs().amax()) for p in numbered]
    assert min(diffs) > 60  # a bright number is somewhere on every image
    jpgs = tmp_path / "jpg"
    jpgs.mkdir()
    Image.open(clean / "00.png").save(jpgs / "x.jpg", quality=95)
    (out,) = degrade_images(jpgs, tmp_path / "jpg_out", size=20, quality=10, n_workers=0, progress=False)
    assert out.name == "x.jpg" and Image.open(out).format == "JPEG" and Image.open(out).size == (20, 20)
    with pytest.raises(ConfigError, match="quality"):
        degrade_images(clean, tmp_path / "e", quality=(50, 10))
    with pytest.raises(ConfigError, match="size"):
        degrade_images(clean, tmp_path / "e", size=0)
    with pytest.raises(ConfigError, match="dest_folder"):
        degrade_images(clean, clean)
    (jpgs / "broken.png").write_bytes(b"not an image")
    with pytest.raises(EmberError, match="broken.png"):
        degrade_images(jpgs, tmp_path / "b_out", n_workers=0, progress=False)


# ----------------------------------------------------------------------------------------------- FeatureLoss


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the feature model ran past the last layer it needed")


def _feature_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        _Boom(),
    )


def _no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


def test_feature_loss_values_gradients_and_hooks():
    net = _feature_net()
    loss = FeatureLoss(net, [1, 5], [1.0, 2.0], gram_wgt=10.0)
    x = torch.rand(2, 3, 16, 16)
    assert float(loss(x, x.clone())) == 0.0
    pred = (x + 0.1 * torch.randn_like(x)).requires_grad_()
    value = loss(pred, x)
    assert value.ndim == 0 and float(value.detach()) > 0
    value.backward()
    assert pred.grad is not None and float(pred.grad.abs().sum()) > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert set(loss.parts) == {"pixel", "feat_0", "feat_1", "gram_0", "gram_1"}
    assert torch.allclose(sum(loss.parts.values()), value.detach())
    assert float(loss.parts["pixel"]) == pytest.approx(float(F.l1_loss(pred.detach(), x)), rel=1e-5)
    assert _no_hooks(net)  # hooks live only during a call
    # the style term scales with gram_wgt; 0 leaves it out
    double = FeatureLoss(net, [1, 5], [1.0, 2.0], gram_wgt=20.0)
    double(pred.detach(), x)
    assert float(double.parts["gram_1"]) == pytest.approx(2 * float(loss.parts["gram_1"]), rel=1e-5)
    assert float(double.parts["feat_1"]) == pytest.approx(float(loss.parts["feat_1"]), rel=1e-5)
    no_style = FeatureLoss(net, [1, 5], [1.0, 2.0], gram_wgt=0)
    no_style(pred.detach(), x)
    assert not any(k.startswith("gram") for k in no_style.parts)


def test_feature_loss_frozen_eval_names_reduction_and_copies():
    net = _feature_net()
    loss = FeatureLoss(net, ["1", "5"], [1.0, 2.0], base_loss=F.mse_loss)
    loss.train()
    assert loss.training and not net.training  # the feature model stays in eval mode
    stats = net[4].running_mean.clone()
    x, y = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 16, 16)
    by_name = loss(x, y)
    assert torch.equal(net[4].running_mean, stats)  # batch norm statistics untouched
    assert float(FeatureLoss(net, [1, 5], [1.0, 2.0], base_loss=F.mse_loss)(x, y)) == pytest.approx(float(by_name))
    loss.reduction = "none"
    per_item = loss(x, y)
    assert per_item.shape == (3,) and float(per_item.mean()) == pytest.approx(float(by_name), rel=1e-5)
    loss.reduction = "mean"
    twin = copy.deepcopy(loss)
    assert twin.feature_model is not net and float(twin(x, y)) == pytest.approx(float(by_name))
    assert _no_hooks(twin.feature_model) and _no_hooks(net)
    g = gram_matrix(torch.ones(1, 2, 4, 4))
    assert g.shape == (1, 2, 2) and torch.allclose(g, torch.full((1, 2, 2), 0.5))
    with pytest.raises(ConfigError, match="layer_ids"):
        FeatureLoss(net, [42], [1.0])
    with pytest.raises(ConfigError, match="layer_ids"):
        FeatureLoss(net, ["nope"], [1.0])
    with pytest.raises(ConfigError, match="layer_wgts"):
        FeatureLoss(net, [1, 5], [1.0])
    with pytest.raises(ConfigError, match="reduction"):
        loss.reduction = "max"
    assert "FeatureLoss(Sequential" in repr(loss)


# ------------------------------------------------------------------------------------------ the whole route


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    """A U-Net trained briefly to denoise smooth images (noisy inputs, clean targets)."""
    root = tmp_path_factory.mktemp("denoise")
    _smooth_images(root / "clean", 24, seed=1, noisy=root / "noisy", sigma=0.2)
    batch_tfms = [*aug_transforms(), Normalize.from_stats(*imagenet_stats)]
    dls = _dblock(root / "clean", batch_tfms=batch_tfms).dataloaders(root / "noisy", bs=4, device="cpu")
    torch.manual_seed(0)
    learn = unet_learner(dls, "xresnet_tiny", pretrained=False, path=tmp_path_factory.mktemp("m"))
    learn.silent = True
    learn.fit_one_cycle(10, 1e-2)
    return root, learn


def test_unet_denoises_better_than_the_input(denoiser):
    _, learn = denoiser
    assert learn.model_recipe["kwargs"]["n_out"] == 3  # from the data: the target's channels
    assert isinstance(learn.loss_func, MSELossFlat)
    inputs, preds, targs = learn.get_preds(with_input=True)
    assert preds.shape == targs.shape == inputs.shape
    model_mse, input_mse = float(F.mse_loss(preds, targs)), float(F.mse_loss(inputs, targs))
    assert model_mse < 0.7 * input_mse, (model_mse, input_mse)


def test_predict_returns_a_displayable_image(denoiser):
    root, learn = denoiser
    image, out, act = learn.predict(root / "noisy" / "03.png")
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert out.shape == act.shape == (3, SIZE, SIZE)
    mean, std = torch.tensor(imagenet_stats[0]).view(3, 1, 1), torch.tensor(imagenet_stats[1]).view(3, 1, 1)
    assert torch.allclose(image, (out * std + mean).clamp(0, 1), atol=1e-5)
    clean = load_image(root / "clean" / "03.png").float() / 255
    noisy = load_image(root / "noisy" / "03.png").float() / 255
    assert float(F.mse_loss(image, clean)) < float(F.mse_loss(noisy, clean))
    images, dec, _ = learn.predict_batch([root / "noisy" / "03.png", root / "noisy" / "04.png"])
    assert torch.allclose(images[0], image, atol=1e-5) and dec.shape == (2, 3, SIZE, SIZE)
    with pytest.raises(ConfigError, match="images"):
        learn.tta()


def test_show_results_draws_input_target_prediction(denoiser, tmp_path):
    _, learn = denoiser
    fig = learn.show_results(max_n=2, fname=tmp_path / "results.png")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 6 and [ax.get_title() for ax in visible[:3]] == ["input", "target", "prediction"]
    assert all(len(ax.images) == 1 for ax in visible)
    assert (tmp_path / "results.png").stat().st_size > 0


def test_show_batch_draws_input_and_target_side_by_side(denoiser, tmp_path):
    _, learn = denoiser
    fig = learn.dls.show_batch(max_n=2, fname=tmp_path / "batch.png")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4 and [ax.get_title() for ax in visible[:2]] == ["input", "target"]
    assert all(len(ax.images) == 1 for ax in visible)


def test_export_and_load_predict_the_same(denoiser, tmp_path):
    root, learn = denoiser
    file = learn.export(tmp_path / "restore.ember", verbose=False)
    loaded = load_learner(file)
    item = root / "noisy" / "05.png"
    a, b = learn.predict(item)[0], loaded.predict(item)[0]
    assert a.shape == b.shape == (3, SIZE, SIZE) and torch.allclose(a, b, atol=1e-5)
    assert loaded.dls.c == 3


def test_feature_loss_trains_a_unet_and_is_left_out_of_the_export(denoiser, tmp_path):
    root, learn = denoiser
    loss = FeatureLoss(_feature_net()[:7], [1, 5], [1.0, 1.0], gram_wgt=1.0)
    torch.manual_seed(0)
    perceptual = unet_learner(learn.dls, "xresnet_tiny", pretrained=False, loss_func=loss, path=tmp_path)
    perceptual.silent = True
    perceptual.fit(1, 1e-3)
    assert perceptual.loss_func is loss and not loss.feature_model.training and _no_hooks(loss.feature_model)
    file = perceptual.export(tmp_path / "perceptual.ember", verbose=False)
    assert read_recipe(file)["loss"] is None  # a loss without a recipe is not written
    loaded = load_learner(file)
    item = root / "noisy" / "06.png"
    assert torch.allclose(perceptual.predict(item)[0], loaded.predict(item)[0], atol=1e-5)
