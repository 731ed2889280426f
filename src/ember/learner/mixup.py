"""MixUp and CutMix: train on blends of two samples, with their targets blended in the same proportion.

Both change training batches only (validation sees the data as it is). The input of each sample is blended with
the input of another sample of the batch; the targets become the same blend: class labels as probabilities (the
losses of ``CrossEntropyLossFlat`` and ``nn.CrossEntropyLoss`` accept them, label smoothing included), float
targets (several labels, regression) mixed directly. Stronger regularization than flips and crops, which pays off
on longer trainings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.callback import Callback

__all__ = ["MixUp", "CutMix"]


class _Mix(Callback):
    """Draw the partners and the proportions, and blend the targets once the number of classes is known."""

    run_valid = False
    order = -10  # before the callbacks that read the batch (channels-last, gradient accumulation)

    def __init__(self, alpha: float) -> None:
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ConfigError(expected("a positive number", "alpha", alpha))
        self.alpha = float(alpha)
        self._lam: torch.Tensor | None = None

    def _beta(self, n: int, device: torch.device) -> torch.Tensor:
        a = torch.tensor(self.alpha, device=device)
        return torch.distributions.Beta(a, a).sample((n,))

    def _inputs(self) -> torch.Tensor:
        learn = self.learn
        if len(learn.xb) != 1 or not learn.yb:
            raise DataError(
                f"{type(self).__name__} blends batches of one input and its targets; these batches have "
                f"{len(learn.xb)} inputs and {len(learn.yb)} targets."
            )
        x = learn.xb[0]
        if not x.is_floating_point():
            raise DataError(
                f"{type(self).__name__} blends float inputs; this batch's input is {x.dtype} (ids or categories "
                "cannot be blended)."
            )
        return x

    def after_pred(self) -> None:
        """Targets -> the same blend as the inputs (now that the predictions say how many classes there are)."""
        if self._lam is None:
            return
        learn = self.learn
        y, lam, perm = learn.yb[0], self._lam, self._perm
        if y.is_floating_point():
            target = y
        elif y.ndim == 1 and isinstance(learn.pred, torch.Tensor) and learn.pred.ndim == 2:
            target = F.one_hot(y.long(), learn.pred.shape[1]).to(torch.float32)
        else:
            raise DataError(
                f"{type(self).__name__} blends class labels of shape (B,) with scores (B, C), or float targets; "
                f"received targets {tuple(y.shape)} ({y.dtype}) for predictions "
                f"{tuple(getattr(learn.pred, 'shape', ()))}."
            )
        w = lam.view(-1, *([1] * (target.ndim - 1))).to(target.dtype)
        learn.yb = (torch.lerp(target[perm], target, w), *learn.yb[1:])

    def after_batch(self) -> None:
        self._lam = None


class MixUp(_Mix):
    """Blend each training sample with another: ``lam * x_i + (1 - lam) * x_j``, ``lam`` drawn per sample.

    ``lam`` comes from ``Beta(alpha, alpha)`` and is folded above 0.5 (``max(lam, 1 - lam)``), so every blend keeps
    its own sample as the larger part. Works for any float input: images, tabular continuous features, ...

    >>> learn.fit_one_cycle(20, cbs=MixUp(0.4))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 0.4) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        x = self._inputs()
        bs = x.shape[0]
        lam = self._beta(bs, x.device)
        lam = torch.maximum(lam, 1 - lam)
        perm = torch.randperm(bs, device=x.device)
        w = lam.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        self.learn.xb = (torch.lerp(x[perm], x, w),)
        self._lam, self._perm = lam, perm


class CutMix(_Mix):
    """Paste a rectangle of another training image into each image; the targets blend by the area kept.

    One proportion ``lam`` a batch, from ``Beta(alpha, alpha)``: the rectangle covers about ``1 - lam`` of the
    image (its side ratio is the image's), at a random place, clipped at the borders; the targets' weights use
    the area really pasted. Images only (``(B, C, H, W)`` inputs).

    >>> learn.fit_one_cycle(20, cbs=CutMix(1.0))  # doctest: +SKIP
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def before_batch(self) -> None:
        x = self._inputs()
        if x.ndim != 4:
            raise DataError(f"CutMix pastes rectangles of images (B, C, H, W); this input is {tuple(x.shape)}.")
        bs, _, h, w = x.shape
        lam = float(self._beta(1, torch.device("cpu"))[0])
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(h, (1,))), int(torch.randint(w, (1,)))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        perm = torch.randperm(bs, device=x.device)
        mixed = x.clone()
        mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        self.learn.xb = (mixed,)
        self._lam, self._perm = torch.full((bs,), kept, device=x.device), perm
