"""Segmentation edge cases: metrics with targets that are not class ids (an ignore value such as 255 or -100) and
single-logit models, and U-Net forwards running at the same time in several threads."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from ember.core.errors import ConfigError
from ember.metrics import Dice, DiceMulti, JaccardCoeff, as_metric, foreground_acc
from ember.vision.learner import create_body
from ember.vision.models.unet import DynamicUnet


def _perfect_scores_with_ignored_pixels(ignore: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``(2, 3, 6, 7)`` whose argmax is the target wherever the target is a class id, and targets
    ``(2, 6, 7)`` with a few pixels set to `ignore`."""
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 3, 6, 7, generator=g)
    targ = scores.argmax(1)  # (2, 6, 7)
    targ[0, 0, :4] = ignore
    targ[1, 3, 2:] = ignore
    return scores, targ


@pytest.mark.parametrize("ignore", [255, -100])
@pytest.mark.parametrize("metric", [foreground_acc, Dice, JaccardCoeff, DiceMulti], ids=lambda m: m.__name__)
def test_metrics_leave_out_targets_that_are_not_class_ids(metric, ignore):
    # A loss with ignore_index=255 leaves those pixels out; the metrics must too (as DiceMulti and the
    # confusion-matrix metrics do for any target outside [0, C)), so perfect predictions score 1.
    scores, targ = _perfect_scores_with_ignored_pixels(ignore)
    m = as_metric(metric)
    m.update(scores, targ)
    assert m.compute() == pytest.approx(1.0)
    if metric is foreground_acc:
        assert float(foreground_acc(scores, targ)) == pytest.approx(1.0)  # the batch function as well


def test_foreground_acc_reads_a_single_logit_channel():
    # (B, 1, H, W) logits (positive above 0), as Dice reads them: an argmax over one channel would always say 0.
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 1, 5, 6, generator=g)
    targ = (logits[:, 0] > 0).long()  # (3, 5, 6)
    m = as_metric(foreground_acc)
    m.update(logits, targ)
    assert m.compute() == pytest.approx(1.0)
    assert float(foreground_acc(logits, targ)) == pytest.approx(1.0)
    m.reset()
    m.update(-logits, targ)  # every foreground pixel wrong
    assert m.compute() == pytest.approx(0.0)


def test_unet_forwards_in_several_threads_keep_their_own_skips():
    # A model served from several threads (or replicated by nn.DataParallel, whose replicas share the hooks) runs
    # forwards at the same time: each must see its own skip activations.
    torch.manual_seed(0)
    unet = DynamicUnet(create_body("xresnet_tiny", pretrained=False), n_out=2, img_size=32).eval()
    xs = [torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    with torch.no_grad():
        expected = [unet(x) for x in xs]
    problems: list[str] = []
    start = threading.Barrier(len(xs))

    def run(i: int) -> None:
        start.wait()
        for _ in range(6):
            try:
                with torch.no_grad():
                    y = unet(xs[i])
                if not torch.allclose(y, expected[i], atol=1e-5):
                    problems.append(f"thread {i}: wrong output")
            except Exception as e:  # noqa: BLE001 - collected and reported below
                problems.append(f"thread {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not problems, problems[:3]
    assert all(f is None for f in unet._store.feats)  # nothing kept once every forward is done


def test_an_encoder_that_asserts_its_input_size_gets_a_clear_error():
    class Picky(nn.Module):  # like timm's transformers: an assert on the input size
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            assert x.shape[-2:] == (224, 224), f"Input height ({x.shape[-2]}) doesn't match model (224)."
            return self.conv(x)

    with pytest.raises(ConfigError, match="img_size"):
        DynamicUnet(Picky(), 2, (64, 96))
