"""``leadscore serve`` as an operator runs it: several workers that serve one model through
reloads, SIGHUP and a killed worker; logs from every worker; connection limits against clients
that hold connections without a key; a model that cannot be loaded stops the start."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest

from tests.integration.test_api_server import (
    BIN,
    KEYS,
    Server,
    free_port,
    key,
    server_env,
    start_server,
)
from tests.serving.world import World, open_lead_ids, request_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def requests_(world: World) -> list[dict[str, Any]]:
    tables = world.tables
    created = pd.to_datetime(tables["leads"].set_index("lead_id")["created_at"], utc=True)
    return [
        request_for(tables, lead_id, (created[lead_id] + pd.Timedelta(days=20)).floor("s"))
        for lead_id in open_lead_ids(tables, 8, seed=5)
    ]


def fresh_versions(server: Server, request: dict[str, Any], count: int) -> list[str]:
    """The version answering each of ``count`` requests, each on a new connection (so the
    kernel spreads them over the workers)."""
    versions = []
    for _ in range(count):
        answer = httpx.post(f"{server.base}/v1/score", json=request, headers=key("score"))
        assert answer.status_code == 200, answer.text
        versions.append(answer.json()["model"]["version"])
    return versions


def worker_pids(server: Server) -> set[int]:
    """uvicorn's worker processes (not multiprocessing's resource tracker)."""
    assert server.process is not None
    return {
        child.pid
        for child in psutil.Process(server.process.pid).children()
        if any("spawn_main" in part for part in child.cmdline())
    }


def logging_pids(log: Path) -> set[int]:
    """Processes whose app records reached the log (their pid is in each line)."""
    return {int(pid) for pid in re.findall(r"\[(\d+)\] serving\.holder: serving", log.read_text())}


@pytest.fixture(scope="module")
def workers(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cwd = tmp_path_factory.mktemp("workers")
    with start_server(world, cwd, ("--workers", "2")) as running:
        yield running


def test_a_reload_reaches_every_worker(
    workers: Server, world: World, requests_: list[dict[str, Any]]
) -> None:
    before = set(fresh_versions(workers, requests_[0], 10))
    assert len(before) == 1
    answer = httpx.post(
        f"{workers.base}/v1/admin/reload",
        json={"uri": str(world.train)},
        headers=key("admin"),
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["workers"] == {
        "generation": answer.json()["workers"]["generation"],
        "workers": 2,
        "serving": 2,
        "failed": 0,
    }
    new_version = answer.json()["model"]["version"]
    assert new_version not in before
    # 40 fresh connections: every one answered by the reloaded model, whichever worker
    assert set(fresh_versions(workers, requests_[1], 40)) == {new_version}


def test_sighup_to_the_supervisor_reloads_every_worker(
    workers: Server, requests_: list[dict[str, Any]]
) -> None:
    """SIGHUP = the configured model again, in place, in every worker (no restarts that a
    health-check timeout can abort)."""
    assert workers.process is not None
    pids = worker_pids(workers)
    assert len(pids) == 2
    assert pids <= logging_pids(workers.log)  # both workers' own records reach the log
    served_before = workers.log.read_text().count("serving.holder: serving")
    workers.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if workers.log.read_text().count("serving.holder: serving") >= served_before + 2:
            break
        time.sleep(0.1)
    text = workers.log.read_text()
    assert "SIGHUP: every worker reloads" in text
    assert text.count("serving.holder: serving") == served_before + 2, text[-3000:]
    assert worker_pids(workers) == pids  # reloaded in place, not restarted
    versions = set(fresh_versions(workers, requests_[2], 30))
    assert len(versions) == 1


def test_a_killed_worker_is_replaced_and_serves_the_same_model(
    workers: Server, world: World, requests_: list[dict[str, Any]]
) -> None:
    answer = httpx.post(
        f"{workers.base}/v1/admin/reload",
        json={"uri": str(world.train)},
        headers=key("admin"),
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    served = answer.json()["model"]["version"]
    pids = worker_pids(workers)
    victim = sorted(pids)[0]

    stop = threading.Event()
    statuses: list[int | str] = []
    lock = threading.Lock()

    def hammer() -> None:
        with httpx.Client(base_url=workers.base, headers=key("score"), timeout=30) as http:
            while not stop.is_set():
                try:
                    status: int | str = http.post("/v1/score", json=requests_[3]).status_code
                except httpx.TransportError as error:
                    status = type(error).__name__
                with lock:
                    statuses.append(status)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(logging_pids(workers.log) - pids) < 1:
            time.sleep(0.2)  # until the replacement says what it serves
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    replacement = worker_pids(workers) - pids
    assert len(replacement) == 1, workers.log.read_text()[-3000:]
    assert victim not in worker_pids(workers)
    failed = [status for status in statuses if status != 200]
    assert len(statuses) > 20
    assert len(failed) <= 4, failed  # at most the requests in flight on the killed worker
    # the replacement loaded the model the others serve, not the configured one
    assert set(fresh_versions(workers, requests_[4], 30)) == {served}


# ------------------------------------------------------------ connection limits
LIMITS = {
    "LEADSCORE_HEADER_TIMEOUT_SECONDS": "1",
    "LEADSCORE_MAX_CONNECTIONS": "6",
    "LEADSCORE_MAX_HEADER_BYTES": "4096",
    "LEADSCORE_MAX_HEADERS": "20",
    "LEADSCORE_KEEP_ALIVE_SECONDS": "1",
}


@pytest.fixture(scope="module")
def guarded(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with start_server(world, tmp_path_factory.mktemp("guarded"), **LIMITS) as running:
        yield running


def connect(server: Server) -> socket.socket:
    host, port = server.base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything until the server closes; with how long that took."""
    sock.settimeout(timeout)
    start = time.monotonic()
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def test_unfinished_headers_are_dropped_after_the_deadline(guarded: Server) -> None:
    with connect(guarded) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never finished
        data, waited = read_all(sock)
    assert data.startswith(b"HTTP/1.1 408"), data
    assert waited < 5


def test_a_stalled_body_is_dropped_after_the_deadline(guarded: Server) -> None:
    with connect(guarded) as sock:
        sock.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"X-API-Key: " + KEYS["score"].encode() + b'\r\nContent-Length: 1000\r\n\r\n{"le'
        )
        data, waited = read_all(sock)
    assert waited < 5
    assert not data.startswith(b"HTTP/1.1 2")


def test_huge_and_numerous_headers_are_refused(guarded: Server) -> None:
    big = httpx.get(f"{guarded.base}/healthz", headers={"X-Big": "a" * 8192})
    assert big.status_code == 431
    many = httpx.get(f"{guarded.base}/healthz", headers={f"X-H{i}": "1" for i in range(30)})
    assert many.status_code == 431
    # an 8 MB header is cut off while it arrives (memory stays bounded)
    with connect(guarded) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        sent = 0
        with contextlib.suppress(OSError):
            while sent < 8_000_000:
                sock.sendall(b"a" * 65536)
                sent += 65536
        data, _ = read_all(sock)
    assert sent < 8_000_000 or data.startswith(b"HTTP/1.1 400"), data[:200]
    assert httpx.get(f"{guarded.base}/healthz").status_code == 200


def test_connections_beyond_the_cap_are_refused_and_idle_ones_expire(guarded: Server) -> None:
    held = [connect(guarded) for _ in range(6)]
    try:
        with connect(guarded) as extra:
            data, _ = read_all(extra)
        assert data.startswith(b"HTTP/1.1 503"), data
    finally:
        for sock in held:
            sock.close()
    # the held (silent) connections were dropped by the deadline anyway; the server is whole
    time.sleep(1.5)
    assert httpx.get(f"{guarded.base}/healthz").status_code == 200


def test_keep_alive_connections_serve_several_requests(guarded: Server) -> None:
    """The deadline is per request: a busy keep-alive connection is not cut off."""
    with httpx.Client(base_url=guarded.base) as http:
        for _ in range(5):
            assert http.get("/healthz").status_code == 200
            time.sleep(0.3)


# ------------------------------------------------------------ model at start-up
def test_serve_stops_with_one_line_when_the_model_cannot_be_loaded(
    world: World, tmp_path: Path
) -> None:
    env = server_env(world, tmp_path, LEADSCORE_MODEL_URI=str(tmp_path / "no-model"))
    for workers in ("1", "2"):
        result = subprocess.run(
            [str(BIN / "leadscore"), "serve", "--port", str(free_port()), "--workers", workers],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.stderr
        assert "no-model" in errors[0]
        assert "--allow-no-model" in errors[0]
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_allow_no_model_starts_and_answers_503(world: World, tmp_path: Path) -> None:
    port = free_port()
    env = server_env(world, tmp_path, LEADSCORE_MODEL_URI=str(tmp_path / "no-model"))
    process = subprocess.Popen(
        [str(BIN / "leadscore"), "serve", "--port", str(port), "--allow-no-model"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert ready.status_code == 503
        assert "no-model" not in ready.text
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
