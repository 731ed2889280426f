"""Showing data: a grid of axes, the drivers behind ``show_batch`` and ``show_results``, and ``DataBlock.summary``.

The drivers know nothing about images or labels: each block draws its own decoded values with
``block.show(value, ax)`` (an image block calls ``imshow``, a label block sets the title), inputs
first, then targets. Every function that draws returns the matplotlib Figure and saves it when
given ``fname``; nothing needs a display (the Agg backend works headless).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from ember.core.errors import ConfigError, expected

__all__ = ["get_grid", "show_batch", "show_results", "datablock_summary", "describe"]

_LABEL_KINDS = frozenset({"category", "multicategory", "regression"})
_SHOW_BATCH_ARGS = ("batch", "max_n", "nrows", "ncols", "unique", "figsize", "fname")


def get_grid(
    n: int,
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
    title: str | None = None,
) -> list[Any]:
    """A figure with a grid of at least `n` axes; returns the first `n` (unused ones are hidden).

    The figure is ``axes[0].figure``. Without `nrows`/`ncols` the grid is as square as possible.
    """
    import matplotlib.pyplot as plt

    if not isinstance(n, int) or n < 1:
        raise ConfigError(expected("a positive int", "n", n))
    if ncols is None:
        ncols = math.ceil(n / nrows) if nrows is not None else math.ceil(math.sqrt(n))
    if nrows is None:
        nrows = math.ceil(n / ncols)
    if nrows * ncols < n:
        raise ConfigError(expected(f"a grid with room for {n} axes", "nrows x ncols", f"{nrows} x {ncols}"))
    figsize = figsize or (3.0 * ncols, 3.0 * nrows)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    flat = list(axs.flatten())
    for ax in flat[n:]:
        ax.set_visible(False)
    if title is not None:
        fig.suptitle(title, weight="bold")
    return flat[:n]


def check_show_kwargs(
    caller: str, kwargs: dict[str, Any], blocks: Sequence[Any], n_inp: int, own: Sequence[str]
) -> None:
    """A ConfigError for keywords that would reach matplotlib's ``imshow`` and fail there (image inputs only)."""
    if not kwargs or not all(getattr(b, "kind", None) == "image" for b in blocks[:n_inp]):
        return
    import inspect

    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage

    valid = set(inspect.signature(Axes.imshow).parameters) - {"self", "X", "kwargs"}
    unknown = [k for k in kwargs if k not in valid and not hasattr(AxesImage, f"set_{k}")]
    if unknown:
        raise ConfigError(
            f"{caller}() got unknown keyword argument(s) {unknown}. Its arguments are {', '.join(own)}; other "
            "keywords go to matplotlib's imshow (e.g. cmap, alpha, interpolation)."
        )


def _finish(fig: Any, fname: str | os.PathLike | None) -> Any:
    fig.tight_layout()
    if fname is not None:
        fig.savefig(fname, dpi=100)
    return fig


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def show_batch(
    samples: Sequence[tuple],
    blocks: Sequence[Any],
    n_inp: int = 1,
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
    fname: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Any:
    """Draw decoded samples, one axes each: the input blocks' ``show``, then the target blocks' ``show``.

    Args:
        samples: decoded samples, one tuple (one value per block) each.
        kwargs: passed to the input blocks' ``show`` (e.g. ``cmap`` for images).

    Returns:
        The matplotlib Figure.
    """
    if not samples:
        raise ConfigError(expected("at least one sample", "samples", samples))
    check_show_kwargs("show_batch", kwargs, blocks, n_inp, _SHOW_BATCH_ARGS)
    if nrows is not None and ncols is not None:
        samples = samples[: nrows * ncols]  # the grid caps how many are shown
    if any(getattr(b, "kind", None) == "image" for b in blocks[n_inp:]):
        # An image target cannot share the input's axes: one row per sample, input then target.
        n, cols = len(samples), len(blocks)
        axes = get_grid(n * cols, nrows=n, ncols=cols, figsize=figsize or (3 * cols, 3 * n))
        for i, sample in enumerate(samples):
            for j, (block, value) in enumerate(zip(blocks, sample)):
                block.show(value, axes[i * cols + j], **(kwargs if j < n_inp else {}))
                if i == 0:
                    axes[j].set_title("input" if j < n_inp else "target")
        return _finish(axes[0].figure, fname)
    axes = get_grid(len(samples), nrows=nrows, ncols=ncols, figsize=figsize)
    for sample, ax in zip(samples, axes):
        for j, (block, value) in enumerate(zip(blocks, sample)):
            if j < n_inp:
                block.show(value, ax, **kwargs)
            else:
                block.show(value, ax)
    return _finish(axes[0].figure, fname)


def _label_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, (list, tuple)):
        return ";".join(_label_text(v) for v in value)
    return str(value)


def show_results(
    inputs: Sequence[Any],
    targets: Sequence[Any],
    preds: Sequence[Any],
    blocks: Sequence[Any],
    n_inp: int = 1,
    max_n: int = 9,
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
    fname: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Any:
    """Draw inputs with their targets and the model's predictions (all decoded).

    Label targets (categories, multi-labels, values) become the title ``"target/prediction"``, green
    when they agree and red when not. Other targets (points, masks) are drawn by their block on two
    axes per sample: the input with the target, and the input with the prediction.

    Args:
        inputs: one decoded input per sample (a tuple when there are several inputs).
        targets: one decoded target per sample (a tuple when there are several targets).
        preds: one decoded prediction per sample, like `targets`.
        blocks: the blocks, inputs first.

    Returns:
        The matplotlib Figure.
    """
    n = min(max_n, len(inputs), len(targets), len(preds))
    if n < 1:
        raise ConfigError(expected("at least one sample", "inputs", inputs))
    check_show_kwargs("show_results", kwargs, blocks, n_inp, ("max_n", "dl", "nrows", "ncols", "shuffle", "fname"))
    in_blocks, tg_blocks = list(blocks[:n_inp]), list(blocks[n_inp:])
    labels_only = all(b.kind in _LABEL_KINDS for b in tg_blocks)
    per_sample = 1 if labels_only else 2
    if nrows is not None and ncols is not None:
        n = max(1, min(n, nrows * ncols // per_sample))  # the grid caps how many are shown
    if not labels_only and ncols is None and nrows is None:
        ncols = 2 * max(1, math.ceil(math.sqrt(n) / 1.4))
    axes = get_grid(n * per_sample, nrows=nrows, ncols=ncols, figsize=figsize)
    for i in range(n):
        x, t, p = _as_tuple(inputs[i]), _as_tuple(targets[i]), _as_tuple(preds[i])
        if labels_only:
            ax = axes[i]
            for block, value in zip(in_blocks, x):
                block.show(value, ax, **kwargs)
            texts = [f"{_label_text(tv)}/{_label_text(pv)}" for tv, pv in zip(t, p)]
            good = all(_label_text(tv) == _label_text(pv) for tv, pv in zip(t, p))
            ax.set_title("\n".join(texts), color="green" if good else "red")
            continue
        for k, (values, name) in enumerate(((t, "target"), (p, "prediction"))):
            ax = axes[i * 2 + k]
            for block, value in zip(in_blocks, x):
                block.show(value, ax, **kwargs)
            for block, value in zip(tg_blocks, values):
                block.show(value, ax)
            ax.set_title(name)
    return _finish(axes[0].figure, fname)


# ------------------------------------------------------------------------------------- the summary
def describe(value: Any, n: int = 70) -> str:
    """A one-line description: type, shape, dtype and a few values for a tensor; type and repr otherwise."""
    if isinstance(value, torch.Tensor):
        text = f"Tensor shape={tuple(value.shape)} dtype={str(value.dtype).replace('torch.', '')}"
        if value.device.type != "cpu":
            text += f" device={value.device}"
        if value.numel() <= 6:
            text += f" values={value.detach().cpu().tolist()}"
        elif value.is_floating_point() or value.dtype in (torch.uint8, torch.int32, torch.int64):
            v = value.detach().float()
            text += f" min={v.min().item():.4g} max={v.max().item():.4g}"
        return text
    if isinstance(value, tuple):
        return "(" + "; ".join(describe(v, n // 2) for v in value) + ")"
    is_path = isinstance(value, os.PathLike)
    text = str(value) if is_path else repr(value)
    if len(text) > n:
        # A path's end (folder/label/file name) says the most; other values read best from the start.
        text = "..." + text[-(n - 3) :] if is_path else text[: n - 3] + "..."
    return f"{type(value).__name__}: {text}"


def _name(f: Any) -> str:
    return getattr(f, "__name__", None) or repr(f)


class _Failed(Exception):
    """Raised inside the summary to stop at the first failing step."""


def _fail(step: str, e: BaseException, item: str | None = None, hint: str | None = None) -> _Failed:
    where = f" on item {item}" if item is not None else ""
    lines = [f"FAILED at step '{step}'{where}.", f"  Why: {type(e).__name__}: {e}"]
    if hint:
        lines.append(f"  What to do: {hint}")
    return _Failed("\n".join(lines))


def datablock_summary(dblock: Any, source: Any, bs: int = 4, device: Any = "cpu") -> None:
    """Print what every step of `dblock` produces for one sample and one batch of `source`.

    The body of ``DataBlock.summary``: stops at the first failing step and explains it, without a traceback.
    """
    from ember.data.datasets import Datasets
    from ember.data.loaders import _as_tuple as batch_tuple

    print(f"DataBlock summary: {len(dblock.blocks)} blocks, n_inp={dblock.n_inp}")
    for j, block in enumerate(dblock.blocks):
        role = "input" if j < dblock.n_inp else "target"
        print(f"  block {j}: {block!r} ({role}, kind={block.kind!r})")
    try:
        _walk(dblock, source, bs, device, Datasets, batch_tuple)
    except _Failed as e:
        print(str(e))
        return
    print("Every step worked.")


def _walk(dblock: Any, source: Any, bs: int, device: Any, Datasets: Any, batch_tuple: Any) -> None:  # noqa: N803
    from ember.data.block import fresh_copies

    # 1. items
    step = f"get_items ({_name(dblock.get_items)})" if dblock.get_items is not None else "get_items"
    try:
        items = dblock._items(source)
    except Exception as e:
        raise _fail(step, e, hint="Check the source path and what `get_items` looks for.") from e
    first = items.iloc[0] if hasattr(items, "iloc") else items[0]
    print(f"Step 1, {step}: {len(items)} items ({type(items).__name__}); first: {describe(first)}")
    # 2. split
    try:
        train_idx, valid_idx = dblock.splitter(items)
    except Exception as e:
        raise _fail(f"split ({dblock.splitter!r})", e, hint="Choose a splitter that suits these items.") from e
    print(f"Step 2, split with {dblock.splitter!r}: {len(train_idx)} training, {len(valid_idx)} validation items")
    if not len(train_idx):
        raise _fail("split", ValueError("the training set is empty"))
    # 3. raw values of one training item
    i = int(train_idx[0])
    item = items.iloc[i] if hasattr(items, "iloc") else items[i]
    item_desc = f"{i} ({describe(item)})"
    print(f"Step 3, read the values of training item {item_desc}")
    for j, get in enumerate(dblock.getters):
        name = ("get_x" if j < dblock.n_inp else "get_y") + (f" ({_name(get)})" if get is not None else " (none)")
        try:
            raw = get(item) if get is not None else item
        except Exception as e:
            hint = f"Fix `{name.split()[0]}`: it must accept an item like the one above."
            raise _fail(f"{name} for block {j}", e, item_desc, hint) from e
        print(f"  {name} -> {describe(raw)}")
    # 4. setup and validation on all items (names the failing item itself)
    try:
        dsets = Datasets(
            items,
            fresh_copies(dblock.blocks),
            dblock.getters,
            dblock.n_inp,
            dblock.item_tfms,
            (train_idx, valid_idx),
            cache=False,
        )
    except Exception as e:
        raise _fail("set up the blocks on the training values", e) from e
    print("Step 4, set up the blocks on the training values")
    for block in dsets.blocks:
        vocab = getattr(block, "vocab", None)
        extra = f"vocab ({len(vocab)}): {vocab[:10]}{' ...' if len(vocab) > 10 else ''}" if vocab else "ready"
        print(f"  {block!r}: {extra}")
    # 5. encode
    print("Step 5, encode with each block")
    sample = []
    for j, block in enumerate(dsets.blocks):
        try:
            x = block.encode(dsets.raw[i][j])
        except Exception as e:
            raise _fail(f"encode with block {j} ({type(block).__name__})", e, item_desc) from e
        print(f"  {type(block).__name__} -> {describe(x)}")
        sample.append(x)
    sample = tuple(sample)
    # 6. item transforms
    print(f"Step 6, item transforms ({len(dsets.item_tfms)})" + ("" if dsets.item_tfms else ": none"))
    for t in dsets.item_tfms:
        try:
            sample = t(sample, dsets.kinds, 0)
        except Exception as e:
            raise _fail(f"item transform {t!r}", e, item_desc) from e
        cached = " (cached)" if t in dsets.cached_tfms else ""
        print(f"  {t!r}{cached} -> {describe(sample)}")
    # 7. collate
    ds = dsets.train
    n = min(bs, len(ds))
    samples = []
    for k in range(n):
        try:
            samples.append(ds[k])
        except Exception as e:
            raise _fail("build a training sample", e) from e
    try:
        batch = dsets.collate(samples)
    except Exception as e:
        raise _fail(f"collate {n} samples", e, hint="Every item must have the same shape: add a resize.") from e
    print(f"Step 7, collate {n} training samples -> {describe(batch)}")
    # 8. batch transforms on the device
    from ember.core.device import to_device

    batch = to_device(batch_tuple(batch), torch.device(device))
    from ember.data.transform import as_transform

    # Copies: a Normalize() fitted here, on a few unshuffled samples, must not keep these statistics for training.
    tfms = sorted((as_transform(t) for t in fresh_copies(dblock.batch_tfms)), key=lambda t: t.order)
    print(f"Step 8, batch transforms on {device} ({len(tfms)})" + ("" if tfms else ": none"))
    for t in tfms:
        try:
            batch = t(batch, dsets.kinds, 0)
        except Exception as e:
            raise _fail(f"batch transform {t!r}", e) from e
        print(f"  {t!r} -> {describe(batch)}")
