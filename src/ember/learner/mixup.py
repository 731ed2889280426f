"""MixUp and CutMix: train on blends of two samples, with the loss blended in the same proportion.

Both change training batches only (validation, ``get_preds`` and ``predict`` see the data as it is). Each sample's
input is blended with the input of another sample of the batch (its partner), and the loss becomes the same blend
of the loss against the sample's own targets and the loss against its partner's: ``lam * loss(pred, y_i) + (1 -
lam) * loss(pred, y_j)``, item by item. That works with every loss that has a ``reduction`` (all of ember's and
torch's), whatever its targets are: class ids, several labels, masks, numbers. Stronger regularization than flips
and crops, which pays off on longer trainings.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.callback import Callback
from ember.learner.callbacks import _per_item_loss

__all__ = ["MixUp", "CutMix"]


class _Mix(Callback):
    """Draw partners and proportions; the learner's loss is replaced, for the fit, by the blended one."""

    run_valid = False
    order = -10  # before the callbacks that read the batch (channels-last, gradient accumulation)

    def __init__(self, alpha: float) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ConfigError(expected("a positive number", "alpha", alpha))
        self.alpha = float(alpha)
        # Drawn on the CPU and sent without waiting: sampling on the GPU would synchronize every batch.
        self._beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha), validate_args=False)
        self._lam: torch.Tensor | None = None
        self._perm: torch.Tensor | None = None
        self._loss: Any = None
        self._targets_pasted = False

    # -- the loss --------------------------------------------------------------------------------------
    def before_fit(self) -> None:
        loss = self.learn.loss_func
        if getattr(loss, "reduction", None) is None:
            raise ConfigError(
                f"{type(self).__name__} blends the loss item by item, which needs a loss with a `reduction` "
                f"attribute (every ember and torch loss has one); received {loss!r}."
            )
        self._loss = loss
        self.learn.loss_func = self._mixed_loss

    def cleanup_fit(self) -> None:
        if self._loss is not None:
            self.learn.loss_func = self._loss  # however the fit ended: the learner keeps (and exports) its own loss
            self._loss = None

    def _mixed_loss(self, pred: Any, *yb: torch.Tensor) -> torch.Tensor:
        if self._lam is None or not self.learn.training:
            return self._loss(pred, *yb)
        lam, perm = self._lam, self._perm
        own = _per_item_loss(self._loss, pred, *yb)
        if self._targets_pasted:
            return own.mean()  # CutMix pasted the partner's part of the target too: nothing left to blend
        other = _per_item_loss(self._loss, pred, *(y[perm] for y in yb))
        return torch.lerp(other, own, lam.to(own.dtype)).mean()

    # -- the inputs ------------------------------------------------------------------------------------
    def _floats(self) -> list[int]:
        """Which inputs are blended: the float ones (a table's category ids stay the sample's own)."""
        learn = self.learn
        if not learn.yb:
            raise DataError(f"{type(self).__name__} needs targets; these batches have inputs only.")
        idx = [i for i, x in enumerate(learn.xb) if isinstance(x, torch.Tensor) and x.is_floating_point()]
        if not idx:
            raise DataError(
                f"{type(self).__name__} blends float inputs; this batch has none ("
                + ", ".join(str(getattr(x, "dtype", type(x).__name__)) for x in learn.xb)
                + "): token or category ids cannot be blended, and images are floats once the loaders' batch "
                "transforms have run."
            )
        return idx

    def _draw(self, n: int, device: torch.device) -> torch.Tensor:
        return self._beta.sample((n,)).to(device, non_blocking=True)

    def after_batch(self) -> None:
        self._lam = self._perm = None
        self._targets_pasted = False


class MixUp(_Mix):
    """Blend each training sample with another: ``lam * x_i + (1 - lam) * x_j``, ``lam`` drawn per sample.

    ``lam`` comes from ``Beta(alpha, alpha)`` and is folded above 0.5 (``max(lam, 1 - lam)``), so every blend keeps
    its own sample as the larger part; the loss is blended the same way. Every float input is blended (images, a
    table's continuous columns); integer inputs (a table's categories) stay the sample's own.

    >>> learn.fit_one_cycle(20, cbs=MixUp(0.4))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 0.4) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        floats = self._floats()
        xb = list(self.learn.xb)
        x = xb[floats[0]]
        bs = x.shape[0]
        lam = self._draw(bs, x.device)
        lam = torch.maximum(lam, 1 - lam)
        perm = torch.randperm(bs, device=x.device)
        for i in floats:
            w = lam.view(-1, *([1] * (xb[i].ndim - 1))).to(xb[i].dtype)
            xb[i] = torch.lerp(xb[i][perm], xb[i], w)
        self.learn.xb = tuple(xb)
        self._lam, self._perm = lam, perm


class CutMix(_Mix):
    """Paste a rectangle of another training image into each image; the loss is weighted by the area kept.

    One proportion a batch, ``lam`` from ``Beta(alpha, alpha)``: a rectangle of about ``1 - lam`` of the image
    (its sides in the image's ratio), centred at a random place and cut at the borders, comes from the partner;
    the loss weights use the area really pasted. Targets that are images of the same size (masks, images) get the
    same rectangle pasted, so they stay aligned with their input. Images only (``(B, C, H, W)`` inputs).

    >>> learn.fit_one_cycle(20, cbs=CutMix(1.0))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        floats = self._floats()
        learn = self.learn
        if len(learn.xb) != 1 or learn.xb[0].ndim != 4:
            shapes = [tuple(x.shape) for x in learn.xb]
            raise DataError(f"CutMix pastes rectangles of images (B, C, H, W); these inputs are {shapes}.")
        x = learn.xb[floats[0]]
        bs, _, h, w = x.shape
        lam = float(self._beta.sample())
        cut = math.sqrt(1.0 - lam)
        ch, cw = round(h * cut), round(w * cut)
        cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
        y0, x0 = cy - ch // 2, cx - cw // 2
        y0, y1, x0, x1 = max(y0, 0), min(y0 + ch, h), max(x0, 0), min(x0 + cw, w)
        perm = torch.randperm(bs, device=x.device)

        def paste(t: torch.Tensor) -> torch.Tensor:
            out = t.clone()
            out[..., y0:y1, x0:x1] = t[perm][..., y0:y1, x0:x1]
            return out

        learn.xb = (paste(x),)
        spatial = [y.ndim >= 3 and tuple(y.shape[-2:]) == (h, w) for y in learn.yb]
        if any(spatial) and not all(spatial):
            raise DataError(
                "CutMix pastes into targets that are images or masks, or blends the others' loss, not both."
            )
        if all(spatial):
            learn.yb = tuple(paste(y) for y in learn.yb)  # masks and images stay aligned with their input
            self._targets_pasted = True
        kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        self._lam, self._perm = torch.full((bs,), kept, device=x.device), perm
