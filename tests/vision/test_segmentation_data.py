"""Segmentation data: MaskBlock, SegmentationDataLoaders, the shapes_segmentation dataset, masks in transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ember.core import recipe
from ember.core.errors import ConfigError, DataError
from ember.data.block import DataBlock
from ember.data.builtin import shapes_segmentation
from ember.data.items import RandomSplitter, get_image_files
from ember.data.show import show_results
from ember.losses import CrossEntropyLossFlat
from ember.vision.augment import (
    Lighting,
    Normalize,
    RandomResizedCrop,
    Resize,
    aug_transforms,
    imagenet_stats,
    rand_pad,
)
from ember.vision.core import ImageBlock, MaskBlock, load_mask
from ember.vision.data import SegmentationDataLoaders

KW = {"bs": 4, "device": "cpu", "num_workers": 0}
CODES = ["background", "square", "disc", "triangle"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return shapes_segmentation(n_images=12, size=32, path=tmp_path_factory.mktemp("shapes"))


def _label_func(path):
    return lambda p: path / "labels" / f"{p.stem}.png"


def _save_mask(path, ids: np.ndarray, mode: str = "L") -> None:
    im = Image.fromarray(ids.astype(np.uint8))
    if mode == "P":
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    im.save(path)


# ------------------------------------------------------------------------------------------------ MaskBlock
@pytest.mark.parametrize("mode", ["L", "P"])
def test_mask_block_reads_files_and_arrays(tmp_path, mode):
    ids = np.array([[0, 1, 2], [2, 1, 0]])
    _save_mask(tmp_path / "m.png", ids, mode)
    block = MaskBlock(codes=["a", "b", "c"])
    x = block.encode(tmp_path / "m.png")
    assert x.shape == (2, 3) and x.dtype == torch.uint8 and x.tolist() == ids.tolist()
    assert torch.equal(block.encode(str(tmp_path / "m.png")), x)
    assert torch.equal(block.encode(ids), x)  # an int64 array
    assert torch.equal(block.encode(torch.tensor(ids)[None]), x)  # (1, H, W)
    assert torch.equal(block.encode(ids[..., None].astype(np.uint16)), x)  # (H, W, 1)
    assert torch.equal(block.encode(torch.tensor(ids, dtype=torch.float32)), x)  # whole numbers
    assert block.encode(np.eye(2, dtype=bool)).tolist() == [[1, 0], [0, 1]]
    assert load_mask(tmp_path / "m.png").tolist() == ids.tolist()
    # a grey mask saved as RGB is read as ids too
    Image.fromarray(np.repeat(ids[..., None], 3, -1).astype(np.uint8)).save(tmp_path / "rgb.png")
    assert torch.equal(block.encode(tmp_path / "rgb.png"), x)


def test_mask_block_batches_decodes_and_describes():
    block = MaskBlock(codes=("bg", "road"))
    assert block.kind == "mask" and block.vocab == ["bg", "road"] and block.n_out == 2
    loss = block.loss_func
    assert isinstance(loss, CrossEntropyLossFlat) and loss.axis == 1
    xs = [block.encode(np.full((4, 5), i % 2)) for i in range(3)]
    yb = block.collate(xs)
    assert yb.shape == (3, 4, 5) and yb.dtype == torch.int64
    big = MaskBlock(codes=[str(i) for i in range(300)]).encode(np.array([[299, 0]]))
    assert big.dtype == torch.int64  # ids above 255 do not fit a byte
    assert block.collate([xs[0], torch.zeros(4, 5, dtype=torch.int64)]).dtype == torch.int64  # mixed dtypes
    dec = block.decode(yb[1])
    assert dec.shape == (4, 5) and dec.dtype == torch.int64 and int(dec[0, 0]) == 1
    with pytest.raises(DataError, match="Masks of different sizes"):
        block.collate([xs[0], block.encode(np.zeros((3, 5), dtype=np.uint8))])
    again = recipe.load(recipe.dump(block))
    assert isinstance(again, MaskBlock) and again.codes == ["bg", "road"]
    assert repr(block) == "MaskBlock(2 codes)"


def test_mask_block_learns_codes_from_training_masks(tmp_path):
    for i, top in enumerate((2, 4)):
        _save_mask(tmp_path / f"{i}.png", np.array([[0, top]]))
    block = MaskBlock()
    assert block.vocab is None and block.n_out is None
    with pytest.raises(DataError, match="no codes"):
        block.encode(tmp_path / "0.png")
    block.setup([tmp_path / "0.png", tmp_path / "1.png"])
    assert block.codes == ["0", "1", "2", "3", "4"] and block.n_out == 5
    assert recipe.load(recipe.dump(block)).codes == block.codes  # the learned codes are exported


def test_mask_block_errors(tmp_path):
    _save_mask(tmp_path / "seven.png", np.array([[0, 7]]))
    block = MaskBlock(codes=CODES)
    with pytest.raises(DataError) as err:
        block.encode(tmp_path / "seven.png")
    assert "seven.png" in str(err.value) and "class id 7" in str(err.value) and "only 4 codes" in str(err.value)
    with pytest.raises(DataError, match="class id 4"):
        block.encode(np.array([[4]]))
    with pytest.raises(DataError, match="negative"):
        block.encode(np.array([[-1, 0]]))
    with pytest.raises(DataError, match="fractional"):
        block.encode(np.array([[0.5]]))
    with pytest.raises(DataError, match=r"\(H, W\)"):
        block.encode(np.zeros((2, 3, 4)))
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 0]]], dtype=np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(DataError, match="colour.png.*colour image"):
        block.encode(tmp_path / "colour.png")
    with pytest.raises(DataError, match="no such file"):
        block.encode(tmp_path / "missing.png")
    with pytest.raises(DataError, match="No mask file"):
        block.validate(tmp_path / "missing.png")
    block.validate(tmp_path / "seven.png")  # exists: the ids are checked on encoding
    with pytest.raises(ConfigError, match="codes.txt"):
        MaskBlock(codes="background road")
    with pytest.raises(ConfigError, match="duplicates"):
        MaskBlock(codes=["a", "a"])
    with pytest.raises(ConfigError, match="at least one"):
        MaskBlock(codes=[])


# ------------------------------------------------------------------------------------------------ the dataset
def test_shapes_segmentation_files_are_deterministic_and_cached(shapes, tmp_path):
    assert (shapes / "codes.txt").read_text().split() == CODES
    images = sorted(p.name for p in (shapes / "images").glob("*.png"))
    assert images == [f"{i:04d}.png" for i in range(12)]
    assert sorted(p.name for p in (shapes / "labels").glob("*.png")) == images
    with Image.open(shapes / "images" / "0003.png") as im:
        assert im.mode == "RGB" and im.size == (32, 32)
        pixels = np.asarray(im).astype(float)
    with Image.open(shapes / "labels" / "0003.png") as im:
        assert im.mode == "P" and im.size == (32, 32)
    ids = np.stack([load_mask(shapes / "labels" / n).numpy() for n in images])
    assert set(np.unique(ids)) == {0, 1, 2, 3} and 0.03 < (ids > 0).mean() < 0.5
    mask = ids[3]
    # the shapes stand out from the background
    assert np.abs(pixels[mask > 0].mean(0) - pixels[mask == 0].mean(0)).sum() > 50
    # the same arguments give the same files; a second call rewrites nothing
    other = shapes_segmentation(n_images=12, size=32, path=tmp_path / "again")
    for sub in ("images", "labels"):
        assert (other / sub / "0007.png").read_bytes() == (shapes / sub / "0007.png").read_bytes()
    stamp = (other / "labels" / "0000.png").stat().st_mtime_ns
    assert shapes_segmentation(n_images=12, size=32, path=other) == other
    assert (other / "labels" / "0000.png").stat().st_mtime_ns == stamp
    # other arguments in the same folder: written again
    shapes_segmentation(n_images=3, size=16, path=other)
    assert len(list((other / "images").glob("*.png"))) == 3
    with pytest.raises(ConfigError, match="size"):
        shapes_segmentation(size=4)


def test_shapes_segmentation_default_folder_under_ember_home(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_HOME", str(tmp_path))
    path = shapes_segmentation(n_images=2, size=16, seed=3)
    assert path == tmp_path / "data" / "shapes_segmentation_2x16_seed3"
    assert len(list((path / "labels").glob("*.png"))) == 2


# ------------------------------------------------------------------------------------------------ loaders
def test_segmentation_dataloaders_on_shapes(shapes):
    fnames = get_image_files(shapes / "images")
    dls = SegmentationDataLoaders.from_label_func(
        shapes, fnames, _label_func(shapes), valid_pct=0.25, seed=0, codes=CODES, **KW
    )
    assert dls.vocab == CODES and dls.c == 4
    assert isinstance(dls.loss_func, CrossEntropyLossFlat) and dls.loss_func.axis == 1
    assert len(dls.train_ds) == 9 and len(dls.valid_ds) == 3
    xb, yb = dls.train.one_batch()
    assert xb.shape == (4, 3, 32, 32) and xb.dtype == torch.float32
    assert yb.shape == (4, 32, 32) and yb.dtype == torch.int64 and int(yb.max()) < 4
    assert "MaskBlock" in str(recipe.load(dls.to_recipe()["blocks"][1]))
    # without codes, the classes are numbered from the training masks
    dls = SegmentationDataLoaders.from_label_func(shapes, fnames, _label_func(shapes), seed=0, **KW)
    assert dls.vocab == ["0", "1", "2", "3"] and dls.c == 4


def test_segmentation_dataloaders_on_tiny_files(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "lbl").mkdir()
    for i in range(6):
        ids = np.zeros((10, 12), dtype=np.uint8)
        ids[2:6, i : i + 4] = 1 + i % 2
        Image.fromarray(np.stack([ids * 100] * 3, -1).astype(np.uint8)).save(tmp_path / "img" / f"im{i}.jpg")
        _save_mask(tmp_path / "lbl" / f"im{i}_P.png", ids, "L" if i % 2 else "P")
    fnames = [f"img/im{i}.jpg" for i in range(6)]  # relative to the path
    dls = SegmentationDataLoaders.from_label_func(
        tmp_path,
        fnames,
        lambda p: p.parent.parent / "lbl" / f"{p.stem}_P.png",
        valid_pct=0.5,
        seed=1,
        codes=["void", "a", "b"],
        item_tfms=Resize(8),
        img_mode="L",
        **KW,
    )
    assert dls.c == 3 and dls.vocab == ["void", "a", "b"]
    xb, yb = dls.valid.one_batch()
    assert xb.shape == (3, 1, 8, 8) and yb.shape == (3, 8, 8) and yb.dtype == torch.int64
    assert set(yb.unique().tolist()) <= {0, 1, 2}
    with pytest.raises(DataError, match="No mask file .*_Q.png"):
        SegmentationDataLoaders.from_label_func(
            tmp_path, fnames, lambda p: p.parent.parent / "lbl" / f"{p.stem}_Q.png", codes=["a", "b", "c"], **KW
        )
    with pytest.raises(DataError, match="class id 2"):
        SegmentationDataLoaders.from_label_func(
            tmp_path,
            fnames,
            lambda p: p.parent.parent / "lbl" / f"{p.stem}_P.png",
            codes=["a", "b"],
            item_tfms=Resize(8),
            **KW,
        ).train.one_batch()


# ------------------------------------------------------------------------------------------------ transforms
def _bright_square_items(n: int = 12, h: int = 40, w: int = 48):
    """Images with a bright rectangle on a dark ground; the mask is the image's brightness: 1 on the rectangle."""
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        img = torch.full((3, h, w), 30, dtype=torch.uint8)
        t, left = int(torch.randint(2, h - 16, (), generator=g)), int(torch.randint(2, w - 14, (), generator=g))
        img[:, t : t + 14, left : left + 12] = 220
        items.append((img, (img[0] > 128).to(torch.uint8)))
    return items


def _aligned(xb: torch.Tensor, yb: torch.Tensor, thresh: float = 0.5) -> None:
    """Bright pixels and class-1 pixels coincide, except next to the rectangle's edges (and the border)."""
    bright = xb[:, 0] > thresh
    ones = yb == 1
    assert ones.any()
    m = ones.float()[:, None]
    near_edge = (torch.nn.functional.max_pool2d(m, 3, 1, 1) != -torch.nn.functional.max_pool2d(-m, 3, 1, 1))[:, 0]
    near_edge[:, [0, -1]] = True
    near_edge[:, :, [0, -1]] = True
    assert not ((bright != ones) & ~near_edge).any()
    assert (bright != ones).float().mean() < 0.03


@pytest.mark.parametrize(
    "item_tfms",
    [None, Resize(32), Resize((24, 40), method="squish"), RandomResizedCrop(32, min_scale=0.35), rand_pad(4, 36)],
    ids=["none", "resize", "squish", "random-resized-crop", "rand-pad"],
)
def test_augmentation_keeps_image_and_mask_aligned(item_tfms):
    torch.manual_seed(0)
    dblock = DataBlock(
        (ImageBlock, MaskBlock(["bg", "box"])),
        get_x=lambda it: it[0],
        get_y=lambda it: it[1],
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=item_tfms,
        batch_tfms=aug_transforms(max_lighting=0.0, p_affine=1.0, max_rotate=30.0, max_zoom=1.5, max_warp=0.3),
    )
    dls = dblock.dataloaders(_bright_square_items(), bs=9, device="cpu", num_workers=0)
    for _ in range(2):
        xb, yb = dls.train.one_batch()
        assert yb.dtype == torch.int64 and set(yb.unique().tolist()) <= {0, 1}
        _aligned(xb, yb)
    _aligned(*dls.valid.one_batch())


def test_masks_keep_their_ids_and_skip_lighting_and_normalize():
    # ids 0 and 2 only: an interpolating resize or warp would make 1s along the edges
    items = [(img, mask * 2) for img, mask in _bright_square_items(8)]
    norm = Normalize.from_stats(*imagenet_stats)
    dblock = DataBlock(
        (ImageBlock, MaskBlock(["bg", "unused", "box"])),
        get_x=lambda it: it[0],
        get_y=lambda it: it[1],
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=RandomResizedCrop(30, min_scale=0.5),
        batch_tfms=[*aug_transforms(max_lighting=0.6, p_lighting=1.0, p_affine=1.0, size=20), norm],
    )
    dls = dblock.dataloaders(items, bs=6, device="cpu", num_workers=0)
    assert any(isinstance(t, Lighting) for t in dls.train.batch_tfms)
    torch.manual_seed(1)
    xb, yb = dls.train.one_batch()
    assert xb.shape == (6, 3, 20, 20) and yb.shape == (6, 20, 20)
    assert set(yb.unique().tolist()) == {0, 2} and yb.dtype == torch.int64
    assert float(xb.min()) < -0.5  # the images were normalized …
    shown = dls.train.decode((xb, yb))
    assert torch.equal(shown[1], yb)  # … and decoding leaves the masks as they are
    # lighting and normalization never look at a mask
    assert Lighting(p=1.0)((yb,), ("mask",), 0)[0] is yb
    assert norm((yb,), ("mask",), 0)[0] is yb


def test_mask_of_another_size_than_its_image_is_refused():
    img, mask = torch.zeros(3, 10, 12, dtype=torch.uint8), torch.zeros(5, 6, dtype=torch.uint8)
    with pytest.raises(DataError, match="image 10x12, mask 5x6"):
        Resize(8)((img, mask), ("image", "mask"), 0)


# ------------------------------------------------------------------------------------------------ drawing
def test_show_batch_and_results_draw_masks(shapes, tmp_path):
    dls = SegmentationDataLoaders.from_label_func(
        shapes, get_image_files(shapes / "images"), _label_func(shapes), codes=CODES, seed=0, **KW
    )
    fig = dls.show_batch(max_n=4, fname=tmp_path / "batch.png")
    ax = fig.axes[0]
    assert len(ax.images) == 2  # the image, then the mask over it
    assert ax.images[1].get_alpha() == 0.5 and ax.images[1].get_array().shape == (32, 32)
    assert (tmp_path / "batch.png").is_file()
    samples = dls.train.decode_batch(dls.train.one_batch(), max_n=2)
    inputs = [(s[0],) for s in samples]
    targets = [(s[1],) for s in samples]
    fig = show_results(inputs, targets, [(t[0].flip(-1),) for t in targets], dls.blocks, fname=tmp_path / "res.png")
    assert len(fig.axes[0].images) == 2 and fig.axes[1].get_title() == "prediction"


def test_image_and_mask_of_different_sizes_are_reported_at_once(tmp_path):
    for i in range(4):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"im{i}.png")
        _save_mask(tmp_path / f"m{i}.png", np.zeros((6, 8), np.uint8), "L")
    db = DataBlock(
        blocks=(ImageBlock, MaskBlock(["a", "b"])),
        get_items=lambda p: sorted(p.glob("im*.png")),
        get_y=lambda p: p.with_name(p.name.replace("im", "m")),
        splitter=RandomSplitter(0.5, seed=0),
    )
    with pytest.raises(DataError, match=r"image 8x8, mask 6x8"):
        db.dataloaders(tmp_path, bs=2, device="cpu")
