"""Prometheus metrics of one app, in the text exposition format (version 0.0.4).

A few counters, gauges and histograms written here (no client library): label sets are small
and bounded (routes are path templates, never raw paths). Updates take a lock, because batch
scoring runs in worker threads.

| metric | type | labels |
|---|---|---|
| ``leadscore_http_requests_total`` | counter | method, route, status |
| ``leadscore_http_request_duration_seconds`` | histogram | method, route |
| ``leadscore_http_requests_in_progress`` | gauge | |
| ``leadscore_leads_scored_total`` | counter | endpoint |
| ``leadscore_model_reloads_total`` | counter | outcome (ok, failed) |
| ``leadscore_model_loaded`` | gauge | 1 when a model is serving |
| ``leadscore_model_info`` | gauge | name, version (value 1) |
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
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


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        with self._lock:
            self._values[labels] = value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._counts: dict[tuple[str, ...], list[int]] = {}
        self._sums: dict[tuple[str, ...], float] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts = self._counts.get(labels)
            if counts is None:
                counts = self._counts[labels] = [0] * (len(self.buckets) + 1)
                self._sums[labels] = 0.0
            # the first bucket whose bound holds the value (+Inf is the last slot)
            slot = len(self.buckets)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    slot = i
                    break
            counts[slot] += 1
            self._sums[labels] += value

    def count(self, *labels: str) -> int:
        return sum(self._counts.get(labels, []))

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        lines = self.header()
        for labels, counts, total in items:
            running = 0
            for bound, count in zip((*self.buckets, math.inf), counts, strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, labels, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, labels)} {_number(total)}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, labels)} {running}")
        return lines


class ApiMetrics:
    """Every metric of one app."""

    def __init__(self) -> None:
        self.requests = Counter(
            "leadscore_http_requests_total",
            "HTTP requests answered, by method, route template and status code.",
            ("method", "route", "status"),
        )
        self.duration = Histogram(
            "leadscore_http_request_duration_seconds",
            "Time from request start to the end of the response, by method and route.",
            ("method", "route"),
        )
        self.in_progress = Gauge(
            "leadscore_http_requests_in_progress", "HTTP requests being answered."
        )
        self.leads_scored = Counter(
            "leadscore_leads_scored_total", "Leads scored, by endpoint.", ("endpoint",)
        )
        self.reloads = Counter(
            "leadscore_model_reloads_total", "Model (re)loads, by outcome.", ("outcome",)
        )
        self.model_loaded = Gauge("leadscore_model_loaded", "1 when a model is serving, else 0.")
        self.model_info = Gauge(
            "leadscore_model_info", "The model serving (value 1).", ("name", "version")
        )
        self.model_loaded.set(0)

    def all(self) -> Iterable[_Metric]:
        return (
            self.requests,
            self.duration,
            self.in_progress,
            self.leads_scored,
            self.reloads,
            self.model_loaded,
            self.model_info,
        )

    def serving(self, name: str | None, version: str | None) -> None:
        self.model_info.clear()
        if name is None or version is None:
            self.model_loaded.set(0)
            return
        self.model_loaded.set(1)
        self.model_info.set(1, name, version)

    def render(self) -> str:
        lines: list[str] = []
        for metric in self.all():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


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
