"""Prometheus metrics of one app, with the official client (``prometheus_client``), in the text
exposition format (version 0.0.4).

Label sets are small and bounded (routes are path templates, never raw paths).

| metric | type | labels |
|---|---|---|
| ``leadscore_http_requests_total`` | counter | method, route, status |
| ``leadscore_http_request_duration_seconds`` | histogram | method, route |
| ``leadscore_http_requests_in_progress`` | gauge | |
| ``leadscore_leads_scored_total`` | counter | endpoint |
| ``leadscore_unseen_values_total`` | counter | field (a lead field, or ``touches.campaign_id``) |
| ``leadscore_model_reloads_total`` | counter | outcome (ok, failed) |
| ``leadscore_model_loaded`` | gauge | 1 when a model is serving |
| ``leadscore_model_info`` | gauge | name, version (value 1) |

**One process** (no ``PROMETHEUS_MULTIPROC_DIR``): every app has its own
:class:`~prometheus_client.CollectorRegistry` (made by the app factory, on ``app.state``), its
metrics registered there and nowhere else (never the library's global ``REGISTRY``), so apps
made in one process (tests) never share counts. ``_created`` series are left out.

**Several worker processes** (``leadscore serve --workers N``): the serve command makes a fresh
directory, sets ``PROMETHEUS_MULTIPROC_DIR`` before uvicorn starts the workers (see
:func:`multiprocess_directory`) and removes it on exit. Each worker's metrics then live in
memory-mapped files there (``prometheus_client`` picks that value class from the variable when
it is imported, i.e. when a spawned worker starts), and a scrape merges every worker's files
with a :class:`~prometheus_client.multiprocess.MultiProcessCollector` over a fresh registry:
whichever worker answers, ``/metrics`` reports the sum over all of them. Counters and histograms
are summed over every worker that ever ran in the directory (a dead worker's counts stay, so
totals never go backwards); gauges merge by their mode (see :class:`ApiMetrics`), "live" modes
over the running workers only: the serve command's :class:`DeadWorkerReaper` calls
:func:`~prometheus_client.multiprocess.mark_process_dead` for a worker once its process is gone
(uvicorn has no hook for a worker's death). One set of metrics per process in this mode: two
apps built in one process would write the same entries.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import prometheus_client as prom
from prometheus_client import values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``), else None."""
    return os.environ.get(MULTIPROC_ENV) or None


# -------------------------------------------------- label-positional wrappers
class Counter:
    """A ``prometheus_client`` counter with positional label values: ``inc("ok")``."""

    def __init__(self, metric: prom.Counter) -> None:
        self.metric = metric

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        (self.metric.labels(*labels) if labels else self.metric).inc(amount)


class Gauge:
    """A ``prometheus_client`` gauge with positional label values; ``inc`` takes negatives."""

    def __init__(self, metric: prom.Gauge) -> None:
        self.metric = metric

    def _child(self, labels: Sequence[str]) -> prom.Gauge:
        return self.metric.labels(*labels) if labels else self.metric

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._child(labels).inc(amount)

    def set(self, value: float, *labels: str) -> None:
        self._child(labels).set(value)


class Histogram:
    """A ``prometheus_client`` histogram with positional label values."""

    def __init__(self, metric: prom.Histogram) -> None:
        self.metric = metric

    def observe(self, value: float, *labels: str) -> None:
        (self.metric.labels(*labels) if labels else self.metric).observe(value)


class _WithoutCreated:
    """A collector passing on another's metrics without their ``_created`` samples (the
    hand-written exposition had none, and multiprocess mode has none either)."""

    def __init__(self, source: Collector) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        for metric in self.source.collect():
            created = metric.name + "_created"
            metric.samples = [s for s in metric.samples if s.name != created]
            yield metric


# ------------------------------------------------------------------ the metrics
class ApiMetrics:
    """Every metric of one app, registered in ``registry`` (default: a new one).

    Gauge modes, used only in multiprocess mode (how workers' values merge):

    - ``in_progress``: ``livesum``, requests in flight in the running workers.
    - ``model_loaded``: ``livemin``, 1 only when every running worker has a model. A worker
      without one answers 503 to its share of the traffic, which ``max`` would hide; with one
      worker it is the single-process value. (A worker that has not yet created its metrics
      is not counted: readiness of the whole server is ``reloads_total{outcome="ok"}``
      reaching the number of workers, or each worker's ``/readyz``.)
    - ``model_info``: ``livemax``, a (name, version) series is 1 while at least one running
      worker serves it. ``POST /v1/admin/reload`` (or SIGHUP to one worker) reloads only
      the worker it reaches, so two versions can both be 1, which is the truth. Labels
      cannot be removed in this mode: the version a worker stops serving is set to 0.
      (``liveall``/``all`` would add a ``pid`` label; ``mostrecent`` would show only the
      last worker to load.)
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.directory = multiprocess_dir()
        _check_value_class(self.directory)
        self._serving: tuple[str, str] | None = None
        registry = self.registry
        self.requests = Counter(
            prom.Counter(
                "leadscore_http_requests_total",
                "HTTP requests answered, by method, route template and status code.",
                ("method", "route", "status"),
                registry=registry,
            )
        )
        self.duration = Histogram(
            prom.Histogram(
                "leadscore_http_request_duration_seconds",
                "Time from request start to the end of the response, by method and route.",
                ("method", "route"),
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self.in_progress = Gauge(
            prom.Gauge(
                "leadscore_http_requests_in_progress",
                "HTTP requests being answered.",
                registry=registry,
                multiprocess_mode="livesum",
            )
        )
        self.leads_scored = Counter(
            prom.Counter(
                "leadscore_leads_scored_total",
                "Leads scored, by endpoint.",
                ("endpoint",),
                registry=registry,
            )
        )
        self.unseen_values = Counter(
            prom.Counter(
                "leadscore_unseen_values_total",
                "Categorical values of scored leads that the model has no code for (scored as "
                "'other'), by field: a rising count means new countries, campaigns… the model "
                "has never seen.",
                ("field",),
                registry=registry,
            )
        )
        self.scores_stored = Counter(
            prom.Counter(
                "leadscore_scores_stored_total",
                "Scores given, by what became of them in the score store: recorded, or "
                "not_recorded (store off, down or overloaded; the answers were given anyway).",
                ("outcome",),
                registry=registry,
            )
        )
        self.reloads = Counter(
            prom.Counter(
                "leadscore_model_reloads_total",
                "Model (re)loads, by outcome.",
                ("outcome",),
                registry=registry,
            )
        )
        self.model_loaded = Gauge(
            prom.Gauge(
                "leadscore_model_loaded",
                "1 when a model is serving, else 0.",
                registry=registry,
                multiprocess_mode="livemin",
            )
        )
        self.model_info = Gauge(
            prom.Gauge(
                "leadscore_model_info",
                "The model serving (value 1).",
                ("name", "version"),
                registry=registry,
                multiprocess_mode="livemax",
            )
        )
        self.model_loaded.set(0)

    @property
    def multiprocess(self) -> bool:
        return self.directory is not None

    def count_unseen(self, fields: Iterable[str]) -> None:
        """Count unseen values, one per field given (``serving.model_input.unseen_fields`` of
        the leads scored). The label values are field names of the contract or of the model's
        features: a bounded set, never the values themselves."""
        counts: dict[str, int] = {}
        for field in fields:
            counts[field] = counts.get(field, 0) + 1
        for field, count in counts.items():
            self.unseen_values.inc(field, amount=count)

    def serving(self, name: str | None, version: str | None) -> None:
        """Record the model now serving (None: none)."""
        current = None if name is None or version is None else (name, version)
        previous, self._serving = self._serving, current
        if self.directory is None:
            self.model_info.metric.clear()
        elif previous is not None and previous != current:
            self.model_info.set(0, *previous)  # no label removal in multiprocess mode
        if current is None:
            self.model_loaded.set(0)
            return
        self.model_loaded.set(1)
        self.model_info.set(1, *current)

    def render(self) -> str:
        """The exposition: this app's registry, or in multiprocess mode every worker's."""
        source: Collector = self.registry
        if self.directory is not None:
            merged = CollectorRegistry()
            MultiProcessCollector(merged, path=self.directory)
            source = merged
        return prom.generate_latest(_WithoutCreated(source)).decode("utf-8")


def _check_value_class(directory: str | None) -> None:
    """``prometheus_client`` chose file-backed or in-memory values when it was imported; that
    choice must match the mode now, or a worker's counts would silently be left out."""
    mmaped = bool(getattr(values.ValueClass, "_multiprocess", False))
    if directory is None and not mmaped:
        return
    if directory is not None and mmaped:
        if not Path(directory).is_dir():
            raise RuntimeError(f"{MULTIPROC_ENV}={directory} is not a directory")
        return
    raise RuntimeError(
        f"{MULTIPROC_ENV} was {'set' if directory else 'unset'} after prometheus_client was "
        "imported: set it before the process starts (leadscore serve --workers N does)"
    )


# ------------------------------------------------------------------ middleware
class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._known: frozenset[str] | None = None

    def _template(self, scope: Scope) -> str:
        """The route's path template; fixed paths of plain routes (/openapi.json, /docs) and
        requests refused before routing (413) by their path when it is a known one."""
        route: Any = scope.get("route")
        if getattr(route, "path", None):
            return str(route.path)
        if self._known is None:
            app: Any = scope.get("app")
            routes = getattr(app, "routes", ())
            self._known = frozenset(
                str(r.path) for r in routes if getattr(r, "path", None) and "{" not in r.path
            )
        path = str(scope.get("path", ""))
        if path in self._known:
            return path
        return "/static" if path.startswith("/static/") else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        metrics = self.metrics

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        metrics.in_progress.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics.in_progress.inc(amount=-1)
            template = self._template(scope)
            method = str(scope.get("method", ""))
            metrics.requests.inc(method, template, str(status))
            metrics.duration.observe(time.perf_counter() - start, method, template)


# ------------------------------------------- multiprocess: directory and dead workers
def _running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # e.g. access denied: it exists
        return True


class DeadWorkerReaper:
    """Calls :func:`mark_process_dead` for every process with "live" gauge files in
    ``directory`` that is no longer running (checked every ``interval`` seconds, in a daemon
    thread of the serving parent): a crashed or replaced worker then stops counting in the
    in-progress, model-loaded and model-info gauges. Its counters stay. (A pid reused by a
    new process before a check keeps the dead worker's gauges until that process ends.)"""

    def __init__(self, directory: str | Path, interval: float = 1.0) -> None:
        self.directory = str(directory)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-reaper", daemon=True)

    def pids(self) -> set[int]:
        """Processes with live-gauge files (``gauge_live<mode>_<pid>.db``)."""
        found: set[int] = set()
        for path in glob.glob(os.path.join(self.directory, "gauge_live*_*.db")):
            tail = os.path.basename(path)[: -len(".db")].rsplit("_", 1)[-1]
            if tail.isdigit():
                found.add(int(tail))
        return found

    def reap(self) -> list[int]:
        """Mark every dead process dead now; the pids marked."""
        dead = sorted(pid for pid in self.pids() if pid != os.getpid() and not _running(pid))
        for pid in dead:
            mark_process_dead(pid, self.directory)
            logger.info("worker %d is gone: its live gauges are dropped", pid)
        return dead

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.reap()
            except Exception:  # never let bookkeeping take the server down
                logger.exception("could not drop the live gauges of dead workers")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


@contextmanager
def multiprocess_directory() -> Iterator[Path]:
    """For a server of several worker processes: a fresh temporary directory as
    ``PROMETHEUS_MULTIPROC_DIR`` (set in this process's environment, which the workers
    inherit; they must start after this), a :class:`DeadWorkerReaper` on it, and on exit the
    directory removed and the variable restored. Always fresh: files left by an earlier run
    would add its counts to this one's."""
    directory = tempfile.mkdtemp(prefix="leadscore-metrics-")
    previous = os.environ.get(MULTIPROC_ENV)
    if previous:
        logger.info(
            "metrics: %s=%s replaced by %s for the workers", MULTIPROC_ENV, previous, directory
        )
    os.environ[MULTIPROC_ENV] = directory
    reaper = DeadWorkerReaper(directory)
    reaper.start()
    try:
        yield Path(directory)
    finally:
        reaper.stop()
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)
