"""SegmentationInterpretation against a model whose every pixel's prediction is known in advance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.core.errors import ConfigError
from ember.data import DataLoaders
from ember.data.block import CategoryBlock, DataBlock
from ember.data.items import FuncSplitter, get_image_files, parent_label
from ember.learner.learner import Learner
from ember.losses import CrossEntropyLossFlat
from ember.vision.affine import Dihedral, FlipItem
from ember.vision.core import ImageBlock, MaskBlock
from ember.vision.interpret import ClassificationInterpretation, SegmentationInterpretation
from ember.vision.learner import VisionLearner

CODES = ["background", "mid", "bright"]

# Grey levels 0, 1, 2 (pixels 0, 128, 255); the model predicts a pixel's level, the targets differ in places.
LEVELS = {
    "v0": [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0]],
    "v1": [[2, 2, 0, 0]] * 4,
    "v2": [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]],
    "t0": [[0, 1, 2, 0]] * 4,
}
TARGETS = {
    "v0": LEVELS["v0"],  # every pixel right
    "v1": [[2, 2, 2, 0]] * 4,  # 4 pixels of class 2 predicted 0
    "v2": [[1, 1, 1, 1], [2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 1]],  # 4 of class 2 predicted 1, 1 of 1 predicted 0
    "t0": LEVELS["t0"],
}


class NearestLevel(nn.Module):
    """Scores each pixel's three classes by the distance of its brightness to 0, 0.5 and 1 (the closest wins)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))
        self.register_buffer("centers", torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x[:, :1] - self.centers).abs() * self.scale  # (B, 1, H, W) against (1, 3, 1, 1) -> (B, 3, H, W)


def level_image(name: str) -> np.ndarray:
    return (np.array(LEVELS[name], dtype=np.float32) * 127.5).round().astype(np.uint8)  # (4, 4)


@pytest.fixture(scope="module")
def learn(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    for name in LEVELS:
        Image.fromarray(level_image(name)).save(root / f"{name}.png")
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), MaskBlock(CODES)),
        get_items=get_image_files,
        get_y=lambda p: np.array(TARGETS[p.stem], dtype=np.uint8),
        splitter=FuncSplitter(lambda p: p.stem.startswith("v")),
    ).dataloaders(root, bs=2, device="cpu", num_workers=0)
    learner = VisionLearner(dls, NearestLevel(), path=root)
    learner.silent = True
    return learner


def test_losses_are_per_image_and_rank_the_worst(learn):
    interp = SegmentationInterpretation.from_learner(learn, ds_idx=1)
    names = [p.stem for p in learn.dls.valid_ds.items]
    assert sorted(names) == ["v0", "v1", "v2"]
    # reference: plain torch cross-entropy of each image's output, averaged over its 16 pixels
    x = torch.stack([torch.as_tensor(level_image(n)) for n in names])[:, None].float() / 255  # (3, 1, 4, 4)
    y = torch.tensor([TARGETS[n] for n in names])  # (3, 4, 4)
    with torch.no_grad():
        ref = F.cross_entropy(learn.model(x), y, reduction="none").mean((1, 2))  # (3,)
    assert interp.losses.shape == (3,)
    assert torch.allclose(interp.losses, ref, atol=1e-5)
    losses, idxs = interp.top_losses(2)
    assert [names[i] for i in idxs.tolist()] == ["v1", "v2"]  # v1's 4 wrong pixels are further off than v2's 5
    assert interp.preds is None and interp.decoded.shape == interp.targs.shape == (3, 4, 4)
    assert interp.decoded[names.index("v1")].tolist() == LEVELS["v1"]
    acc = dict(zip(names, interp.image_accuracy().tolist()))
    assert acc == {"v0": 1.0, "v1": 12 / 16, "v2": 11 / 16}


def test_confusion_matrix_and_iou_per_class(learn):
    interp = SegmentationInterpretation.from_learner(learn)
    assert interp.vocab == CODES and interp.n_classes == 3
    # rows: actual, columns: predicted; the same matrix as sklearn's confusion_matrix on the 48 pixels
    assert interp.confusion_matrix().tolist() == [[19, 0, 0], [1, 8, 0], [4, 4, 12]]
    # sklearn's jaccard_score(average=None) on those pixels: 0.7917, 0.6154, 0.6 (macro 0.6690)
    assert torch.allclose(interp.per_class_iou(), torch.tensor([19 / 24, 8 / 13, 12 / 20], dtype=torch.float64))
    assert interp.mean_iou() == pytest.approx(0.669017094017094)
    table = interp.iou_table()
    assert table["class"].tolist() == CODES
    assert table["target_pixels"].tolist() == [19, 9, 20] and table["predicted_pixels"].tolist() == [24, 12, 12]
    assert table["dice"].tolist() == pytest.approx([0.8837209302325582, 0.7619047619047619, 0.75])  # sklearn's F1
    assert interp.most_confused() == [("bright", "background", 4), ("bright", "mid", 4), ("mid", "background", 1)]
    assert interp.confusion_matrix().sum() == 48  # most_confused did not change the kept matrix


def test_ignored_pixels_are_left_out_of_the_counts(learn):
    interp = SegmentationInterpretation.from_learner(learn)
    v1 = [p.stem for p in learn.dls.valid_ds.items].index("v1")
    interp.targs[v1, 0, 2] = -1  # a wrong pixel's target made an ignore index, as _GatherMasks stores one
    interp._cm = None
    assert interp.confusion_matrix().tolist() == [[19, 0, 0], [1, 8, 0], [3, 4, 12]]
    assert math.isclose(float(interp.image_accuracy()[v1]), 12 / 15)


def test_plot_top_losses_draws_image_target_and_prediction(learn, tmp_path):
    interp = SegmentationInterpretation.from_learner(learn)
    fig = interp.plot_top_losses(2, fname=tmp_path / "worst.png")
    assert (tmp_path / "worst.png").stat().st_size > 0
    assert len(fig.axes) == 6  # two rows of three panels
    titles = [ax.get_title() for ax in fig.axes]
    worst = int(interp.top_losses(1)[1])
    assert titles[0] == f"item {worst}: loss {float(interp.losses[worst]):.3f}"
    assert titles[1] == "target" and titles[2] == "prediction: 75% of pixels right"  # 12 of 16
    assert [len(ax.images) for ax in fig.axes[:3]] == [1, 2, 2]  # the masks over the image
    target_drawn = fig.axes[1].images[1].get_array()
    assert np.array_equal(np.asarray(target_drawn), np.array(TARGETS["v1"]))
    with pytest.raises(ConfigError, match="k"):
        interp.plot_top_losses(0)


def test_classification_interpretation_points_to_it_and_bad_learners_are_refused(learn, tmp_path):
    with pytest.raises(ConfigError, match="SegmentationInterpretation"):
        ClassificationInterpretation.from_learner(learn).plot_top_losses(2)
    with pytest.raises(ConfigError, match="ds_idx"):
        SegmentationInterpretation.from_learner(learn, ds_idx=5)
    (tmp_path / "a").mkdir()
    for i in range(2):
        Image.fromarray(level_image("v0")).save(tmp_path / "a" / f"{i}.png")
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        get_y=parent_label,
        splitter=FuncSplitter(lambda p: p.stem == "1"),
    ).dataloaders(tmp_path, bs=1, device="cpu", num_workers=0)
    with pytest.raises(ConfigError, match="ClassificationInterpretation"):
        SegmentationInterpretation.from_learner(VisionLearner(dls, nn.Sequential(nn.Flatten(), nn.Linear(16, 1))))
    # loaders that do not say what their target is: the model's output shape tells
    plain = DataLoaders.from_tensors(
        (torch.randn(4, 3), torch.zeros(4).long()), (torch.randn(4, 3), torch.zeros(4).long())
    )
    classifier = Learner(plain, nn.Linear(3, 2), loss_func=nn.CrossEntropyLoss())
    with pytest.raises(ConfigError, match=r"\(B, C, H, W\); received `output shape=\(4, 2\)`"):
        SegmentationInterpretation.from_learner(classifier)


def test_a_training_loader_is_read_without_augmentation_so_pictures_match_scores(tmp_path):
    rng = np.random.default_rng(0)
    levels = {f"t{i}": rng.integers(0, 3, (4, 4)) for i in range(4)} | {"v0": rng.integers(0, 3, (4, 4))}
    for name, lv in levels.items():
        Image.fromarray((lv * 127.5).round().astype(np.uint8)).save(tmp_path / f"{name}.png")
    targets = {name: np.where(np.arange(16).reshape(4, 4) % 5 == 0, 2, lv) for name, lv in levels.items()}
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), MaskBlock(CODES)),
        get_items=get_image_files,
        get_y=lambda p: targets[p.stem].astype(np.uint8),
        splitter=FuncSplitter(lambda p: p.stem.startswith("v")),
        item_tfms=[FlipItem(0.5)],
        batch_tfms=[Dihedral(p=1.0)],  # every training image flipped or turned at random, its mask with it
    ).dataloaders(tmp_path, bs=2, device="cpu", num_workers=0)
    learn = VisionLearner(dls, NearestLevel(), path=tmp_path)
    learn.silent = True
    torch.manual_seed(0)
    interp = SegmentationInterpretation.from_learner(learn, ds_idx=0)
    names = [p.stem for p in dls.train_ds.items]
    # scored on the items as they are: the masks, the predictions and the losses of the plain images
    assert interp.targs.tolist() == [targets[n].tolist() for n in names]
    assert interp.decoded.tolist() == [levels[n].tolist() for n in names]
    x = torch.stack([torch.as_tensor((levels[n] * 127.5).round()) for n in names])[:, None].float() / 255
    with torch.no_grad():
        ref = F.cross_entropy(learn.model(x), torch.tensor(np.stack([targets[n] for n in names])), reduction="none")
    assert torch.allclose(interp.losses, ref.mean((1, 2)), atol=1e-5)
    # what plot_top_losses fetches again is what was scored
    for k, sample in enumerate(interp._inputs_at(list(range(4)))):
        assert torch.equal(sample[1].long(), interp.targs[k].long())
    assert dls.train.split == 0  # the training loader itself still augments


def test_ignored_pixels_do_not_dilute_an_image_loss():
    lv = torch.tensor([[0, 1, 2, 0]] * 4)
    wrong = (lv + 1) % 3  # every pixel's target is another class than the one predicted
    mostly_ignored = torch.full((4, 4), -100)
    mostly_ignored[0] = wrong[0]  # 4 labelled pixels, all wrong; 12 ignored
    x = (lv * 0.5).float()[None, None].expand(2, 1, 4, 4)  # (2, 1, 4, 4): grey levels 0, 0.5, 1
    y = torch.stack([wrong, mostly_ignored])  # (2, 4, 4)
    plain = DataLoaders.from_tensors((x, y), (x, y), bs=2)
    learn = Learner(plain, NearestLevel(), loss_func=CrossEntropyLossFlat(axis=1, ignore_index=-100))
    learn.silent = True
    interp = SegmentationInterpretation.from_learner(learn)
    with torch.no_grad():
        per_pixel = F.cross_entropy(learn.model(x[:1]), wrong[None], reduction="none")[0]  # (4, 4)
    # the mean over the labelled pixels only: about 5.02 for both, where counting the ignored ones as 0 gave 1.26
    assert interp.losses.tolist() == pytest.approx([float(per_pixel.mean()), float(per_pixel[0].mean())], abs=1e-5)
    assert float(interp.losses[1]) > 0.9 * float(interp.losses[0])
    assert interp.image_accuracy().tolist() == [0.0, 0.0]
