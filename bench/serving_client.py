"""HTTP client helpers for bench_serving.py: timed rounds over keep-alive connections and the
CPU time of a server's process tree."""

from __future__ import annotations

import contextlib
import http.client
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psutil


@dataclass(frozen=True)
class Request:
    """One HTTP request a client repeats."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Round:
    """What one timed round measured."""

    requests: int
    failures: int
    wall_s: float
    cpu_s: float
    latencies_s: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.wall_s

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s / max(1, self.requests) * 1e3

    @property
    def wall_ms_per_request(self) -> float:
        return self.wall_s / max(1, self.requests) * 1e3


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of the process and its live descendants."""
    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for member in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = member.cpu_times()
                total += times.user + times.system
    return total


def send(connection: http.client.HTTPConnection, request: Request) -> tuple[int, bytes]:
    connection.request(request.method, request.path, body=request.body, headers=request.headers)
    response = connection.getresponse()
    return response.status, response.read()


def timed_round(
    port: int, request: Request, seconds: float, concurrency: int, server_pid: int, warmup: int = 5
) -> Round:
    """``concurrency`` client threads, one keep-alive connection each, sending ``request`` for
    ``seconds``; the server tree's CPU time over the same span."""
    results: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency
    barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(warmup):
            send(connection, request)
        barrier.wait()
        barrier.wait()  # the main thread has set the deadline and read the CPU times
        times = results[slot]
        end = deadline[0]
        while True:
            begin = time.perf_counter()
            if begin >= end:
                break
            status, _ = send(connection, request)
            times.append(time.perf_counter() - begin)
            if status != 200:
                failures[slot] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    barrier.wait()
    cpu_before = tree_cpu(server_pid)
    start = time.perf_counter()
    deadline[0] = start + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    cpu = tree_cpu(server_pid) - cpu_before
    flat = [t for times in results for t in times]
    return Round(len(flat), sum(failures), wall, cpu, flat)


def alternating_round(
    port: int, first: Request, second: Request, seconds: float
) -> tuple[list[float], list[float], int]:
    """One connection, concurrency 1: ``first``, ``second``, ``first``, … for ``seconds``;
    the latencies of each and the count of non-200 answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(5):
        send(connection, first)
        send(connection, second)
    a: list[float] = []
    b: list[float] = []
    failures = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for request, times in ((first, a), (second, b)):
            begin = time.perf_counter()
            status, _ = send(connection, request)
            times.append(time.perf_counter() - begin)
            failures += status != 200
    connection.close()
    return a, b, failures


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q) * 1e3)
