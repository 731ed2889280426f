"""Segmentation end to end: the built-in shapes data, a U-Net, metrics, export and loading in a new process."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import ember
from ember.core.errors import ConfigError
from ember.vision import (
    Dice,
    SegmentationDataLoaders,
    foreground_acc,
    get_image_files,
    load_mask,
    shapes_segmentation,
    unet_learner,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A U-Net trained briefly to find the shapes (one class for all three) on 32-pixel images.

    Seeded first: the loaders' shuffling draws its seed from torch's generator when they are built, whose state
    depends on whatever ran before in the process (and torch seeds it differently in every process)."""
    ember.set_seed(0)
    path = shapes_segmentation(n_images=48, size=32, path=tmp_path_factory.mktemp("shapes"))
    codes = ["background", "shape"]

    def shape_or_not(p):
        return (torch.as_tensor(load_mask(path / "labels" / f"{p.stem}.png")) > 0).long()  # (H, W)

    dls = SegmentationDataLoaders.from_label_func(
        path, get_image_files(path / "images"), shape_or_not, codes=codes, bs=4, seed=0, device="cpu"
    )
    torch.manual_seed(0)
    learn = unet_learner(
        dls, "xresnet_tiny", pretrained=False, metrics=[foreground_acc, Dice()], path=tmp_path_factory.mktemp("m")
    )
    learn.silent = True
    learn.fit_one_cycle(16, 2e-2)  # foreground accuracy about 0.65-0.73 over seeds (1e-2: 0.55-0.72)
    return path, codes, learn


def test_unet_learns_the_shapes(trained):
    path, codes, learn = trained
    loss, fg_acc, dice = learn.validate()
    # About 12% of the pixels are shapes: saying "background" everywhere scores 0 on both metrics.
    assert fg_acc > 0.5 and dice > 0.5, (fg_acc, dice)
    assert learn.dls.vocab == codes


def test_predict_gives_a_mask_and_tta_refuses_masks(trained):
    path, _, learn = trained
    mask, _, probs = learn.predict(path / "images" / "0000.png")
    assert mask.shape == (32, 32) and mask.dtype == torch.int64 and probs.shape == (2, 32, 32)
    assert torch.allclose(probs.sum(0), torch.ones(32, 32), atol=1e-5)
    with pytest.raises(ConfigError, match="masks"):
        learn.tta()


def test_interpretation_of_masks_counts_pixels_and_ranks_images(trained):
    from ember.vision.interpret import ClassificationInterpretation

    _, _, learn = trained
    interp = ClassificationInterpretation.from_learner(learn)
    n = len(learn.dls.valid_ds)
    assert interp.losses.shape == (n,)  # one loss per image
    assert int(interp.confusion_matrix().sum()) == n * 32 * 32  # pixels
    assert interp.top_losses(2)[1].max() < n
    with pytest.raises(ConfigError, match="show_results"):
        interp.plot_top_losses(2)


def test_export_loads_in_a_new_process(trained, tmp_path):
    path, _, learn = trained
    file = learn.export(tmp_path / "seg.ember", verbose=False)
    image = path / "images" / "0001.png"
    expected = learn.predict(image)[0]
    script = (
        "import sys, torch, ember\n"
        "learn = ember.load_learner(sys.argv[1])\n"
        "mask = learn.predict(sys.argv[2])[0]\n"
        "torch.save(mask, sys.argv[3])\n"
        "print(learn.dls.vocab)\n"
    )
    out = tmp_path / "mask.pt"
    run = subprocess.run(
        [sys.executable, "-c", script, str(file), str(image), str(out)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "shape" in run.stdout
    assert torch.equal(torch.load(out), expected)
    assert torch.equal(ember.load_learner(file).predict(image)[0], expected)
