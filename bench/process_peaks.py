"""Peak RSS of every process of a command's tree (the stage's own, each Dask worker's), for the
benchmarks that run pipeline stages as processes (bench_scale.py, bench_pipeline.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

Peaks = dict[int, tuple[str, int]]
"""pid → (role: ``"stage"`` or ``"worker"``, peak RSS in bytes)."""


def _watch(root: psutil.Process, peaks: Peaks, done: threading.Event) -> None:
    """Sample ``root``'s tree every 50 ms until ``done``."""
    while not done.is_set():
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for process in tree:
            try:
                rss = process.memory_info().rss
                command = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in command:
                continue
            role = "worker" if "spawn_main" in command else "stage"
            previous = peaks.get(process.pid, (role, 0))[1]
            peaks[process.pid] = (role, max(previous, rss))
        time.sleep(0.05)


@contextmanager
def watched(root: psutil.Process) -> Iterator[Peaks]:
    """The peaks of ``root``'s tree, filled while the block runs (wait for ``root`` in it)."""
    peaks: Peaks = {}
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(root, peaks, done), daemon=True)
    watcher.start()
    try:
        yield peaks
    finally:
        done.set()
        watcher.join()


def largest(peaks: Peaks, role: str) -> list[int]:
    """The peaks of the processes in ``role``, largest first."""
    return sorted((rss for kind, rss in peaks.values() if kind == role), reverse=True)
