"""Helpers shared by the benchmarks: medians, a stopwatch, thread settings, tables, an environment report,
and the harness pieces the contender benchmarks share (rotating runs, an epoch timer for ember's and
fastai's callbacks, the plain-PyTorch AdamW + one-cycle loop, goal verdicts).

The benchmarks are scripts, not part of the package; they import this module as a sibling
(``from _common import ...``), which works because Python puts a script's folder on ``sys.path``.
Importing it does not import torch (``import_time.py`` uses it too); the helpers that need torch
import it when called.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

__all__ = [
    "ContenderStatus",
    "EpochTimes",
    "Stopwatch",
    "adamw_one_cycle",
    "cpu_count",
    "env_report",
    "fastai_skip_reason",
    "fit_plain",
    "fmt_ratio",
    "fmt_seconds",
    "goal_verdict",
    "judged",
    "median",
    "package_version",
    "print_env",
    "print_table",
    "rotations",
    "run_rotating",
    "set_threads",
    "sync",
    "time_call",
    "valid_accuracy",
]

T = TypeVar("T")


def median(values: Iterable[float]) -> float:
    """The median of `values`, or NaN when there are none (so a missing figure prints as ``nan``)."""
    values = list(values)
    return statistics.median(values) if values else float("nan")


class Stopwatch:
    """Wall-clock laps with :func:`time.perf_counter`, and this process's CPU time alongside.

    `lap()` returns wall seconds since the last lap and appends the CPU seconds of the same span
    (every thread of the process, :func:`time.process_time`) to `cpu_laps`. On a busy machine the
    wall time moves with the neighbours' load; the CPU time mostly does not.

    >>> sw = Stopwatch()
    >>> elapsed = sw.lap()
    """

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.cpu_last = time.process_time()
        self.cpu_laps: list[float] = []

    def lap(self) -> float:
        """Wall seconds since the previous lap (or since the stopwatch was made)."""
        now, cpu_now = time.perf_counter(), time.process_time()
        elapsed, self.last = now - self.last, now
        self.cpu_laps.append(cpu_now - self.cpu_last)
        self.cpu_last = cpu_now
        return elapsed

    def total(self) -> float:
        """Wall seconds since the stopwatch was made."""
        return time.perf_counter() - self.start


def time_call(fn: Callable[[], Any], repeat: int = 5, warmup: int = 0) -> list[float]:
    """Run `fn` `warmup` times untimed, then `repeat` times timed; returns the seconds of each timed call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def cpu_count() -> int:
    """CPUs this process may run on (the affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)


def set_threads(n: int | None) -> int:
    """Set torch's intra-op thread count (`None` or 0: all CPUs); returns the count in effect."""
    import torch

    n = n or cpu_count()
    torch.set_num_threads(n)
    return torch.get_num_threads()


def package_version(name: str) -> str | None:
    """The installed version of distribution `name`, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def env_report(device: str | None = None) -> dict[str, str]:
    """What the figures depend on: Python, torch and friends, threads, CPUs, and the device.

    Imports torch (the benchmarks need it anyway); reads the other versions from package metadata so
    that reporting them imports nothing.
    """
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    report = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": str(cpu_count()),
        "torch": torch.__version__,
        "torch threads": f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
        "device": dev,
    }
    for pkg in ("torchvision", "ember", "fastai", "fastcore"):
        report[pkg] = package_version(pkg) or "not installed"
    return report


def _rich_console() -> Any | None:
    """A rich Console when rich is installed, else None (the plain-text fallback is used)."""
    try:
        from rich.console import Console
    except ImportError:
        return None
    console = Console()
    if not console.is_terminal:
        # Piped to a file, rich assumes 80 columns and wraps the cells; logs can be wider.
        console = Console(width=max(console.width, 132))
    return console


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a table with rich when it is installed, as aligned plain text otherwise.

    Cells are shown with ``str``; the first column is left-aligned, the others right-aligned.
    """
    cells = [[str(c) for c in row] for row in rows]
    console = _rich_console()
    if console is not None:
        from rich.table import Table

        table = Table(title=title)
        for i, col in enumerate(columns):
            table.add_column(col, justify="left" if i == 0 else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(col)] + [len(row[i]) for row in cells]) for i, col in enumerate(columns)]

    def line(parts: Sequence[str]) -> str:
        return "  ".join(p.ljust(w) if i == 0 else p.rjust(w) for i, (p, w) in enumerate(zip(parts, widths)))

    print(title)
    print(line(columns))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row))


def print_env(report: dict[str, str]) -> None:
    """Print an environment report as ``key: value`` lines."""
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key.rjust(width)}: {value}")


def fmt_seconds(s: float, digits: int = 3) -> str:
    """Seconds with a fixed number of decimals; NaN prints as an en dash."""
    return "–" if s != s else f"{s:.{digits}f}"


def fmt_ratio(num: float, den: float) -> str:
    """``num/den`` with three decimals, or an en dash when either figure is missing."""
    if num != num or den != den or den == 0:
        return "–"
    return f"{num / den:.3f}"


def goal_verdict(
    num: float, den: float, goal: float, *, at_least: bool = False, condition: str = "", also: bool = True
) -> str:
    """``"   goal <= 1.03: met"`` (or ``missed``) for the ratio ``num/den``; empty when either figure is missing.

    Args:
        at_least: the goal is a floor (``>=``) instead of a ceiling (``<=``).
        condition: words after the goal naming a further requirement, e.g. ``" with accuracy no worse"``.
        also: whether that further requirement holds; the goal is met only when it does.
    """
    if num != num or den != den:
        return ""
    ratio = num / den
    met = (ratio >= goal if at_least else ratio <= goal) and also
    return f"   goal {'>=' if at_least else '<='} {goal}{condition}: " + ("met" if met else "missed")


def judged(what: str, ratio: float, goal: float) -> str:
    """``"judged: <what> = 1.023 (goal <= 1.1): OK"``; ``ABOVE GOAL`` past the goal or when the ratio is NaN."""
    return f"judged: {what} = {ratio:.3f} (goal <= {goal}): " + ("OK" if ratio <= goal else "ABOVE GOAL")


# --- running contenders ----------------------------------------------------------------------------


def rotations(names: Sequence[T], runs: int) -> Iterator[list[T]]:
    """Run r starts with contender r (mod count), so no contender always goes first or last."""
    names = list(names)
    for r in range(runs):
        k = r % len(names)
        yield names[k:] + names[:k]


@dataclass
class ContenderStatus:
    """A contender's name and, when it is out, why: skipped before it ran, or failed while running."""

    name: str
    skipped: str | None = None
    failed: str | None = None

    @property
    def ok(self) -> bool:
        return self.skipped is None and self.failed is None

    @property
    def short(self) -> str:
        """What the table's note column says of a contender that is out."""
        if self.failed:
            return "failed"
        return "not installed" if "not installed" in (self.skipped or "") else "skipped"

    def guarded(self, fn: Callable[[], T]) -> T | None:
        """Call `fn`; a failure marks the contender failed (its traceback printed) and returns None,
        so that the other contenders carry on and their figures still count."""
        try:
            return fn()
        except Exception as e:
            traceback.print_exc()
            self.failed = f"{type(e).__name__}: {e}"
            return None


def fastai_skip_reason(no_fastai: bool) -> str | None:
    """Why the fastai contender sits out (``--no-fastai``, not installed, failing to import), or None.

    Imports ``fastai.vision.all`` (the import a fastai user writes) when fastai is installed.
    """
    if no_fastai:
        return "skipped (--no-fastai)"
    if package_version("fastai") is None:
        return "not installed (make bench-env)"
    try:
        importlib.import_module("fastai.vision.all")
    except ImportError as e:
        return f"fastai failed to import ({e})"
    return None


def run_rotating(
    runners: Mapping[str, Callable[[], T]], runs: int, seed: int, line: Callable[[int, str, T], str]
) -> tuple[dict[str, list[T]], dict[str, str]]:
    """Run every contender `runs` times in a rotating order; returns each one's results, and why any is missing.

    Before each call torch is seeded with ``seed + run``; the call's stderr (progress bars, warnings) is
    swallowed. A contender whose import fails is "not installed (<module>)"; one that raises otherwise
    is "failed" (its traceback printed); either way it is not called again and the others go on. After
    each call ``line(run, name, result)`` is printed.
    """
    import torch

    results: dict[str, list[T]] = {name: [] for name in runners}
    missing: dict[str, str] = {}
    for r, order in enumerate(rotations(list(runners), runs)):
        for name in order:
            if name in missing:
                continue
            torch.manual_seed(seed + r)
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    res = runners[name]()
            except ImportError as e:
                missing[name] = f"not installed ({e.name})"
                continue
            except Exception:  # report and go on: one broken contender must not hide the others
                missing[name] = "failed"
                traceback.print_exc()
                continue
            results[name].append(res)
            print(line(r, name, res), flush=True)
    return results, missing


# --- timing epochs ---------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    """Wait for queued GPU work so that a timestamp means what it says (a no-op on the CPU)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochTimes:
    """Timestamps at the start of the first epoch and at the end of each epoch, wall and CPU.

    Fed by the callback :meth:`callback` makes (for ember's or fastai's Learner), or by hand.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self.watch: Stopwatch | None = None

    def start(self) -> None:
        if self.watch is None:
            sync(self.device)
            self.watch = Stopwatch()

    def lap(self) -> None:
        sync(self.device)
        assert self.watch is not None, "an epoch ended before one began"
        self.times.append(self.watch.lap())

    @property
    def cpu_times(self) -> list[float]:
        return self.watch.cpu_laps if self.watch is not None else []

    def callback(self, base: type) -> Any:
        """A callback for a Learner whose callback class is `base` (ember's or fastai's ``Callback``):
        it starts this timer before the first epoch and laps it after each one. Its order, 10,000, puts
        it after every other callback (the recorder and the progress bar included)."""
        timer = self

        class EpochTimer(base):  # type: ignore[valid-type, misc]
            order = 10_000

            def before_epoch(self) -> None:
                timer.start()

            def after_epoch(self) -> None:
                timer.lap()

        return EpochTimer()


def valid_accuracy(learn: Any) -> float:
    """The last metric (the accuracy, in these benchmarks) of a validation pass, without a progress bar."""
    no_bar = getattr(learn, "no_bar", None)
    with no_bar() if callable(no_bar) else contextlib.nullcontext():
        return float(learn.validate()[-1])


# --- the plain PyTorch contender -------------------------------------------------------------------


def adamw_one_cycle(
    model: nn.Module, lr_max: float, total_steps: int, weight_decay: float = 0.01, **kernel: Any
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.OneCycleLR]:
    """``torch.optim.AdamW`` and ``OneCycleLR`` set up as ember's and fastai's ``fit_one_cycle`` defaults.

    AdamW: decoupled weight decay (`weight_decay`), betas (0.9, 0.99), eps 1e-5; `kernel` picks the
    implementation (``fused=True``, ``foreach=True``; none: torch's default). One-cycle: a cosine rise
    from ``lr_max / 25`` over the first quarter, then a cosine fall to ``lr_max / 1e5``, with beta1 as
    the momentum (0.95 -> 0.85 -> 0.95). OneCycleLR ends at ``initial_lr / final_div_factor``, hence
    ``1e5 / 25``.
    """
    import torch

    opt = torch.optim.AdamW(
        model.parameters(), lr=lr_max / 25, betas=(0.9, 0.99), eps=1e-5, weight_decay=weight_decay, **kernel
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=lr_max,
        total_steps=total_steps,
        pct_start=0.25,
        anneal_strategy="cos",
        cycle_momentum=True,
        base_momentum=0.85,
        max_momentum=0.95,
        div_factor=25.0,
        final_div_factor=1e5 / 25.0,
        three_phase=False,
    )
    return opt, sched


def fit_plain(
    model: nn.Module,
    train_dl: DataLoader,
    valid_dl: DataLoader,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    device: torch.device,
) -> tuple[list[float], list[float], float]:
    """An idiomatic hand-written classification loop, timed per epoch (training + validation).

    Cross-entropy, a scheduler step per batch, ``zero_grad(set_to_none=True)``, losses summed as
    tensors with one host sync per epoch (no sync per batch). Returns each epoch's wall seconds, the
    CPU seconds of this process over the same spans, and the final validation accuracy.
    """
    import torch
    import torch.nn.functional as F

    times: list[float] = []
    accuracy = float("nan")
    sync(device)
    watch = Stopwatch()
    for _ in range(epochs):
        model.train()
        train_loss = torch.zeros((), device=device)
        for xb, yb in train_dl:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            train_loss += loss.detach()
        model.eval()
        valid_loss = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        n = 0
        with torch.no_grad():
            for xb, yb in valid_dl:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                out = model(xb)  # (B, n_classes)
                valid_loss += F.cross_entropy(out, yb, reduction="sum")
                correct += (out.argmax(dim=1) == yb).sum()
                n += yb.shape[0]
        # One sync per epoch: the figures a user would print.
        _ = train_loss.item() / len(train_dl), valid_loss.item() / max(n, 1)
        accuracy = correct.item() / max(n, 1)
        times.append(watch.lap())
    return times, watch.cpu_laps, accuracy
