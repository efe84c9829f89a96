"""The API refuses what it cannot score faithfully (issue 14, defect 10), through the real app:
unknown touch types and stages, unknown lead fields, events or as_of before the lead existed,
timestamps as numbers in strings, bodies that are not JSON. Unseen category values are scored
and listed. Every refusal is a 4xx naming the field, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import contract
from serving.schemas import normalise
from tests.serving.conftest import auth
from tests.serving.world import World, open_lead_ids, request_for

AS_OF = pd.Timestamp("2025-03-01", tz="UTC")
TOUCH_TYPE = contract.TOUCHES.column("touch_type")


def created_before(world: World, as_of: pd.Timestamp, n: int, seed: int) -> list[str]:
    """``n`` leads with touches created before ``as_of``: scoring one before it existed is a
    422 now."""
    leads = world.tables["leads"].set_index("lead_id")["created_at"]
    ids = open_lead_ids(world.tables, 4 * n, seed=seed)
    return [i for i in ids if pd.Timestamp(leads[i]) < as_of][:n]


@pytest.fixture(scope="module")
def bodies(world: World) -> list[dict[str, Any]]:
    """Leads of the world with touches, as the API takes them."""
    return [request_for(world.tables, i, AS_OF) for i in created_before(world, AS_OF, 3, 11)]


def _copy(body: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(body))
    return copied


def _with_demo(body: dict[str, Any], touch_type: str) -> dict[str, Any]:
    """The lead with a demo request the day before as_of, spelt ``touch_type``."""
    out = _copy(body)
    when = (AS_OF - pd.Timedelta(days=1)).isoformat()
    out["touches"].append({"occurred_at": when, "touch_type": touch_type})
    return out


def _post(client: TestClient, path: str, body: Any) -> Any:
    return client.post(path, json=body, headers=auth("score"))


def _error(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 422, answer.text
    (error,) = answer.json()["detail"]
    return dict(error)


# ------------------------------------------------------------------ vocabularies
@pytest.mark.parametrize(
    ("sent", "suggested"), [("demo_requets", "demo_request"), ("Demo Request", "demo_request")]
)
def test_unknown_touch_types_are_422_at_the_touch(
    client: TestClient, bodies: list[dict[str, Any]], sent: str, suggested: str
) -> None:
    # before: accepted, scored as "other interaction" (the demo's signal lost, the score lower)
    body = _with_demo(bodies[0], sent)
    error = _error(_post(client, "/v1/score", body))
    assert error["loc"] == ["body", "touches", len(body["touches"]) - 1, "touch_type"]
    assert f"did you mean '{suggested}'?" in error["msg"]
    assert error["input"] == sent


def test_touch_types_normalised_like_the_validator_score_the_same(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    canonical = _post(client, "/v1/score", _with_demo(bodies[0], "demo_request")).json()
    spelt = _post(client, "/v1/score", _with_demo(bodies[0], " Demo_REQUEST ")).json()
    assert spelt == canonical


def test_unknown_stages_are_422(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    body = _copy(bodies[0])
    body["sales_events"] = [{"occurred_at": body["lead"]["created_at"], "stage": "Assigned"}]
    error = _error(_post(client, "/v1/score", body))
    assert error["loc"] == ["body", "sales_events", 0, "stage"]
    assert "did you mean 'assigned'?" in error["msg"]


def _outside_the_vocabulary(text: str) -> bool:
    return normalise(TOUCH_TYPE, text) not in contract.TOUCH_TYPES


def _near_miss(word: str, cut: int, extra: str) -> str:
    """A touch type with one character dropped, replaced or added: the typos people make."""
    cut %= len(word)
    return word[:cut] + extra + word[cut + 1 :]


TOUCH_TYPES_OUTSIDE = st.one_of(
    st.text(max_size=40),
    st.builds(
        _near_miss,
        st.sampled_from(contract.TOUCH_TYPES),
        st.integers(0, 30),
        st.sampled_from(["", " ", "-", "x", "é", "_"]),
    ),
    st.sampled_from(contract.TOUCH_TYPES).map(lambda t: t.replace("_", " ")),
).filter(_outside_the_vocabulary)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
@given(touch_type=TOUCH_TYPES_OUTSIDE)
def test_any_touch_type_outside_the_vocabulary_is_422_never_5xx(
    client: TestClient, bodies: list[dict[str, Any]], touch_type: str
) -> None:
    answer = _post(client, "/v1/score", _with_demo(bodies[1], touch_type))
    assert answer.status_code == 422, (touch_type, answer.status_code, answer.text[:300])
    locations = [e["loc"] for e in answer.json()["detail"]]
    assert ["body", "touches", len(bodies[1]["touches"]), "touch_type"] in locations


# ---------------------------------------------------------------- lead fields
def test_unknown_lead_fields_are_422_on_every_route(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    body = _copy(bodies[0])
    body["lead"]["senority"] = body["lead"].pop("seniority", "director")
    error = _error(_post(client, "/v1/score", body))
    assert error["loc"] == ["body", "lead", "senority"]
    assert "did you mean 'seniority'?" in error["msg"]
    for path in ("/v1/score/batch", "/v1/queue"):
        error = _error(_post(client, path, {"leads": [bodies[1], body]}))
        assert error["loc"] == ["body", "leads", 1, "lead", "senority"], path


# ------------------------------------------------------------------ time rules
def test_as_of_before_the_lead_was_created_is_422(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    body = _copy(bodies[0])
    body["as_of"] = (pd.Timestamp(body["lead"]["created_at"]) - pd.Timedelta(hours=1)).isoformat()
    body["touches"] = body["sales_events"] = []
    assert _error(_post(client, "/v1/score", body))["loc"] == ["body", "as_of"]
    for path in ("/v1/score/batch", "/v1/queue"):
        error = _error(_post(client, path, {"leads": [bodies[1], body]}))
        assert error["loc"] == ["body", "leads", 1, "as_of"], path


def test_events_before_the_lead_was_created_are_422(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    body = _copy(bodies[0])
    early = (pd.Timestamp(body["lead"]["created_at"]) - pd.Timedelta(days=3)).isoformat()
    body["touches"][0]["occurred_at"] = early
    error = _error(_post(client, "/v1/score", body))
    assert error["loc"] == ["body", "touches", 0, "occurred_at"]
    assert error["type"] == "time_order"


def test_events_after_as_of_are_accepted_and_not_used(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    # DESIGN.md, point in time: features use only rows before as_of
    plain = _post(client, "/v1/score", bodies[0]).json()
    later = _copy(bodies[0])
    after = (AS_OF + pd.Timedelta(days=2)).isoformat()
    later["touches"].append({"occurred_at": after, "touch_type": "demo_request"})
    later["sales_events"].append({"occurred_at": after, "stage": "won"})
    assert _post(client, "/v1/score", later).json() == plain


def test_numbers_in_strings_are_not_timestamps(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    body = _copy(bodies[0])
    body["as_of"] = "1700000000"
    error = _error(_post(client, "/v1/score", body))
    assert error["loc"] == ["body", "as_of"]
    assert "ISO-8601" in error["msg"]


# -------------------------------------------------------------- content type
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "text/json", None]
)
def test_bodies_not_sent_as_json_are_415(
    client: TestClient, bodies: list[dict[str, Any]], content_type: str | None
) -> None:
    headers = auth("score") | ({"Content-Type": content_type} if content_type else {})
    for path, body in (("/v1/score", bodies[0]), ("/v1/score/batch", {"leads": bodies[:1]})):
        answer = client.post(path, content=json.dumps(body).encode(), headers=headers)
        assert answer.status_code == 415, (path, content_type, answer.text[:200])
        assert "application/json" in answer.json()["detail"]


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/x+json"]
)
def test_json_media_types_are_accepted(
    client: TestClient, bodies: list[dict[str, Any]], content_type: str
) -> None:
    headers = auth("score") | {"Content-Type": content_type}
    answer = client.post("/v1/score", content=json.dumps(bodies[0]).encode(), headers=headers)
    assert answer.status_code == 200, answer.text[:200]


# -------------------------------------------------------------------- unseen
def test_unseen_values_are_scored_and_listed(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    known = _post(client, "/v1/score", bodies[0]).json()
    assert known["unseen"] == []
    body = _copy(bodies[0])
    body["lead"]["country"] = "Narnia"
    answer = _post(client, "/v1/score", body)
    assert answer.status_code == 200
    assert answer.json()["unseen"] == [{"field": "country", "value": "Narnia"}]
    batch = _post(client, "/v1/score/batch", {"leads": [bodies[0], body]}).json()
    assert [r["unseen"] for r in batch["results"]] == [
        [],
        [{"field": "country", "value": "Narnia"}],
    ]


def _unseen_count(client: TestClient, field: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'leadscore_unseen_values_total{{field="{field}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_unseen_values_are_counted_in_metrics_by_every_scoring_route(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    body = _copy(bodies[0])
    body["lead"]["country"] = "Atlantis"
    before = _unseen_count(client, "country")
    assert _post(client, "/v1/score", body).status_code == 200
    assert _post(client, "/v1/score/batch", {"leads": [body, bodies[1]]}).status_code == 200
    # the queue counts leads below its cut too
    queue = _post(client, "/v1/queue", {"leads": [bodies[1], body], "capacity": 1})
    assert queue.status_code == 200
    assert _unseen_count(client, "country") == before + 3
