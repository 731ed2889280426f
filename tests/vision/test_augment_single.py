"""Single-effect augmentations: geometric batch transforms, colour effects, random erasing and item flips."""

from __future__ import annotations

import math

import pytest
import torch

from ember.core import recipe
from ember.core.errors import ConfigError, DataError
from ember.vision.augment import (
    AffineWarp,
    Brightness,
    Contrast,
    Dihedral,
    DihedralItem,
    Flip,
    FlipItem,
    Hue,
    Lighting,
    Normalize,
    RandomErasing,
    Rotate,
    Saturation,
    Warp,
    Zoom,
)
from ember.vision.resize import Resize

IMG = ("image",)


def _centres(rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pixel centres as batch keypoints in [-1, 1]: ``(B, 1, 2)``."""
    return torch.stack([(cols + 0.5) / w * 2 - 1, (rows + 0.5) / h * 2 - 1], -1)[:, None].float()


def _symmetries(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 symmetries of a square ``(..., n, n)`` tensor."""
    out = []
    for t in (x, x.transpose(-1, -2)):
        out += [t, t.flip(-1), t.flip(-2), t.flip(-1).flip(-2)]
    return out


# ------------------------------------------------------------------------------------------------ geometry
def test_flip_moves_pixel_mask_and_point_exactly():
    x = torch.rand(3, 2, 6, 8)
    x[:, :, 2, 1] = 5.0  # a marked pixel
    mask = torch.zeros(3, 6, 8, dtype=torch.long)
    mask[:, 2, 1] = 3
    pts = _centres(torch.full((3,), 2), torch.full((3,), 1), 6, 8)
    out, m, p = Flip(p=1.0)((x, mask, pts), ("image", "mask", "points"), 0)
    assert torch.equal(out, x.flip(-1))  # exact: no interpolation
    assert bool((out[:, :, 2, 6] == 5.0).all()) and bool((m[:, 2, 6] == 3).all()) and int(m.sum()) == 9
    assert torch.allclose(p, _centres(torch.full((3,), 2), torch.full((3,), 6), 6, 8), atol=1e-6)
    assert Flip(p=0.0)((x,), IMG, 0)[0] is x
    assert Flip(p=1.0)((x,), IMG, 1)[0] is x  # validation: untouched


def test_flip_probability_is_per_image():
    torch.manual_seed(0)
    x = torch.rand(400, 1, 2, 3)
    out = Flip(p=0.25)((x,), IMG, 0)[0]
    flipped = (out != x).flatten(1).any(1).float().mean()
    assert 0.18 < float(flipped) < 0.32


def test_dihedral_moves_pixels_exactly_with_masks_and_points():
    torch.manual_seed(0)
    n = 64
    x = torch.rand(n, 2, 5, 5)
    mask = torch.randint(0, 4, (n, 5, 5))
    r, c = torch.randint(0, 5, (n,)), torch.randint(0, 5, (n,))
    x[torch.arange(n), 0, r, c] = 2.0  # one marked pixel per image, in channel 0
    out, m, p = Dihedral(p=1.0)((x, mask, _centres(r, c, 5, 5)), ("image", "mask", "points"), 0)
    seen = set()
    for i in range(n):
        k = next(k for k, s in enumerate(_symmetries(x[i])) if torch.equal(s, out[i]))  # exact pixel values
        seen.add(k)
        assert torch.equal(m[i], _symmetries(mask[i])[k])  # the mask moves alike
        flat = int(out[i, 0].argmax())
        assert torch.allclose(p[i], _centres(torch.tensor([flat // 5]), torch.tensor([flat % 5]), 5, 5)[0], atol=1e-6)
    assert seen == set(range(8))


def test_dihedral_keeps_the_shape_of_non_square_images():
    torch.manual_seed(1)
    x = torch.rand(48, 1, 4, 6)
    out = Dihedral(p=1.0)((x,), IMG, 0)[0]
    assert out.shape == x.shape
    kinds = {
        next(
            k
            for k, s in enumerate([x[i], x[i].flip(-1), x[i].flip(-2), x[i].flip(-1).flip(-2)])
            if torch.equal(s, out[i])
        )
        for i in range(48)
    }
    assert kinds == {0, 1, 2, 3}
    assert Dihedral(p=0.0)((x,), IMG, 0)[0] is x


def test_rotate_keeps_mask_ids_and_turns_points_rigidly():
    torch.manual_seed(2)
    x = torch.rand(16, 3, 24, 24)
    mask = torch.randint(0, 3, (16, 24, 24))
    pts = torch.tensor([[[0.5, 0.0], [0.0, -0.4]]]).repeat(16, 1, 1)  # (16, 2, 2)
    out, m, p = Rotate(max_deg=30.0, p=1.0)((x, mask, pts), ("image", "mask", "points"), 0)
    assert out.shape == x.shape and m.dtype == torch.long and set(m.unique().tolist()) <= {0, 1, 2}
    assert not torch.equal(m, mask)
    assert torch.allclose(p.norm(dim=-1), pts.norm(dim=-1), atol=1e-5)  # a rotation about the centre
    angles = torch.atan2(p[:, 0, 1], p[:, 0, 0]) * 180 / math.pi
    assert float(angles.abs().max()) <= 30.0 + 1e-4 and float(angles.abs().min()) > 0
    assert angles.std() > 5  # drawn per image


def test_zoom_scales_distances_between_points():
    torch.manual_seed(3)
    x = torch.rand(32, 1, 16, 16)
    pts = torch.tensor([[[-0.1, -0.1], [0.1, 0.2]]]).repeat(32, 1, 1)
    out, p = Zoom(min_zoom=1.5, max_zoom=2.0, p=1.0)((x, pts), ("image", "points"), 0)
    ratio = (p[:, 0] - p[:, 1]).norm(dim=-1) / (pts[:, 0] - pts[:, 1]).norm(dim=-1)
    assert float(ratio.min()) >= 1.5 - 1e-5 and float(ratio.max()) <= 2.0 + 1e-5
    assert float(ratio.std()) > 0.05
    assert Zoom(p=0.0)((x,), IMG, 0)[0] is x


def test_warp_keeps_lines_straight_but_not_proportions():
    torch.manual_seed(4)
    x = torch.rand(16, 1, 16, 16)
    pts = torch.tensor([[[-0.6, -0.3], [0.0, 0.0], [0.6, 0.3]]]).repeat(16, 1, 1)  # on one line, evenly spaced
    out, p = Warp(magnitude=0.3, p=1.0)((x, pts), ("image", "points"), 0)
    d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 1]
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    assert float(cross.abs().max()) < 1e-5  # still on one line (a projective map)
    assert float((d1.norm(dim=-1) / d2.norm(dim=-1) - 1).abs().max()) > 0.05  # no longer evenly spaced
    assert not torch.equal(out, x)


def test_single_affines_in_validation_and_with_size():
    x = torch.rand(2, 3, 16, 16)
    for t in (Flip(p=1.0), Dihedral(p=1.0), Rotate(p=1.0), Zoom(max_zoom=1.5, p=1.0), Warp(p=1.0)):
        assert t((x,), IMG, 1)[0] is x, t
    sized = Rotate(p=1.0, size=(8, 12))
    assert sized((x,), IMG, 1)[0].shape == (2, 3, 8, 12)  # validation: only the size changes
    assert sized((x,), IMG, 0)[0].shape == (2, 3, 8, 12)
    with pytest.raises(DataError, match="IntToFloat"):
        Flip(p=1.0)((x.to(torch.uint8),), IMG, 0)


def test_affine_flip_only_batches_are_exact():
    # AffineWarp shares the core: a batch that only flips is moved without resampling
    x = torch.rand(8, 1, 5, 7)
    torch.manual_seed(5)
    out = AffineWarp(do_flip=True, p_affine=0.0)((x,), IMG, 0)[0]
    assert all(torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1)) for i in range(8))


# ------------------------------------------------------------------------------------------------ colour
# Reference numbers: fastai 2.8.12's Brightness/Contrast/Saturation/Hue with a fixed draw, on the pixel (0.2, 0.5, 0.8).
PIXEL = torch.tensor([0.2, 0.5, 0.8]).view(1, 3, 1, 1)


@pytest.mark.parametrize(
    "tfm,change,expected",
    [
        (Brightness(), 0.7, [0.36842, 0.7, 0.90323]),
        (Contrast(), 1.5, [0.11111, 0.5, 0.88889]),
        (Saturation(), 0.5, [0.30549, 0.468, 0.63761]),
        (Saturation(), 0.0, [0.43627, 0.43627, 0.43627]),  # no saturation: grey
        (Hue(), 0.25, [0.8, 0.2, 0.8]),
    ],
)
def test_colour_effects_match_reference_numbers(tfm, change, expected):
    out = tfm.adjust(PIXEL, torch.tensor([change]))
    assert torch.allclose(out.flatten(), torch.tensor(expected), atol=1e-4)


def test_brightness_half_is_identity_and_draws_in_range():
    torch.manual_seed(6)
    x = torch.rand(64, 3, 4, 4) * 0.9 + 0.05
    assert torch.allclose(Brightness().adjust(x, torch.full((64,), 0.5)), x, atol=1e-5)
    out = Brightness(max_lighting=0.4, p=1.0)((x,), IMG, 0)[0]
    shift = torch.logit(out) - torch.logit(x)  # one shift per image, in logit space
    assert torch.allclose(shift, shift[:, :1, :1, :1].expand_as(shift), atol=1e-3)
    per_image = shift[:, 0, 0, 0]
    lo, hi = math.log(0.3 / 0.7), math.log(0.7 / 0.3)  # logits of 0.5 -/+ 0.4 / 2
    assert lo - 1e-3 <= float(per_image.min()) and float(per_image.max()) <= hi + 1e-3
    assert float(per_image.std()) > 0.2
    assert Brightness(p=0.0)((x,), IMG, 0)[0] is x
    assert Brightness(p=1.0)((x,), IMG, 1)[0] is x  # validation: untouched


def test_contrast_scales_logits_log_uniformly():
    torch.manual_seed(7)
    x = torch.rand(400, 1, 2, 2) * 0.8 + 0.1
    out = Contrast(max_lighting=0.5, p=0.75)((x,), IMG, 0)[0]
    factor = (torch.logit(out) / torch.logit(x)).flatten(1).median(1).values
    assert float(factor.min()) >= 0.5 - 1e-3 and float(factor.max()) <= 2.0 + 1e-3
    changed = (factor - 1).abs() > 1e-3
    assert 0.65 < float(changed.float().mean()) < 0.85  # p = 0.75 per image
    assert 0.3 < float((factor[changed] > 1).float().mean()) < 0.7  # as likely to raise as to lower


def test_saturation_and_hue_leave_grey_images_and_masks_alone():
    x = torch.rand(4, 1, 6, 6)
    mask = torch.randint(0, 3, (4, 6, 6))
    for t in (Saturation(p=1.0), Hue(p=1.0)):
        out, m = t((x, mask), ("image", "mask"), 0)
        assert out is x and m is mask
    rgb_grey = torch.rand(4, 1, 6, 6).expand(4, 3, 6, 6)  # RGB but grey: no hue, no saturation
    assert torch.allclose(Hue(max_hue=0.3, p=1.0)((rgb_grey,), IMG, 0)[0], rgb_grey, atol=1e-6)
    assert torch.allclose(Saturation(max_lighting=0.5, p=1.0)((rgb_grey,), IMG, 0)[0], rgb_grey, atol=1e-4)


def test_hue_turns_pure_red():
    red = torch.zeros(3, 3, 2, 2)
    red[:, 0] = 1.0
    out = Hue().adjust(red, torch.tensor([1 / 3, -1 / 3, 0.5]))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-5)  # green
    assert torch.allclose(out[1, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]), atol=1e-5)  # blue
    assert torch.allclose(out[2, :, 0, 0], torch.tensor([0.0, 1.0, 1.0]), atol=1e-5)  # cyan
    torch.manual_seed(8)
    reds = torch.zeros(200, 3, 1, 1)
    reds[:, 0] = 1.0
    turned = Hue(max_hue=0.2, p=1.0)((reds,), IMG, 0)[0][:, :, 0, 0]
    shift = (turned[:, 1] - turned[:, 2]) / 6  # near red, a turn of d gives (1, 6d, 0) or (1, 0, -6d)
    assert float(shift.min()) >= -0.2 - 1e-5 and float(shift.max()) <= 0.25 + 1e-5
    assert float(shift.min()) < -0.1 and float(shift.max()) > 0.1


def test_colour_effects_run_with_lighting_and_need_floats():
    assert Brightness.order == Contrast.order == Saturation.order == Hue.order == Lighting.order
    with pytest.raises(DataError, match="IntToFloat"):
        Contrast(p=1.0)((torch.zeros(2, 3, 2, 2, dtype=torch.uint8),), IMG, 0)


# ------------------------------------------------------------------------------------------------ erasing
def test_random_erasing_changes_one_rectangle_per_image_in_training_only():
    torch.manual_seed(9)
    x = torch.full((32, 3, 20, 20), 7.0)  # far from N(0, 1) noise: every erased pixel changes
    mask = torch.randint(0, 3, (32, 20, 20))
    tfm = RandomErasing(p=1.0, sl=0.1, sh=0.3)
    out, m = tfm((x, mask), ("image", "mask"), 0)
    assert m is mask
    changed = out != x  # (32, 3, 20, 20)
    assert torch.equal(changed, changed[:, :1].expand_as(changed))  # every channel alike
    areas = []
    for i in range(32):
        rows, cols = changed[i, 0].any(1).nonzero()[:, 0], changed[i, 0].any(0).nonzero()[:, 0]
        box = changed[i, 0, int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
        assert bool(box.all()) and int(changed[i, 0].sum()) == box.numel()  # exactly one filled rectangle
        areas.append(box.numel() / 400)
    assert 0.05 <= min(areas) and max(areas) <= 0.4  # 0.1..0.3 of the area, give or take the rounding
    assert len({round(a, 3) for a in areas}) > 5  # drawn per image
    noise = out[changed]
    assert abs(float(noise.mean())) < 0.2 and 0.8 < float(noise.std()) < 1.2
    assert tfm((x,), IMG, 1)[0] is x  # validation: untouched
    assert RandomErasing(p=0.0)((x,), IMG, 0)[0] is x


def test_random_erasing_count_probability_and_pairs():
    torch.manual_seed(10)
    x = torch.full((300, 1, 16, 16), 7.0)
    out = RandomErasing(p=0.5, sh=0.2, max_count=3)((x,), IMG, 0)[0]
    erased = (out != x).flatten(1)
    assert 0.4 < float(erased.any(1).float().mean()) < 0.6  # p per image
    assert float(erased.float().mean(1).max()) <= 0.2 + 0.05  # the area is split between the rectangles
    y = torch.full((4, 3, 8, 8), 7.0)
    a, b = RandomErasing(p=1.0, sl=0.2)((y, y.clone()), ("image", "image"), 0)
    assert torch.equal(a, b)  # an input and its image target: the same place, the same noise
    assert RandomErasing.order > Normalize.order


# ------------------------------------------------------------------------------------------------ item flips
def test_flip_item_moves_image_mask_and_points():
    img = torch.arange(24, dtype=torch.uint8).reshape(1, 4, 6)
    mask = torch.arange(24).reshape(4, 6) % 3
    pts = torch.tensor([[1.5, 2.5], [0.0, 4.0]])  # (x, y) pixels
    kinds = ("image", "mask", "points")
    out, m, p = FlipItem(p=1.0)((img, mask, pts), kinds, 0)
    assert torch.equal(out, img.flip(-1)) and torch.equal(m, mask.flip(-1))
    assert torch.equal(p, torch.tensor([[4.5, 2.5], [6.0, 4.0]]))
    assert FlipItem(p=1.0)((img, mask, pts), kinds, 1)[0] is img  # validation: untouched
    assert FlipItem(p=0.0)((img,), IMG, 0)[0] is img
    assert FlipItem.order > Resize.order and FlipItem.split_idx == 0  # resized images stay cached


def test_dihedral_item_all_symmetries_and_points_follow():
    torch.manual_seed(11)
    img = torch.randperm(25).to(torch.uint8).reshape(1, 5, 5)
    r, c = divmod(int(img.argmax()), 5)
    pts = torch.tensor([[c + 0.5, r + 0.5]])
    seen = set()
    for _ in range(80):
        out, p = DihedralItem(p=1.0)((img, pts), ("image", "points"), 0)
        seen.add(next(k for k, s in enumerate(_symmetries(img)) if torch.equal(s, out)))
        r2, c2 = divmod(int(out.argmax()), 5)
        assert torch.equal(p, torch.tensor([[c2 + 0.5, r2 + 0.5]]))  # the point stays on the marked pixel
    assert seen == set(range(8))
    wide = torch.zeros(3, 4, 6, dtype=torch.uint8)
    assert all(DihedralItem(p=1.0)((wide,), IMG, 0)[0].shape == (3, 4, 6) for _ in range(20))


# ------------------------------------------------------------------------------------------------ recipes, errors
def test_single_transforms_recipes_round_trip():
    tfms = [
        Flip(0.3, size=(8, 6), pad_mode="zeros"),
        Dihedral(0.7, mode="nearest"),
        Rotate(20.0, 0.4),
        Zoom(0.8, 1.3, 0.6),
        Warp(0.3, 0.2),
        Brightness(0.3, 0.5),
        Contrast(0.1, 0.9),
        Saturation(0.4, 0.2),
        Hue(0.05, 1.0),
        RandomErasing(0.4, 0.02, 0.25, 0.5, 3),
        FlipItem(0.2),
        DihedralItem(0.8),
    ]
    for t in tfms:
        entry = recipe.dump(t)
        assert entry["type"] == type(t).__name__
        back = recipe.load(entry)
        assert type(back) is type(t) and back.to_recipe() == t.to_recipe()
    assert recipe.load(recipe.dump(tfms[0])).size == (8, 6)
    # nothing random runs at inference: only the geometric ones (which may resize) are exported for it
    assert [t.split_idx for t in tfms] == [None] * 5 + [0] * 7


def test_bad_arguments_name_the_argument():
    with pytest.raises(ConfigError, match="`p`"):
        Flip(p=1.5)
    with pytest.raises(ConfigError, match="`p`"):
        Brightness(p=-0.1)
    with pytest.raises(ConfigError, match="max_deg"):
        Rotate(max_deg=-5)
    with pytest.raises(ConfigError, match="min_zoom"):
        Zoom(min_zoom=2.0, max_zoom=1.5)
    with pytest.raises(ConfigError, match="magnitude"):
        Warp(magnitude=0.5)
    with pytest.raises(ConfigError, match="max_lighting"):
        Saturation(max_lighting=1.0)
    with pytest.raises(ConfigError, match="max_hue"):
        Hue(max_hue=-0.1)
    with pytest.raises(ConfigError, match="mode"):
        Dihedral(mode="cubic")
    with pytest.raises(ConfigError, match="`sl`"):
        RandomErasing(sl=0.5, sh=0.2)
    with pytest.raises(ConfigError, match="`sh`"):
        RandomErasing(sh=1.5)
    with pytest.raises(ConfigError, match="min_aspect"):
        RandomErasing(min_aspect=0)
    with pytest.raises(ConfigError, match="max_count"):
        RandomErasing(max_count=0)
    with pytest.raises(ConfigError, match="`p`"):
        DihedralItem(p=2)


def test_affine_warp_checks_its_ranges_before_the_first_batch():
    # a perspective coefficient of 0.5 or more folds images over: refused as Warp refuses it
    with pytest.raises(ConfigError, match=r"`max_warp` to be a value in \[0, 0.5\); received `max_warp=0.8`"):
        AffineWarp(max_warp=0.8)
    with pytest.raises(ConfigError, match="`max_rotate`.*received `max_rotate=-5`"):
        AffineWarp(max_rotate=-5)
    with pytest.raises(ConfigError, match="`max_warp`.*received `max_warp='a'`"):
        AffineWarp(max_warp="a")
    with pytest.raises(ConfigError, match="`min_zoom`.*received `min_zoom='1'`"):
        AffineWarp(min_zoom="1")
    with pytest.raises(ConfigError, match="`max_zoom`"):
        Zoom(min_zoom=1.0, max_zoom="2")
    with pytest.raises(ConfigError, match="`ratio`"):
        AffineWarp(min_scale=0.5, ratio=3)
    # in range it works: the largest allowed warp keeps every corner finite
    xb = torch.rand(4, 1, 6, 6)
    out = AffineWarp(max_warp=0.49, p_affine=1.0)((xb,), IMG, 0)[0]
    assert out.shape == xb.shape and bool(out.isfinite().all())


def test_lighting_checks_p_as_the_single_effects_do():
    with pytest.raises(ConfigError, match=r"`p` to be a probability in \[0, 1\]; received `p=True`"):
        Lighting(p=True)
    with pytest.raises(ConfigError, match="`max_lighting`.*received `max_lighting='0.2'`"):
        Lighting(max_lighting="0.2")
    # the shared base keeps each effect's recipe and its checks
    for cls in (Brightness, Contrast, Saturation):
        assert cls(0.3, p=0.5).to_recipe() == {"max_lighting": 0.3, "p": 0.5}
        with pytest.raises(ConfigError, match="`p`"):
            cls(p=True)
