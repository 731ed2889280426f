"""Object-detection data: boxes and labels through encoding, item and batch transforms, collation, COCO files,
drawing, export, and one fit of a model of the user's own."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.core.errors import ConfigError, DataError
from ember.data.block import DataBlock
from ember.data.items import IndexSplitter
from ember.learner.export import load_learner
from ember.vision.affine import Dihedral, DihedralItem, Flip, FlipItem, Rotate
from ember.vision.augment import Normalize, RandomErasing, imagenet_stats
from ember.vision.bbox import BBoxBlock, BBoxLblBlock, BBoxScaler, get_annotations, show_boxes
from ember.vision.core import ImageBlock, load_image
from ember.vision.learner import VisionLearner
from ember.vision.resize import Resize

KINDS = ("image", "bbox", "bbox_label")
COLOURS = {"bird": (255, 40, 40), "cat": (40, 255, 40), "dog": (40, 40, 255)}


def _scene(h: int, w: int, boxes: list[list[int]], labels: list[str]) -> np.ndarray:
    """A black ``(H, W, 3)`` image with a filled rectangle in its class's colour at each box ``[x0, y0, x1, y1]``."""
    im = np.zeros((h, w, 3), np.uint8)
    for (x0, y0, x1, y1), lab in zip(boxes, labels):
        im[y0:y1, x0:x1] = COLOURS[lab]
    return im


def _extent(image: torch.Tensor) -> list[float]:
    """The box ``[x0, y0, x1, y1]`` in [-1, 1] around the lit pixels of ``(C, H, W)``."""
    h, w = image.shape[-2:]
    rows = torch.nonzero(image.float().amax(0).amax(1) > 0.5).flatten()
    cols = torch.nonzero(image.float().amax(0).amax(0) > 0.5).flatten()
    return [
        float(cols.min()) * 2 / w - 1,
        float(rows.min()) * 2 / h - 1,
        float(cols.max() + 1) * 2 / w - 1,
        float(rows.max() + 1) * 2 / h - 1,
    ]


# Twelve 24x32 images with one or two rectangles each; image 5 has no annotation (COCO allows it).
SCENES = [
    ([[2 + i, 3, 12 + i, 11]], ["bird"]) if i % 3 == 0 else ([[1, 2, 9, 10], [14, 8 + i % 4, 30, 20]], ["cat", "dog"])
    for i in range(12)
]


@pytest.fixture
def coco(tmp_path):
    """PNG files and a COCO JSON file describing their rectangles (bbox as [x, y, width, height])."""
    (tmp_path / "images").mkdir()
    images, annotations = [], []
    categories = [{"id": 7, "name": "dog"}, {"id": 3, "name": "bird"}, {"id": 5, "name": "cat"}]
    ids = {c["name"]: c["id"] for c in categories}
    for i, (boxes, labels) in enumerate(SCENES):
        name = f"im{i:02d}.png"
        Image.fromarray(_scene(24, 32, boxes, labels)).save(tmp_path / "images" / name)
        images.append({"id": 100 + i, "file_name": name, "height": 24, "width": 32})
        if i == 5:
            continue
        for (x0, y0, x1, y1), lab in zip(boxes, labels):
            annotations.append(
                {
                    "id": len(annotations),
                    "image_id": 100 + i,
                    "category_id": ids[lab],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return tmp_path


def _dblock(coco, **kwargs):
    files, targets = get_annotations(coco / "train.json", prefix=coco / "images")
    img2bbox = dict(zip(files, targets))
    return DataBlock(
        blocks=(ImageBlock, BBoxBlock, BBoxLblBlock),
        get_items=lambda _: files,
        get_y=[lambda f: img2bbox[f][0], lambda f: img2bbox[f][1]],
        n_inp=1,
        splitter=IndexSplitter([0, 1, 2, 3]),
        **kwargs,
    )


# ------------------------------------------------------------------------------------------------ encoding
def test_blocks_encode_collate_and_pad():
    boxes, labels = BBoxBlock(), BBoxLblBlock()
    labels.setup([["dog", "cat"], ["bird"], []])
    assert labels.vocab == ["#na#", "bird", "cat", "dog"] and labels.n_out == 4
    b = boxes.encode([[1, 2, 3, 4], [0, 0, 5, 6]])
    assert b.dtype == torch.float32 and b.tolist() == [[1, 2, 3, 4], [0, 0, 5, 6]]
    assert boxes.encode(np.arange(4)).shape == (1, 4) and boxes.encode([]).shape == (0, 4)
    assert labels.encode(["dog", "bird"]).tolist() == [3, 1] and labels.encode([]).dtype == torch.int64
    # bb_pad: every sample padded to the largest count, boxes with zeros and labels with 0
    xs = [torch.tensor([[-0.5, -0.5, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]), torch.zeros(0, 4), torch.ones(1, 4)]
    batch = boxes.collate(xs)
    assert batch.shape == (3, 2, 4) and torch.equal(batch[0], xs[0])
    assert batch[1].abs().sum() == 0 and torch.equal(batch[2], torch.tensor([[1.0] * 4, [0.0] * 4]))
    lb = labels.collate([torch.tensor([3, 1]), torch.zeros(0, dtype=torch.long), torch.tensor([2])])
    assert lb.dtype == torch.int64 and lb.tolist() == [[3, 1], [0, 0], [2, 0]]
    assert labels.decode(lb[2]) == ["cat", "#na#"]
    fixed = BBoxLblBlock(vocab=["b", "a"])
    assert fixed.vocab == ["#na#", "b", "a"] and fixed.encode(["a"]).tolist() == [2]


def test_bad_boxes_and_labels_are_clear_errors():
    with pytest.raises(DataError, match="multiple of four"):
        BBoxBlock().encode([1, 2, 3])
    with pytest.raises(DataError, match=r"x0 <= x1.*\[x, y, width, height\]"):
        BBoxBlock().encode([[10, 10, 4, 20]])
    labels = BBoxLblBlock()
    labels.setup([["cat"]])
    with pytest.raises(DataError, match="'dog' is not in the vocabulary"):
        labels.encode(["cat", "dog"])
    with pytest.raises(ConfigError, match="duplicates"):
        BBoxLblBlock(vocab=["a", "a"])


# ------------------------------------------------------------------------------------------------ item transforms
@pytest.mark.parametrize(
    ("method", "expected"),
    [  # fastai 2.8.12 gives the same boxes for this image and these boxes
        ("squish", [[-2 / 3, -0.75, 0.0, 0.25], [2 / 3, -1.0, 1.0, 1.0]]),
        ("crop", [[-1.0, -0.75, 0.0, 0.25]]),  # the second box falls outside the centre crop: removed
        ("pad", [[-2 / 3, -0.5, 0.0, 1 / 6], [2 / 3, -2 / 3, 1.0, 2 / 3]]),
    ],
)
def test_boxes_follow_resize_then_scaler(method, expected):
    boxes, labels = [[10, 5, 30, 25], [50, 0, 60, 40]], ["bird", "cat"]
    img = torch.from_numpy(_scene(40, 60, boxes[:1], labels[:1])).permute(2, 0, 1)
    sample = (img, BBoxBlock().encode(boxes), torch.tensor([1, 2]))
    for t in (Resize(20, method=method, pad_mode="zeros"), BBoxScaler()):
        sample = t(sample, KINDS, 1)
    x, b, lab = sample
    assert torch.allclose(b, torch.tensor(expected), atol=1e-5)
    assert lab.tolist() == [1, 2][: len(expected)]  # a removed box takes its label with it
    assert np.allclose(_extent(x), expected[0], atol=0.11)  # the box still frames its rectangle


def test_item_flips_move_boxes_exactly_with_the_pixels():
    boxes = [[1, 2, 4, 6]]
    img = torch.from_numpy(_scene(8, 12, boxes, ["dog"])).permute(2, 0, 1)
    x, b, _ = FlipItem(p=1.0)((img, BBoxBlock().encode(boxes), torch.tensor([3])), KINDS, 0)
    assert b.tolist() == [[8.0, 2.0, 11.0, 6.0]]  # x0 = 12 - 4, x1 = 12 - 1: still left before right
    assert torch.equal(x, img.flip(-1))
    boxes = [[1, 2, 4, 7]]
    img = torch.from_numpy(_scene(10, 10, boxes, ["dog"])).permute(2, 0, 1)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        x, b, _ = DihedralItem(p=1.0)((img, BBoxBlock().encode(boxes), torch.tensor([3])), KINDS, 0)
        scaled = BBoxScaler()((x, b, torch.tensor([3])), KINDS, 0)[1]
        assert torch.allclose(scaled[0], torch.tensor(_extent(x)), atol=1e-6)
        seen.add(tuple(b[0].tolist()))
    assert len(seen) == 8  # every symmetry drawn, each box on its pixels


def test_count_mismatch_names_the_item(coco):
    files, targets = get_annotations(coco / "train.json", prefix=coco / "images")
    targets[6] = (targets[6][0], targets[6][1][:1])  # two boxes, one label
    img2bbox = dict(zip(files, targets))
    dblock = DataBlock(
        blocks=(ImageBlock, BBoxBlock, BBoxLblBlock),
        get_items=lambda _: files,
        get_y=[lambda f: img2bbox[f][0], lambda f: img2bbox[f][1]],
        n_inp=1,
        splitter=IndexSplitter([0]),
        item_tfms=Resize(16),
    )
    with pytest.raises(DataError, match=r"im07\.png.*2 box\(es\) but 1 label"):
        dblock.dataloaders(coco, bs=4, device="cpu")


# ------------------------------------------------------------------------------------------------ batch transforms
def test_batch_flip_moves_boxes_exactly():
    img = torch.rand(1, 3, 32, 32)
    box = torch.tensor([[[0.0, -0.5, 0.5, 0.0], [0.9, 0.9, 1.0, 1.0]]])
    _, b, lab = Flip(p=1.0)((img, box, torch.tensor([[1, 2]])), KINDS, 0)
    # fastai's Flip gives the same numbers
    assert torch.equal(b, torch.tensor([[[-0.5, -0.5, 0.0, 0.0], [-1.0, 0.9, -0.9, 1.0]]]))
    assert lab.tolist() == [[1, 2]]


def test_dihedral_boxes_match_the_moved_pixels():
    torch.manual_seed(1)
    boxes = [[2, 1, 5, 6]]
    img = torch.from_numpy(_scene(8, 8, boxes, ["cat"])).permute(2, 0, 1).float().div(255)[None].repeat(64, 1, 1, 1)
    box = ((BBoxBlock().encode(boxes) * 2 / 8) - 1)[None].repeat(64, 1, 1)  # (64, 1, 4) in [-1, 1]
    x, b, _ = Dihedral(p=1.0)((img, box, torch.ones(64, 1, dtype=torch.long)), KINDS, 0)
    for i in range(64):
        assert torch.allclose(b[i, 0], torch.tensor(_extent(x[i])), atol=1e-6)
    assert len({tuple(r.tolist()) for r in b[:, 0]}) == 8


class Rotate30(Rotate):
    """A rotation by exactly 30 degrees (as fastai's ``Rotate(draw=30)``)."""

    def draw_matrices(self, n, in_size):
        t = -math.pi / 6
        mats = torch.eye(3).repeat(n, 1, 1)
        mats[:, 0, 0], mats[:, 0, 1], mats[:, 1, 0], mats[:, 1, 1] = math.cos(t), -math.sin(t), math.sin(t), math.cos(t)
        return mats


def test_rotation_gives_the_enclosing_box_clips_and_zeroes_the_label():
    img = torch.rand(2, 3, 32, 32)
    box = torch.tensor([[[0.0, -0.5, 0.5, 0.0], [0.9, 0.9, 1.0, 1.0]], [[-0.5, -0.5, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 2], [3, 0]])
    _, b, lab = Rotate30()((img, box, labels), KINDS, 0)
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    # the first box's corners turn by 30 degrees (fastai: [0, -0.4330, 0.6830, 0.25]); the corner box leaves the
    # image (fastai keeps it outside, at [0.279, 1.229, 0.416, 1.366]): removed, its label zeroed
    assert torch.allclose(b[0, 0], torch.tensor([0.0, -0.5 * c, 0.5 * c + 0.5 * s, 0.5 * s]), atol=1e-5)
    assert b[0, 1].abs().sum() == 0 and lab[0].tolist() == [1, 0]
    # a centred square turned by 30 degrees: half-size 0.5 (cos + sin), clipped to the image
    half = 0.5 * (c + s)
    assert torch.allclose(b[1, 0], torch.tensor([-half, -half, half, half]), atol=1e-5)
    assert b[1, 1].abs().sum() == 0 and lab[1].tolist() == [3, 0]  # padding stays padding


def test_colour_and_erasing_leave_boxes_alone():
    img = torch.rand(2, 3, 8, 8)
    box = torch.tensor([[[0.0, -0.5, 0.5, 0.0]], [[-1.0, -1.0, 1.0, 1.0]]])
    labels = torch.tensor([[1], [2]])
    for t in (Normalize.from_stats(*imagenet_stats), RandomErasing(p=1.0)):
        _, b, lab = t((img, box, labels), KINDS, 0)
        assert b is box and lab is labels


# ------------------------------------------------------------------------------------------------ COCO files
def test_get_annotations(coco):
    files, targets = get_annotations(coco / "train.json")
    assert len(files) == 11 and files[:2] == ["im00.png", "im01.png"] and "im05.png" not in files
    assert targets[0] == ([[2.0, 3.0, 12.0, 11.0]], ["bird"])
    assert targets[1] == ([[1.0, 2.0, 9.0, 10.0], [14.0, 9.0, 30.0, 20.0]], ["cat", "dog"])
    assert get_annotations(coco / "train.json", prefix="x/")[0][0] == "x/im00.png"
    assert get_annotations(coco / "train.json", prefix=coco)[0][0] == str(coco / "im00.png")


def test_get_annotations_names_what_is_wrong(coco):
    data = json.loads((coco / "train.json").read_text())
    bad = coco / "bad.json"
    bad.write_text(json.dumps({k: v for k, v in data.items() if k != "categories"}))
    with pytest.raises(DataError, match="has no 'categories' key"):
        get_annotations(bad)
    del data["annotations"][2]["bbox"]
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="annotation 2 has no 'bbox' key"):
        get_annotations(bad)
    with pytest.raises(DataError, match="no such file"):
        get_annotations(coco / "missing.json")
    # an id that is not an int or a str (one a dict cannot even hold) is named, not a raw TypeError
    data = json.loads((coco / "train.json").read_text())
    data["annotations"][1]["image_id"] = [1]
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"malformed: annotation 1 has the image_id \[1\]; expected an int or a str"):
        get_annotations(bad)


# ------------------------------------------------------------------------------------------------ the pipeline
def test_dataloaders_batch_layout_and_show_batch(coco):
    dls = _dblock(coco, item_tfms=Resize(16, method="squish")).dataloaders(coco, bs=4, device="cpu")
    assert dls.vocab == ["#na#", "bird", "cat", "dog"] and dls.c == 4 and dls.loss_func is None
    x, b, lab = batch = dls.valid.one_batch()
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert b.shape == (4, 2, 4) and lab.shape == (4, 2) and lab.dtype == torch.int64
    # item 0: one bird at [2, 3, 12, 11] in a 32x24 image, padded with a zero box and label 0
    assert torch.allclose(b[0], torch.tensor([[2 / 16 - 1, 3 / 12 - 1, 12 / 16 - 1, 11 / 12 - 1], [0, 0, 0, 0]]))
    assert lab.tolist() == [[1, 0], [2, 3], [2, 3], [1, 0]]
    fig = dls.show_batch(batch=batch, max_n=4)
    axes = fig.axes[:4]
    assert [len(ax.patches) for ax in axes] == [1, 2, 2, 1]
    assert [sorted(t.get_text() for t in ax.texts) for ax in axes] == [
        ["bird"],
        ["cat", "dog"],
        ["cat", "dog"],
        ["bird"],
    ]
    # the rectangle of item 0 sits on the bird, in pixels of the 16x16 image shown
    rect = axes[0].patches[0]
    assert np.allclose([rect.get_x(), rect.get_y(), rect.get_width()], [1 - 0.5, 2 - 0.5, 5.0], atol=1e-4)
    fig.clf()


def test_show_boxes_skips_padding_and_needs_an_image():
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    show_boxes(torch.tensor([[-1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]), ax, labels=["a", "#na#"], size=(10, 20))
    assert len(ax.patches) == 1 and [t.get_text() for t in ax.texts] == ["a"]
    assert np.allclose([ax.patches[0].get_width(), ax.patches[0].get_height()], [10.0, 5.0])
    with pytest.raises(ConfigError, match="image drawn first"):
        show_boxes(torch.zeros(1, 4), plt.subplots()[1])
    plt.close("all")


def test_box_labels_are_written_inside_the_box_even_at_the_top_edge():
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.imshow(np.zeros((16, 16)), cmap="gray")
    show_boxes(torch.tensor([[-1.0, -1.0, 0.0, 0.0], [0.2, 0.2, 0.8, 0.8]]), ax, labels=["top", "mid"])
    fig.canvas.draw()
    frame = ax.get_window_extent()
    for text, patch in zip(ax.texts, ax.patches):
        extent, box = text.get_window_extent(), patch.get_window_extent()
        # the whole label is on the axes (a label above a box at the top edge would be clipped away) and in its box
        assert frame.contains(extent.x0, extent.y0) and frame.contains(extent.x1, extent.y1), text.get_text()
        assert box.y0 <= extent.y0 and extent.y1 <= box.y1 + 1, text.get_text()
    plt.close(fig)


class OneBox(nn.Module):
    """A toy detector: one box per image, ``[x0, y0, x1, y1]`` in [-1, 1]."""

    def __init__(self, n_in: int = 3) -> None:
        super().__init__()
        self.n_in = n_in
        self.conv = nn.Conv2d(n_in, 4, 3, padding=1)
        self.head = nn.Linear(4, 4)

    def forward(self, x):
        out = torch.tanh(self.head(self.conv(x).mean((2, 3))))  # (B, 4)
        lo, hi = torch.minimum(out[:, :2], out[:, 2:]), torch.maximum(out[:, :2], out[:, 2:])
        return torch.cat([lo, hi], 1)  # (B, 4)


def first_box_l1(pred, boxes, labels):
    """L1 distance to the first box of each image: the batch is (images, boxes (B, N, 4), labels (B, N))."""
    assert boxes.ndim == 3 and labels.shape == boxes.shape[:2]
    return F.l1_loss(pred, boxes[:, 0])


def test_user_model_trains_exports_and_shows_results(coco):
    dls = _dblock(coco, item_tfms=Resize(16), batch_tfms=[Flip(p=0.5)]).dataloaders(coco, bs=4, device="cpu")
    torch.manual_seed(0)
    learn = VisionLearner(dls, OneBox(), loss_func=first_box_l1, path=coco)
    learn.silent = True
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, 1e-2)
    assert len(learn.recorder.losses) == 1 and all(math.isfinite(v) for v in learn.recorder.losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    # show_results: target boxes with labels, then the predicted box
    fig = learn.show_results(max_n=2, shuffle=False)
    assert [len(ax.patches) for ax in fig.axes[:4]] == [1, 1, 2, 1]
    assert [t.get_text() for t in fig.axes[0].texts] == ["bird"] and not fig.axes[1].texts
    fig.clf()
    # export: the blocks, their vocabulary and the box scaler travel; predictions are the same
    loaded = load_learner(learn.export("boxes.ember", verbose=False))
    assert [b.kind for b in loaded.dls.blocks] == ["image", "bbox", "bbox_label"]
    assert loaded.dls.vocab == ["#na#", "bird", "cat", "dog"]
    assert any(isinstance(t, BBoxScaler) for t in loaded.dls.dsets.item_tfms)
    item = str(coco / "images" / "im00.png")
    got, ref = loaded.predict(item)[0], learn.predict(item)[0]
    assert got.shape == (1, 4) and torch.allclose(got, ref, atol=1e-6)
    # the answer is in pixels of the 24x32 image: sent through the item transforms it is the model's own output
    label, dec, _ = learn.predict(item)
    sample = (load_image(item), label.reshape(-1, 4))
    for t in learn._item_tfms():
        sample = t(sample, ("image", "bbox"), 1)
    assert torch.allclose(sample[1].reshape(-1), dec.reshape(-1).clamp(-1, 1), atol=1e-5)
