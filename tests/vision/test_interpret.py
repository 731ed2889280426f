"""ClassificationInterpretation against a model whose every prediction is known in advance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ember.data.block import CategoryBlock, DataBlock
from ember.data.items import GrandparentSplitter, get_image_files, parent_label
from ember.vision.core import ImageBlock
from ember.vision.interpret import ClassificationInterpretation
from ember.vision.learner import VisionLearner


class Brightness(nn.Module):
    """Predicts "light" (class 1) exactly when the image's mean is above 0.5; confident when far from it."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean((1, 2, 3)) - 0.5  # (B,)
        return torch.stack([-m, m], 1) * self.scale  # (B, 2)


@pytest.fixture
def learn(tmp_path):
    # valid/dark holds 3 dark images and 1 light one; valid/light holds 2 light and 1 dark: known mistakes
    layout = {
        ("train", "dark"): [30] * 4,
        ("train", "light"): [220] * 4,
        ("valid", "dark"): [30, 40, 50, 200],
        ("valid", "light"): [230, 240, 20],
    }
    for (split, label), values in layout.items():
        (tmp_path / split / label).mkdir(parents=True)
        for i, v in enumerate(values):
            Image.fromarray(np.full((8, 8), v, dtype=np.uint8)).save(tmp_path / split / label / f"{i}.png")
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
    ).dataloaders(tmp_path, bs=3, device="cpu", num_workers=0)
    learner = VisionLearner(dls, Brightness(), path=tmp_path)
    learner.silent = True
    return learner


def test_confusion_matrix_matches_hand_count(learn):
    interp = ClassificationInterpretation.from_learner(learn)
    assert interp.vocab == ["dark", "light"]
    # rows: actual dark, light; columns: predicted dark, light
    assert interp.confusion_matrix().tolist() == [[3, 1], [1, 2]]
    assert interp.losses.shape == (7,)
    assert sorted(interp.most_confused()) == [("dark", "light", 1), ("light", "dark", 1)]
    assert interp.most_confused(min_val=2) == []


def test_top_losses_are_the_mistakes(learn):
    interp = ClassificationInterpretation.from_learner(learn)
    losses, idxs = interp.top_losses(2)
    wrong = torch.nonzero(interp.decoded != interp.targs).flatten()
    assert sorted(idxs.tolist()) == sorted(wrong.tolist())
    assert float(losses.min()) > float(interp.losses[interp.decoded == interp.targs].max())


def test_plots_and_report(learn, tmp_path):
    interp = ClassificationInterpretation.from_learner(learn)
    fig = interp.plot_confusion_matrix(fname=tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["1", "1", "2", "3"]
    norm = interp.plot_confusion_matrix(normalize=True)
    assert "0.75" in [t.get_text() for t in norm.axes[0].texts]
    top = interp.plot_top_losses(k=2, fname=tmp_path / "top.png")
    titles = [ax.get_title() for ax in top.axes if ax.get_title()]
    assert sorted(t.split("\n")[0] for t in titles) == ["dark / light", "light / dark"]
    assert (tmp_path / "top.png").exists()
    report = interp.classification_report()
    assert "accuracy" in report and "0.714" in report  # 5 of 7 right
    import matplotlib.pyplot as plt

    plt.close("all")


def test_multi_label_learner_is_refused_with_its_target_kind(tmp_path):
    from ember.core.errors import ConfigError
    from ember.data.block import MultiCategoryBlock
    from ember.data.items import IndexSplitter

    for i, v in enumerate([30, 220, 40, 210]):
        Image.fromarray(np.full((8, 8), v, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    tags = {"0": ["dark"], "1": ["light", "big"], "2": ["dark", "big"], "3": ["light"]}
    dls = DataBlock(
        blocks=(ImageBlock(mode="L"), MultiCategoryBlock),
        get_items=get_image_files,
        splitter=IndexSplitter([2, 3]),
        get_y=lambda p: tags[p.stem],
    ).dataloaders(tmp_path, bs=2, device="cpu", num_workers=0)
    learner = VisionLearner(dls, nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), path=tmp_path)
    with pytest.raises(ConfigError, match=r"multi-label.*'multicategory'"):
        ClassificationInterpretation.from_learner(learner)
