"""The GAN losses and metric: a loss wrapper and an accuracy for patch critics, and the Wasserstein losses.

A patch critic (:func:`~ember.vision.gan_models.gan_critic`) gives a score per region of an image against one
label per image: :class:`AdaptiveLoss` and :func:`accuracy_thresh_expand` spread that label over the regions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ember.core.errors import ConfigError, DataError, expected

__all__ = ["AdaptiveLoss", "accuracy_thresh_expand", "wgan_critic_loss", "wgan_generator_loss"]


def _expand(target: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """One label per image ``(B,)`` spread over every score of that image (``like``: ``(B, ...)``)."""
    if target.ndim == 0 or target.shape[0] != like.shape[0]:
        raise DataError(
            f"Expected one label per image ({like.shape[0]} for these scores); received a target of shape "
            f"{tuple(target.shape)}."
        )
    return target.reshape(-1, *([1] * (like.ndim - 1))).expand_as(like).to(like.dtype)


class AdaptiveLoss(nn.Module):
    """Wrap a loss so that a label per image ``(B,)`` is compared with every score of that image.

    A patch critic such as :func:`gan_critic` scores each region of an image; the wrapped loss (e.g.
    ``nn.BCEWithLogitsLoss()``) sees the image's label repeated for each region.
    """

    def __init__(self, crit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        if not callable(crit):
            raise ConfigError(expected("a loss function", "crit", crit))
        self.crit = crit

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.crit(output, _expand(target, output))

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """The wrapped loss's activation (a sigmoid for ``BCEWithLogitsLoss``)."""
        from ember.losses import loss_activation

        return loss_activation(self.crit)(x)


def accuracy_thresh_expand(
    pred: torch.Tensor, targ: torch.Tensor, thresh: float = 0.5, sigmoid: bool = True
) -> torch.Tensor:
    """Accuracy of patch scores ``(B, ...)`` against one 0/1 label per image ``(B,)``: each score counts."""
    probs = torch.sigmoid(pred) if sigmoid else pred
    return ((probs > thresh) == _expand(targ, pred).bool()).float().mean()


def wgan_critic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """The Wasserstein critic's loss: low when it scores real images higher than generated ones."""
    return fake_pred.float().mean() - real_pred.float().mean()


def wgan_generator_loss(fake_pred: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The Wasserstein generator's loss: low when the critic scores its images high (`fake`, `real` unused)."""
    return -fake_pred.float().mean()
