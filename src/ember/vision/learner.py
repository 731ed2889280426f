"""`vision_learner`: a pretrained (or fresh) CNN body with a new head, and the `VisionLearner` that uses it.

The body comes from torchvision (``"resnet18"``, ``"convnext_tiny"`` …), timm (``"resnet18.a1_in1k"``,
any :func:`timm.list_models` name) or ember's registry (``"xresnet18"``), or from a callable returning a
module. It is cut before its pooling layer; :func:`create_head` adds concatenated pooling and a small MLP
sized for the data. Pretrained weights are read only from the local caches (``torch.hub.get_dir()`` for
torchvision, the Hugging Face cache for timm): nothing is downloaded, and a missing file gets an error
saying where to put it.

The bodies are built in :mod:`ember.vision.body` and the heads in :mod:`ember.vision.head`; their public
functions are importable from here too.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ember.core.errors import ConfigError, DataError, expected
from ember.data.loaders import DataLoaders, DeviceLoader, loading_settings, setup_batch_tfms
from ember.learner.export import register_learner
from ember.learner.learner import Learner
from ember.losses import loss_activation, loss_decodes
from ember.vision.augment import Normalize
from ember.vision.body import _pretrained_stats, adapt_first_conv, arch_name, create_body, pretrained_path
from ember.vision.head import _body_head_split, _stages_head_split, create_head, create_vision_model
from ember.vision.pixels import coordinates_in_pixels, masks_in_pixels, unknown_id

__all__ = [
    "create_head",
    "create_body",
    "create_vision_model",
    "adapt_first_conv",
    "vision_learner",
    "VisionLearner",
    "pretrained_path",
]


def batch_tfms_of(dls: Any) -> list[Any]:
    """The batch transforms of `dls` as inference sees them: validation's, else training's, else those of loaders
    rebuilt from an export."""
    for name in ("valid", "train"):
        loader = getattr(dls, name, None)
        if loader is not None and getattr(loader, "batch_tfms", None) is not None:
            return list(loader.batch_tfms)
    return list(getattr(dls, "batch_tfms", None) or [])


def decode_images(dls: Any, x: torch.Tensor) -> torch.Tensor:
    """Images as the model sees them (normalized) -> float32 ``(B, C, H, W)`` in [0, 1] on the CPU."""
    x = x.detach()
    for t in reversed(batch_tfms_of(dls)):
        x = t.decode((x,), ("image",))[0]
    x = x.float().cpu() if x.is_floating_point() else x.float().cpu() / 255  # uint8 when nothing made it float
    return x.clamp(0, 1)


def _sample_batch(loader: DeviceLoader, n: int) -> tuple:
    """`n` random items of `loader`'s dataset as one batch on the device, batch transforms applied."""
    ds = loader.dataset
    collate = getattr(ds, "collate", None)
    if collate is None or len(ds) == 0:
        return loader.one_batch()
    loader.setup_tfms()
    idx = torch.randperm(len(ds))[:n].tolist()
    batch = tuple(x.to(loader.device) if loader.device is not None else x for x in collate([ds[i] for i in idx]))
    kinds = loader.kinds if loader.kinds is not None else ("any",) * len(batch)
    for t in loader.batch_tfms:
        batch = t(batch, kinds, loader.split)
    return batch


def _input_block(dls: DataLoaders) -> Any:
    blocks = getattr(dls, "blocks", None)
    return blocks[0] if blocks else None


def _data_channels(dls: DataLoaders) -> int:
    block = _input_block(dls)
    n = getattr(block, "n_channels", None)
    if n is not None:
        return int(n)
    x = dls.one_batch()[0]
    return int(x.shape[1])


def _has_normalize(dls: DataLoaders) -> bool:
    return any(isinstance(t, Normalize) for dl in dls.loaders for t in dl.batch_tfms)


def _add_normalize(dls: DataLoaders, norm: Normalize) -> None:
    for dl in dls.loaders:
        dl.batch_tfms = sorted([*dl.batch_tfms, norm], key=lambda t: t.order)


def vision_learner(
    dls: DataLoaders,
    arch: str | Callable[..., nn.Module],
    pretrained: bool = True,
    n_out: int | None = None,
    normalize: bool = True,
    concat_pool: bool = True,
    lin_ftrs: Sequence[int] | None = None,
    ps: float = 0.5,
    loss_func: Any = None,
    metrics: Any = None,
    cut: int | Callable[[nn.Module], nn.Module] | None = None,
    init: Callable[[torch.Tensor], Any] | None = nn.init.kaiming_normal_,
    bn_final: bool = False,
    y_range: Sequence[float] | None = None,
    **learner_kwargs: Any,
) -> VisionLearner:
    """A :class:`VisionLearner` for transfer learning (or training from scratch) on image data.

    Args:
        arch: an ember, torchvision or timm model name, or a callable returning a model.
        pretrained: start from the pretrained weights in the local cache (the body then starts frozen:
            train the head first, or use ``fine_tune``).
        n_out: outputs of the model; default ``dls.c`` (the number of classes).
        normalize: with pretrained weights, add ``Normalize.from_stats(*imagenet_stats)`` (or the timm
            model's stats) to the batch transforms unless the data already normalizes.
        cut: where to cut the pretrained model (see :func:`create_body`).
        init: initializer of the head's linear weights.
        y_range: ``(low, high)``: the head ends with a sigmoid scaled to this range (regression, keypoints);
            kept in the export.
        **learner_kwargs: passed to :class:`~ember.learner.Learner` (``opt_func``, ``lr``, ``wd``, ``cbs``,
            ``path``, ``precision`` …).

    A known architecture (a ResNet, XResNet, DenseNet, ConvNeXt, EfficientNet, RegNet … whose body is made of
    stages) gets three parameter groups, as in fastai: the stem and first half of the stages, the other stages,
    and the head; ``fine_tune`` and ``slice(lo, hi)`` rates spread over them. A callable architecture, or a body
    whose stages cannot be found, gets two: body and head.

    Raises:
        ConfigError: the number of outputs cannot be found, `arch` is unknown, a keyword is not an option of
            vision_learner or Learner, or the body is a transformer (not supported).
        EmberError: pretrained weights are missing from the local cache.

    >>> learn = vision_learner(dls, "resnet18", metrics=error_rate)   # doctest: +SKIP
    >>> learn.fine_tune(3)                                            # doctest: +SKIP
    """
    check_learner_kwargs("vision_learner", vision_learner, learner_kwargs)
    arch = arch_name(arch)
    if y_range is not None:
        if not (isinstance(y_range, (list, tuple)) and len(y_range) == 2):
            raise ConfigError(expected("a (low, high) pair", "y_range", y_range))
        y_range = [float(y_range[0]), float(y_range[1])]
    n_out = _n_out_from(dls, n_out, "vision_learner")
    n_in = _data_channels(dls)
    model = create_vision_model(
        arch,
        n_out,
        n_in=n_in,
        pretrained=pretrained,
        cut=cut,
        concat_pool=concat_pool,
        lin_ftrs=lin_ftrs,
        ps=ps,
        bn_final=bn_final,
        init=init,
        y_range=y_range,
    )
    recipe = {
        "arch": arch,
        "n_out": int(n_out),
        "n_in": n_in,
        "pretrained": False,  # an exported model carries its own weights
        "cut": cut,
        "concat_pool": concat_pool,
        "lin_ftrs": list(lin_ftrs) if lin_ftrs is not None else None,
        "ps": ps,
        "bn_final": bn_final,
        "init": None,
        "y_range": y_range,
    }
    return _finish_learner(
        dls,
        model,
        arch,
        n_in=n_in,
        pretrained=pretrained,
        normalize=normalize,
        cut=cut,
        splitter=_stages_head_split if isinstance(arch, str) else _body_head_split,
        factory=("create_vision_model", recipe),
        loss_func=loss_func,
        metrics=metrics,
        **learner_kwargs,
    )


def check_learner_kwargs(caller: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Raise a ConfigError naming the keywords that neither `fn` nor :class:`Learner` takes, and the valid ones."""
    own = [n for n, p in inspect.signature(fn).parameters.items() if p.kind != p.VAR_KEYWORD and n != "dls"]
    learner = [n for n in inspect.signature(Learner.__init__).parameters if n not in ("self", "dls", "model")]
    valid = [*own, *(n for n in learner if n not in own and n != "splitter")]
    unknown = [k for k in kwargs if k not in valid]
    if unknown:
        raise ConfigError(f"{caller}() got unknown keyword argument(s) {unknown}. Valid ones: {', '.join(valid)}.")


def _n_out_from(dls: DataLoaders, n_out: int | None, caller: str) -> int:
    """`n_out`, else the number of outputs the data's target needs (``dls.c``)."""
    if n_out is None:
        n_out = getattr(dls, "c", None)
    if n_out is None:
        raise ConfigError(
            "Expected `n_out` (the number of outputs); these DataLoaders do not say how many classes there are. "
            f"Pass {caller}(..., n_out=<number of outputs>)."
        )
    return n_out


def _finish_learner(
    dls: DataLoaders,
    model: nn.Module,
    arch: str | Callable[..., nn.Module],
    n_in: int,
    pretrained: bool,
    normalize: bool,
    cut: int | Callable[[nn.Module], nn.Module] | None,
    splitter: Callable[[nn.Module], list[list[nn.Parameter]]],
    factory: tuple[str, dict[str, Any]],
    loss_func: Any = None,
    metrics: Any = None,
    **learner_kwargs: Any,
) -> VisionLearner:
    """The :class:`VisionLearner` around a model built on `arch`: the pretrained weights' normalization added to
    the data, the body frozen when pretrained, and the export recipe ``factory = (name, kwargs)`` recorded when
    `arch` (and `cut`) can be named in a file."""
    if normalize and pretrained and not _has_normalize(dls):
        mean, std = _pretrained_stats(arch)
        if n_in != len(mean):  # grey (or multi-band) images: one average statistic for every channel
            mean, std = [sum(mean) / len(mean)] * n_in, [sum(std) / len(std)] * n_in
        _add_normalize(dls, Normalize.from_stats(mean, std))
    learn = VisionLearner(dls, model, loss_func=loss_func, metrics=metrics, splitter=splitter, **learner_kwargs)
    if pretrained:
        learn.freeze()
    if isinstance(arch, str) and not callable(cut):
        name, kwargs = factory
        learn.model_recipe = {"factory": name, "kwargs": kwargs}
        model._ember_factory = (name, kwargs)
    else:
        learn.model_recipe = None  # a callable architecture (or cut) cannot be named in a file
    return learn


def _show_image_results(
    inputs: Sequence[tuple],
    targets: Sequence[tuple],
    preds: Sequence[tuple],
    blocks: Sequence[Any],
    n_inp: int,
    fname: str | None = None,
    figsize: tuple[float, float] | None = None,
    **kwargs: Any,
) -> Any:
    """Image targets: one row per sample, the input, the target and the prediction side by side."""
    from ember.data.show import get_grid

    n = len(inputs)
    axes = get_grid(n * 3, ncols=3, figsize=figsize or (9.0, 3.0 * n))
    tblock = blocks[n_inp]
    for i in range(n):
        row = axes[i * 3 : i * 3 + 3]
        for block, value in zip(blocks[:n_inp], inputs[i]):
            block.show(value, row[0], **kwargs)
        tblock.show(targets[i][0], row[1])
        tblock.show(preds[i][0], row[2])
        for ax, name in zip(row, ("input", "target", "prediction")):
            ax.set_title(name)
    fig = axes[0].figure
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=100)
    return fig


@register_learner
class VisionLearner(Learner):
    """A :class:`~ember.learner.Learner` for image inputs: adds :meth:`predict`, :meth:`show_results` and
    :meth:`tta`."""

    model_recipe: dict[str, Any] | None = None

    # -- inference on one item ------------------------------------------------------------------------
    def _encode_items(self, items: Sequence[Any]) -> tuple:
        """Raw inputs -> one batch on the device, through the blocks, item transforms and batch transforms
        (all as validation: no augmentation)."""
        return self._encode_and_map(items, False)[0]

    def _encode_and_map(self, items: Sequence[Any], maps: bool) -> tuple[tuple, list[torch.Tensor | None]]:
        """:meth:`_encode_items`, and with `maps` each item's map from the model's input back to the pixels of its
        own image (None for an item without an image input, and for all when `maps` is False).

        A map is ``(3, 2)``: where the image's corners ``(0, 0)`` and ``(W, H)`` land in the model's input, in
        [-1, 1], and ``(W, H)``. At prediction the item transforms only resize, crop and pad (no randomness), so
        each axis maps affinely and two points fix it. The two corners travel as an extra keypoints element of the
        sample through the same item-transform pass as the image (one read and one resize per item), in pixels:
        the scalers to [-1, 1] leave them out, and the scaling is done here with the size the model sees.
        """
        from ember.vision.bbox import BBoxScaler
        from ember.vision.core import PointScaler

        blocks = getattr(self.dls, "blocks", None)
        if not blocks:
            raise DataError("predict needs DataLoaders built by a DataBlock (they know how to encode an item).")
        item_tfms = self._item_tfms()
        n_inp = self.dls.n_inp
        kinds = tuple(b.kind for b in blocks[:n_inp])
        j = next((i for i, kind in enumerate(kinds) if kind == "image"), None) if maps else None
        samples, out_maps = [], []
        for item in items:
            sample = (
                tuple(b.encode(item) for b in blocks[:n_inp])
                if n_inp == 1
                else tuple(b.encode(v) for b, v in zip(blocks[:n_inp], item))
            )
            if j is None:
                for t in item_tfms:
                    sample = t(sample, kinds, 1)
                samples.append(sample)
                out_maps.append(None)
                continue
            h, w = sample[j].shape[-2:]  # (C, H, W) as the model's input starts
            size = torch.tensor([float(w), float(h)], dtype=torch.float64)
            # corners (0, 0) and (W, H) in pixels, in float64 so that the map puts pixel edges exactly where they are
            sample = (*sample, torch.stack([torch.zeros(2, dtype=torch.float64), size]))
            for t in item_tfms:
                if isinstance(t, (PointScaler, BBoxScaler)):
                    sample = (*t(sample[:-1], kinds, 1), sample[-1])
                else:
                    sample = t(sample, (*kinds, "points"), 1)
            h_in, w_in = sample[j].shape[-2:]  # the size the model sees
            corners = sample[-1] * torch.tensor([2.0 / w_in, 2.0 / h_in], dtype=torch.float64) - 1  # (2, 2) in [-1, 1]
            samples.append(sample[:-1])
            out_maps.append(torch.cat([corners, size[None]]))  # (3, 2)
        batch = tuple(b.collate([s[i] for s in samples]) for i, b in enumerate(blocks[:n_inp]))
        batch = tuple(x.to(self.dls.device) for x in batch)
        tfms = self._batch_tfms()
        # Normalize() takes its statistics from a training batch, never from these items.
        setup_batch_tfms(tfms, getattr(self.dls, "train", None))
        for t in tfms:
            batch = t(batch, kinds, 1)
        return batch, out_maps

    def _item_tfms(self) -> list[Any]:
        dsets = getattr(self.dls, "dsets", None)
        return dsets.item_tfms if dsets is not None else getattr(self.dls, "item_tfms", [])

    def _batch_tfms(self) -> list[Any]:
        return batch_tfms_of(self.dls)

    def _predicts_coordinates(self) -> bool:
        """Whether the target is keypoints or bounding boxes: coordinates that :meth:`predict` gives in pixels."""
        targets = getattr(self.dls, "target_blocks", None) or []
        return bool(targets) and targets[0].kind in ("points", "bbox")

    def predict(self, item: Any) -> tuple[Any, Any, torch.Tensor]:
        """Predict one item (a path, a PIL image or a ``uint8 (C, H, W)`` tensor).

        Returns:
            ``(label, index, probabilities)``: the decoded prediction (a class name for a category, a mask
            for a mask, an image for an image target, ``(N, 2)`` ``(x, y)`` pixel coordinates in the item's own
            image for keypoints, ``(N, 4)`` ``[x0, y0, x1, y1]`` pixels for boxes), the decoded tensor (the class
            index) and the
            activations of the model's output (probabilities). For an image target the first is a
            float32 ``(C, H, W)`` image in [0, 1], the normalization undone; the other two are the model's
            output as it is (normalized like the targets it learned).
        """
        coordinates = self._predicts_coordinates()
        xb, maps = self._encode_and_map([item], coordinates)
        out = self.predict_tensor(xb)  # (1, n_out)
        probs = loss_activation(self.loss_func)(out)[0]
        dec = loss_decodes(self.loss_func)(probs[None])[0]
        targets = getattr(self.dls, "target_blocks", [])
        label = targets[0].decode(self._undo_batch_tfms(dec[None])[0]) if targets else dec
        if coordinates:
            label = coordinates_in_pixels(maps, [label])[0]
        return label, dec, probs

    def predict_batch(self, items: Sequence[Any], bs: int = 64) -> tuple[list[Any], torch.Tensor, torch.Tensor]:
        """Predict many items in batches; the answers are decoded as :meth:`predict`'s (keypoints and boxes in
        pixels of each item's own image). For keypoints and boxes each chunk of `bs` items is encoded here, as
        :meth:`predict` encodes one, so that each image is read once along with its map back to pixels.

        Returns:
            ``(decoded answers (a list), decoded tensor, probabilities)``, one row per item, in order.
        """
        items = list(items)
        if not self._predicts_coordinates() or not items:
            return super().predict_batch(items, bs=bs)
        # Keypoints and boxes: each chunk is read once, with the maps back to each image's pixels.
        probs, dec, maps = self._predict_with_maps(items, bs)
        return coordinates_in_pixels(maps, self._decode_targets(dec)), dec, probs

    def _predict_with_maps(self, items: list[Any], bs: int) -> tuple[torch.Tensor, torch.Tensor, list[Any]]:
        """Probabilities, decoded predictions and each item's map to its own pixels, `bs` items read at a time."""
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise ConfigError(expected("a positive int", "bs", bs))
        outs, maps = [], []
        for start in range(0, len(items), bs):
            xb, chunk_maps = self._encode_and_map(items[start : start + bs], True)
            outs.append(self.predict_tensor(xb))  # (bs, ...)
            maps += chunk_maps
        probs = loss_activation(self.loss_func)(torch.cat(outs))
        return probs, loss_decodes(self.loss_func)(probs), maps

    def predict_masks(
        self, items: Sequence[Any], bs: int = 64, unknown: int | None = None
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Segmentation: each item's predicted mask at the pixels of its own image.

        :meth:`predict` gives a mask at the size the model sees (after the item transforms' resize and crop);
        this maps it back onto the image the item came from, nearest neighbour, so that it overlays the image.

        Args:
            items: paths, PIL images or ``uint8 (C, H, W)`` tensors.
            unknown: the value written where the model did not see the image (the part a crop cut off); it must
                not be a class id. Default: 255 up to 255 classes, else 65535
                (:func:`~ember.vision.pixels.unknown_id`).

        Returns:
            ``(masks, decoded, probabilities)``: one ``(H, W)`` int64 mask of class ids per item (its own image's
            size), the masks ``(B, h, w)`` and the probabilities ``(B, C, h, w)`` at the model's size.

        Raises:
            ConfigError: the model does not predict masks, or `unknown` is one of its class ids.
            DataError: no items.
        """
        items = list(items)
        if not items:
            raise DataError("predict_masks received no items: pass a list of at least one item.")
        probs, dec, maps = self._predict_with_maps(items, bs)
        if dec.dim() != 3:
            shape = tuple(dec.shape)
            raise ConfigError(f"predict_masks needs a model that predicts masks ((B, H, W) class ids), not {shape}.")
        n_classes = int(probs.shape[1])
        if unknown is None:
            unknown = unknown_id(n_classes)
        elif isinstance(unknown, bool) or not isinstance(unknown, int) or 0 <= unknown < n_classes:
            raise ConfigError(expected(f"an int that is not a class id (0 to {n_classes - 1})", "unknown", unknown))
        return masks_in_pixels(maps, dec.long(), unknown), dec, probs

    def _undo_batch_tfms(self, dec: torch.Tensor) -> torch.Tensor:
        """Decoded predictions ``(B, ...)`` taken back through the batch transforms' ``decode`` as the target they
        stand for: an image target's normalization is undone (class ids and masks pass unchanged)."""
        targets = getattr(self.dls, "target_blocks", None) or []
        if not targets:
            return dec
        kinds = (targets[0].kind,)
        for t in reversed(self._batch_tfms()):
            dec = t.decode((dec,), kinds)[0]
        return dec

    def _decode_targets(self, decoded: torch.Tensor) -> list[Any]:
        """What ``predict_batch`` gives per item: the target block's decoding, after :meth:`_undo_batch_tfms`."""
        return super()._decode_targets(self._undo_batch_tfms(decoded))

    # -- showing ---------------------------------------------------------------------------------------
    def show_results(
        self,
        max_n: int = 9,
        dl: Any = None,
        fname: str | None = None,
        nrows: int | None = None,
        ncols: int | None = None,
        shuffle: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Draw `max_n` validation samples with target / prediction (green when right, red when wrong).

        `shuffle` draws them at random from the whole set (a validation set is often sorted by class);
        ``False`` takes the first batch.

        Returns:
            The matplotlib Figure.
        """
        from ember.data.show import show_results

        loader = self._as_loader(dl)
        blocks = getattr(loader, "blocks", None)
        if blocks is None:
            raise DataError("show_results needs DataLoaders built by a DataBlock (they know how to draw an item).")
        batch = _sample_batch(loader, max_n) if shuffle else loader.one_batch()
        n_inp = self.dls.n_inp
        if len(batch) <= n_inp:
            raise DataError("show_results needs labelled data: this loader gives inputs only.")
        out = self.predict_tensor(batch[:n_inp])
        dec = loss_decodes(self.loss_func)(loss_activation(self.loss_func)(out))  # (B, ...) on the CPU
        dec = self._undo_batch_tfms(dec)  # an image target's normalization undone, like the targets below
        shown = loader.decode(batch)  # on the CPU, normalization undone
        n = min(max_n, len(batch[0]))
        inputs = [tuple(b.decode(x[i]) for b, x in zip(blocks[:n_inp], shown[:n_inp])) for i in range(n)]
        tblock = blocks[n_inp]
        targets = [tuple(b.decode(x[i]) for b, x in zip(blocks[n_inp:], shown[n_inp:])) for i in range(n)]
        preds = [(tblock.decode(dec[i]),) for i in range(n)]
        if tblock.kind == "image":
            return _show_image_results(inputs, targets, preds, blocks, n_inp, fname=fname, **kwargs)
        return show_results(
            inputs, targets, preds, blocks, n_inp=n_inp, max_n=max_n, nrows=nrows, ncols=ncols, fname=fname, **kwargs
        )

    # -- where the model looks ------------------------------------------------------------------------------
    def _cam_layer(self, layer: nn.Module | None) -> nn.Module:
        if layer is not None:
            if not isinstance(layer, nn.Module):
                raise ConfigError(expected("a layer (nn.Module) of the model", "layer", type(layer).__name__))
            return layer
        model = self.model
        if isinstance(model, nn.Sequential) and len(model) == 2:
            return model[0]  # vision_learner's body, before the head pools it away
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ConfigError("This model has no convolution to take a class activation map from: pass layer=.")
        return convs[-1]

    def grad_cam(
        self, item: Any, cls: int | str | None = None, layer: nn.Module | None = None
    ) -> tuple[torch.Tensor, int]:
        """Grad-CAM: where in the image the model found the evidence for a class.

        The gradient of the class score with respect to `layer`'s feature maps weighs each map (its spatial mean);
        the weighted sum, with negative values cut, is resized to the input and scaled to [0, 1].

        Args:
            item: an image (path, PIL image, tensor), encoded like :meth:`predict` does.
            cls: the class to explain (index or name); default: the predicted one.
            layer: the layer whose output is explained; default: the body of a ``vision_learner`` model (its last
                feature maps), else the last ``Conv2d``.

        Returns:
            ``(heatmap, class index)``: a float32 ``(H, W)`` map on the CPU, at the model's input size.
        """
        target = self._cam_layer(layer)
        xb = self._encode_items([item])
        model = self.model
        kept: list[torch.Tensor] = []

        def keep(module: nn.Module, inputs: Any, output: Any) -> Any:
            if not isinstance(output, torch.Tensor):
                kept.append(output)
                return None
            # The maps as the layer gave them (a frozen layer's too), and a copy for the rest of the model, so that
            # an in-place operation after the layer (a residual add, ReLU(inplace=True)) cannot change them.
            src = output if output.requires_grad else output.detach().requires_grad_()
            kept.append(src)
            return src.clone()

        was_training = model.training
        model.eval()
        handle = target.register_forward_hook(keep)
        try:
            with torch.enable_grad(), self._autocast():
                out = model(*xb)
            acts = kept[-1] if kept else None
            if not (isinstance(acts, torch.Tensor) and acts.ndim == 4):
                raise ConfigError(
                    "Grad-CAM needs feature maps (B, C, H, W) from the layer; it gave "
                    f"{tuple(getattr(acts, 'shape', ())) if acts is not None else 'nothing (it did not run)'}: "
                    "pass another layer."
                )
            if not isinstance(out, torch.Tensor) or out.ndim != 2:
                raise ConfigError(
                    "Grad-CAM explains class scores (B, n_classes); this model gives "
                    f"{tuple(getattr(out, 'shape', ()))}."
                )
            idx = self._class_index(cls, out.shape[1], int(out[0].argmax()))
            try:
                (grads,) = torch.autograd.grad(out[0, idx].float(), acts)
            except RuntimeError as e:
                raise ConfigError(
                    f"The class score does not depend on this layer's output ({e}); pass a layer on the way to the "
                    "head."
                ) from e
        finally:
            handle.remove()
            model.train(was_training)
        weights = grads[0].float().mean(dim=(1, 2))  # (C,)
        cam = torch.relu((weights[:, None, None] * acts[0].detach().float()).sum(0))  # (h, w)
        size = xb[0].shape[-2:]
        cam = torch.nn.functional.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        cam = cam - cam.min()
        return (cam / cam.max() if float(cam.max()) > 0 else cam).cpu(), idx

    def _class_index(self, cls: int | str | None, n: int, predicted: int) -> int:
        if cls is None:
            return predicted
        vocab = list(getattr(self.dls, "vocab", None) or [])
        if isinstance(cls, str):
            if cls not in vocab:
                raise ConfigError(expected("one of the classes", "cls", cls, valid=vocab))
            return vocab.index(cls)
        try:
            index = operator.index(cls)  # ints, NumPy ints and 0-d integer tensors (preds.argmax())
        except TypeError:
            index = None
        if isinstance(cls, bool) or index is None or not 0 <= index < n:
            raise ConfigError(expected(f"a class index in [0, {n})", "cls", cls))
        return index

    def show_grad_cam(
        self,
        item: Any,
        cls: int | str | None = None,
        layer: nn.Module | None = None,
        alpha: float = 0.5,
        ax: Any = None,
        fname: str | None = None,
    ) -> Any:
        """Draw the image with its :meth:`grad_cam` heatmap over it; the title names the class explained."""
        import matplotlib.pyplot as plt

        cam, idx = self.grad_cam(item, cls, layer)
        xb = self._encode_items([item])
        img = self._undo_inputs(xb[0])[0]
        if ax is None:
            _, ax = plt.subplots(figsize=(4, 4))
        ax.imshow(img.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray" if img.shape[0] == 1 else None)
        ax.imshow(cam.numpy(), cmap="magma", alpha=alpha, extent=(-0.5, img.shape[2] - 0.5, img.shape[1] - 0.5, -0.5))
        vocab = list(getattr(self.dls, "vocab", None) or [])
        ax.set_title(str(vocab[idx]) if idx < len(vocab) else f"class {idx}")
        ax.axis("off")
        if fname is not None:
            ax.figure.savefig(fname, dpi=100)
        return ax.figure

    def _undo_inputs(self, x: torch.Tensor) -> torch.Tensor:
        return decode_images(self.dls, x)

    # -- test-time augmentation --------------------------------------------------------------------------
    def tta(
        self, dl: Any = None, n: int = 4, beta: float | None = 0.25, use_max: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions averaged over `n` augmented passes, blended with the plain prediction.

        The data is run `n` times as training data: the random item transforms (a ``RandomResizedCrop`` takes
        random crops) and the batch augmentations (flips, rotations, …) both apply, as in fastai. The result is
        ``beta * plain + (1 - beta) * mean(augmented)``; ``beta=None`` gives the augmented mean alone.

        Args:
            use_max: take the element-wise maximum of the augmented passes instead of their mean.

        Returns:
            ``(preds, targs)`` like :meth:`get_preds` (fastai returns the pair ``(augmented, plain)`` when
            ``beta=None``; ember always returns the predictions and the targets).
        """
        if not isinstance(n, int) or n < 1:
            raise ConfigError(expected("a positive int", "n", n))
        loader = self._as_loader(dl)
        moving = {"mask": "masks", "points": "keypoints", "image": "images", "bbox": "bounding boxes"}
        spatial = [moving[k] for k in (loader.kinds or ())[loader.n_inp :] if k in moving]
        if spatial:
            raise ConfigError(
                "tta averages predictions over flipped and warped images, which only works when the target does not "
                f"move with the image; these targets are {spatial[0]}, whose predictions would not line up. "
                "Use get_preds instead."
            )
        plain, targs = self.get_preds(dl=loader)[:2]  # also sets Normalize() up from a training batch if needed
        ds = loader.dataset
        if hasattr(ds, "_view") and hasattr(ds, "idxs"):
            # the same items in training mode: random item transforms (crops) run too
            ds = ds._view(ds.idxs, 0)
        torch_dl = DataLoader(ds, batch_size=loader.bs, shuffle=False, drop_last=False, **loading_settings(loader.dl))
        augmented = DeviceLoader(
            torch_dl,
            device=loader.device,
            batch_tfms=loader.batch_tfms,
            n_inp=loader.n_inp,
            kinds=loader.kinds,
            split=0,
            blocks=getattr(loader, "blocks", None),
        )
        passes = torch.stack([self.get_preds(dl=augmented)[0] for _ in range(n)])
        aug = passes.max(0).values if use_max else passes.mean(0)
        preds = aug if beta is None else torch.lerp(aug, plain, beta)
        return preds, targs
