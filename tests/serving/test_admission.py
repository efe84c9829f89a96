"""Admission control (issue 14, defect 7): the bounded scoring executor (queue full → 503 with
Retry-After, request timeout → 503, slot accounting after timeouts and errors), the event
budget per request (422), the per-key rate limit (429), and their OpenAPI statement; the
executor and limiter on their own, then through the real app (TestClient)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.admission import Admission, Overloaded, RateLimited, RateLimiter
from serving.app import create_app
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World, open_lead_ids, request_for

JSON = {"Content-Type": "application/json"}
BUDGET = 200
TIMEOUT = 1.5


def wait_until(condition: Any, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


def retry_after(headers: Any) -> int:
    value = int(dict(headers.items())["retry-after" if "retry-after" in headers else "Retry-After"])
    # an integer number of seconds, nothing else
    assert value >= 1
    return value


# ------------------------------------------------------------------ the executor
async def scored(admission: Admission, fn: Any, *args: Any) -> Any:
    """One request: admitted, one job, ended."""
    with admission.admit() as ticket:
        return await ticket.run(fn, *args)


def test_admits_threads_plus_queue_then_503_with_retry_after() -> None:
    admission = Admission(threads=2, queue=1, timeout_seconds=5)
    tickets = [admission.admit() for _ in range(3)]
    with pytest.raises(Overloaded) as refused:
        admission.admit()
    assert refused.value.status_code == 503
    assert 1 <= retry_after(refused.value.headers) <= 5
    assert "saturated" in refused.value.detail
    tickets[0].end()
    tickets[0].end()  # ending twice frees one slot, not two
    assert admission.in_use == 2
    admission.admit()  # a freed slot is usable again
    assert admission.in_use == 3


def test_scoring_runs_on_the_admissions_own_threads() -> None:
    admission = Admission(threads=1, queue=0, timeout_seconds=5)

    async def main() -> tuple[str, str]:
        worker = await scored(admission, lambda: threading.current_thread().name)
        return threading.current_thread().name, worker

    loop_thread, worker = asyncio.run(main())
    assert worker.startswith("leadscore-scoring")
    assert worker != loop_thread
    assert admission.in_use == 0
    admission.close()


def test_one_ticket_runs_all_jobs_of_its_request_then_frees_its_slot() -> None:
    admission = Admission(threads=1, queue=0, timeout_seconds=5)

    async def main() -> None:
        with admission.admit() as ticket:
            assert await ticket.run(int, "2") == 2  # e.g. decoding the body
            assert admission.in_use == 1  # between jobs the request still holds its slot
            assert await ticket.run(str, 3) == "3"  # then scoring it
        assert admission.in_use == 0
        with pytest.raises(RuntimeError):
            await ticket.run(int, "4")

    asyncio.run(main())
    admission.close()


def test_a_running_job_past_the_timeout_is_503_and_keeps_its_slot_until_it_ends() -> None:
    admission = Admission(threads=1, queue=0, timeout_seconds=0.2)
    gate = threading.Event()

    async def main() -> float:
        started = time.monotonic()
        with pytest.raises(Overloaded) as timed_out:
            await scored(admission, gate.wait, 10)
        assert "within 0.2 s" in timed_out.value.detail
        retry_after(timed_out.value.headers)
        return time.monotonic() - started

    assert asyncio.run(main()) < 2  # answered at the timeout, not when the job ends
    assert admission.in_use == 1  # the thread still works on it: the slot is really taken
    with pytest.raises(Overloaded):
        admission.admit()
    gate.set()
    assert wait_until(lambda: admission.in_use == 0)
    admission.admit().end()
    assert admission.in_use == 0
    admission.close()


def test_a_queued_job_past_the_timeout_leaves_the_queue_at_once() -> None:
    admission = Admission(threads=1, queue=1, timeout_seconds=0.3)
    gate = threading.Event()
    ran: list[str] = []

    async def main() -> None:
        blocker = asyncio.ensure_future(scored(admission, gate.wait, 10))
        await asyncio.sleep(0.05)  # the blocker holds the only thread
        with pytest.raises(Overloaded):
            await scored(admission, ran.append, "queued job ran")
        assert admission.in_use == 1  # the queued job's slot is free already
        gate.set()
        with pytest.raises(Overloaded):  # the blocker itself timed out too
            await blocker

    asyncio.run(main())
    assert wait_until(lambda: admission.in_use == 0)
    assert ran == []  # taken out of the queue: it never ran
    admission.close()


def test_errors_release_their_slot_exactly_once() -> None:
    admission = Admission(threads=1, queue=0, timeout_seconds=5)

    def broken() -> None:
        raise ValueError("boom")

    async def main() -> None:
        with admission.admit() as ticket, pytest.raises(ValueError, match="boom"):
            await ticket.run(broken)
        ticket.end()  # once more: no second release

    asyncio.run(main())
    assert admission.in_use == 0  # not negative
    admission.admit()
    assert admission.in_use == 1
    admission.close()


def test_a_request_already_past_its_timeout_runs_nothing() -> None:
    admission = Admission(threads=1, queue=0, timeout_seconds=0.05)
    ran: list[int] = []

    async def main() -> None:
        with admission.admit() as ticket:
            await asyncio.sleep(0.1)  # e.g. a slow body read after admission
            with pytest.raises(Overloaded):
                await ticket.run(ran.append, 1)

    asyncio.run(main())
    assert ran == []
    assert admission.in_use == 0
    admission.close()


def test_closed_admission_cancels_queued_jobs_and_serves_again_later() -> None:
    admission = Admission(threads=1, queue=1, timeout_seconds=5)
    gate = threading.Event()

    async def main() -> None:
        blocker = asyncio.ensure_future(scored(admission, gate.wait, 10))
        queued = asyncio.ensure_future(scored(admission, lambda: "late"))
        await asyncio.sleep(0.05)
        admission.close()
        with pytest.raises(Overloaded, match="shutting down"):
            await queued
        gate.set()
        assert await blocker is True
        assert await scored(admission, lambda: "again") == "again"

    asyncio.run(main())
    assert wait_until(lambda: admission.in_use == 0)
    admission.close()


# ------------------------------------------------------------------ the rate limiter
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_per_key() -> None:
    clock = Clock()
    limiter = RateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a")
    assert refused.value.status_code == 429
    assert retry_after(refused.value.headers) == 20  # one token per 60/3 s
    limiter.check("b")  # another key has its own bucket
    clock.now += 20
    limiter.check("a")
    with pytest.raises(RateLimited):
        limiter.check("a")


def test_rate_limit_off_and_memory_bounded() -> None:
    off = RateLimiter(0)
    for _ in range(1000):
        off.check("a")
    assert off.tracked == 0
    bounded = RateLimiter(5, max_keys=2)
    for key in ("a", "b", "c", "d"):
        bounded.check(key)
    assert bounded.tracked == 2


# ------------------------------------------------------------------ through the app
@pytest.fixture(scope="module")
def bodies(world: World) -> list[dict[str, Any]]:
    # no as_of: scored now, after every lead's creation and history
    return [request_for(world.tables, i) for i in open_lead_ids(world.tables, 4, seed=2)]


def with_touches(body: dict[str, Any], touches: int) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(body))
    touch = {"occurred_at": out["lead"]["created_at"], "touch_type": "web_visit"}
    out["touches"] = [touch] * touches
    out["sales_events"] = []
    return out


@pytest.fixture(scope="module")
def admission_app(world: World, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(
        settings_for(
            world,
            tmp_path_factory.mktemp("admission"),
            scoring_threads=1,
            scoring_queue=1,
            request_timeout_seconds=TIMEOUT,
            max_events_per_request=BUDGET,
        )
    )


@pytest.fixture(scope="module")
def client(admission_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(admission_app) as test_client:
        yield test_client


@pytest.fixture
def admission(admission_app: FastAPI, client: TestClient) -> Iterator[Admission]:
    found: Admission = admission_app.state.admission
    yield found
    assert wait_until(lambda: found.in_use == 0), "a test left slots taken"


def test_even_a_small_lead_is_scored_off_the_event_loop(
    client: TestClient, admission: Admission, bodies: list[dict[str, Any]]
) -> None:
    assert client.post("/v1/score", json=bodies[0], headers=auth("score")).status_code == 200
    names = {thread.name for thread in threading.enumerate()}
    assert any(name.startswith("leadscore-scoring") for name in names)
    assert admission.in_use == 0


def test_saturated_scoring_is_503_before_the_body_is_parsed_and_health_answers(
    client: TestClient, admission: Admission, bodies: list[dict[str, Any]]
) -> None:
    held = [admission.admit() for _ in range(admission.capacity)]
    try:
        for path, body in (
            ("/v1/score", bodies[0]),
            ("/v1/score/batch", {"leads": bodies}),
            ("/v1/queue", {"leads": bodies}),
        ):
            refused = client.post(path, json=body, headers=auth("score"))
            assert refused.status_code == 503, path
            assert "saturated" in refused.json()["detail"]
            retry_after(refused.headers)
        # a bad body is not even parsed while saturated
        unparsed = client.post("/v1/score", content=b"{", headers=JSON | auth("score"))
        assert unparsed.status_code == 503
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/v1/model", headers=auth("score")).status_code == 200
    finally:
        for ticket in held:
            ticket.end()
    assert client.post("/v1/score", json=bodies[0], headers=auth("score")).status_code == 200


def test_request_timeout_is_503_and_the_slots_come_back(
    client: TestClient, admission: Admission, bodies: list[dict[str, Any]]
) -> None:
    gate = threading.Event()
    # the only scoring thread is busy (a job of another request, run on its own loop)
    occupier = threading.Thread(
        target=lambda: asyncio.run(_swallow(scored(admission, gate.wait, 30)))
    )
    occupier.start()
    try:
        assert wait_until(lambda: admission.in_use == 1)
        started = time.monotonic()
        waited = client.post("/v1/score", json=bodies[0], headers=auth("score"))
        took = time.monotonic() - started
        assert waited.status_code == 503
        assert "did not finish within" in waited.json()["detail"]
        retry_after(waited.headers)
        assert TIMEOUT * 0.9 <= took < TIMEOUT + 3
        assert admission.in_use == 1  # the waiting request's slot is free, the busy one not
        # even a malformed body waits: bodies are decoded on the scoring threads, not the loop
        malformed = client.post("/v1/score", content=b"{", headers=JSON | auth("score"))
        assert malformed.status_code == 503
        assert "did not finish within" in malformed.json()["detail"]
    finally:
        gate.set()
        occupier.join(10)
    assert wait_until(lambda: admission.in_use == 0)
    assert client.post("/v1/score", json=bodies[0], headers=auth("score")).status_code == 200


async def _swallow(job: Any) -> None:
    with contextlib.suppress(Overloaded):
        await job


def test_refused_bodies_release_their_slots(
    client: TestClient, admission: Admission, bodies: list[dict[str, Any]]
) -> None:
    bad = [
        client.post("/v1/score", content=b"{", headers=JSON | auth("score")),
        client.post("/v1/score/batch", json={"leads": "x"}, headers=auth("score")),
        client.post(
            "/v1/score/batch",
            json={"leads": [with_touches(bodies[0], 150)] * 2},
            headers=auth("score"),
        ),
    ]
    assert [answer.status_code for answer in bad] == [422, 422, 422]
    assert "budget" in bad[2].json()["detail"][0]["msg"]
    assert admission.in_use == 0
    assert client.post("/v1/score", json=bodies[0], headers=auth("score")).status_code == 200


@pytest.mark.parametrize("path", ["/v1/score/batch", "/v1/queue"])
def test_event_budget_of_the_whole_request_is_422(
    client: TestClient, admission: Admission, bodies: list[dict[str, Any]], path: str
) -> None:
    # each lead within its own limit (300), the request over its budget (200)
    heavy = [with_touches(bodies[i], 70) for i in range(3)]
    over = client.post(path, json={"leads": heavy}, headers=auth("score"))
    assert over.status_code == 422
    (entry,) = over.json()["detail"]
    assert entry["loc"] == ["body", "leads"]
    assert entry["input"] == 210
    assert f"budget is {BUDGET}" in entry["msg"]
    assert "max_events_per_request" in entry["msg"]
    within = client.post(path, json={"leads": heavy[:2]}, headers=auth("score"))
    assert within.status_code == 200


def test_event_budget_of_one_lead(
    client: TestClient, admission: Admission, bodies: list[dict[str, Any]]
) -> None:
    over = client.post("/v1/score", json=with_touches(bodies[0], 250), headers=auth("score"))
    assert over.status_code == 422
    assert over.json()["detail"][0]["loc"] == ["body"]
    exact = client.post("/v1/score", json=with_touches(bodies[0], BUDGET), headers=auth("score"))
    assert exact.status_code == 200


def test_openapi_states_the_budget_in_force(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/score", "/v1/score/batch", "/v1/queue"):
        operation = paths[path]["post"]
        assert operation["x-max-events-per-request"] == BUDGET, path
        assert f"Event budget on this server: {BUDGET} per request" in operation["description"]
        assert {"429", "503"} <= set(operation["responses"])
    assert "x-max-events-per-request" not in paths["/v1/model"]["get"]


def test_rate_limit_per_key_is_429_with_retry_after(
    world: World, tmp_path: Any, bodies: list[dict[str, Any]]
) -> None:
    app = create_app(settings_for(world, tmp_path, rate_limit_per_minute=3))
    with TestClient(app) as limited:
        assert limited.post("/v1/score", json=bodies[0], headers=auth("score")).status_code == 200
        for _ in range(2):
            assert limited.get("/v1/model", headers=auth("score")).status_code == 200
        refused = limited.post("/v1/score", json=bodies[0], headers=auth("score"))
        assert refused.status_code == 429
        assert retry_after(refused.headers) == 20
        assert "rate limit of 3 requests per minute" in refused.json()["detail"]
        assert limited.get("/v1/dashboard/kpis", headers=auth("score")).status_code == 429
        # another key, unknown keys and the probes are not affected
        assert limited.get("/v1/model", headers=auth("admin")).status_code == 200
        assert limited.get("/v1/model", headers={"X-API-Key": "x" * 20}).status_code == 401
        assert limited.get("/healthz").status_code == 200
        assert app.state.rate_limiter.tracked == 2
