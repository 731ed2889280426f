"""Tests for the DataLoaders built from a DataBlock: batches, decoding, showing, test loaders, settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ember.core.errors import DataError
from ember.core.seed import set_seed
from ember.data import DataLoaders, DeviceLoader
from ember.data.block import CategoryBlock, DataBlock, TransformBlock
from ember.data.items import RandomSplitter
from ember.data.loaders import make_loader
from ember.data.transform import Transform
from ember.losses import MSELossFlat


class Standardize(Transform):
    """A batch transform with a decode, like a normalization."""

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = mean, std

    def encode_numbers(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def decode_numbers(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean


class TitledBlock(TransformBlock):
    """Numbers shown as a title, so show_batch's axes can be checked."""

    kind = "numbers"

    def encode(self, value: int) -> torch.Tensor:
        return torch.tensor([float(value), float(value) + 0.5])  # (2,)

    def show(self, value: torch.Tensor, ax, **kwargs) -> None:  # noqa: ANN001
        ax.set_title(f"x={value[0]:.0f}")


def label(n: int) -> str:
    return "big" if n >= 20 else "small"


def make_dls(bs: int = 4, batch_tfms: list | None = None, **kwargs) -> DataLoaders:  # noqa: ANN003
    db = DataBlock(
        [TitledBlock, CategoryBlock], get_y=label, splitter=RandomSplitter(0.25, seed=0), batch_tfms=batch_tfms
    )
    return db.dataloaders(list(range(40)), bs=bs, device="cpu", **kwargs)


def test_batches_shapes_dtypes_and_lengths() -> None:
    dls = make_dls(bs=4)
    assert len(dls.train_ds) == 30 and len(dls.valid_ds) == 10
    assert len(dls.train) == 7 and len(dls.valid) == 3  # 30 // 4 (drop last); ceil(10 / 4)
    assert dls.bs == 4 and dls.device == torch.device("cpu")
    xb, yb = dls.one_batch()
    assert xb.shape == (4, 2) and xb.dtype == torch.float32 and yb.shape == (4,) and yb.dtype == torch.long
    sizes = [len(x) for x, _ in dls.valid]
    assert sizes == [4, 4, 2]
    valid_x = torch.cat([x[:, 0] for x, _ in dls.valid])
    assert torch.equal(valid_x, valid_x.sort().values)  # validation keeps the order


def test_workers_pinning_and_generator() -> None:
    dls = make_dls()
    assert dls.train.dl.num_workers == 0 and not dls.train.dl.pin_memory  # cached, CPU
    uncached = make_dls(cache=False)
    assert uncached.train.dl.num_workers >= 1 and uncached.train.dl.persistent_workers
    ds = TensorDataset(torch.zeros(4))
    assert make_loader(ds, bs=2, device="cuda").pin_memory
    assert make_loader(ds, bs=2, num_workers=0).generator is not None


def test_uncached_loader_with_worker_processes() -> None:
    dls = make_dls(cache=False, num_workers=2)
    xs = torch.cat([x[:, 0] for x, _ in dls.valid])
    assert len(xs) == 10 and torch.equal(xs, xs.sort().values)


def test_set_seed_makes_shuffling_reproducible() -> None:
    set_seed(7)
    a = [x[:, 0].tolist() for x, _ in make_dls().train]
    set_seed(7)
    b = [x[:, 0].tolist() for x, _ in make_dls().train]
    assert a == b
    dls = make_dls()
    first, second = [x[:, 0].tolist() for x, _ in dls.train], [x[:, 0].tolist() for x, _ in dls.train]
    assert first != second  # a new order each epoch


def test_decode_batch_undoes_batch_transforms() -> None:
    dls = make_dls(batch_tfms=[Standardize(mean=10.0, std=5.0)])
    xb, yb = dls.valid.one_batch()
    raw = xb[:, 0] * 5 + 10
    assert torch.allclose(raw, raw.round(), atol=1e-5) and xb[:, 0].abs().max() < 6  # standardized on the device
    decoded = dls.decode_batch((xb, yb), max_n=3)
    assert len(decoded) == 3
    x0, y0 = decoded[0]
    assert x0.tolist() == pytest.approx([x0[0].item(), x0[0].item() + 0.5])
    n = round(x0[0].item())
    assert y0 == label(n) and n in range(40)


def test_show_batch_draws_max_n_axes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    dls = make_dls(bs=8)
    fig = dls.show_batch(max_n=5, fname=tmp_path / "batch.png")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 5 and (tmp_path / "batch.png").stat().st_size > 0
    for ax in visible:
        first, second = ax.get_title().split("\n")  # the input's title, then the label's
        assert first.startswith("x=") and second == label(int(first[2:]))
    plt.close(fig)
    fig = dls.show_batch(max_n=4, nrows=1)
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 4 and len(fig.axes) == 4
    plt.close(fig)


def test_test_dl_with_and_without_labels() -> None:
    dls = make_dls(batch_tfms=[Standardize(mean=10.0, std=5.0)])
    tdl = dls.test_dl([3, 30, 12], bs=2)
    assert isinstance(tdl, DeviceLoader) and tdl.split == 1 and len(tdl) == 2
    (xb,) = tdl.one_batch()
    assert xb[:, 0].tolist() == pytest.approx([(3 - 10) / 5, (30 - 10) / 5])
    assert [s[0][0].item() for s in tdl.decode_batch(xb if isinstance(xb, tuple) else (xb,))] == pytest.approx(
        [3.0, 30.0]
    )
    lab = dls.test_dl([25, 1], with_labels=True)
    xb, yb = lab.one_batch()
    assert [dls.vocab[i] for i in yb.tolist()] == ["big", "small"]


def test_new_changes_batch_size_and_keeps_blocks() -> None:
    dls = make_dls(bs=4)
    bigger = dls.new(bs=10)
    assert bigger.bs == 10 and len(bigger.train) == 3 and bigger.vocab == dls.vocab
    assert bigger.train.blocks is not None and len(bigger.train.decode_batch(bigger.one_batch(), 2)) == 2
    assert dls.bs == 4  # the original is unchanged


def test_loss_func_and_c() -> None:
    dls = make_dls()
    assert dls.c == 2 and dls.vocab == ["big", "small"]
    dls.loss_func = MSELossFlat()
    assert isinstance(dls.loss_func, MSELossFlat)


def test_plain_dataloaders_still_work() -> None:
    x, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
    dls = DataLoaders(DataLoader(TensorDataset(x, y), batch_size=5), device="cpu")
    assert dls.loss_func is None and dls.vocab is None and dls.c is None and dls.kinds is None
    xb, yb = dls.one_batch()
    assert xb.shape == (5, 3)
    with pytest.raises(DataError, match="blocks"):
        dls.decode_batch((xb, yb))
    with pytest.raises(DataError, match="Datasets"):
        dls.test_dl([1, 2])


def test_show_results_colours_titles_and_get_grid() -> None:
    import matplotlib.pyplot as plt

    from ember.data.show import get_grid, show_results

    axes = get_grid(5, ncols=2, title="grid")
    assert len(axes) == 5 and len(axes[0].figure.axes) == 6 and not axes[0].figure.axes[5].get_visible()
    plt.close(axes[0].figure)
    blocks = [TitledBlock(), CategoryBlock(vocab=["big", "small"])]
    xs = [torch.tensor([1.0, 1.5]), torch.tensor([30.0, 30.5])]
    fig = show_results(xs, ["small", "big"], ["small", "small"], blocks)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    colours = [ax.title.get_color() for ax in fig.axes if ax.get_visible()]
    assert titles == ["small/small", "big/small"] and colours == ["green", "red"]
    plt.close(fig)
    points = [TitledBlock(), TransformBlock(kind="points")]
    fig = show_results(xs, [torch.zeros(2)] * 2, [torch.ones(2)] * 2, points)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["target", "prediction", "target", "prediction"]
    plt.close(fig)


def test_test_dl_refuses_no_items() -> None:
    with pytest.raises(DataError, match="No items"):
        make_dls().test_dl([])
