"""Training on several processes at once: PyTorch's DistributedDataParallel (DDP) inside the ember loop.

Launch the same script once per GPU (or several times on the CPU) with ``torchrun``, and wrap the fits:

    torchrun --nproc_per_node=4 train.py

    # train.py
    learn = vision_learner(dls, "resnet34", metrics=accuracy)
    with learn.distrib_ctx():
        learn.fine_tune(5)
    learn.export("model.ember")          # written once, by process 0

Each process takes its own slice of every training batch (the batch size is the global one: with 4 processes
and ``bs=64`` each process computes 16 items), the gradients are averaged across processes after each
backward pass, and every process keeps the same weights. What a single process would do with the same batches
is what the processes do together, up to the order of floating-point sums (and batch-norm statistics, which are
per process unless they are synchronized, as they are by default on GPUs).

Validation runs whole on every process, so every process computes the same metrics and callbacks that act on
them (early stopping, saving the best model) take the same decision everywhere. Files (checkpoints, ``save``,
``export``, CSV and TensorBoard logs) are written by process 0 alone, and progress is shown by it alone.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ember.core.errors import ConfigError
from ember.learner.callback import Callback

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "rank_distrib",
    "num_distrib",
    "is_main_process",
    "barrier",
    "rank0_first",
    "setup_distrib",
    "teardown_distrib",
    "DistributedTrainer",
    "distrib_ctx",
    "shard_loader",
    "any_process",
]


# ---------------------------------------------------------------------------------------------------
# which process is this
# ---------------------------------------------------------------------------------------------------
def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank_distrib() -> int:
    """This process's rank: 0 for the first (or only) process."""
    if _initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def num_distrib() -> int:
    """How many processes train together (1 when not distributed)."""
    if _initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """Whether this process writes files and shows progress: rank 0, or the only process."""
    return rank_distrib() == 0


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for outside a distributed run)."""
    if _initialized() and dist.get_world_size() > 1:
        dist.barrier()


def rank0_first(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `func` on process 0 first, then on the others: e.g. ``rank0_first(untar_data, URLs.PETS)`` downloads
    once, and the other processes find the archive in the cache."""
    if is_main_process():
        result = func(*args, **kwargs)
        barrier()
        return result
    barrier()
    return func(*args, **kwargs)


def setup_distrib(backend: str | None = None) -> torch.device:
    """Join the group of processes that ``torchrun`` started (a no-op in a single process).

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` from the environment.
    Returns this process's device: ``cuda:<LOCAL_RANK>`` when CUDA is available, else the CPU.

    Args:
        backend: ``"nccl"`` (the default with CUDA) or ``"gloo"`` (the default on the CPU).
    """
    cuda = torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if num_distrib() > 1 and not _initialized():
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ConfigError(
                f"WORLD_SIZE={num_distrib()} but {', '.join(missing)} is not set. Launch the script with "
                "`torchrun --nproc_per_node=N script.py`, which sets them."
            )
        dist.init_process_group(backend=backend or ("nccl" if cuda else "gloo"))
    return device


def teardown_distrib() -> None:
    """Leave the process group (after the last collective operation)."""
    if _initialized():
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------
# one slice of every batch per process
# ---------------------------------------------------------------------------------------------------
#: A process computes at least this many items of a batch (batch norm needs two); smaller batches are skipped.
MIN_ITEMS = 2


def _chunk_bounds(n: int, rank: int, world: int) -> tuple[int, int] | None:
    """Items ``[start, stop)`` of a batch of `n` that process `rank` of `world` takes, or None to skip the batch.

    Every process takes the same number of items, so that averaging the processes' mean gradients gives the
    batch's mean gradient; the last ``n % world`` items are left out, and a batch that would give a process fewer
    than `MIN_ITEMS` items is skipped (by every process alike: they stay in step).
    """
    per = n // world
    if per < MIN_ITEMS:
        return None
    return rank * per, (rank + 1) * per


class _ShardedSampler(Sampler):
    """This process's slice of each batch that `batches` yields: lists of indices (a torch batch sampler) or index
    tensors (ember's batch-index sampler for tables and ratings). Batches too small to slice are skipped, by every
    process alike (so they stay in step)."""

    def __init__(self, batches: Any, rank: int, world: int) -> None:
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            bounds = _chunk_bounds(len(batch), self.rank, self.world)
            if bounds is not None:
                yield batch[bounds[0] : bounds[1]]

    def __len__(self) -> int:
        n, b = len(self.batches), self.batches
        bs = getattr(b, "batch_size", None) or getattr(b, "bs", None)
        n_items = len(b.sampler) if hasattr(b, "sampler") else getattr(b, "n", None)
        if not n or not bs or n_items is None:
            return n
        last = bs if b.drop_last else n_items - (n - 1) * bs
        return sum(1 for size in [bs] * (n - 1) + [last] if size // self.world >= MIN_ITEMS)

    def __getattr__(self, name: str) -> Any:  # bs, drop_last, shuffle, generator … of the wrapped sampler
        if name == "batches":
            raise AttributeError(name)
        return getattr(self.batches, name)


class _SlicedLoader:
    """Any loader whose batches come whole (an iterable dataset): each process keeps its slice of each batch."""

    def __init__(self, loader: Any, rank: int, world: int) -> None:
        self.loader, self.rank, self.world = loader, rank, world

    def __iter__(self) -> Iterator[tuple]:
        for batch in self.loader:
            bounds = _chunk_bounds(batch[0].shape[0], self.rank, self.world)
            if bounds is not None:
                yield tuple(t[bounds[0] : bounds[1]] for t in batch)

    def __len__(self) -> int:
        n = len(self.loader)
        last = getattr(getattr(self.loader, "dataset", None), "last_batch_size", None)
        if n and isinstance(last, int) and _chunk_bounds(last, self.rank, self.world) is None:
            n -= 1  # the last batch is too small to slice: every process skips it
        return n

    def __getattr__(self, name: str) -> Any:  # bs, dataset, kinds, decode … of the wrapped loader
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)


def shard_loader(dl: Any, rank: int | None = None, world: int | None = None) -> Any:
    """A copy of the training loader `dl` that yields only process `rank`'s slice of each batch.

    Map-style loaders (the usual torch DataLoader, and ember's tensor-slicing loaders for tables) load only that
    slice; loaders over iterable datasets (text) build each batch whole and keep the slice. Every process must
    draw the same batches in the same order: :class:`DistributedTrainer` makes the shuffling generators equal.
    """
    from ember.data.loaders import DeviceLoader, loading_settings

    rank = rank_distrib() if rank is None else rank
    world = num_distrib() if world is None else world
    if world == 1:
        return dl
    old = getattr(dl, "dl", None)
    if not isinstance(dl, DeviceLoader) or not isinstance(old, DataLoader):
        return _SlicedLoader(dl, rank, world)
    settings = loading_settings(old)
    if old.num_workers > 0:
        settings["worker_init_fn"] = partial(_rank_worker_init, old.worker_init_fn, rank)
    if old.batch_sampler is not None:  # the usual map-style loader: lists of indices, collated
        settings["batch_sampler"] = _ShardedSampler(old.batch_sampler, rank, world)
        return dl.new(dl=DataLoader(old.dataset, **settings))
    if isinstance(getattr(old.sampler, "bs", None), int) and hasattr(old.sampler, "n"):
        # a sampler of index tensors over a dataset indexed by them (ember's tables and ratings)
        settings["sampler"] = _ShardedSampler(old.sampler, rank, world)
        return dl.new(dl=DataLoader(old.dataset, batch_size=None, **settings))
    return _SlicedLoader(dl, rank, world)


# ---------------------------------------------------------------------------------------------------
# the callback
# ---------------------------------------------------------------------------------------------------
def _generators(dl: Any) -> list[torch.Generator]:
    """The torch generators that decide a loader's order (DataLoader, sampler), without duplicates."""
    torch_dl = getattr(dl, "dl", None)
    found = [
        getattr(torch_dl, "generator", None),
        getattr(getattr(torch_dl, "sampler", None), "generator", None),
        getattr(getattr(getattr(torch_dl, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    out: list[torch.Generator] = []
    for g in found:
        if isinstance(g, torch.Generator) and all(g is not o for o in out):
            out.append(g)
    return out


def _sync_random_state(dl: Any) -> None:
    """Give every process process 0's shuffling state: torch's CPU generator, the loader's own generators, and
    the numpy generator of a dataset that has one (text), so all draw the same batches in the same order."""
    gens = _generators(dl)
    dataset = getattr(dl, "dataset", None)
    rng = getattr(dataset, "_rng", None)
    state = [
        {
            "torch": torch.get_rng_state(),
            "loader": [g.get_state() for g in gens],
            "numpy": rng.bit_generator.state if rng is not None else None,
        }
    ]
    dist.broadcast_object_list(state, src=0)  # between the processes of this run only
    torch.set_rng_state(state[0]["torch"])
    for g, s in zip(gens, state[0]["loader"]):
        g.set_state(s)
    if rng is not None and state[0]["numpy"] is not None:
        rng.bit_generator.state = state[0]["numpy"]


def _sync_torch_rng() -> None:
    """Give every process process 0's CPU random state (what the loaders without a generator shuffle with)."""
    state = [torch.get_rng_state()]
    dist.broadcast_object_list(state, src=0)
    torch.set_rng_state(state[0])


def _collective_device() -> torch.device:
    """Where tensors for collectives live: this process's GPU with NCCL, the CPU with gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_process(flag: bool | torch.Tensor) -> bool:
    """Whether `flag` is true in at least one process (every process must call it at the same point)."""
    if not _initialized():
        return bool(flag)
    t = torch.as_tensor(flag, dtype=torch.float32).to(_collective_device()).reshape(())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _rank_worker_init(init: Callable[[int], None] | None, rank: int, worker_id: int) -> None:
    """Seed a loader worker of process `rank`: the base seed is the same in every process (drawn from the shared
    shuffling state), so each process adds its rank for its own augmentations."""
    torch.manual_seed((torch.initial_seed() + 7919 * rank) % 2**63)
    if init is not None:
        init(worker_id)


class DistributedTrainer(Callback):
    """Train with DistributedDataParallel for the fits it is added to (see :func:`distrib_ctx`).

    Args:
        sync_bn: synchronize batch-norm statistics across processes (GPUs only: torch has no CPU version).
        **ddp_kwargs: passed to ``DistributedDataParallel`` (``find_unused_parameters=True`` for models whose
            forward pass leaves some trainable parameters unused).
    """

    order = -20  # before the callbacks that read batches or the loader

    def __init__(self, sync_bn: bool = True, **ddp_kwargs: Any) -> None:
        self.sync_bn = sync_bn
        self.ddp_kwargs = ddp_kwargs
        self._train: Any = None
        self._silent: bool | None = None
        self._in_fit = False
        self._wrapped = False

    def before_fit(self) -> None:
        learn = self.learn
        if not _initialized():
            raise ConfigError(
                "DistributedTrainer needs a process group: use `with learn.distrib_ctx():` in a script launched "
                "by `torchrun --nproc_per_node=N script.py`."
            )
        self._in_fit, self._wrapped = True, False
        self._train = learn.dls.train
        _sync_random_state(self._train)
        if any(getattr(t, "ready", True) is False for t in getattr(self._train, "batch_tfms", None) or []):
            # statistics taken from the first batch (Normalize()): from the whole batch, the same in every process
            self._train.one_batch()
        learn.dls.train = shard_loader(self._train)
        if not is_main_process():
            self._silent, learn.silent = learn.silent, True

    def _wrap(self) -> None:
        """The DDP wrapper, built once the fit's trainable parameters are known (after a resume restored them)."""
        learn = self.learn
        device = learn.dls.device
        model = learn.model
        if self.sync_bn and device.type == "cuda" and _has_batchnorm(model):
            # a structural copy that shares the parameters and buffers, so learn.model keeps its classes
            shared = {id(t): t for t in [*model.parameters(), *model.buffers()]}
            model = nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model, memo=shared))
        ids = [device.index] if device.type == "cuda" else None
        learn.forward_model = nn.parallel.DistributedDataParallel(model, device_ids=ids, **self.ddp_kwargs)
        self._wrapped = True

    def before_train(self) -> None:
        if not self._wrapped:
            self._wrap()
        # The epoch's shuffling: process 0's random state everywhere (the others re-seed after the first batch).
        _sync_torch_rng()

    def before_batch(self) -> None:
        if self.learn.training and self.learn.iter == 0 and rank_distrib() > 0:
            # Dropout and augmentation: each process its own draws (process 0 keeps its stream, so a run on one
            # process with the same batches draws the same shuffles).
            torch.manual_seed(int(torch.randint(0, 2**62, ())) + rank_distrib())

    def before_validate(self) -> None:
        if not self._in_fit:  # validate() or get_preds() outside a fit may run in one process only
            return
        # Batch-norm running statistics were updated by each process's own slices: validate process 0's, the
        # same model everywhere, so every process computes the same metrics.
        for buf in self.learn.model.buffers():
            dist.broadcast(buf, src=0)

    def cleanup_fit(self) -> None:
        learn = self.learn
        learn.forward_model = None
        self._in_fit, self._wrapped = False, False
        if self._train is not None:
            learn.dls.train, self._train = self._train, None
        if self._silent is not None:
            learn.silent, self._silent = self._silent, None


class _AverageTrainLoss(Callback):
    """Make the epoch's training loss the mean over the processes (each computed its own slices), so that
    callbacks watching ``train_loss`` take the same decision in every process."""

    order = 55  # after the Recorder (50) wrote the epoch's row, before the trackers (80) read it

    def after_epoch(self) -> None:
        if not _initialized():
            return
        rec = self.learn.recorder
        value = rec.log.get("train_loss")
        if value is None:
            return
        t = torch.tensor(float(value), dtype=torch.float64, device=_collective_device())
        dist.all_reduce(t)
        mean = float(t) / dist.get_world_size()
        rec.log["train_loss"] = mean
        rec.values[-1][0] = mean


@contextlib.contextmanager
def distrib_ctx(learn: Learner, sync_bn: bool = True, backend: str | None = None, **ddp_kwargs: Any) -> Iterator[Any]:
    """Fits inside the block train on every process of a ``torchrun`` launch; in a single process it does nothing.

    Joins the process group (when the script was launched with several processes and it is not joined yet),
    moves the learner to this process's device (``cuda:<LOCAL_RANK>``), and adds a
    :class:`DistributedTrainer`. On leaving, the callback is removed and a group joined here is left.
    """
    if num_distrib() <= 1:
        yield learn
        return
    joined = not _initialized()
    device = setup_distrib(backend)
    if learn.dls.device != device:
        learn.dls.to(device)
        learn.model.to(device)
        if learn.opt is not None:  # keep the optimizer's state (moments …), on this process's device
            for st in learn.opt.state.values():
                for k, v in st.items():
                    if isinstance(v, torch.Tensor) and v.device.type != "cpu":
                        st[k] = v.to(device)
    cbs = [DistributedTrainer(sync_bn=sync_bn, **ddp_kwargs), _AverageTrainLoss()]
    learn.add_cbs(cbs)
    failed = False
    try:
        yield learn
    except BaseException:
        failed = True  # the other processes may be waiting in a collective: no barrier, the launcher stops them
        raise
    finally:
        learn.remove_cbs(cbs)
        if joined and not failed:
            barrier()
            teardown_distrib()
