"""Prometheus metrics (``prometheus_client``): the exposition of one app (names, types, labels,
buckets, counts per request, apps that share nothing), multiprocess mode in this process (sums
over processes, dead workers' live gauges dropped), and a real ``leadscore serve --workers 2``
whose ``/metrics`` reports the sum over both workers whichever answers."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import prometheus_client
import pytest
from fastapi.testclient import TestClient
from prometheus_client import values
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from serving.app import create_app
from serving.metrics import (
    LATENCY_BUCKETS,
    MULTIPROC_ENV,
    ApiMetrics,
    DeadWorkerReaper,
    multiprocess_directory,
)
from tests.integration.test_api_server import BIN, KEYS, free_port, server_env
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World, open_lead_ids, request_for

REPO = Path(__file__).resolve().parents[2]
TYPES = {
    "leadscore_http_requests_total": "counter",
    "leadscore_http_request_duration_seconds": "histogram",
    "leadscore_http_requests_in_progress": "gauge",
    "leadscore_leads_scored_total": "counter",
    "leadscore_unseen_values_total": "counter",
    "leadscore_model_reloads_total": "counter",
    "leadscore_model_loaded": "gauge",
    "leadscore_model_info": "gauge",
}
SCORE_OK = {"method": "POST", "route": "/v1/score", "status": "200"}
SCRAPE_OK = {"method": "GET", "route": "/metrics", "status": "200"}


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by (sample name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, sample: str, /, **labels: str) -> float | None:
    return parse(text).get((sample, frozenset(labels.items())))


@pytest.fixture(scope="module")
def bodies(world: World) -> list[dict[str, Any]]:
    import pandas as pd

    as_of = pd.Timestamp("2025-03-01", tz="UTC")
    created = world.tables["leads"].set_index("lead_id")["created_at"]
    # leads that exist at as_of: scoring one before its created_at is a 422
    ids = [i for i in open_lead_ids(world.tables, 24, seed=4) if created[i] < as_of][:6]
    return [request_for(world.tables, i, as_of) for i in ids]


# ------------------------------------------------------------- one process
def test_names_types_and_labels() -> None:
    metrics = ApiMetrics()
    metrics.requests.inc("GET", "/x", "200")
    metrics.duration.observe(0.003, "GET", "/x")
    metrics.leads_scored.inc("batch", amount=3)
    metrics.reloads.inc("ok")
    metrics.serving("lead-scoring", "3")
    text = metrics.render()
    for name, kind in TYPES.items():
        assert f"# TYPE {name} {kind}" in text
    assert "_created" not in text
    assert value(text, "leadscore_http_requests_total", method="GET", route="/x", status="200")
    assert value(text, "leadscore_leads_scored_total", endpoint="batch") == 3
    assert value(text, "leadscore_model_reloads_total", outcome="ok") == 1
    assert value(text, "leadscore_http_requests_in_progress") == 0
    assert 'leadscore_http_requests_total{method="GET",route="/x",status="200"} 1.0' in text


def test_unseen_values_are_counted_by_field() -> None:
    metrics = ApiMetrics()
    assert value(metrics.render(), "leadscore_unseen_values_total", field="country") is None
    metrics.count_unseen(["country", "campaign_id", "country"])
    metrics.count_unseen(iter(["touches.campaign_id"]))
    metrics.count_unseen([])
    text = metrics.render()
    assert value(text, "leadscore_unseen_values_total", field="country") == 2
    assert value(text, "leadscore_unseen_values_total", field="campaign_id") == 1
    assert value(text, "leadscore_unseen_values_total", field="touches.campaign_id") == 1


def test_histogram_buckets_are_the_latency_buckets_and_cumulative() -> None:
    metrics = ApiMetrics()
    for seconds in (0.0003, 0.003, 0.3, 30.0):
        metrics.duration.observe(seconds, "POST", "/v1/score")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render())}
    samples = families["leadscore_http_request_duration_seconds"].samples
    buckets = {float(s.labels["le"]): s.value for s in samples if s.name.endswith("_bucket")}
    assert list(buckets) == [*LATENCY_BUCKETS, float("inf")]
    assert buckets[0.0005] == 1
    assert buckets[0.005] == 2
    assert buckets[0.5] == 3
    assert buckets[10.0] == 3
    assert buckets[float("inf")] == 4
    count = [s.value for s in samples if s.name.endswith("_count")]
    assert count == [4]
    assert {tuple(sorted(s.labels)) for s in samples if s.name.endswith("_sum")} == {
        ("method", "route")
    }


def test_model_gauges() -> None:
    metrics = ApiMetrics()
    assert "leadscore_model_loaded 0.0" in metrics.render()
    metrics.serving("lead-scoring", "3")
    text = metrics.render()
    assert 'leadscore_model_info{name="lead-scoring",version="3"} 1.0' in text
    assert "leadscore_model_loaded 1.0" in text
    metrics.serving("lead-scoring", "4")
    text = metrics.render()
    assert 'version="3"' not in text
    assert 'leadscore_model_info{name="lead-scoring",version="4"} 1.0' in text
    metrics.serving(None, None)
    assert "leadscore_model_loaded 0.0" in metrics.render()
    assert "lead-scoring" not in metrics.render()


def test_apps_count_requests_and_share_nothing(
    world: World, tmp_path: Path, bodies: list[dict[str, Any]]
) -> None:
    first = create_app(settings_for(world, tmp_path))
    second = create_app(settings_for(world, tmp_path))
    assert first.state.metrics.registry is first.state.metrics_registry
    assert first.state.metrics_registry is not second.state.metrics_registry
    with TestClient(first) as one, TestClient(second) as two:
        for n in range(1, 4):
            assert one.post("/v1/score", json=bodies[n], headers=auth("score")).status_code == 200
            text = one.get("/metrics").text
            assert value(text, "leadscore_http_requests_total", **SCORE_OK) == n
            assert value(text, "leadscore_leads_scored_total", endpoint="score") == n
            assert (
                value(
                    text,
                    "leadscore_http_request_duration_seconds_count",
                    method="POST",
                    route="/v1/score",
                )
                == n
            )
            assert (value(text, "leadscore_http_requests_total", **SCRAPE_OK) or 0) == n - 1
            assert value(text, "leadscore_http_requests_in_progress") == 1  # this scrape
        batch = {"leads": bodies[:4]}
        assert one.post("/v1/score/batch", json=batch, headers=auth("score")).status_code == 200
        text = one.get("/metrics").text
        assert value(text, "leadscore_leads_scored_total", endpoint="batch") == 4
        info = first.state.holder.current.info
        assert value(text, "leadscore_model_info", name=info.name, version=info.version) == 1
        assert value(text, "leadscore_model_loaded") == 1
        assert value(text, "leadscore_model_reloads_total", outcome="ok") == 1

        other = two.get("/metrics").text  # the second app saw none of it
        assert value(other, "leadscore_http_requests_total", **SCORE_OK) is None
        assert value(other, "leadscore_leads_scored_total", endpoint="score") is None
        assert value(other, "leadscore_http_requests_total", **SCRAPE_OK) is None
        assert value(other, "leadscore_model_reloads_total", outcome="ok") == 1
    # and nothing reached the library's global registry
    assert prometheus_client.REGISTRY.get_sample_value("leadscore_model_loaded") is None


# ------------------------------------------------- multiprocess, in this process
@pytest.fixture
def multiproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Multiprocess mode here: the variable set and the file-backed value class that
    prometheus_client would have chosen at import with the variable set."""
    directory = tmp_path / "prometheus"
    directory.mkdir()
    value_class = values.MultiProcessValue()
    monkeypatch.setenv(MULTIPROC_ENV, str(directory))
    monkeypatch.setattr(values, "ValueClass", value_class)
    yield directory
    value_class.close_all_files()  # type: ignore[attr-defined]


CHILD = """
from serving.metrics import ApiMetrics
m = ApiMetrics()
m.leads_scored.inc("score", amount=5)
m.count_unseen(["country", "country"])
m.requests.inc("POST", "/v1/score", "200")
m.serving("model", "1")
m.in_progress.inc()  # dies with a request in flight
"""


def test_multiprocess_sums_processes_and_drops_dead_ones(multiproc: Path) -> None:
    env = {**os.environ, MULTIPROC_ENV: str(multiproc)}
    subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, env=env, check=True, timeout=60)
    metrics = ApiMetrics()
    assert metrics.multiprocess
    metrics.leads_scored.inc("score", amount=2)
    metrics.count_unseen(["country"])
    metrics.requests.inc("POST", "/v1/score", "200")
    metrics.serving("model", "2")
    text = metrics.render()
    assert value(text, "leadscore_leads_scored_total", endpoint="score") == 7
    assert value(text, "leadscore_unseen_values_total", field="country") == 3  # both processes
    assert value(text, "leadscore_http_requests_total", **SCORE_OK) == 2
    assert value(text, "leadscore_http_requests_in_progress") == 1  # the child's, not reaped
    assert value(text, "leadscore_model_info", name="model", version="1") == 1
    assert value(text, "leadscore_model_info", name="model", version="2") == 1
    assert value(text, "leadscore_model_loaded") == 1
    assert "_created" not in text
    assert "pid=" not in text

    reaper = DeadWorkerReaper(multiproc)
    assert len(reaper.pids()) == 2
    (dead,) = reaper.reap()
    assert dead != os.getpid()
    assert reaper.pids() == {os.getpid()}
    text = metrics.render()
    assert value(text, "leadscore_leads_scored_total", endpoint="score") == 7  # counts stay
    assert value(text, "leadscore_http_requests_in_progress") == 0
    assert value(text, "leadscore_model_info", name="model", version="1") is None
    # no label removal in this mode: the version stopped serving goes to 0
    metrics.serving("model", "3")
    text = metrics.render()
    assert value(text, "leadscore_model_info", name="model", version="2") == 0
    assert value(text, "leadscore_model_info", name="model", version="3") == 1
    metrics.serving(None, None)
    assert value(metrics.render(), "leadscore_model_loaded") == 0


def test_a_late_variable_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set after prometheus_client chose in-memory values: counts would be lost, so no."""
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with pytest.raises(RuntimeError, match="after prometheus_client was imported"):
        ApiMetrics()


def test_multiprocess_directory_lifecycle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MULTIPROC_ENV, "/somewhere/else")
    with multiprocess_directory() as directory:
        assert directory.is_dir()
        assert not any(directory.iterdir())
        assert os.environ[MULTIPROC_ENV] == str(directory)
    assert not directory.exists()
    assert os.environ[MULTIPROC_ENV] == "/somewhere/else"


# --------------------------------------------- a real server of two workers
def per_worker(directory: Path, sample: str, /, **labels: str) -> dict[int, float]:
    """One sample's value in each worker's own counter file (``counter_<pid>.db``)."""
    found: dict[int, float] = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for metric in MultiProcessCollector.merge([path]):
            for s in metric.samples:
                if s.name == sample and s.labels == labels:
                    found[pid] = s.value
    return found


def settled(directory: Path, sample: str, total: float, /, **labels: str) -> dict[int, float]:
    """:func:`per_worker` once its sum is ``total``: a request is counted after its answer
    has gone out, so the files may lag the client by a moment."""
    deadline = time.monotonic() + 5
    while True:
        found = per_worker(directory, sample, **labels)
        if sum(found.values()) == total or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


@pytest.mark.slow
def test_two_workers_report_the_sum(
    world: World, tmp_path: Path, bodies: list[dict[str, Any]]
) -> None:
    """``leadscore serve --workers 2``: 20 scoring requests over fresh connections (both
    workers answer some), then repeated scrapes over fresh connections: every one reports the
    20, whichever worker answers, and the scrapes themselves count up by one each; then a
    worker killed, replaced, and its live gauges dropped."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    command = [str(BIN / "leadscore"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--workers", "2"],
            cwd=tmp_path,
            env=server_env(world, tmp_path, TMPDIR=str(temp)),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    headers = {"X-API-Key": KEYS["score"]}

    def scrape() -> str:
        with httpx.Client(timeout=10) as fresh:  # a new connection: any worker may answer
            answer = fresh.get(f"{base}/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        return answer.text

    def score(body: dict[str, Any]) -> int:
        with httpx.Client(timeout=30) as fresh:
            return fresh.post(f"{base}/v1/score", json=body, headers=headers).status_code

    try:
        deadline = time.monotonic() + 60
        while True:  # both workers have loaded the model: two successful loads, summed
            try:
                if value(scrape(), "leadscore_model_reloads_total", outcome="ok") == 2:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"workers did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        (directory,) = (Path(p) for p in glob.glob(str(temp / "leadscore-metrics-*")))

        sent = 0
        with ThreadPoolExecutor(4) as pool:
            for _ in range(5):  # 20 at a time until both workers have scored some
                statuses = list(pool.map(score, [bodies[i % len(bodies)] for i in range(20)]))
                assert statuses == [200] * 20
                sent += 20
                scored = per_worker(directory, "leadscore_leads_scored_total", endpoint="score")
                if len(scored) == 2 and all(scored.values()):
                    break
        assert len(scored) == 2, f"one worker answered all {sent} requests: {scored}"
        assert sum(scored.values()) == sent
        settled(directory, "leadscore_http_requests_total", sent, **SCORE_OK)

        answered: dict[int, int] = {}
        previous: float | None = None
        reports = []
        for attempt in range(40):
            before = per_worker(directory, "leadscore_http_requests_total", **SCRAPE_OK)
            text = scrape()
            total = sum(before.values()) + 1
            after = settled(directory, "leadscore_http_requests_total", total, **SCRAPE_OK)
            (pid,) = (p for p in after if after[p] != before.get(p, 0.0))
            answered[pid] = answered.get(pid, 0) + 1
            reports.append(value(text, "leadscore_leads_scored_total", endpoint="score"))
            assert reports[-1] == sent
            assert value(text, "leadscore_http_requests_total", **SCORE_OK) == sent
            assert (
                value(
                    text,
                    "leadscore_http_request_duration_seconds_count",
                    method="POST",
                    route="/v1/score",
                )
                == sent
            )
            assert value(text, "leadscore_model_loaded") == 1
            assert value(text, "leadscore_model_reloads_total", outcome="ok") == 2
            assert value(text, "leadscore_http_requests_in_progress") == 1  # this scrape
            scrapes = value(text, "leadscore_http_requests_total", **SCRAPE_OK)
            assert scrapes is not None
            if previous is not None:
                assert scrapes == previous + 1  # summed over workers, whichever answered
            previous = scrapes
            if attempt >= 4 and len(answered) == 2:
                break
        assert len(answered) == 2, f"one worker answered every scrape: {answered}"
        print(  # the figures, with -s
            f"\n{sent} scoring requests over 2 workers {sorted(scored.values())}; "
            f"/metrics reported {sent} on {reports.count(sent)} of {len(reports)} scrapes, "
            f"answered by the workers {sorted(answered.values())}"
        )

        # a worker killed: uvicorn replaces it, the reaper drops its live gauges, its
        # counts stay in the sum
        victim = min(scored)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 40
        while value(scrape(), "leadscore_model_reloads_total", outcome="ok") != 3:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        while glob.glob(str(directory / f"gauge_live*_{victim}.db")):
            assert time.monotonic() < deadline, "the dead worker's live gauges were kept"
            time.sleep(0.2)
        text = scrape()
        assert value(text, "leadscore_leads_scored_total", endpoint="score") == sent
        assert value(text, "leadscore_model_loaded") == 1
        assert value(text, "leadscore_http_requests_in_progress") == 1
        assert len(DeadWorkerReaper(directory).pids()) == 2
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the parent stops its workers
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    assert not list(temp.glob("leadscore-metrics-*")), "the metrics directory was left behind"
