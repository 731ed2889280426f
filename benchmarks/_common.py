"""Helpers shared by the benchmarks: medians, a stopwatch, thread settings, tables and an environment report.

The benchmarks are scripts, not part of the package; they import this module as a sibling
(``from _common import ...``), which works because Python puts a script's folder on ``sys.path``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "Stopwatch",
    "cpu_count",
    "env_report",
    "fmt_ratio",
    "fmt_seconds",
    "median",
    "package_version",
    "print_env",
    "print_table",
    "set_threads",
    "time_call",
]


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
