"""Weighted and partial training loaders: on Datasets, DataBlock and tables; seeding, workers, distributed slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ember.core.errors import ConfigError
from ember.core.seed import set_seed
from ember.data.block import CategoryBlock, DataBlock, RegressionBlock
from ember.data.datasets import Datasets
from ember.data.items import IndexSplitter
from ember.distributed import shard_loader
from ember.tabular.data import TabularPandas

CPU = {"device": "cpu", "num_workers": 0}  # no worker processes: the items are tiny


def value(item: int) -> float:
    return float(item)


def parity(item: int) -> str:
    return "odd" if item % 2 else "even"


def make_dsets(n: int = 40, n_valid: int = 8) -> Datasets:
    """Items 0..n-1; the last `n_valid` are the validation set. The input is the item itself, so batches say
    which items were drawn."""
    return Datasets(
        list(range(n)),
        [RegressionBlock(), CategoryBlock()],
        getters=[value, parity],
        splits=(range(n - n_valid), range(n - n_valid, n)),
    )


def drawn(dl, epochs: int = 1) -> list[int]:
    """The items a training loader gives, epoch after epoch."""
    return [int(v) for _ in range(epochs) for xb, *_ in dl for v in xb.flatten().tolist()]


def test_zero_weight_items_are_never_drawn_and_validation_is_unchanged():
    dsets = make_dsets()
    wgts = np.ones(40)
    wgts[:10] = 0  # items 0..9 are out
    set_seed(0)
    dls = dsets.weighted_dataloaders(wgts, bs=8, **CPU)
    items = drawn(dls.train, epochs=5)
    assert len(items) == 5 * 32  # len(train) items an epoch
    assert min(items) >= 10 and max(items) < 32  # never a zero-weighted nor a validation item
    assert len(set(items)) < len(items)  # with replacement
    assert drawn(dls.valid) == list(range(32, 40))  # in order, every item, as plain loaders have it
    plain = dsets.dataloaders(bs=8, **CPU)
    assert len(dls.valid) == len(plain.valid) and len(dls.train) == len(plain.train) == 4


def test_frequencies_follow_the_weights():
    dsets = make_dsets(n=30, n_valid=0)
    wgts = np.zeros(30)
    wgts[[3, 11, 20]] = [1, 2, 7]  # expected frequencies 0.1, 0.2, 0.7
    set_seed(1)
    dls = dsets.weighted_dataloaders(wgts, bs=10, **CPU)
    items = np.array(drawn(dls.train, epochs=100))  # 3000 draws
    assert len(items) == 3000 and set(items.tolist()) == {3, 11, 20}
    freqs = [(items == i).mean() for i in (3, 11, 20)]
    assert freqs == pytest.approx([0.1, 0.2, 0.7], abs=0.03)  # a few standard deviations (<= 0.0084) apart


def test_same_seed_same_draws_and_another_seed_others():
    dsets = make_dsets()
    wgts = np.linspace(0.1, 1.0, 40)

    def draws(seed: int) -> list[int]:
        set_seed(seed)
        return drawn(dsets.weighted_dataloaders(wgts, bs=8, **CPU).train, epochs=2)

    first = draws(5)
    assert draws(5) == first and draws(6) != first
    assert first[:32] != first[32:]  # each epoch draws again


def test_source_weights_and_training_weights_agree():
    dsets = make_dsets()
    source = np.arange(40, dtype=float) % 5  # one per item; items 0, 5, 10, ... weigh 0
    set_seed(3)
    a = drawn(dsets.weighted_dataloaders(source, bs=8, **CPU).train, epochs=3)
    set_seed(3)
    b = drawn(dsets.weighted_dataloaders(torch.tensor(source[:32]), bs=8, **CPU).train, epochs=3)
    assert a == b and all(i % 5 for i in a)
    # Training items in another order than the source's, with as many weights as both: read in the source's order.
    shuffled = Datasets(
        list(range(6)), [RegressionBlock(), CategoryBlock()], [value, parity], splits=([5, 3, 1, 0, 2, 4], [])
    )
    assert set(drawn(shuffled.weighted_dataloaders([0, 0, 0, 1, 0, 0], bs=3, **CPU).train, epochs=5)) == {3}


def test_datablock_weights_count_every_source_item_even_those_left_out():
    def split(items):  # items 0..9 train, 10..13 valid, 14..19 in neither split (dropped)
        return list(range(10)), list(range(10, 14))

    db = DataBlock([RegressionBlock(), CategoryBlock()], get_x=value, get_y=parity, splitter=split)
    wgts = np.zeros(20)
    wgts[[2, 7]] = 1.0
    wgts[15:] = 100.0  # dropped items: their weights must not shift onto others
    set_seed(0)
    dls = db.weighted_dataloaders(list(range(20)), wgts, bs=5, **CPU)
    assert set(drawn(dls.train, epochs=4)) == {2, 7}
    assert drawn(dls.valid) == [10, 11, 12, 13]


def test_rebuilt_loaders_and_workers_keep_the_weights():
    dsets = make_dsets()
    wgts = (np.arange(40) % 2).astype(float)  # odd items only
    set_seed(0)
    dls = dsets.weighted_dataloaders(wgts, bs=8, device="cpu", num_workers=0)
    set_seed(0)
    with_workers = dsets.weighted_dataloaders(wgts, bs=8, device="cpu", num_workers=1)
    assert with_workers.train.dl.num_workers == 1
    # The sampler draws in this process: a worker changes nothing in the first epoch's draws (later epochs differ,
    # as with torch's own shuffling: the loader takes its workers' seed from the same generator once, not per epoch).
    assert drawn(with_workers.train) == drawn(dls.train)
    assert all(i % 2 for i in drawn(with_workers.train, epochs=2))
    small = dls.new(bs=4)
    items = drawn(small.train, epochs=2)
    assert len(small.train) == 8 and len(items) == 64 and all(i % 2 for i in items)


class Column(torch.nn.Module):
    """A linear model on one number per item (the item itself)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x[:, None] / 40)  # (B,) -> (B, 2)


@pytest.mark.parametrize("kind", ["weighted", "partial"])
def test_predictions_on_the_training_set_come_in_dataset_order(kind):
    from ember.learner.learner import Learner

    dsets = make_dsets()
    wgts = np.zeros(40)
    wgts[:4] = 1  # the loader draws items 0..3 only
    set_seed(0)
    if kind == "weighted":  # the last partial batch kept: only the sampler reorders
        dls = dsets.weighted_dataloaders(wgts, bs=64, **CPU)  # fewer items than bs: nothing dropped
    else:
        dls = dsets.partial_dataloaders(10, bs=8, drop_last=False, **CPU)
    assert not dls.train.drop_last
    learn = Learner(dls, Column(), loss_func=torch.nn.CrossEntropyLoss())
    learn.silent = True
    gen = dls.train.dl.sampler.generator
    state = gen.get_state()
    preds, targs = learn.get_preds(ds_idx=0)
    assert preds.shape == (32, 2) and targs.tolist() == [i % 2 for i in range(32)]  # every item once, in order
    assert torch.equal(gen.get_state(), state)  # the loader's own draws are untouched
    assert len(drawn(dls.train)) == (32 if kind == "weighted" else 10)


def test_a_rebuilt_loader_draws_from_its_own_generator():
    set_seed(0)
    dls = make_dsets().weighted_dataloaders(np.arange(40.0), bs=8, **CPU)
    small = dls.new(bs=4)
    assert small.train.dl.sampler.generator is not dls.train.dl.sampler.generator
    first = drawn(small.train)
    assert drawn(dls.train) == first  # both start where the original was; reading one did not move the other
    set_seed(0)
    plain = make_dsets().dataloaders(bs=8, **CPU)
    copy = plain.new(bs=4)
    assert drawn(copy.train) == drawn(plain.train)
    to = TabularPandas(_table(), cont_names=["row"], y_names="y", splits=(range(50), range(50, 60)))
    table = to.weighted_dataloaders(np.arange(60.0), bs=10, seed=0, device="cpu")
    rebuilt = table.new(bs=5)
    assert _rows(rebuilt.train) == _rows(table.train)


def test_huge_weights_do_not_overflow_into_one_item():
    dsets = make_dsets()
    set_seed(0)
    dls = dsets.weighted_dataloaders(np.r_[np.full(32, 1e308), np.ones(8)], bs=8, **CPU)  # their sum is inf
    assert len(set(drawn(dls.train, epochs=3))) > 20  # 96 draws of 32 equal weights, not item 31 alone
    tiny = np.zeros(40)
    tiny[[5, 6]] = 1e-320  # subnormal
    assert set(drawn(dsets.weighted_dataloaders(tiny, bs=8, **CPU).train, epochs=3)) == {5, 6}


def test_a_resumed_weighted_fit_draws_what_the_whole_run_drew(tmp_path):
    from ember.core.errors import CallbackError
    from ember.learner.callback import Callback
    from ember.learner.learner import Learner

    class Seen(Callback):
        run_valid = False

        def __init__(self, fail_at: int | None = None) -> None:
            self.items, self.fail_at = [], fail_at

        def before_epoch(self):
            if self.learn.epoch == self.fail_at:
                raise RuntimeError("power cut")

        def before_batch(self):
            self.items.append((self.learn.epoch, self.learn.xb[0].int().tolist()))

    def run(path, seed: int, cb: Callback, **fit_kwargs) -> Learner:
        set_seed(seed)
        dls = make_dsets().weighted_dataloaders(np.arange(40.0) % 3, bs=8, **CPU)
        set_seed(seed + 7)  # the global generator moves on; the loader's own must be what resume restores
        learn = Learner(dls, Column(), loss_func=torch.nn.CrossEntropyLoss(), path=path)
        learn.silent = True
        learn.fit(3, 1e-2, cbs=cb, **fit_kwargs)
        return learn

    whole = Seen()
    run(tmp_path / "a", 0, whole)
    with pytest.raises(CallbackError, match="power cut"):
        run(tmp_path / "b", 0, Seen(fail_at=2), checkpoint="ck")
    rest = Seen()
    run(tmp_path / "b", 99, rest, checkpoint="ck", resume=True)  # another process, another seed
    assert rest.items and rest.items == [e for e in whole.items if e[0] == 2]


def test_partial_loaders_read_a_fresh_subset_each_epoch():
    dsets = make_dsets()
    set_seed(0)
    dls = dsets.partial_dataloaders(10, bs=5, **CPU)
    assert len(dls.train) == 2
    epochs = [drawn(dls.train) for _ in range(4)]
    for items in epochs:
        assert len(items) == 10 == len(set(items)) and max(items) < 32  # distinct training items
    assert len({tuple(sorted(e)) for e in epochs}) == 4  # a new choice every epoch
    assert drawn(dls.valid) == list(range(32, 40))
    set_seed(0)
    repeat = dsets.partial_dataloaders(10, bs=5, **CPU)
    assert [drawn(repeat.train) for _ in range(4)] == epochs
    whole = dsets.partial_dataloaders(1000, bs=8, **CPU)  # more than there are: every item once
    assert sorted(drawn(whole.train)) == list(range(32))


def test_datablock_partial_loaders():
    db = DataBlock(
        [RegressionBlock(), CategoryBlock()], get_x=value, get_y=parity, splitter=IndexSplitter(range(30, 40))
    )
    dls = db.partial_dataloaders(list(range(40)), 12, bs=4, **CPU)
    items = drawn(dls.train)
    assert len(items) == 12 == len(set(items)) and max(items) < 30 and len(dls.train) == 3


def _table(n: int = 60) -> pd.DataFrame:
    return pd.DataFrame({"row": np.arange(n, dtype=float), "y": ["a", "b", "c"] * (n // 3)})


def _rows(dl, epochs: int = 1) -> list[int]:
    return [int(v) for _ in range(epochs) for _, x_cont, _ in dl for v in x_cont[:, 0].tolist()]


def test_tabular_weighted_loaders():
    to = TabularPandas(_table(), cont_names=["row"], y_names="y", splits=(range(50), range(50, 60)))
    wgts = np.zeros(60)
    wgts[[4, 9, 40]] = [1, 1, 2]
    wgts[55] = 50.0  # a validation row: not used
    dls = to.weighted_dataloaders(wgts, bs=10, seed=0, device="cpu")
    rows = np.array(_rows(dls.train, epochs=60))  # 3000 draws
    assert len(rows) == 3000 and set(rows.tolist()) == {4, 9, 40}
    assert [(rows == r).mean() for r in (4, 9, 40)] == pytest.approx([0.25, 0.25, 0.5], abs=0.03)
    assert _rows(dls.valid) == list(range(50, 60))
    again = to.weighted_dataloaders(wgts[:50], bs=10, seed=0, device="cpu")  # per training row: the same draws
    assert _rows(again.train, epochs=3) == _rows(to.weighted_dataloaders(wgts, bs=10, seed=0, device="cpu").train, 3)
    assert set(_rows(dls.train.new(bs=7), epochs=3)) <= {4, 9, 40}  # a rebuilt loader keeps drawing by weight


def test_tabular_partial_loaders():
    to = TabularPandas(_table(), cont_names=["row"], y_names="y", splits=(range(50), range(50, 60)))
    dls = to.partial_dataloaders(20, bs=8, seed=2, device="cpu")
    assert len(dls.train) == 2  # 20 rows, the incomplete batch dropped
    epochs = [_rows(dls.train) for _ in range(3)]
    for rows in epochs:
        assert len(rows) == 16 == len(set(rows)) and max(rows) < 50
    assert len({tuple(sorted(e)) for e in epochs}) == 3
    repeat = to.partial_dataloaders(20, bs=8, seed=2, device="cpu")
    assert [_rows(repeat.train) for _ in range(3)] == epochs


@pytest.mark.parametrize("kind", ["datasets", "table"])
def test_distributed_slices_split_the_same_weighted_batches(kind):
    if kind == "datasets":
        set_seed(0)
        dl = make_dsets().weighted_dataloaders(np.arange(40.0), bs=8, **CPU).train
        take = drawn
    else:
        to = TabularPandas(_table(), cont_names=["row"], y_names="y", splits=(range(50), range(50, 60)))
        dl = to.weighted_dataloaders(np.arange(60.0), bs=8, seed=0, device="cpu").train
        take = _rows
    gen = dl.dl.sampler.generator
    start = gen.get_state()
    whole = take(dl)
    halves = []
    for rank in (0, 1):  # every process starts from the same generator state (the trainer shares it)
        gen.set_state(start)
        halves.append(take(shard_loader(dl, rank, 2)))
    assert len(halves[0]) == len(halves[1]) == len(whole) // 2
    per_batch = [halves[r][i : i + 4] for i in range(0, len(halves[0]), 4) for r in (0, 1)]
    assert [v for chunk in per_batch for v in chunk] == whole[: len(whole) - len(whole) % 8]


def test_bad_weights_and_partial_counts_are_clear_errors():
    dsets = make_dsets()
    with pytest.raises(ConfigError, match=r"non-negative.*wgts\[3\]=-1\.0"):
        dsets.weighted_dataloaders([1.0, 1.0, 1.0, -1.0] + [1.0] * 36, **CPU)
    with pytest.raises(ConfigError, match=r"item of the source \(40\) or one weight per training item \(32\)"):
        dsets.weighted_dataloaders([1.0] * 7, **CPU)
    with pytest.raises(ConfigError, match="Every training item has weight 0"):
        dsets.weighted_dataloaders([0.0] * 32 + [1.0] * 8, **CPU)  # only validation items weigh
    with pytest.raises(ConfigError, match="non-negative finite"):
        dsets.weighted_dataloaders([float("nan")] * 40, **CPU)
    with pytest.raises(ConfigError, match="numbers"):
        dsets.weighted_dataloaders(["heavy"] * 40, **CPU)
    with pytest.raises(ConfigError, match="`partial_n`"):
        dsets.partial_dataloaders(0, **CPU)
    with pytest.raises(ConfigError, match="shuffle"):
        dsets.weighted_dataloaders([1.0] * 40, shuffle=False, **CPU)
    with pytest.raises(ConfigError, match="not both"):
        dsets.dataloaders(wgts=[1.0] * 40, partial_n=4, **CPU)
    to = TabularPandas(_table(), cont_names=["row"], y_names="y", splits=(range(50), range(50, 60)))
    with pytest.raises(ConfigError, match=r"row of the DataFrame \(60\) or one weight per training row \(50\)"):
        to.weighted_dataloaders(np.ones(59), device="cpu")
    with pytest.raises(ConfigError, match="Every training row has weight 0"):
        to.weighted_dataloaders(np.zeros(60), device="cpu")
    with pytest.raises(ConfigError, match="`partial_n`"):
        to.partial_dataloaders(2.5, device="cpu")
    with pytest.raises(ConfigError, match="own sampler: do not pass `sampler`"):
        to.weighted_dataloaders(np.ones(60), device="cpu", sampler=range(50))


def test_missing_weights_or_counts_are_errors_not_the_usual_loaders():
    # None means "not weighted" inside `dataloaders`: the weighted/partial methods must not quietly fall back.
    db = DataBlock([RegressionBlock(), CategoryBlock()], get_x=value, get_y=parity, splitter=IndexSplitter([0]))
    to = TabularPandas(_table(), cont_names=["row"], y_names="y", splits=(range(50), range(50, 60)))
    for make in (
        lambda: make_dsets().weighted_dataloaders(None, **CPU),
        lambda: db.weighted_dataloaders(list(range(10)), None, **CPU),
        lambda: to.weighted_dataloaders(None, device="cpu"),
    ):
        with pytest.raises(ConfigError, match="Expected `wgts` to be one weight per (item|row); received `wgts=None`"):
            make()
    for make in (
        lambda: make_dsets().partial_dataloaders(None, **CPU),
        lambda: db.partial_dataloaders(list(range(10)), None, **CPU),
        lambda: to.partial_dataloaders(None, device="cpu"),
    ):
        with pytest.raises(ConfigError, match="received `partial_n=None`"):
            make()


def test_datablock_refuses_conflicting_arguments_before_reading_any_item():
    read = []

    def slow_value(item: int) -> float:
        read.append(item)
        return float(item)

    db = DataBlock([RegressionBlock(), CategoryBlock()], get_x=slow_value, get_y=parity, splitter=IndexSplitter([0]))
    source = list(range(10))
    for kwargs, message in (
        ({"shuffle": False}, "cannot keep the training order"),
        ({"sampler": range(9)}, "do not pass `sampler`"),
        ({"partial_n": 3}, "not both"),
    ):
        with pytest.raises(ConfigError, match=message):
            db.weighted_dataloaders(source, np.ones(10), cache=True, **kwargs, **CPU)
    assert read == []  # refused before the cache was filled
