from __future__ import annotations

import os
import threading
import time
from functools import partial

import pytest

from ember.core.errors import ConfigError, EmberError
from ember.core.parallel import parallel


def square(x: int) -> int:
    return x * x


def slow_reverse_square(x: int, n: int) -> int:
    # Later items finish first, so a pool that returned results as they complete would scramble them.
    time.sleep(0.002 * (n - x))
    return x * x


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError("seven is not allowed")
    return x


def worker_pid(_: int) -> int:
    return os.getpid()


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # two required args: unpickling calls __init__ with one
        super().__init__(f"{a}-{b}")


def raise_unpicklable(x: int) -> int:
    raise Unpicklable(x, x)


def test_serial_matches_pooled_and_order_is_kept() -> None:
    items = list(range(40))
    expected = [x * x for x in items]
    serial = parallel(square, items, n_workers=0, progress=False)
    pooled = parallel(partial(slow_reverse_square, n=40), items, n_workers=2, progress=False, chunksize=1)
    threaded = parallel(partial(slow_reverse_square, n=40), items, n_workers=4, progress=False, threadpool=True)
    assert serial == expected
    assert pooled == expected
    assert threaded == expected


def test_process_pool_runs_in_other_processes() -> None:
    pids = parallel(worker_pid, range(8), n_workers=2, progress=False, chunksize=1)
    assert os.getpid() not in pids
    assert parallel(worker_pid, range(3), n_workers=0, progress=False) == [os.getpid()] * 3


def test_threadpool_accepts_unpicklable_functions_and_uses_threads() -> None:
    seen: set[int] = set()
    lock = threading.Lock()

    def record(x: int) -> int:  # a closure: cannot be pickled, fine for threads
        with lock:
            seen.add(threading.get_ident())
        time.sleep(0.01)
        return x + 1

    assert parallel(record, range(8), n_workers=4, threadpool=True, progress=False) == list(range(1, 9))
    assert threading.get_ident() not in seen
    assert len(seen) >= 2


def test_unpicklable_function_with_processes_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match="threadpool=True"):
        parallel(lambda x: x, [1, 2], n_workers=2, progress=False)


@pytest.mark.parametrize("mode", [{"n_workers": 0}, {"n_workers": 2}, {"n_workers": 3, "threadpool": True}])
def test_error_names_the_failing_item(mode: dict) -> None:
    items = [1, 3, 5, 7, 9]
    with pytest.raises(EmberError) as info:
        parallel(fail_on_seven, items, progress=False, **mode)
    message = str(info.value)
    assert "fail_on_seven" in message
    assert "item 3 (7)" in message
    assert "ValueError: seven is not allowed" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_process_error_carries_the_worker_traceback() -> None:
    with pytest.raises(EmberError) as info:
        parallel(fail_on_seven, [7], n_workers=1, progress=False)
    remote = info.value.__cause__.__cause__
    assert "seven is not allowed" in str(remote)
    assert "fail_on_seven" in str(remote)  # the frame of the worker function is in the text


def test_exception_that_does_not_unpickle_is_still_reported() -> None:
    with pytest.raises(EmberError, match=r"item 0 \(4\).*Unpicklable: 4-4"):
        parallel(raise_unpicklable, [4], n_workers=1, progress=False)


def test_empty_and_fewer_items_than_workers() -> None:
    assert parallel(square, [], n_workers=4, progress=False) == []
    assert parallel(square, [3], n_workers=8, progress=False) == [9]


@pytest.mark.parametrize("kwargs", [{"n_workers": -1}, {"n_workers": 1.5}, {"chunksize": 0}])
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="Expected"):
        parallel(square, [1], progress=False, **kwargs)


def test_progress_bar_is_quiet_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    assert parallel(square, range(5), n_workers=0, progress=True, desc="squares") == [0, 1, 4, 9, 16]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""
