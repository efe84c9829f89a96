"""Threads for numpy-heavy batch work: numpy's sorts, searches, gathers and ufuncs release the
GIL, so a batch cut into independent parts runs on every core in one process (no pickling,
no second copy of the fitted state)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def thread_count(threads: int) -> int:
    """``threads`` as asked, 0 (or less) meaning every available core, as LightGBM reads it."""
    return available_cores() if threads <= 0 else threads


def thread_map(
    function: Callable[[Item], Result], items: Sequence[Item], threads: int, name: str
) -> list[Result]:
    """``function`` of each item, in order, on up to ``threads`` threads (0: every core); in
    the calling thread when one thread or one item would do."""
    workers = min(thread_count(threads), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        return list(pool.map(function, items))
