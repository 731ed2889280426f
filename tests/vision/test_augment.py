"""Item transforms (sizes, crops, padding) and batch transforms (fused affine, lighting, normalization)."""

from __future__ import annotations

import pytest
import torch

from ember.core import recipe
from ember.core.errors import ConfigError, DataError
from ember.vision.augment import (
    AffineWarp,
    CropPad,
    IntToFloat,
    Lighting,
    Normalize,
    RandomCrop,
    RandomResizedCrop,
    Resize,
    aug_transforms,
    crop_pad,
    imagenet_stats,
    mnist_stats,
    rand_pad,
)

IMG = ("image",)


def _image(c: int = 3, h: int = 4, w: int = 8) -> torch.Tensor:
    return torch.arange(c * h * w, dtype=torch.uint8).reshape(c, h, w)


# ------------------------------------------------------------------------------------------------ item tfms
@pytest.mark.parametrize("method", ["crop", "squish", "pad"])
@pytest.mark.parametrize("size", [4, (6, 10), (12, 3)])
def test_resize_output_sizes(method, size):
    out = Resize(size, method=method)((_image(),), IMG, 0)[0]
    expected = (size, size) if isinstance(size, int) else size
    assert out.shape == (3, *expected) and out.dtype == torch.uint8


def test_resize_methods_differ_as_expected():
    x = _image(1, 4, 8)
    crop = Resize(4, method="crop")((x,), IMG, 0)[0]
    assert torch.equal(crop, x[:, :, 2:6])  # the centre 4x4: same scale, no resampling
    squish = Resize(4, method="squish")((x,), IMG, 0)[0]
    assert not torch.equal(squish, crop)
    assert squish[0, 0, 0] < crop[0, 0, 0] and squish[0, 0, -1] > crop[0, 0, -1]  # keeps the outer columns
    pad = Resize(8, method="pad", pad_mode="zeros")((x,), IMG, 0)[0]
    assert torch.equal(pad[:, 2:6], x) and pad[:, :2].sum() == 0 and pad[:, 6:].sum() == 0
    border = Resize(8, method="pad", pad_mode="border")((x,), IMG, 0)[0]
    assert torch.equal(border[:, 0], x[:, 0]) and torch.equal(border[:, 7], x[:, 3])
    refl = Resize(8, method="pad", pad_mode="reflection")((x,), IMG, 0)[0]
    assert torch.equal(refl[:, 1], x[:, 1]) and torch.equal(refl[:, 0], x[:, 2])  # mirror without the edge row


def test_resize_is_deterministic_and_exported():
    r = Resize((5, 7), method="pad", pad_mode="zeros")
    assert r.deterministic and r.split_idx is None
    back = recipe.load(recipe.dump(r))
    x = _image()
    assert torch.equal(back((x,), IMG, 0)[0], r((x,), IMG, 1)[0])
    with pytest.raises(ConfigError, match="method"):
        Resize(4, method="stretch")
    with pytest.raises(ConfigError, match="size"):
        Resize(0)


def test_resize_mask_nearest_and_points():
    mask = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    img = torch.zeros(3, 4, 4, dtype=torch.uint8)
    pts = torch.tensor([[3.5, 0.5]])  # centre of the top-right pixel
    _, m, p = Resize(8, method="squish")((img, mask, pts), ("image", "mask", "points"), 0)
    assert m.shape == (8, 8) and m.dtype == mask.dtype
    assert set(m.unique().tolist()) == {0, 1, 2, 3} and m[0, 7] == 1 and m[7, 0] == 2
    assert torch.allclose(p, torch.tensor([[7.0, 1.0]]))


def test_crop_pad_reflection_beyond_one_period():
    x = torch.arange(3).reshape(1, 1, 3)  # 0 1 2
    out = crop_pad(x, 0, -4, 1, 11, "reflection")
    assert out[0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2]


def test_random_resized_crop_train_and_valid():
    torch.manual_seed(0)
    x = torch.randint(0, 255, (3, 20, 30), dtype=torch.uint8)
    tfm = RandomResizedCrop(8, min_scale=0.3)
    train = [tfm((x,), IMG, 0)[0] for _ in range(5)]
    assert all(t.shape == (3, 8, 8) for t in train)
    assert not all(torch.equal(train[0], t) for t in train[1:])
    v1, v2 = tfm((x,), IMG, 1)[0], tfm((x,), IMG, 1)[0]
    assert torch.equal(v1, v2) and v1.shape == (3, 8, 8)
    assert torch.equal(v1, Resize(8)((x,), IMG, 1)[0])  # validation: the centre, like Resize
    assert not tfm.deterministic


def test_random_crop_and_crop_pad():
    x = _image(1, 6, 6)
    assert torch.equal(RandomCrop(4)((x,), IMG, 1)[0], x[:, 1:5, 1:5])
    torch.manual_seed(0)
    seen = {int(RandomCrop(4)((x,), IMG, 0)[0][0, 0, 0]) for _ in range(60)}
    assert seen == {r * 6 + c for r in range(3) for c in range(3)}  # every one of the 3x3 offsets appears
    padded = CropPad(8)((x,), IMG, 0)[0]
    assert padded.shape == (1, 8, 8) and torch.equal(padded[:, 1:7, 1:7], x) and padded[:, 0].sum() == 0


def test_rand_pad_shifts_in_training_only():
    x = torch.randint(1, 255, (1, 28, 28), dtype=torch.uint8)
    tfms = rand_pad(2, 28)
    assert [type(t) for t in tfms] == [RandomCrop]  # one crop; validation gets the image untouched

    def run(split):
        s = (x,)
        for t in tfms:
            s = t(s, IMG, split)
        return s[0]

    assert torch.equal(run(1), x)
    torch.manual_seed(1)
    outs = [run(0) for _ in range(20)]
    assert all(o.shape == (1, 28, 28) for o in outs)
    shifted = [o for o in outs if not torch.equal(o, x)]
    assert shifted
    # each output is the input shifted by at most 2 pixels, zeros coming in from the border
    padded = CropPad(32)((x,), IMG, 0)[0]
    refs = [padded[:, 2 + dy : 30 + dy, 2 + dx : 30 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
    assert all(any(torch.equal(r, o) for r in refs) for o in outs)
    assert len({tuple(o.flatten().tolist()) for o in outs}) > 3  # several different shifts were drawn


# ----------------------------------------------------------------------------------------------- batch tfms
def _float_batch(b: int = 4, c: int = 3, h: int = 16, w: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(b, c, h, w)


def test_int_to_float_only_images():
    xb = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    mask = torch.ones(2, 4, 4, dtype=torch.long)
    x, m = IntToFloat()((xb, mask), ("image", "mask"), 0)
    assert x.dtype == torch.float32 and float(x.max()) == 1.0
    assert m.dtype == torch.long


def test_aug_transforms_shapes_and_list():
    tfms = aug_transforms()
    assert [type(t) for t in tfms] == [AffineWarp, Lighting]
    xb = _float_batch()
    out = xb
    for t in tfms:
        out = t((out,), IMG, 0)[0]
    assert out.shape == xb.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert not torch.equal(out, xb)
    strong = aug_transforms(mult=2.0, max_lighting=0.0)
    assert len(strong) == 1 and strong[0].max_rotate == 20.0 and strong[0].max_warp == pytest.approx(0.4)


def test_affine_identity_when_nothing_is_drawn():
    xb = _float_batch()
    tfm = AffineWarp(do_flip=False, p_affine=0.0)
    assert tfm((xb,), IMG, 0)[0] is xb
    assert AffineWarp()((xb,), IMG, 1)[0] is xb  # validation: untouched
    lit = Lighting(p=0.0)((xb,), IMG, 0)[0]
    assert torch.allclose(lit, xb, atol=1e-4)


def test_flip_moves_marked_pixel_and_point():
    x = torch.zeros(1, 1, 6, 8)
    x[0, 0, 2, 1] = 1.0
    pts = torch.tensor([[[(1.5 / 8) * 2 - 1, (2.5 / 6) * 2 - 1]]])  # centre of that pixel in [-1, 1]
    tfm = AffineWarp(do_flip=True, p_affine=0.0)
    torch.manual_seed(0)
    while True:  # draw until the flip happens (p = 0.5)
        out, p = tfm((x, pts), ("image", "points"), 0)
        if out is not x:
            break
    assert out[0, 0, 2, 6] == 1.0 and float(out.sum()) == pytest.approx(1.0)
    assert torch.allclose(p, torch.tensor([[[(6.5 / 8) * 2 - 1, (2.5 / 6) * 2 - 1]]]), atol=1e-6)


def test_points_stay_on_their_pixel_under_random_affine():
    torch.manual_seed(3)
    h = w = 32
    x = torch.zeros(6, 1, h, w)
    rows, cols = torch.randint(10, 22, (6,)), torch.randint(10, 22, (6,))
    for i in range(6):
        x[i, 0, rows[i] - 1 : rows[i] + 2, cols[i] - 1 : cols[i] + 2] = 1.0  # a 3x3 blob
    pts = torch.stack([(cols + 0.5) / w * 2 - 1, (rows + 0.5) / h * 2 - 1], -1)[:, None].float()  # (6, 1, 2)
    tfm = AffineWarp(max_rotate=30.0, min_zoom=1.0, max_zoom=1.3, max_warp=0.2, p_affine=1.0)
    out, moved = tfm((x, pts), ("image", "points"), 0)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    for i in range(6):
        mass = out[i, 0]
        c, r = float((mass * xs).sum() / mass.sum()), float((mass * ys).sum() / mass.sum())  # the blob's centre
        px = float(moved[i, 0, 0] + 1) * w / 2 - 0.5
        py = float(moved[i, 0, 1] + 1) * h / 2 - 0.5
        assert abs(px - c) <= 0.5 and abs(py - r) <= 0.5


def test_masks_keep_class_ids_and_size_option():
    torch.manual_seed(0)
    x = _float_batch(2, 3, 16, 16)
    mask = torch.randint(0, 4, (2, 16, 16))
    tfm = AffineWarp(max_rotate=20.0, p_affine=1.0, size=(8, 12))
    out, m = tfm((x, mask), ("image", "mask"), 0)
    assert out.shape == (2, 3, 8, 12) and m.shape == (2, 8, 12) and m.dtype == torch.long
    assert set(m.unique().tolist()) <= {0, 1, 2, 3}
    v, vm = tfm((x, mask), ("image", "mask"), 1)  # validation: only the size changes
    assert v.shape == (2, 3, 8, 12) and vm.shape == (2, 8, 12)
    with pytest.raises(DataError, match="IntToFloat"):
        tfm((x.to(torch.uint8), mask), ("image", "mask"), 0)


def test_lighting_stays_in_range_and_keeps_order():
    xb = _float_batch()
    out = Lighting(max_lighting=0.5, p=1.0)((xb,), IMG, 0)[0]
    assert 0 < float(out.min()) and float(out.max()) < 1
    # a monotonic change of each image: the brightest pixel stays the brightest
    assert torch.equal(out.flatten(1).argmax(1), xb.flatten(1).argmax(1))
    assert Lighting()((xb,), IMG, 1)[0] is xb


def test_normalize_from_batch_and_decode():
    xb = _float_batch(8) * 0.5 + 0.2
    norm = Normalize()
    assert not norm.ready
    out = norm((xb,), IMG, 0)[0]
    assert norm.ready
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std((0, 2, 3)), torch.ones(3), atol=1e-4)
    frozen = norm.mean.clone()
    norm((xb * 2,), IMG, 0)  # the stats stay those of the first batch
    assert torch.equal(norm.mean, frozen)
    back = norm.decode((out,), IMG)[0]
    assert torch.allclose(back, xb, atol=1e-6)
    again = recipe.load(recipe.dump(norm))
    assert torch.allclose(again((xb,), IMG, 1)[0], out, atol=1e-6)


def test_normalize_from_stats_and_errors():
    norm = Normalize.from_stats(*imagenet_stats)
    xb = torch.full((2, 3, 2, 2), 0.485)
    assert torch.allclose(norm((xb,), IMG, 1)[0][:, 0], torch.zeros(2, 2, 2))
    with pytest.raises(DataError, match="channel"):
        norm((torch.zeros(2, 1, 2, 2),), IMG, 1)
    grey = Normalize.from_stats(*mnist_stats)
    assert grey((torch.zeros(1, 1, 2, 2),), IMG, 1)[0].shape == (1, 1, 2, 2)
    with pytest.raises(ConfigError):
        Normalize(mean=[0.5])
    with pytest.raises(ConfigError, match="positive"):
        Normalize([0.5], [0.0])
    assert "0.485" in repr(norm)


def test_batch_tfm_recipes_round_trip():
    for t in (IntToFloat(), AffineWarp(size=(8, 8), max_rotate=5.0), Lighting(0.1, 0.5), CropPad(6, "border")):
        back = recipe.load(recipe.dump(t))
        assert type(back) is type(t) and back.to_recipe() == t.to_recipe()


def test_item_tfms_are_thread_safe():
    # datasets fill their cache from a thread pool: each call must use the sizes of its own image
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    imgs = [torch.randint(0, 255, (3, 10 + 7 * (i % 5), 40 - 5 * (i % 4)), dtype=torch.uint8) for i in range(40)]
    tfm = Resize((9, 9), method="pad")
    serial = [tfm((x,), IMG, 0)[0] for x in imgs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda x: tfm((x,), IMG, 0)[0], imgs))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded))


def test_aug_transforms_min_scale_is_a_random_resized_crop():
    x = torch.arange(32.0).repeat(32, 1)[None, None].repeat(64, 1, 1, 1) / 31  # (64, 1, 32, 32): x position
    (warp,) = aug_transforms(size=16, min_scale=0.25, do_flip=False, max_rotate=0, max_warp=0, max_lighting=0)
    assert warp.min_scale == 0.25 and recipe.load(recipe.dump(warp)).min_scale == 0.25
    out = warp((x,), IMG, 0)[0]
    assert out.shape == (64, 1, 16, 16)
    spans = out[:, 0, 0, -1] - out[:, 0, 0, 0]  # the part of the width each crop covers
    assert float(spans.min()) < 0.8 and float(spans.max()) <= 1.0  # windows smaller than the image
    assert float(out[:, 0, 0, 0].std()) > 0.01  # at random places
    assert warp((x,), IMG, 1)[0].shape == (64, 1, 16, 16)  # validation: the whole image, resized
    with pytest.raises(ConfigError, match="min_scale"):
        aug_transforms(min_scale=0)


def test_aug_transforms_names_mult_when_the_warp_would_fold_images():
    with pytest.raises(ConfigError, match=r"`mult` to be below 2\.5 with max_warp=0\.2.*received `mult=3`"):
        aug_transforms(mult=3)
    with pytest.raises(ConfigError, match="`mult` to be a non-negative number"):
        aug_transforms(mult=-1)
    with pytest.raises(ConfigError, match="`max_warp`"):
        aug_transforms(max_warp=0.6)
    # a stronger rest without the warp is fine
    (warp, light) = aug_transforms(mult=3, max_warp=0.0)
    assert warp.max_rotate == 30.0 and warp.max_warp == 0.0 and light.max_lighting == pytest.approx(0.6)


def test_random_resized_crop_val_xtra_is_checked_and_widens_the_window():
    with pytest.raises(ConfigError, match=r"`val_xtra` to be a fraction in \[0, 1\); received `val_xtra=1\.0`"):
        RandomResizedCrop(8, val_xtra=1.0)
    with pytest.raises(ConfigError, match="`val_xtra`"):
        RandomResizedCrop(8, val_xtra="x")
    with pytest.raises(ConfigError, match="`min_scale`"):
        RandomResizedCrop(8, min_scale="0.5")
    # validation of an 8x16 image at size 4: the centre 8x8 window; with val_xtra=0.5 one twice as wide (the whole
    # image, squished to 4x4)
    x = torch.arange(128, dtype=torch.uint8).reshape(1, 8, 16)
    assert torch.equal(RandomResizedCrop(4)((x,), IMG, 1)[0], Resize(4)((x,), IMG, 1)[0])
    wide = RandomResizedCrop(4, val_xtra=0.5)((x,), IMG, 1)[0]
    assert torch.equal(wide, Resize(4, method="squish")((x,), IMG, 1)[0])
    assert not torch.equal(wide, Resize(4)((x,), IMG, 1)[0])
