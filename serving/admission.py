"""Admission control: what keeps one client from starving the server (issue 14, defect 7).

One :class:`Admission` and one :class:`RateLimiter` per app (made by :func:`install` in
``create_app``, kept on ``app.state``; the admission's threads are shut down in the lifespan's
shutdown):

- **Scoring off the event loop, bounded.** Every scoring request is decoded and scored on the
  admission's own ``scoring_threads`` worker threads (a dedicated
  :class:`~concurrent.futures.ThreadPoolExecutor`, not Starlette's shared thread pool), so
  health, metrics and the dashboard never queue behind scoring. Validating a large batch takes
  about a second, scoring it a few: on the event loop either held up every probe. At most
  ``scoring_threads + scoring_queue`` requests are admitted at once (being decoded, waiting or
  scoring); one more is answered 503 with ``Retry-After`` at once, its body never decoded.
- **Request timeout.** A request admitted more than ``request_timeout_seconds`` ago is
  answered 503. A thread already scoring it cannot be stopped: it finishes in the background and
  its slot stays taken until then (the slot count is the work really in progress); a request
  still waiting is taken out of the queue and frees its slot at once.
- **Per-key rate limit.** A token bucket per API key digest of ``rate_limit_per_minute``
  (per worker; 0 = off); beyond it 429 with ``Retry-After``.

The event budget (touches + sales events per request, 422 beyond it) is checked by the routers
(:func:`serving.routers.common.check_event_budget`); :func:`install` states it in the OpenAPI
document of the scoring routes.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from fastapi import FastAPI, HTTPException, status

from serving.settings import Limits

P = ParamSpec("P")
T = TypeVar("T")

EVENT_BUDGET_KEY = "x-max-events-per-request"
"""OpenAPI extension of the scoring operations: the request's event budget on this server."""
MAX_TRACKED_KEYS = 10_000
"""Rate-limit buckets kept (least recently used dropped first). Only known keys reach the
limiter (auth answers first), so this bounds memory even with a huge key list."""
FIRST_ESTIMATE_SECONDS = 1.0
"""Service time assumed for ``Retry-After`` before any request has been timed."""
SMOOTHING = 0.2
"""Weight of the newest service time in its moving average."""


class Overloaded(HTTPException):
    """503 with ``Retry-After``: the server is busy (full queue, timeout or shutting down)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail,
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class RateLimited(HTTPException):
    def __init__(self, per_minute: int, retry_after: int) -> None:
        super().__init__(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {per_minute} requests per minute for this API key exceeded "
            "(params serving.rate_limit_per_minute)",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


class Ticket:
    """One admitted request's slot, for all its jobs on the scoring threads (decoding its body,
    scoring it). The slot is freed once the request has ended (:meth:`end`, or leaving the
    ``with`` block) and none of its jobs is left on a thread: a job past the timeout keeps the
    slot until its thread is done with it, a job taken out of the queue frees it at once."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._lock = threading.Lock()
        self._jobs = 0
        self._ended = False
        self._released = False
        self.admitted_at = time.monotonic()

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *_: object) -> None:
        self.end()

    def end(self) -> None:
        """The request is over (answered, refused, or timed out)."""
        with self._lock:
            self._ended = True
        self._release_if_done()

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on a scoring thread, within the request timeout (counted
        from admission, for all the request's jobs together)."""
        return await self._admission._run(self, fn, *args, **kwargs)

    def _started(self) -> None:
        with self._lock:
            if self._ended:
                raise RuntimeError("this request has ended: its ticket runs no more jobs")
            self._jobs += 1

    def _finished(self) -> None:
        with self._lock:
            self._jobs -= 1
        self._release_if_done()

    def _release_if_done(self) -> None:
        with self._lock:
            free = self._ended and self._jobs == 0 and not self._released
            if free:
                self._released = True
        if free:
            self._admission._release()


class Admission:
    def __init__(self, threads: int, queue: int, timeout_seconds: float) -> None:
        if threads < 1 or queue < 0 or timeout_seconds <= 0:
            raise ValueError("threads ≥ 1, queue ≥ 0 and timeout > 0 expected")
        self.threads = threads
        self.capacity = threads + queue
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._in_use = 0
        self._service_seconds = FIRST_ESTIMATE_SECONDS
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def from_limits(cls, limits: Limits) -> Admission:
        return cls(limits.scoring_threads, limits.scoring_queue, limits.request_timeout_seconds)

    @property
    def in_use(self) -> int:
        """Slots taken now (admitted requests, plus timed-out ones still being scored)."""
        return self._in_use

    def retry_after(self) -> int:
        """Seconds until the backlog of admitted work has drained, from the moving average of
        the service time (at least 1, at most the request timeout)."""
        with self._lock:
            backlog = max(self._in_use, 1) / self.threads * self._service_seconds
        ceiling = max(1, math.ceil(self.timeout_seconds))
        return min(ceiling, max(1, math.ceil(backlog)))

    def admit(self) -> Ticket:
        """A slot, or 503 at once when all ``threads + queue`` are taken. The caller ends the
        ticket (``with admission.admit() as ticket:``)."""
        with self._lock:
            full = self._in_use >= self.capacity
            if not full:
                self._in_use += 1
        if full:
            raise Overloaded(
                f"scoring is saturated ({self.capacity} requests admitted: "
                f"{self.threads} scoring, the rest waiting); retry later",
                self.retry_after(),
            )
        return Ticket(self)

    def close(self) -> None:
        """Stop the threads: queued jobs are cancelled (their slots freed), a running one
        finishes. A later request starts new threads (an app may be served again, as a
        TestClient does once per ``with``)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ internals
    def _release(self) -> None:
        with self._lock:
            self._in_use -= 1

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self.threads, thread_name_prefix="leadscore-scoring"
                )
            return self._executor

    def _timed(self, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.monotonic() - started
            with self._lock:
                self._service_seconds += SMOOTHING * (took - self._service_seconds)

    async def _run(self, ticket: Ticket, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        remaining = ticket.admitted_at + self.timeout_seconds - time.monotonic()
        if remaining <= 0:
            raise self._timed_out()
        ticket._started()
        try:
            future: Future[T] = self._pool().submit(self._timed, fn, args, kwargs)
        except BaseException:
            ticket._finished()
            raise
        # runs in the scoring thread when the job ends, or here when a queued job is cancelled
        future.add_done_callback(lambda _: ticket._finished())
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), remaining)
        except TimeoutError:
            future.cancel()  # still queued: out of the queue (running: finishes on its own)
            raise self._timed_out() from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if future.cancelled() and (task is None or task.cancelling() == 0):
                # the pool was shut down under this request (server stopping), not the request
                raise Overloaded("the server is shutting down", self.retry_after()) from None
            raise

    def _timed_out(self) -> Overloaded:
        return Overloaded(
            f"scoring did not finish within {self.timeout_seconds:g} s "
            "(params serving.request_timeout_seconds); retry later or send fewer leads",
            self.retry_after(),
        )


class RateLimiter:
    """Token buckets per key: ``per_minute`` requests at once, refilled at ``per_minute / 60``
    per second. ``per_minute == 0``: no limit."""

    def __init__(
        self,
        per_minute: int,
        max_keys: int = MAX_TRACKED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        """key → (tokens, when counted), least recently used first."""
        self._lock = threading.Lock()

    @property
    def tracked(self) -> int:
        return len(self._buckets)

    def check(self, key: str) -> None:
        """Take one token of ``key``'s bucket, or raise 429 with the seconds until one is back."""
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        now = self._clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - then) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        if not allowed:
            raise RateLimited(self.per_minute, max(1, math.ceil((1.0 - tokens) / rate)))


def install(app: FastAPI, limits: Limits) -> None:
    """The app's admission (``app.state.admission``) and rate limiter
    (``app.state.rate_limiter``); its OpenAPI document states the event budget in force in
    every operation that declares :data:`EVENT_BUDGET_KEY` (the scoring routes)."""
    app.state.admission = Admission.from_limits(limits)
    app.state.rate_limiter = RateLimiter(limits.rate_limit_per_minute)
    budget = limits.max_events_per_request
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()  # cached by the app: stating the budget twice changes nothing
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and EVENT_BUDGET_KEY in operation:
                    operation[EVENT_BUDGET_KEY] = budget
                    text = operation.get("description", "")
                    sentence = f"Event budget on this server: {budget:,} per request."
                    if sentence not in text:
                        operation["description"] = f"{text}\n\n{sentence}".strip()
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
