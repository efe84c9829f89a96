"""Load and faults: ``leadscore serve`` held at concurrency 32 for a minute, on 1 and 2
workers, steady, while reloading every 2 s and sending SIGHUP, and with a worker killed.

    python bench/bench_load.py [--seconds 60] [--concurrency 32] [--leads 20000] [--workdir DIR]

Builds (or reuses) the same registered model as ``bench/bench_serving.py``. For each scenario
it prints requests/s, p50/p99 latency, failed requests (any status but 200, or a broken
connection) and the server's RSS (all processes) before and after. The peer is the floor of
the same server: ``GET /healthz`` (an empty route) at the same concurrency. Loopback only;
client and server share the machine, so on 2 cores the client's own CPU shows in the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serving import BIN, KEY, build, free_port, one_lead_request, running, tree_rss


def hold(
    port: int,
    method: str,
    path: str,
    body: bytes | None,
    seconds: float,
    concurrency: int,
    during: Callable[[threading.Event], None] | None = None,
) -> dict[str, float]:
    """``concurrency`` clients on keep-alive connections for ``seconds``; ``during`` runs
    beside them (reloads, signals, kills) until they stop."""
    headers = {"Content-Type": "application/json", "X-API-Key": KEY}
    times: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency
    stop = threading.Event()

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while not stop.is_set():
            begin = time.perf_counter()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            times[slot].append(time.perf_counter() - begin)
            if not ok:
                failures[slot] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    side = threading.Thread(target=during, args=(stop,)) if during else None
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    if side:
        side.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    if side:
        side.join()
    wall = time.perf_counter() - start
    flat = np.array([t for slot in times for t in slot])
    return {
        "requests": float(len(flat)),
        "rps": len(flat) / wall,
        "p50_ms": float(np.percentile(flat, 50) * 1e3),
        "p99_ms": float(np.percentile(flat, 99) * 1e3),
        "failed": float(sum(failures)),
    }


def reloading(
    port: int, server_pid: int, seconds: list[float], every: float = 2.0
) -> Callable[[threading.Event], None]:
    """Admin reload every ``every`` s (each one's duration into ``seconds``: it answers once
    every worker serves the new model), and SIGHUP to the server every third time."""

    def run(stop: threading.Event) -> None:
        count = 0
        while not stop.wait(every):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            begin = time.perf_counter()
            try:
                connection.request("POST", "/v1/admin/reload", headers={"X-API-Key": KEY})
                response = connection.getresponse()
                answer = json.loads(response.read() or b"{}")
                status: int | str = response.status
            except (OSError, http.client.HTTPException) as error:
                answer, status = {}, type(error).__name__
            finally:
                connection.close()
            seconds.append(time.perf_counter() - begin)
            workers = answer.get("workers") or {}
            if status != 200 or workers.get("serving", 1) != workers.get("workers", 1):
                print(f"    reload answered {status}: {workers}")
            count += 1
            if count % 3 == 0:
                os.kill(server_pid, signal.SIGHUP)

    return run


def killing(process: psutil.Process, after: float) -> Callable[[threading.Event], None]:
    """``kill -9`` one worker ``after`` seconds in."""

    def run(stop: threading.Event) -> None:
        if stop.wait(after):
            return
        # uvicorn's workers, not multiprocessing's resource tracker
        workers = [
            child
            for child in process.children()
            if any("spawn_main" in part for part in child.cmdline())
        ]
        if workers:
            victim = workers[0]
            victim.kill()
            print(f"    killed worker {victim.pid}")

    return run


def show(name: str, figures: dict[str, float], rss: tuple[float, float]) -> None:
    print(
        f"  {name:<40} {figures['rps']:7.0f} req/s   p50 {figures['p50_ms']:7.2f} ms   "
        f"p99 {figures['p99_ms']:8.2f} ms   failed {figures['failed']:.0f} of "
        f"{figures['requests']:.0f}   RSS {rss[0]:.0f} → {rss[1]:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="leadscore-bench-load-"))
    info = build(workdir, args.leads)
    body = json.dumps(one_lead_request(workdir)[0]).encode()
    env = {
        **os.environ,
        "LEADSCORE_API_KEYS": f"{KEY}:admin",
        "MLFLOW_TRACKING_URI": info["store"],
        "LEADSCORE_ARTIFACTS": str(workdir / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }
    print(
        f"bench_load: one lead with 30 touches, c={args.concurrency}, {args.seconds:.0f} s per "
        f"scenario, model version {info['version']}, {os.cpu_count()} cores (client included)"
    )
    results: dict[str, Any] = {}
    for workers in (1, 2):
        print(f"{workers} worker(s):")
        port = free_port()
        command = [str(BIN / "leadscore"), "serve", "--port", str(port), "--workers", str(workers)]
        with running(command, env, port, "/readyz") as (process, cold):
            server = psutil.Process(process.pid)
            floor_rss = (tree_rss(process), 0.0)
            floor = hold(port, "GET", "/healthz", None, min(10.0, args.seconds), args.concurrency)
            show("peer: GET /healthz (empty route)", floor, (floor_rss[0], tree_rss(process)))
            reloads: list[float] = []
            scenarios: list[tuple[str, Callable[[threading.Event], None] | None]] = [
                ("POST /v1/score steady", None),
                ("POST /v1/score, reload 2 s + SIGHUP", reloading(port, process.pid, reloads)),
            ]
            if workers > 1:
                scenarios.append(("POST /v1/score, a worker kill -9'd", killing(server, 5.0)))
            for name, during in scenarios:
                before = tree_rss(process)
                figures = hold(
                    port, "POST", "/v1/score", body, args.seconds, args.concurrency, during
                )
                after = tree_rss(process)
                show(name, figures, (before, after))
                results[f"{workers}w {name}"] = {**figures, "rss": [before, after]}
            results[f"{workers}w cold_start_s"] = cold
            if reloads:
                print(
                    f"  admin reloads: {len(reloads)}, answered in p50 "
                    f"{np.percentile(reloads, 50):.2f} s, max {max(reloads):.2f} s"
                )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
