"""A parallel map: apply a function to every item with a process or thread pool, in order, with a progress bar.

Used wherever ember touches many files at once (verifying or resizing images, downloading a list of
URLs). Processes suit CPU-bound work on picklable functions; threads suit I/O (downloads, disk) and
functions that cannot be pickled; ``n_workers=0`` runs everything in the calling process, which is the
easiest way to debug a failing function.

>>> parallel(abs, [-1, 2, -3], n_workers=0, progress=False)
[1, 2, 3]
"""

from __future__ import annotations

import os
import pickle
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from ember.core.errors import ConfigError, EmberError, expected

__all__ = ["parallel", "progress_enabled"]

T = TypeVar("T")
R = TypeVar("R")

# Longest item repr put into an error message; a whole DataFrame row or a long path list would drown it.
_MAX_ITEM_REPR = 200


def progress_enabled(progress: bool = True) -> bool:
    """Whether a live progress bar should be drawn: asked for, and the console is a terminal or a notebook.

    Piped output, log files and CI runs stay quiet so that they are not filled with redraws.
    """
    if not progress:
        return False
    from rich.console import Console  # imported here so that `import ember` stays fast

    console = Console(stderr=True)
    return bool(console.is_terminal or console.is_jupyter)


@contextmanager
def _progress_bar(total: int, desc: str, enabled: bool) -> Iterator[Callable[[], None]]:
    """Yield a function that advances a rich progress bar by one (a no-op when the bar is off)."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(desc, total=total)
        yield lambda: bar.advance(task)


class _WorkerTraceback(Exception):
    """Carries the formatted traceback of an exception raised in another process (tracebacks do not pickle)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n" + self.text


@dataclass
class _Failure:
    """What a worker sends back instead of a result when the function raised."""

    error: BaseException
    traceback: str


def _call(f: Callable[[Any], Any], check_pickle: bool, item: Any) -> Any:
    """Run ``f(item)`` and turn an exception into a :class:`_Failure`, so the caller learns which item failed."""
    try:
        return f(item)
    except Exception as e:  # a worker failure is reported by the caller with the item that caused it
        error: BaseException = e
        if check_pickle:
            # An exception that cannot cross the process boundary would otherwise break the whole pool.
            try:
                pickle.loads(pickle.dumps(e))
            except Exception:
                error = RuntimeError(f"{type(e).__name__}: {e}")
        return _Failure(error, traceback.format_exc())


def _item_repr(item: Any) -> str:
    text = repr(item)
    return text if len(text) <= _MAX_ITEM_REPR else text[: _MAX_ITEM_REPR - 3] + "..."


def _raise_failure(failure: _Failure, index: int, item: Any, fname: str, in_process: bool) -> None:
    error = failure.error
    if not in_process:
        # Rebuild the remote traceback as the cause, the way concurrent.futures does for its own errors.
        error.__cause__ = _WorkerTraceback(failure.traceback)
    raise EmberError(
        f"`{fname}` failed on item {index} ({_item_repr(item)}): {type(error).__name__}: {error}. "
        "Run with `n_workers=0` to debug it in this process."
    ) from error


def _check_picklable(f: Callable[[Any], Any], fname: str) -> None:
    try:
        pickle.dumps(f)
    except Exception as e:
        raise ConfigError(
            f"`{fname}` cannot be sent to worker processes ({type(e).__name__}: {e}). Use a module-level "
            "function, or pass `threadpool=True` or `n_workers=0`."
        ) from e


def _default_chunksize(n_items: int, n_workers: int) -> int:
    # About four chunks per worker: few enough round trips for tiny items, enough to balance uneven ones.
    return max(1, n_items // (n_workers * 4))


def parallel(
    f: Callable[[T], R],
    items: Iterable[T],
    n_workers: int | None = None,
    progress: bool = True,
    threadpool: bool = False,
    chunksize: int | None = None,
    desc: str | None = None,
) -> list[R]:
    """Apply ``f`` to every item with a pool of workers and return the results in the order of ``items``.

    Args:
        f: The function to apply. With processes (the default) it must be picklable: a module-level
            function or a ``functools.partial`` of one, not a lambda or a local function.
        items: The inputs; consumed into a list first.
        n_workers: Pool size; ``None`` uses ``os.cpu_count()``; ``0`` runs serially in this process
            (for debugging and for functions that cannot be pickled).
        progress: Draw a progress bar when the console is a terminal or a notebook.
        threadpool: Use threads instead of processes; right for I/O-bound work such as downloads.
        chunksize: Items sent to a process at a time; ``None`` picks about four chunks per worker.
            Ignored for threads and for serial runs.
        desc: Label of the progress bar; defaults to the function's name.

    Returns:
        ``[f(item) for item in items]``.

    Raises:
        ConfigError: ``n_workers`` or ``chunksize`` is not valid.
        EmberError: ``f`` raised on an item; the message names the item and its index, and the original
            exception is the cause.

    >>> parallel(str.upper, ["a", "b"], threadpool=True, progress=False)
    ['A', 'B']
    """
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 0):
        raise ConfigError(expected("None or an int >= 0", "n_workers", n_workers))
    if chunksize is not None and (isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1):
        raise ConfigError(expected("None or an int >= 1", "chunksize", chunksize))
    items = list(items)
    fname = getattr(f, "__name__", None) or getattr(getattr(f, "func", None), "__name__", None) or repr(f)
    if n_workers is None:
        n_workers = os.cpu_count() or 1
    n_workers = min(n_workers, len(items))
    show = progress_enabled(progress)
    label = desc or fname

    if n_workers == 0:
        results: list[R] = []
        with _progress_bar(len(items), label, show) as advance:
            for i, item in enumerate(items):
                out = _call(f, False, item)
                if isinstance(out, _Failure):
                    _raise_failure(out, i, item, fname, in_process=True)
                results.append(out)
                advance()
        return results

    executor: Executor
    if threadpool:
        executor = ThreadPoolExecutor(max_workers=n_workers)
        map_kwargs: dict[str, int] = {}
    else:
        _check_picklable(f, fname)
        executor = ProcessPoolExecutor(max_workers=n_workers)
        map_kwargs = {"chunksize": chunksize or _default_chunksize(len(items), n_workers)}
    results = []
    try:
        with _progress_bar(len(items), label, show) as advance:
            outs = executor.map(partial(_call, f, not threadpool), items, **map_kwargs)
            for i, out in enumerate(outs):
                if isinstance(out, _Failure):
                    _raise_failure(out, i, items[i], fname, in_process=threadpool)
                results.append(out)
                advance()
    finally:
        # On a failure, drop the work not yet started instead of waiting for it.
        executor.shutdown(wait=True, cancel_futures=True)
    return results
