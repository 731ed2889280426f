"""Where a model goes wrong: `ClassificationInterpretation` (confusion matrix, top losses, report) and
`SegmentationInterpretation` (per-image losses, the worst images with their masks, per-class IoU).

Predictions, targets and per-item losses are gathered once; the inputs of the worst items are fetched
again from the loader only when :meth:`plot_top_losses` needs them, so a large validation set is never
held in memory as images. A training loader is read without augmentation (as validation data), so that what
is drawn is what was scored.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import DataLoader

from ember.core.errors import ConfigError, DataError, expected
from ember.data.loaders import loading_settings
from ember.learner.callback import Callback
from ember.learner.learner import Learner

__all__ = ["ClassificationInterpretation", "Interpretation", "SegmentationInterpretation"]


def _without_augmentation(loader: Any) -> Any:
    """A copy of a training loader that reads the same items, in order, as validation data: the random item
    transforms (crops, flips) and the batch augmentations are skipped, and a ``Normalize()`` still takes its
    statistics from `loader`. Other loaders are returned as they are."""
    ds = getattr(loader, "dataset", None)
    if getattr(loader, "split", None) != 0 or not (hasattr(ds, "_view") and hasattr(ds, "idxs")):
        return loader
    settings = loading_settings(loader.dl)
    settings["generator"] = torch.Generator()  # reading the copy leaves the training loader's draws alone
    if "persistent_workers" in settings:
        settings["persistent_workers"] = False
    view = ds._view(ds.idxs, 1)  # the same items, split 1: training-only transforms skipped
    out = loader.new(DataLoader(view, batch_size=loader.bs, shuffle=False, drop_last=False, **settings))
    out.split, out.setup_from = 1, loader
    return out


def _interpretation_loader(learn: Learner, dl: Any, ds_idx: int | None) -> Any:
    """The loader `dl` or `ds_idx` names (default: the validation set), read in dataset order and, for a training
    loader, without augmentation.

    Augmentation draws afresh on every read, so the inputs fetched again for a plot would not be those the model was
    scored on (and a mask target moves with its image): a training loader's items are read as validation data."""
    from ember.learner.learner import _in_dataset_order

    return _in_dataset_order(_without_augmentation(learn._preds_loader(dl, ds_idx)))


class Interpretation:
    """Predictions, targets and per-item losses of a learner on a loader.

    Args:
        learn: the learner.
        dl: the loader the numbers come from.
        preds: activations ``(N, n_classes)`` (probabilities for a classifier).
        targs: targets ``(N,)``.
        decoded: decoded predictions ``(N,)`` (class indices).
        losses: per-item losses ``(N,)``.
    """

    def __init__(
        self,
        learn: Learner,
        dl: Any,
        preds: torch.Tensor,
        targs: torch.Tensor,
        decoded: torch.Tensor,
        losses: torch.Tensor,
    ) -> None:
        self.learn, self.dl = learn, dl
        self.preds, self.targs, self.decoded, self.losses = preds, targs, decoded, losses

    @classmethod
    def from_learner(cls, learn: Learner, dl: Any = None, ds_idx: int | None = None) -> Interpretation:
        """Gather everything on `dl` (default: the validation set), or on the loader of index `ds_idx` (0: training,
        1: validation). A training loader's items are read without augmentation, as validation data."""
        # in dataset order, so that the inputs fetched again later (plot_top_losses) are those of each position
        loader = _interpretation_loader(learn, dl, ds_idx)
        preds, targs, decoded, losses = learn.get_preds(dl=loader, with_decoded=True, with_loss=True)
        if targs is None:
            raise DataError("Interpretation needs labelled data: the loader gave no targets.")
        if losses is None:
            raise DataError("Interpretation needs per-item losses; the loss must accept reduction='none'.")
        return cls(learn, loader, preds, targs, decoded, losses.flatten())

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k` largest (or smallest) losses and their item positions."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def _inputs_at(self, idxs: list[int]) -> list[tuple]:
        """The batch elements (decoded for display, on the CPU) of the items at positions `idxs`."""
        wanted: dict[int, tuple | None] = {i: None for i in idxs}
        start = 0
        for batch in self.dl:
            n = len(batch[0])
            # Loaders that reorder their items (text batches sorted by length) say where each row came from;
            # the gathered predictions were put back in item order.
            order = getattr(self.dl.dataset, "order", None)
            rows = [int(order[r]) for r in range(start, start + n)] if order is not None else range(start, start + n)
            hits = [(r, i) for r, i in enumerate(rows) if i in wanted]
            if hits:
                shown = self.dl.decode(batch)
                for r, i in hits:
                    wanted[i] = tuple(x[r] for x in shown)
            start += n
            if all(v is not None for v in wanted.values()):
                break
        return [wanted[i] for i in idxs]


class ClassificationInterpretation(Interpretation):
    """Interpretation of a single-label classifier.

    >>> interp = ClassificationInterpretation.from_learner(learn)   # doctest: +SKIP
    >>> interp.plot_confusion_matrix(fname="confusion.png")          # doctest: +SKIP
    >>> interp.most_confused(min_val=2)                              # doctest: +SKIP
    """

    @classmethod
    def from_learner(cls, learn: Learner, dl: Any = None, ds_idx: int | None = None) -> ClassificationInterpretation:
        """Gather everything on `dl` (default: the validation set; or the loader of index `ds_idx`) of a single-label
        classifier, or of a segmentation model (then the matrix counts pixels and the losses are per image; see
        :class:`SegmentationInterpretation` for more).

        Raises:
            ConfigError: the target is not one class per item (or per pixel): several labels per item, numbers.
        """
        targets = list(getattr(learn.dls, "target_blocks", None) or [])
        kind = getattr(targets[0], "kind", None) if targets else None
        if kind is not None and kind not in ("category", "mask"):
            what = {
                "multicategory": "several labels per item (multi-label)",
                "regression": "numbers (regression)",
                "points": "keypoints",
                "image": "images",
            }.get(kind, kind)
            raise ConfigError(
                f"ClassificationInterpretation is for single-label classifiers; this learner's target is {what} "
                f"(kind {kind!r}), for which a confusion matrix between classes means nothing. Use "
                "learn.get_preds() with per-label metrics (e.g. accuracy_multi, F1 per label) instead"
                + (", or learn.show_results()." if kind != "multicategory" else ".")
            )
        interp = super().from_learner(learn, dl, ds_idx)
        if interp.targs.ndim == interp.preds.ndim and interp.targs.is_floating_point():
            raise ConfigError(
                "ClassificationInterpretation is for single-label classifiers; these targets are one value per "
                "class (multi-label). Use learn.get_preds() with per-label metrics instead."
            )
        n = len(interp.targs)
        if kind == "mask" and interp.losses.numel() != n:
            interp.losses = interp.losses.view(n, -1).mean(1)  # one loss per image, not per pixel
        return interp

    @property
    def vocab(self) -> list[str]:
        """The class names (the loaders' ``class_names``; numbers when they have none)."""
        vocab = getattr(self.learn.dls, "class_names", None)
        if vocab is None:
            n = self.preds.shape[-1]
            vocab = [str(i) for i in range(n)]
        return list(vocab)

    def confusion_matrix(self) -> torch.Tensor:
        """Counts ``(n_classes, n_classes)``: row = actual class, column = predicted class."""
        n = len(self.vocab)
        t, d = self.targs.flatten().long(), self.decoded.flatten().long()
        return torch.bincount(t * n + d, minlength=n * n).reshape(n, n)

    def plot_confusion_matrix(
        self,
        normalize: bool = False,
        title: str = "Confusion matrix",
        cmap: str = "Blues",
        figsize: tuple[float, float] | None = None,
        fname: str | None = None,
    ) -> Any:
        """Draw the confusion matrix (rows normalized to fractions with `normalize`); returns the Figure."""
        import matplotlib.pyplot as plt

        cm = self.confusion_matrix().double()
        if normalize:
            cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
        vocab = self.vocab
        n = len(vocab)
        size = figsize or (max(4.0, 0.5 * n + 2), max(4.0, 0.5 * n + 2))
        fig, ax = plt.subplots(figsize=size)
        ax.imshow(cm.numpy(), interpolation="nearest", cmap=cmap)
        ax.set_title(title)
        ax.set_xticks(range(n), vocab, rotation=90)
        ax.set_yticks(range(n), vocab)
        if n <= 30:
            thresh = float(cm.max()) / 2
            for i in range(n):
                for j in range(n):
                    v = float(cm[i, j])
                    text = f"{v:.2f}" if normalize else f"{int(v)}"
                    ax.text(j, i, text, ha="center", va="center", color="white" if v > thresh else "black", fontsize=8)
        ax.set_ylabel("Actual")
        ax.set_xlabel("Predicted")
        fig.tight_layout()
        if fname is not None:
            fig.savefig(fname, dpi=100)
        return fig

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """``(actual, predicted, count)`` for every off-diagonal cell with at least `min_val` items, most first."""
        cm = self.confusion_matrix()
        cm.fill_diagonal_(0)
        vocab = self.vocab
        pairs = [
            (vocab[i], vocab[j], int(cm[i, j])) for i, j in zip(*torch.nonzero(cm >= max(min_val, 1), as_tuple=True))
        ]
        return sorted(pairs, key=lambda p: -p[2])

    def plot_top_losses(self, k: int = 9, largest: bool = True, fname: str | None = None, ncols: int = 3) -> Any:
        """Draw the `k` items with the largest losses, titled "predicted / actual / loss / probability of
        the prediction"; returns the Figure. For text the items are a table instead (printed, saved as CSV to
        `fname`, returned as a DataFrame with the columns text, actual, predicted, probability, loss)."""
        import matplotlib.pyplot as plt

        if not isinstance(k, int) or k < 1:
            raise ConfigError(expected("a positive int", "k", k))
        if self.decoded.ndim > 1:
            raise ConfigError(
                "plot_top_losses draws one predicted class per item; this model predicts a mask per image. Use "
                "SegmentationInterpretation.from_learner(learn).plot_top_losses(k) to draw the images with the "
                "largest losses and their masks (or learn.show_results() to draw masks)."
            )
        losses, idxs = self.top_losses(k, largest=largest)
        idxs_l = idxs.tolist()
        samples = self._inputs_at(idxs_l)
        if callable(getattr(self.learn.dls, "items_table", None)):  # text, tables: rows rather than pictures
            return self._top_losses_table(idxs_l, losses.tolist(), samples, fname)
        blocks = getattr(self.dl, "blocks", None)
        n = len(idxs_l)
        ncols = min(ncols, n)
        nrows = math.ceil(n / ncols)
        fig, axs = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.3 * nrows), squeeze=False)
        vocab = self.vocab
        for ax, i, loss, sample in zip(axs.flat, idxs_l, losses.tolist(), samples):
            x = sample[0]
            if blocks is not None:
                blocks[0].show(blocks[0].decode(x), ax)
            else:
                from ember.vision.core import show_image

                show_image(x, ax=ax)
            pred, targ = int(self.decoded[i]), int(self.targs[i])
            prob = float(self.preds[i, pred])
            ax.set_title(f"{vocab[pred]} / {vocab[targ]}\n{loss:.2f} / {prob:.2f}", fontsize=9)
        for ax in list(axs.flat)[n:]:
            ax.axis("off")
        fig.suptitle("prediction / actual / loss / probability", fontsize=10)
        fig.tight_layout()
        if fname is not None:
            fig.savefig(fname, dpi=100)
        return fig

    def _top_losses_table(self, idxs: list[int], losses: list[float], samples: list[tuple], fname: Any) -> Any:
        """The items as a table (the loaders' ``items_table``) with actual, predicted, probability and loss columns:
        printed, written to `fname` as CSV, returned as a DataFrame."""
        vocab = self.vocab
        table = self.learn.dls.items_table(samples).reset_index(drop=True)
        pred = [int(self.decoded[i]) for i in idxs]
        table["actual"] = [vocab[int(self.targs[i])] for i in idxs]
        table["predicted"] = [vocab[p] for p in pred]
        table["probability"] = [float(self.preds[i, p]) for i, p in zip(idxs, pred)]
        table["loss"] = losses
        if fname is not None:
            table.to_csv(fname, index=False)
        from rich.console import Console
        from rich.table import Table

        out = Table(*map(str, table.columns), show_lines=True)
        for row in table.itertuples(index=False):
            out.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v)[:500] for v in row))
        Console().print(out)
        return table

    def classification_report(self) -> str:
        """Precision, recall, F1 and support per class, and their averages, as a text table."""
        cm = self.confusion_matrix().double()
        tp = cm.diag()
        support = cm.sum(1)
        predicted = cm.sum(0)
        precision = tp / predicted.clamp(min=1)
        recall = tp / support.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        vocab = self.vocab
        width = max(12, *(len(v) for v in vocab))
        lines = [f"{'':>{width}}  precision    recall  f1-score   support", ""]
        for i, name in enumerate(vocab):
            lines.append(f"{name:>{width}}  {precision[i]:9.3f} {recall[i]:9.3f} {f1[i]:9.3f} {int(support[i]):9d}")
        total = int(support.sum())
        acc = float(tp.sum() / max(total, 1))
        w = support / max(total, 1)
        lines += [
            "",
            f"{'accuracy':>{width}}  {'':9} {'':9} {acc:9.3f} {total:9d}",
            f"{'macro avg':>{width}}  {precision.mean():9.3f} {recall.mean():9.3f} {f1.mean():9.3f} {total:9d}",
            f"{'weighted avg':>{width}}  {(precision * w).sum():9.3f} {(recall * w).sum():9.3f} "
            f"{(f1 * w).sum():9.3f} {total:9d}",
        ]
        return "\n".join(lines)

    def print_classification_report(self) -> None:
        """Print :meth:`classification_report`."""
        print(self.classification_report())


def _ids_dtype(n_classes: int) -> torch.dtype:
    """The smallest signed integer type that holds every class id and -1."""
    return torch.int16 if n_classes <= torch.iinfo(torch.int16).max else torch.int32


def _pixel_ids(x: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Class ids ``(B, H, W)`` on the CPU in a compact type, from decoded predictions or targets ``(B, H, W)`` or
    ``(B, 1, H, W)``; -1 where a value is not a class id (an ignore index such as -100 or 255)."""
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]  # (B, H, W): a model with a single logit channel
    x = x.long()
    x = torch.where((x >= 0) & (x < n_classes), x, -1)
    return x.to(_ids_dtype(n_classes)).cpu()


def _image_losses(loss_func: Any, pred: torch.Tensor, ids: torch.Tensor, *yb: torch.Tensor) -> torch.Tensor:
    """The loss of each image ``(B,)`` on the CPU: the mean of its pixels' losses over the pixels whose target is a
    class (`ids` ``(B, H, W)`` >= 0).

    An ignored pixel's loss (0 under ``ignore_index``) would otherwise dilute the mean, and an image with many
    ignored pixels would rank as better than it is. An image with no labelled pixel gets 0; a loss that does not
    give one value per pixel is averaged as it is."""
    from ember.learner.callbacks import _per_item_loss

    if getattr(loss_func, "reduction", None) is None:
        return _per_item_loss(loss_func, pred, *yb)  # its ConfigError says what the loss lacks
    old = loss_func.reduction
    loss_func.reduction = "none"
    try:
        loss = loss_func(pred, *yb).detach().float().cpu()
    finally:
        loss_func.reduction = old
    loss = loss.reshape(pred.shape[0], -1)  # (B, P)
    keep = (ids >= 0).reshape(pred.shape[0], -1)  # (B, H * W)
    if loss.shape[1] != keep.shape[1]:
        return loss.mean(1)
    return (loss * keep).sum(1) / keep.sum(1).clamp(min=1)


class _GatherMasks(Callback):
    """Keep each image's loss and its predicted and target class ids, batch by batch on the CPU.

    The probabilities are not kept: ``N * C * H * W`` floats would take far more memory than the ids, for nothing
    the interpretation shows. A model whose output is not one score per class and pixel is noted in `problem`
    (raised as a ConfigError by the caller, not wrapped as a callback failure)."""

    order = 70
    run_train = False

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.decoded: list[torch.Tensor] = []
        self.targs: list[torch.Tensor] = []
        self.n_classes = 0
        self.problem: str | None = None

    def after_pred(self) -> None:
        from ember.losses import loss_activation, loss_decodes

        learn = self.learn
        pred, yb = learn.pred, learn.yb
        if not yb or self.problem is not None:
            return
        if not isinstance(pred, torch.Tensor) or pred.ndim != 4:
            shape = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            self.problem = expected(
                "a model output of one score per class and pixel, (B, C, H, W)",
                "output shape",
                shape,
                hint="For a classifier use ClassificationInterpretation.",
            )
            return
        targ = yb[0]
        if tuple(targ.shape[-2:]) != tuple(pred.shape[-2:]):
            self.problem = expected(
                f"target masks of the output's size {tuple(pred.shape[-2:])}",
                "mask shape",
                tuple(targ.shape),
            )
            return
        self.n_classes = n = pred.shape[1] if pred.shape[1] > 1 else 2  # one logit channel: background or not
        loss_func = learn.loss_func
        ids = _pixel_ids(targ, n)  # (B, H, W), -1 where ignored
        self.losses.append(_image_losses(loss_func, pred, ids, *yb))  # (B,) the mean over the labelled pixels
        dec = loss_decodes(loss_func)(loss_activation(loss_func)(pred.float()))  # (B, H, W)
        self.decoded.append(_pixel_ids(dec, n))
        self.targs.append(ids)


class SegmentationInterpretation(ClassificationInterpretation):
    """Interpretation of a segmentation model: a loss per image, the worst images with their masks, and a
    confusion matrix and IoU per class counted over pixels.

    A segmentation model classifies every pixel, so what :class:`ClassificationInterpretation` offers applies to
    pixels: ``confusion_matrix()``, ``plot_confusion_matrix()``, ``most_confused()`` and ``classification_report()``
    (whose F1 per class is the class's Dice) count pixels. Pixels whose target is not a class id (an ignore index)
    are left out of every count.

    Attributes:
        losses: the loss of each image ``(N,)``, the mean over its pixels whose target is a class (ignored pixels
            left out; 0 for an image with none).
        decoded: the predicted class ids ``(N, H, W)`` (int16).
        targs: the target class ids ``(N, H, W)`` (int16; -1 for an ignored pixel).
        preds: None: the probabilities are not kept (``N * C * H * W`` floats); ``learn.get_preds()`` gives them.
        n_classes: the number of classes.

    >>> interp = SegmentationInterpretation.from_learner(learn, ds_idx=1)   # doctest: +SKIP
    >>> interp.plot_top_losses(4, fname="worst.png")                       # doctest: +SKIP
    >>> interp.iou_table()                                                  # doctest: +SKIP
    """

    def __init__(
        self,
        learn: Learner,
        dl: Any,
        targs: torch.Tensor,
        decoded: torch.Tensor,
        losses: torch.Tensor,
        n_classes: int,
    ) -> None:
        super().__init__(learn, dl, None, targs, decoded, losses)
        self.n_classes = n_classes
        self._cm: torch.Tensor | None = None

    @classmethod
    def from_learner(cls, learn: Learner, dl: Any = None, ds_idx: int | None = None) -> SegmentationInterpretation:
        """Run the model on `dl` (default: the validation set; or the loader of index `ds_idx`, 0: training,
        1: validation) and keep each image's loss, predicted mask and target mask.

        A training loader is read without augmentation (its items as validation data: no random crops, flips or
        warps), so the losses, the masks and the images :meth:`plot_top_losses` draws all belong together.

        Raises:
            ConfigError: the learner's target is not a mask, or its model does not give a score per class and pixel.
            DataError: the loader has no targets, or its images differ in size.
        """
        targets = list(getattr(learn.dls, "target_blocks", None) or [])
        kind = getattr(targets[0], "kind", None) if targets else None
        if kind is not None and kind != "mask":
            raise ConfigError(
                f"SegmentationInterpretation is for models that predict a mask per image (a MaskBlock target); this "
                f"learner's target is of kind {kind!r}. Use ClassificationInterpretation for a classifier."
            )
        loader = _interpretation_loader(learn, dl, ds_idx)
        gather = _GatherMasks()
        learn._run_inference(loader, [gather])
        if gather.problem is not None:
            raise ConfigError(f"SegmentationInterpretation: {gather.problem}")
        if not gather.targs:
            raise DataError("SegmentationInterpretation needs labelled data: the loader gave no target masks.")
        try:
            decoded, targs = torch.cat(gather.decoded), torch.cat(gather.targs)  # (N, H, W)
        except RuntimeError as e:
            raise DataError(
                "SegmentationInterpretation needs images of one size across the loader's batches; add an item "
                "transform that gives them one size, e.g. Resize(224)."
            ) from e
        return cls(learn, loader, targs, decoded, torch.cat(gather.losses), gather.n_classes)

    @property
    def vocab(self) -> list[str]:
        """The class names (the codes; numbers when the loaders have none)."""
        vocab = getattr(self.learn.dls, "class_names", None)
        if vocab is None or len(vocab) != self.n_classes:
            return [str(i) for i in range(self.n_classes)]
        return list(vocab)

    def confusion_matrix(self) -> torch.Tensor:
        """Pixel counts ``(n_classes, n_classes)``: row = actual class, column = predicted class (ignored pixels
        left out)."""
        if self._cm is None:
            n = self.n_classes
            cm = torch.zeros(n * n, dtype=torch.int64)
            for t, d in zip(self.targs.split(64), self.decoded.split(64)):  # a few images at a time: int64 is big
                t, d = t.flatten().long(), d.flatten().long()
                keep = (t >= 0) & (d >= 0)
                cm += torch.bincount(t[keep] * n + d[keep], minlength=n * n)
            self._cm = cm.reshape(n, n)
        return self._cm.clone()  # a copy: callers may change it (most_confused clears the diagonal)

    def per_class_iou(self) -> torch.Tensor:
        """Intersection over union of each class over all pixels ``(n_classes,)``, float64: ``TP / (TP + FP + FN)``;
        NaN for a class in neither the targets nor the predictions."""
        cm = self.confusion_matrix().double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, math.nan))

    def mean_iou(self) -> float:
        """The mean of :meth:`per_class_iou` over the classes that appear (NaN when none does)."""
        iou = self.per_class_iou()
        return float(iou.nanmean()) if not iou.isnan().all() else math.nan

    def iou_table(self) -> Any:
        """A pandas DataFrame with one row per class: ``class``, ``iou``, ``dice`` (``2 TP / (T + P)``, NaN where
        the class is absent from both), ``target_pixels`` and ``predicted_pixels``."""
        import pandas as pd

        cm = self.confusion_matrix().double()
        tp, actual, predicted = cm.diag(), cm.sum(1), cm.sum(0)
        both = actual + predicted
        dice = torch.where(both > 0, 2 * tp / both.clamp(min=1), torch.full_like(tp, math.nan))
        return pd.DataFrame(
            {
                "class": self.vocab,
                "iou": self.per_class_iou().tolist(),
                "dice": dice.tolist(),
                "target_pixels": actual.long().tolist(),
                "predicted_pixels": predicted.long().tolist(),
            }
        )

    def image_accuracy(self) -> torch.Tensor:
        """The share of each image's pixels given their right class ``(N,)``, float64 (ignored pixels left out;
        NaN for an image with no other)."""
        keep = self.targs >= 0  # (N, H, W)
        right = ((self.decoded == self.targs) & keep).flatten(1).sum(1)
        return right.double() / keep.flatten(1).sum(1).double()

    def plot_top_losses(self, k: int = 9, largest: bool = True, fname: str | None = None, alpha: float = 0.5) -> Any:
        """Draw the `k` images with the largest losses (smallest with ``largest=False``), one row each: the image, its
        target mask over it and the predicted mask over it, titled with the loss and the share of pixels right.

        Args:
            alpha: the masks' opacity over the image.

        Returns:
            The matplotlib Figure.
        """
        import matplotlib.pyplot as plt

        from ember.vision.core import show_image, show_mask

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(expected("a positive int", "k", k))
        losses, idxs = self.top_losses(k, largest=largest)
        idxs_l = idxs.tolist()
        samples = self._inputs_at(idxs_l)
        blocks = getattr(self.dl, "blocks", None)
        n_inp = self.learn.dls.n_inp
        acc = self.image_accuracy()
        fig, axs = plt.subplots(len(idxs_l), 3, figsize=(9, 3.2 * len(idxs_l)), squeeze=False)
        for row, i, loss, sample in zip(axs, idxs_l, losses.tolist(), samples):
            x, target = sample[0], sample[n_inp]
            if blocks is not None:
                x, target = blocks[0].decode(x), blocks[n_inp].decode(target)
            for ax in row:
                if blocks is not None:
                    blocks[0].show(x, ax)
                else:
                    show_image(x, ax=ax)
            show_mask(target, ax=row[1], n_codes=self.n_classes, alpha=alpha)
            show_mask(self.decoded[i].long(), ax=row[2], n_codes=self.n_classes, alpha=alpha)
            row[0].set_title(f"item {i}: loss {loss:.3f}", fontsize=9)
            row[1].set_title("target", fontsize=9)
            row[2].set_title(f"prediction: {float(acc[i]):.0%} of pixels right", fontsize=9)
        fig.tight_layout()
        if fname is not None:
            fig.savefig(fname, dpi=100)
        return fig
