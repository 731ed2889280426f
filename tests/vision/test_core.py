"""Image I/O, the image and keypoint blocks, and drawing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ember.core import recipe
from ember.core.errors import ConfigError, DataError
from ember.vision.augment import IntToFloat, Resize
from ember.vision.core import (
    ImageBlock,
    PointBlock,
    PointScaler,
    image_to_tensor,
    load_image,
    save_image,
    show_image,
    show_points,
)


def _rgb_array(h: int = 6, w: int = 8) -> np.ndarray:
    g = np.random.default_rng(0)
    return g.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


@pytest.fixture
def files(tmp_path):
    arr = _rgb_array()
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    Image.fromarray(arr).save(tmp_path / "rgb.bmp")  # torchvision cannot read BMP: Pillow's turn
    Image.fromarray(arr).save(tmp_path / "rgb.jpg", quality=95)
    Image.fromarray(arr[..., 0]).save(tmp_path / "grey.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (tmp_path / "notes.png").write_text("hello")
    return tmp_path, arr


def test_load_png_rgb_exact(files):
    path, arr = files
    x = load_image(path / "rgb.png")
    assert x.dtype == torch.uint8 and x.shape == (3, 6, 8)
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1))


def test_load_bmp_falls_back_to_pillow(files):
    path, arr = files
    assert torch.equal(load_image(path / "rgb.bmp"), torch.from_numpy(arr).permute(2, 0, 1))


def test_load_jpeg_close_to_source(tmp_path):
    # a smooth image (JPEG keeps it well, unlike noise)
    ramp = np.linspace(0, 255, 16 * 16, dtype=np.float32).reshape(16, 16)
    arr = np.stack([ramp, ramp.T, np.full_like(ramp, 128)], -1).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "smooth.jpg", quality=95)
    x = load_image(tmp_path / "smooth.jpg").float()
    assert x.shape == (3, 16, 16)
    assert (x - torch.from_numpy(arr).permute(2, 0, 1).float()).abs().mean() < 6


def test_grey_modes(files):
    path, arr = files
    grey = load_image(path / "grey.png", mode="L")
    assert grey.shape == (1, 6, 8) and torch.equal(grey[0], torch.from_numpy(arr[..., 0]))
    as_rgb = load_image(path / "grey.png", mode="RGB")
    assert as_rgb.shape == (3, 6, 8) and torch.equal(as_rgb[0], as_rgb[2])
    # RGB read as grey uses the usual luma weights (as Pillow's "L" conversion)
    luma = load_image(path / "rgb.png", mode="L")[0].float()
    expected = torch.from_numpy(arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    assert (luma - expected).abs().max() <= 1


@pytest.mark.parametrize("name", ["broken.jpg", "notes.png"])
def test_corrupt_file_error_names_the_file(files, name):
    path, _ = files
    with pytest.raises(DataError, match=name):
        load_image(path / name)


def test_missing_file_and_bad_mode(files):
    path, _ = files
    with pytest.raises(DataError, match="no such file"):
        load_image(path / "nope.png")
    with pytest.raises(ConfigError, match="mode"):
        load_image(path / "rgb.png", mode="CMYK")


def test_image_to_tensor_accepts_pil_arrays_tensors_and_bytes(files):
    path, arr = files
    ref = torch.from_numpy(arr).permute(2, 0, 1)
    assert torch.equal(image_to_tensor(Image.fromarray(arr)), ref)
    assert torch.equal(image_to_tensor(arr), ref)
    assert torch.equal(image_to_tensor(ref.float() / 255), ref)
    assert torch.equal(image_to_tensor((path / "rgb.png").read_bytes()), ref)
    assert image_to_tensor(arr[..., 0], mode="L").shape == (1, 6, 8)
    with pytest.raises(DataError, match="image"):
        image_to_tensor(42)


def test_save_image_writes_what_load_image_reads(files, tmp_path):
    path, arr = files
    ref = torch.from_numpy(arr).permute(2, 0, 1)  # uint8 (3, H, W)
    out = save_image(ref, tmp_path / "new" / "deep" / "a.png")  # missing folders are made
    assert torch.equal(load_image(out), ref)
    assert torch.equal(load_image(save_image(ref.float() / 255, tmp_path / "f.png")), ref)  # float in [0, 1]
    grey = save_image(ref[:1], tmp_path / "g.png")
    assert Image.open(grey).mode == "L" and torch.equal(load_image(grey, "L"), ref[:1])
    smooth = np.broadcast_to(np.linspace(0, 255, 16, dtype=np.uint8)[None, :, None], (16, 16, 3)).copy()
    jpg = save_image(Image.fromarray(smooth), tmp_path / "p.jpg", quality=90)
    back = load_image(jpg).permute(1, 2, 0).float()
    assert Image.open(jpg).format == "JPEG" and float((back - torch.from_numpy(smooth).float()).abs().mean()) < 4
    with pytest.raises(DataError, match="image"):
        save_image("not an image", tmp_path / "x.png")
    with pytest.raises(DataError, match=r"x\.nope"):
        save_image(ref, tmp_path / "x.nope")


def test_save_image_keeps_alpha_16_bits_and_refuses_what_it_would_get_wrong(tmp_path):
    rgba = torch.randint(0, 256, (4, 6, 8), dtype=torch.uint8)
    out = save_image(rgba, tmp_path / "a.png")
    assert Image.open(out).mode == "RGBA" and np.array_equal(np.asarray(Image.open(out)), rgba.permute(1, 2, 0).numpy())
    assert Image.open(save_image(rgba, tmp_path / "a.jpg")).mode == "RGB"  # JPEG has no alpha
    deep = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000
    back = np.asarray(Image.open(save_image(deep, tmp_path / "d.png")))
    assert np.array_equal(back.astype(np.int64), deep.astype(np.int64))  # 16 bits kept
    mask = np.zeros((6, 8), dtype=bool)
    mask[2:4] = True
    assert np.asarray(Image.open(save_image(mask, tmp_path / "m.png"))).max() == 255
    small_ints = torch.arange(48).reshape(1, 6, 8)  # int64 within 0..255
    assert np.asarray(Image.open(save_image(small_ints, tmp_path / "i.png"))).max() == 47
    jpeg16 = np.asarray(Image.open(save_image(np.full((6, 8), 40000, dtype=np.uint16), tmp_path / "d.jpg")))
    assert abs(int(jpeg16.mean()) - 40000 // 256) <= 1  # scaled to 8 bits, not clipped
    assert Image.open(save_image(torch.rand(3, 6, 8).bfloat16(), tmp_path / "b.png")).mode == "RGB"
    with pytest.raises(DataError, match=r"\[0, 1\].*normalization"):
        save_image(torch.rand(3, 6, 8) * 255, tmp_path / "f.png")
    with pytest.raises(DataError, match="normalization"):
        save_image(torch.randn(3, 6, 8), tmp_path / "f.png")
    with pytest.raises(DataError, match="16 bits"):
        save_image(np.full((6, 8, 3), 1000, dtype=np.int32), tmp_path / "f.png")
    with pytest.raises(DataError, match="channels"):
        save_image(torch.rand(2, 6, 8), tmp_path / "f.png")


def test_image_block_encode_collate_and_recipe(files):
    path, _ = files
    block = ImageBlock(mode="L")
    assert block.kind == "image" and block.n_channels == 1
    assert any(isinstance(t, IntToFloat) for t in block.batch_tfms)
    x = block.encode(path / "grey.png")
    assert x.shape == (1, 6, 8)
    assert block.collate([x, x]).shape == (2, 1, 6, 8)
    with pytest.raises(DataError, match="Resize"):
        block.collate([x, torch.zeros(1, 5, 5, dtype=torch.uint8)])
    back = recipe.load(recipe.dump(block))
    assert isinstance(back, ImageBlock) and back.mode == "L"
    assert block.n_out == 1  # as a target (image to image): one output channel per image channel


def test_point_block_scales_to_unit_range():
    block = PointBlock()
    block.setup([[[0, 0], [4, 2]]])
    assert block.n_out == 4
    p = block.encode([[0, 0], [8, 6], [4, 3]])
    img = torch.zeros(3, 6, 8, dtype=torch.uint8)
    _, scaled = PointScaler()((img, p), ("image", "points"), 0)
    assert torch.allclose(scaled, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(DataError, match="even"):
        block.encode([1, 2, 3])
    assert recipe.load(recipe.dump(block)).kind == "points"


def test_points_follow_resize_then_scaler():
    # a point at the centre of pixel (x=1, y=2) of an 8x4 image stays at the centre of that region
    img = torch.zeros(3, 4, 8, dtype=torch.uint8)
    pts = torch.tensor([[1.5, 2.5]])
    sample = Resize((8, 16), method="squish")((img, pts), ("image", "points"), 1)
    assert torch.allclose(sample[1], torch.tensor([[3.0, 5.0]]))
    _, scaled = PointScaler()(sample, ("image", "points"), 1)
    assert torch.allclose(scaled, torch.tensor([[3.0 / 8 - 1, 5.0 / 4 - 1]]))


def test_show_image_and_points():
    import matplotlib.pyplot as plt

    x = torch.zeros(3, 4, 8, dtype=torch.uint8)
    x[:, 1, 2] = 255
    ax = show_image(x, title="t")
    shown = ax.images[0].get_array()
    assert shown.shape == (4, 8, 3) and shown[1, 2, 0] == 1.0 and ax.get_title() == "t"
    # (x, y) = centre of pixel (col 2, row 1) in [-1, 1] coordinates
    show_points(torch.tensor([[2.5 / 4 - 1, 1.5 / 2 - 1]]), ax)
    offsets = ax.collections[0].get_offsets()
    assert np.allclose(offsets, [[2.0, 1.0]])
    grey = show_image(torch.full((1, 3, 3), 0.5))
    assert grey.images[0].get_array().shape == (3, 3)
    plt.close("all")


def test_deep_and_odd_formats_load_as_uint8_with_the_asked_channels(tmp_path):
    import warnings

    deep = np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300
    Image.fromarray(deep).save(tmp_path / "deep.png")  # a 16-bit grey PNG
    for mode, n_ch in (("RGB", 3), ("L", 1)):
        x = load_image(tmp_path / "deep.png", mode)
        assert x.dtype == torch.uint8 and x.shape == (n_ch, 6, 8)
        assert torch.equal(x[0], torch.from_numpy((deep >> 8).astype(np.uint8)))  # scaled, not clipped
    assert torch.equal(image_to_tensor(deep, "L")[0], torch.from_numpy((deep >> 8).astype(np.uint8)))
    rgba = np.dstack([_rgb_array(), np.full((6, 8), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.webp", lossless=True)
    Image.fromarray(_rgb_array()).convert("P").save(tmp_path / "p.gif")
    for name in ("a.webp", "p.gif", "deep.png"):
        assert load_image(tmp_path / name, "L").shape == (1, 6, 8)
    # a mixed batch is named by its dtypes, not its shapes
    with pytest.raises(DataError, match="dtypes differ"):
        ImageBlock().collate([torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(3, 4, 4, dtype=torch.uint16)])
    # a read-only array (np.asarray of a PIL image) is copied without torch's warning
    frozen = np.asarray(Image.fromarray(_rgb_array()))
    assert not frozen.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_to_tensor(frozen).shape == (3, 6, 8)


def test_webp_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((4, 8, 3), dtype=np.uint8)
    arr[:, :4] = 255  # left half white
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # turned: displayed rotated 90 degrees clockwise
    im.save(tmp_path / "turned.webp", lossless=True, exif=exif.tobytes())
    im.save(tmp_path / "turned.jpg", quality=100, exif=exif.tobytes())
    w, j = load_image(tmp_path / "turned.webp"), load_image(tmp_path / "turned.jpg")
    assert w.shape == j.shape == (3, 8, 4)
    assert int(w[0, 0, 0]) > 200 and int(w[0, -1, 0]) < 50  # the white half is now on top


def test_show_images_grid_titles_and_file(tmp_path):
    import matplotlib.pyplot as plt

    from ember.vision.core import show_images

    ims = [torch.full((3, 4, 4), v, dtype=torch.uint8) for v in (0, 128, 255)]
    fig = show_images(ims, ncols=2, titles=["a", "b", "c"], fname=tmp_path / "grid.png")
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in shown] == ["a", "b", "c"] and len(fig.axes) == 4
    assert shown[2].images[0].get_array()[0, 0, 0] == 1.0 and (tmp_path / "grid.png").stat().st_size > 0
    with pytest.raises(ConfigError, match="titles"):
        show_images(ims, titles=["a"])
    with pytest.raises(ConfigError, match="no images"):
        show_images([])
    # imshow keywords pass through; an unknown one is named before matplotlib sees it
    fig = show_images(ims[:1], alpha=0.5, interpolation="nearest")
    assert fig.axes[0].images[0].get_alpha() == 0.5
    with pytest.raises(ConfigError, match=r"show_images\(\) got unknown keyword argument\(s\) \['bogus'\]"):
        show_images(ims, bogus=1)
    plt.close("all")
