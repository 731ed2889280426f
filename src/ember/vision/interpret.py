"""`ClassificationInterpretation`: where a classifier goes wrong (confusion matrix, top losses, report).

Predictions, targets and per-item losses are gathered once; the inputs of the worst items are fetched
again from the loader only when :meth:`plot_top_losses` needs them, so a large validation set is never
held in memory as images.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ember.core.errors import ConfigError, DataError, expected
from ember.learner.learner import Learner

__all__ = ["ClassificationInterpretation", "Interpretation"]


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
    def from_learner(cls, learn: Learner, dl: Any = None) -> Interpretation:
        """Gather everything on `dl` (default: the validation set)."""
        from ember.learner.learner import _in_dataset_order

        # in dataset order, so that the inputs fetched again later (plot_top_losses) are those of each position
        loader = _in_dataset_order(learn._as_loader(dl))
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
    def from_learner(cls, learn: Learner, dl: Any = None) -> ClassificationInterpretation:
        """Gather everything on `dl` (default: the validation set) of a single-label classifier, or of a
        segmentation model (then the matrix counts pixels and the losses are per image).

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
        interp = super().from_learner(learn, dl)
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
                "interp.top_losses(k) for the images with the largest losses (one per image) and "
                "learn.show_results() to draw masks."
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
