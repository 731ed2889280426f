"""Evaluation and prediction outside `fit`: :class:`InferenceMixin`, the base of :class:`~ember.learner.Learner`.

It holds the learner's `validate`, `get_preds`, `predict`, `predict_batch` and `predict_tensor` with their helpers,
and the helpers that read a loader in dataset order and give float32 outputs. The methods run the learner's own
validation loop (``_do_validate``) with extra callbacks, so they rely on the attributes and loop methods that
:class:`~ember.learner.Learner` defines; the mixin is not meant to be used without it.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ember.core.device import to_detach
from ember.core.errors import ConfigError, DataError, expected
from ember.data.loaders import DeviceLoader
from ember.learner.callback import Callback
from ember.learner.listify import _listify
from ember.learner.progress import ProgressCallback
from ember.losses import loss_activation, loss_decodes

__all__ = ["InferenceMixin"]


def _float32(x: Any) -> Any:
    """Floating tensors (in tuples and lists too) as float32; the rest unchanged."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() else x
    if isinstance(x, (tuple, list)):
        return type(x)(_float32(v) for v in x)
    return x


def _in_dataset_order(loader: DeviceLoader) -> DeviceLoader:
    """`loader`, or when it shuffles or drops its last partial batch, a copy that reads every item in order.

    The copy has a generator of its own, so reading it leaves the original loader's shuffling untouched."""
    dl = loader.dl
    shuffles = getattr(loader, "shuffle", None)
    if not isinstance(shuffles, bool):
        # Any sampler of a map-style dataset other than the sequential one reorders the items: a shuffling, a
        # weighted (items repeated, others missing) or a partial one. A custom batch sampler is left as it is.
        shuffles = (
            isinstance(dl.batch_sampler, torch.utils.data.BatchSampler)
            and not isinstance(dl.dataset, torch.utils.data.IterableDataset)
            and not isinstance(dl.sampler, torch.utils.data.SequentialSampler)
        )
    drops = bool(getattr(loader, "drop_last", False))
    if not (shuffles or drops):
        return loader
    try:
        return loader.new(shuffle=False, drop_last=False, generator=torch.Generator(), persistent_workers=False)
    except (TypeError, ValueError) as e:
        warnings.warn(
            f"Could not read this loader in dataset order ({type(e).__name__}: {e}); the predictions follow the "
            "loader's own order. Pass an unshuffled loader to get_preds for dataset order.",
            stacklevel=3,
        )
        return loader


class InferenceMixin:
    """The learner's evaluation and prediction methods: `validate`, `get_preds`, `predict`, `predict_batch` and
    `predict_tensor` (see :class:`~ember.learner.Learner`, which inherits them)."""

    def _as_loader(self, dl: Any, name: str = "dl") -> DeviceLoader:
        if dl is None:
            if self.dls.valid is None:
                raise ConfigError("These DataLoaders have no validation loader; pass `dl=` explicitly.")
            return self.dls.valid
        if isinstance(dl, DeviceLoader):
            return dl.to(self.dls.device) if dl.device is None else dl
        if isinstance(dl, torch.utils.data.DataLoader):
            return DeviceLoader(dl, device=self.dls.device, n_inp=self.dls.n_inp, split=1)
        if isinstance(dl, int) and not isinstance(dl, bool):
            n = len(self.dls.loaders)
            if not -n <= dl < n:
                raise ConfigError(expected(f"a loader index below {n} (0: training, 1: validation)", name, dl))
            return self.dls.loaders[dl]
        raise ConfigError(expected("a DataLoader, a DeviceLoader or a loader index", name, type(dl).__name__))

    def _run_inference(self, dl: DeviceLoader, cbs: Sequence[Callback]) -> None:
        """Run the validation loop on `dl` (no gradients), with extra callbacks, outside any fit."""
        saved = (self.epoch, self.n_epoch, self.iter, self.n_iter, self.dl, self.training)
        with self.added_cbs(cbs), self._quiet():
            try:
                self._do_validate(dl)
            finally:
                self.epoch, self.n_epoch, self.iter, self.n_iter, self.dl, self.training = saved
                self.xb, self.yb, self.pred, self.loss, self.loss_grad = (), (), None, None, None

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        bar = [c for c in self.cbs if isinstance(c, ProgressCallback)]
        with self.removed_cbs(bar):
            yield

    def validate(self, dl: Any = None, cbs: Sequence[Callback] | None = None) -> list[float | None]:
        """Loss and metrics on `dl` (default: the validation set): ``[loss, *metric values]``."""
        self._run_inference(self._as_loader(dl), _listify(cbs))
        return list(self.recorder.last_validation)

    def get_preds(
        self,
        dl: Any = None,
        with_input: bool = False,
        with_decoded: bool = False,
        with_loss: bool = False,
        act: Callable[[torch.Tensor], torch.Tensor] | None = None,
        reorder: bool = True,
        ds_idx: int | None = None,
        cbs: Callback | Sequence[Callback] | None = None,
    ) -> tuple:
        """Predictions (after the loss's activation) and targets for every item of `dl`, on the CPU.

        Args:
            dl: a loader, or a loader index (0: training, 1: validation; default: the validation set).
            ds_idx: the loader index, as an alternative to passing it as `dl`.
            with_input: also return the inputs (kept only when asked, to save memory).
            with_decoded: also return decoded predictions (the loss's `decodes`, e.g. class indices).
            with_loss: also return the per-item loss.
            act: activation applied to the raw outputs; default the loss's `activation` if it has one.
            reorder: give every item in dataset order: a loader that shuffles or drops its last partial batch
                (the training loader) is read through an unshuffled copy that keeps every item. ``False`` reads
                the loader as it is (in its shuffled order, without any dropped items).
            cbs: callbacks for this run only (e.g. ``MCDropoutCallback()`` for Monte-Carlo dropout samples).

        Returns:
            ``(preds, targs)``; with `with_input` the inputs come first, ``decoded`` follows the targets and
            ``losses`` come last, as in fastai: ``inputs, preds, targs, decoded, losses`` when all are asked
            (``targs`` is None for unlabelled data).
        """
        from ember.learner.callbacks import GatherPreds

        loader = self._preds_loader(dl, ds_idx)
        if reorder:
            loader = _in_dataset_order(loader)
        gather = GatherPreds(with_input=with_input, with_loss=with_loss)
        self._run_inference(loader, [gather, *_listify(cbs)])
        return self._gathered(gather, with_input, with_decoded, with_loss, act)

    def _preds_loader(self, dl: Any, ds_idx: int | None) -> DeviceLoader:
        """The loader that `get_preds(dl=..., ds_idx=...)` reads."""
        if ds_idx is not None:
            if dl is not None:
                raise ConfigError("Pass either `dl` or `ds_idx` to get_preds, not both.")
            return self._as_loader(ds_idx, "ds_idx")
        return self._as_loader(dl)

    def _gathered(
        self, gather: Any, with_input: bool, with_decoded: bool, with_loss: bool, act: Callable | None
    ) -> tuple:
        """``(inputs?, preds, targs, decoded?, losses?)`` from a callback that gathered a run's outputs."""
        preds = gather.preds
        act = act if act is not None else loss_activation(self.loss_func)
        if preds is not None:
            preds = act(preds)
        out: list[Any] = [gather.inputs] if with_input else []
        out += [preds, gather.targs]
        if with_decoded:
            out.append(loss_decodes(self.loss_func)(preds))
        if with_loss:
            out.append(gather.losses)
        return tuple(out)

    def _decode_targets(self, decoded: torch.Tensor) -> list[Any]:
        blocks = getattr(self.dls, "target_blocks", None) or []
        if not blocks:
            return [d for d in decoded]
        block = blocks[0]
        return [block.decode(d) for d in decoded]

    def predict(self, item: Any) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """Predict one raw item (what `get_items`/`get_x` give: a path, a row, …).

        Returns:
            ``(decoded, decoded_tensor, probabilities)``: e.g. ``("cat", tensor(1), tensor([0.1, 0.9]))``
            for a classifier.
        """
        decoded, dec, probs = self.predict_batch([item], bs=1)
        return decoded[0], dec[0], probs[0]

    def predict_batch(self, items: Sequence[Any], bs: int = 64) -> tuple[list[Any], torch.Tensor, torch.Tensor]:
        """Predict many raw items in batches (much faster than `predict` in a loop).

        Returns:
            ``(decoded answers (a list), decoded tensor, probabilities)``, one row per item, in order.
        """
        test_dl = getattr(self.dls, "test_dl", None)
        if test_dl is None:
            raise ConfigError(
                "predict needs DataLoaders that can encode new items (built by a DataBlock or an ember factory)."
            )
        items = list(items)
        if not items:
            raise DataError("predict_batch received no items: pass a list of at least one item.")
        preds, _, dec = self.get_preds(dl=test_dl(items, bs=bs), with_decoded=True)
        return self._decode_targets(dec), dec, preds

    def predict_tensor(self, xb: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Raw model output for a batch of inputs already encoded as tensors (eval mode, no gradient)."""
        xb = (xb,) if isinstance(xb, torch.Tensor) else tuple(xb)
        self.model.eval()
        with torch.no_grad(), self._autocast():
            out = self.model(*[x.to(self.dls.device) for x in xb])
        return _float32(to_detach(out, cpu=True))  # as get_preds: float32 also under mixed precision
