"""The app in-process (FastAPI TestClient): routes, auth, validation, limits, no model,
reload, dashboard data, OpenAPI, metrics."""

from __future__ import annotations

import importlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from features import contract
from features.params import Params
from serving.app import create_app
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World, open_lead_ids, request_for


@pytest.fixture(scope="module")
def bodies(world: World) -> list[dict[str, Any]]:
    import pandas as pd

    as_of = pd.Timestamp("2025-03-01", tz="UTC")
    lead_ids = open_lead_ids(world.tables, 12, seed=9, created_before=as_of)
    return [request_for(world.tables, i, as_of) for i in lead_ids]


def test_no_side_effects_at_import() -> None:
    module = importlib.reload(importlib.import_module("serving.app"))
    assert not any(isinstance(value, FastAPI) for value in vars(module).values())


def test_score(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    answer = client.post("/v1/score", json=bodies[0], headers=auth("score"))
    assert answer.status_code == 200
    result = answer.json()
    assert set(result) == {
        "lead_id",
        "as_of",
        "p_accepted",
        "p_converted",
        "score",
        "grade",
        "handoff",
        "fit_score",
        "engagement_score",
        "grid",
        "priority",
        "p_converted_by",
        "expected_conversion_date",
        "expected_value",
        "segment",
        "reasons_positive",
        "reasons_negative",
        "unseen",
        "model",
        "trend",
        "previous_score",
        "previous_scored_at",
    }
    assert result["as_of"] == "2025-03-01T00:00:00+00:00"
    assert 0 <= result["score"] <= 100
    assert 0 <= result["fit_score"] <= 100
    assert 0 <= result["engagement_score"] <= 100
    assert result["grid"][0] in "ABCD"
    assert result["grid"][1] in "1234"
    assert result["priority"] is None  # one lead alone: no queue to rank it in
    assert result["segment"] == "pooled"  # a model without segments
    # when and for how much (models.timing): a curve over the horizons that never decreases
    by = result["p_converted_by"]
    assert list(by) == [str(d) for d in Params().timing.horizons_days]
    assert list(by.values()) == sorted(by.values())
    assert all(0.0 <= p <= 1.0 for p in by.values())
    date = result["expected_conversion_date"]
    assert (date is None) == (by[list(by)[-1]] < 0.5)
    assert date is None or date >= result["as_of"][:10]
    assert result["expected_value"] >= 0.0
    reasons = result["reasons_positive"] + result["reasons_negative"]
    assert reasons
    assert all({"field", "text", "contribution"} == set(r) for r in reasons)
    assert all(r["contribution"] > 0 for r in result["reasons_positive"])
    assert all(r["contribution"] < 0 for r in result["reasons_negative"])


def test_long_histories_are_scored_off_the_event_loop(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    body = dict(bodies[0])
    touch = {"occurred_at": "2024-12-01T00:00:00Z", "touch_type": "web_visit"}
    body["touches"] = [touch] * 250
    answer = client.post("/v1/score", json=body, headers=auth("score"))
    assert answer.status_code == 200


def test_batch_and_queue(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    batch = client.post("/v1/score/batch", json={"leads": bodies}, headers=auth("score")).json()
    assert [r["lead_id"] for r in batch["results"]] == [b["lead"]["lead_id"] for b in bodies]
    empty = client.post("/v1/score/batch", json={"leads": []}, headers=auth("score")).json()
    assert empty["results"] == []
    queue = client.post(
        "/v1/queue", json={"leads": bodies, "capacity": 3}, headers=auth("score")
    ).json()
    best = sorted(batch["results"], key=lambda r: (-r["p_converted"], r["lead_id"]))[:3]
    assert [q["lead_id"] for q in queue["queue"]] == [r["lead_id"] for r in best]
    assert queue["left_out"] == len(bodies) - 3
    # priority: each kept lead's percentile among all the leads sent, cut or not
    everyone = [r["p_converted"] for r in batch["results"]]
    for entry in queue["queue"]:
        at_most = sum(p <= entry["p_converted"] for p in everyone)
        assert entry["priority"] == round(100 * at_most / len(everyone))
    assert queue["queue"][0]["priority"] == 100
    assert all(r["priority"] is None for r in batch["results"])  # no queue: not known
    # fit and engagement are the lead's own, whichever route scored it
    fit = {
        r["lead_id"]: (r["fit_score"], r["engagement_score"], r["grid"]) for r in batch["results"]
    }
    assert all(
        fit[q["lead_id"]] == (q["fit_score"], q["engagement_score"], q["grid"])
        for q in queue["queue"]
    )


def test_auth(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    assert client.post("/v1/score", json=bodies[0]).status_code == 401
    assert client.post("/v1/score", json=bodies[0], headers={"X-API-Key": "x"}).status_code == 401
    assert client.post("/v1/admin/reload", headers=auth("score")).status_code == 403
    assert client.get("/v1/dashboard/kpis").status_code == 401
    # public: probes, metrics, the page and its assets
    for path in ("/healthz", "/readyz", "/metrics", "/", "/static/dashboard.js", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_auth_before_body(client: TestClient) -> None:
    """No key and a bad body: 401, without looking at the body."""
    assert client.post("/v1/score", content=b"{").status_code == 401


def test_validation_messages(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    body = json.loads(json.dumps(bodies[0]))
    body["touches"] = [{"touch_type": "x" * 300}]
    body["lead"]["lead_id"] = 5
    answer = client.post("/v1/score", json=body, headers=auth("score"))
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    locations = {tuple(e["loc"]) for e in detail}
    assert ("body", "touches", 0, "occurred_at") in locations
    assert ("body", "touches", 0, "touch_type") in locations
    assert ("body", "lead", "lead_id") in locations
    assert all(set(e) <= {"loc", "msg", "type", "input"} for e in detail)
    assert all(len(str(e.get("input", ""))) <= 200 for e in detail)  # no long echoes


def test_size_limits(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    big = {"leads": [bodies[0]] * 41}
    assert client.post("/v1/score/batch", json=big, headers=auth("score")).status_code in (
        413,
        422,
    )
    huge = b"[" + b"0," * 60_000 + b"0]"
    assert client.post("/v1/score", content=huge, headers=auth("score")).status_code == 413


def test_model_document(client: TestClient, world: World) -> None:
    document = client.get("/v1/model", headers=auth("score")).json()
    assert document["definition"]["text"] == world.scorer.definition.text
    assert document["metrics_source"].endswith("(evaluate stage of the latest pipeline run)")
    assert document["metrics"]["converted"]["rules"]["roc_auc"] is not None
    assert sum(f["share"] for f in document["top_fields"]) <= 1.0001


def test_openapi_documents_the_generated_models(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert list(components["Lead"]["properties"]) == list(contract.LEADS.column_names)
    body = schema["paths"]["/v1/score"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/ScoreRequest")
    responses = schema["paths"]["/v1/score"]["post"]["responses"]
    assert {"200", "401", "403", "413", "422", "503"} <= set(responses)
    assert components["ScoreRequest"]["examples"]
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_metrics_text(client: TestClient, bodies: list[dict[str, Any]]) -> None:
    assert client.post("/v1/score", json=bodies[0], headers=auth("score")).status_code == 200
    text = client.get("/metrics").text
    assert "# TYPE leadscore_http_request_duration_seconds histogram" in text
    assert 'leadscore_model_info{name="model",' in text
    assert 'route="/v1/score"' in text
    assert 'le="+Inf"' in text


def test_reload_swaps_atomically(client: TestClient, world: World) -> None:
    holder = client.app.state.holder  # type: ignore[attr-defined]
    before = holder.current
    answer = client.post("/v1/admin/reload", json={"uri": str(world.train)}, headers=auth("admin"))
    assert answer.status_code == 200
    assert answer.json()["previous"]["version"] == before.info.version
    assert holder.current is not before
    assert holder.current.info.source == "pickle"
    assert before.scorer is not None  # the old model is intact for requests in flight
    assert client.post("/v1/admin/reload", headers=auth("admin")).status_code == 200
    assert holder.current.info.source == "bundle"
    bad = client.post("/v1/admin/reload", json={"uri": "/nope"}, headers=auth("admin"))
    assert bad.status_code == 422
    assert holder.current.info.source == "bundle"
    malformed = {**auth("admin"), "content-type": "application/json"}
    assert client.post("/v1/admin/reload", content=b"{", headers=malformed).status_code == 422
    not_json = {**auth("admin"), "content-type": "x"}
    assert client.post("/v1/admin/reload", content=b"{", headers=not_json).status_code == 415


def test_dashboard_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/").text
    assert "<svg" in page
    for attribute in ("src=", "href="):
        for part in page.split(attribute)[1:]:
            target = part[1:].split(part[0])[0]
            assert not target.startswith(("http:", "https:", "//")), target
    for asset in ("/static/dashboard.js", "/static/charts.js", "/static/dashboard.css"):
        assert asset in page
        text = client.get(asset).text
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text


def test_dashboard_data(client: TestClient) -> None:
    kpis = client.get("/v1/dashboard/kpis", headers=auth("score")).json()
    assert kpis["available"]
    assert kpis["kpis"]["by_channel"]
    card = client.get("/v1/dashboard/model", headers=auth("score")).json()
    assert set(card["plots"]["calibration"]) == {"model", "rules", "logistic"}
    assert card["model"]["definition"]["text"]
    queue = client.get("/v1/dashboard/queue?view=all&limit=5", headers=auth("score")).json()
    assert len(queue["rows"]) == 5
    assert queue["total"] > 5
    p = [row["p_converted"] for row in queue["rows"]]
    assert p == sorted(p, reverse=True)
    assert [row["rank"] for row in queue["rows"]] == [1, 2, 3, 4, 5]  # the file's own order
    assert queue["ranked_by"] == [{"name": "lead-scoring", "version": "1"}]
    owner = queue["owners"][0]
    mine = client.get(f"/v1/dashboard/queue?view=all&owner={owner}", headers=auth("score")).json()
    assert mine["rows"]
    assert {row["owner_id"] for row in mine["rows"]} == {owner}
    unassigned = client.get("/v1/dashboard/queue?owner=(none)", headers=auth("score")).json()
    assert all(row["owner_id"] is None for row in unassigned["rows"])
    assert client.get("/dashboard/config").json() == {"auth": "on"}


def test_dashboard_survives_missing_and_broken_reports(world: World, tmp_path: Path) -> None:
    arts = tmp_path / "arts"
    (arts / "plots").mkdir(parents=True)
    (arts / "kpis.json").write_text("{not json")
    (arts / "metrics.json").write_text("[1, 2]")
    (arts / "queue.parquet").write_bytes(b"PAR1 nonsense")
    (arts / "plots" / "calibration_model.csv").write_text("a,b\n1,2\n")
    settings = settings_for(world, tmp_path, artifacts=arts, load_model=False)
    with TestClient(create_app(settings)) as client:
        for path in ("kpis", "model", "queue"):
            answer = client.get(f"/v1/dashboard/{path}", headers=auth("score"))
            assert answer.status_code == 200, path
        assert client.get("/v1/dashboard/kpis", headers=auth("score")).json()["available"] is False
        assert client.get("/v1/dashboard/queue", headers=auth("score")).json()["available"] is False
        assert client.get("/v1/score", headers=auth("score")).status_code == 405
        assert client.get("/v1/model", headers=auth("score")).status_code == 503


def test_auth_off_warns_loudly(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(world, tmp_path, auth="off", api_keys="", load_model=False)
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        assert client.get("/v1/dashboard/kpis").status_code == 200
        assert client.post("/v1/score", json={}).status_code == 503  # no model, but allowed
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records)


def test_no_keys_warns(world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(world, tmp_path, api_keys="", load_model=False)
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        assert client.get("/v1/dashboard/kpis", headers={"X-API-Key": "x"}).status_code == 401
    assert any("no API keys configured" in r.getMessage() for r in caplog.records)


def test_a_flat_models_numeric_features_must_be_numbers(
    client: TestClient, bodies: list[dict[str, Any]]
) -> None:
    model = client.app.state.holder.current  # type: ignore[attr-defined]
    original = model.inputs.numerics
    model.inputs.numerics = frozenset({"age"})  # as a model trained on a flat export declares
    try:
        body = json.loads(json.dumps(bodies[0]))
        body["lead"]["age"] = "forty"
        single = client.post("/v1/score", json=body, headers=auth("score"))
        assert single.status_code == 422
        assert single.json()["detail"][0]["loc"] == ["body", "lead", "age"]
        batch = client.post(
            "/v1/score/batch", json={"leads": [bodies[1], body]}, headers=auth("score")
        )
        assert batch.json()["detail"][0]["loc"] == ["body", "leads", 1, "lead", "age"]
        body["lead"]["age"] = "41"
        assert client.post("/v1/score", json=body, headers=auth("score")).status_code == 200
    finally:
        model.inputs.numerics = original


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
@pytest.mark.parametrize("where", ["amount", "extra attribute", "capacity"])
def test_non_finite_numbers_are_422_never_500(
    world: World, number: str, where: str, bodies: list[dict[str, Any]]
) -> None:
    """JSON's non-standard NaN/Infinity (and 1e400, which parses as infinity) anywhere in a
    body: a 422 naming the field, never a 500 from echoing a number JSON cannot hold."""
    app = create_app(settings_for(world, world.root / "nan"))
    body = json.loads(json.dumps(bodies[0]))
    route = "/v1/score"
    if where == "amount":
        body["sales_events"] = [
            {"occurred_at": "2025-01-01T00:00:00Z", "stage": "won", "amount": 1.0}
        ]
        text = json.dumps(body).replace('"amount": 1.0', f'"amount": {number}')
    elif where == "extra attribute":
        body["lead"]["budget"] = 1.0
        text = json.dumps(body).replace('"budget": 1.0', f'"budget": {number}')
    else:
        route = "/v1/queue"
        text = json.dumps({"leads": [body], "capacity": 7}).replace("7}", f"{number}}}")
    assert number in text
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post(
            route,
            content=text,
            headers={**auth("score"), "Content-Type": "application/json"},
        )
        assert answer.status_code == 422, answer.text
        answer.json()  # valid JSON: the bad number is not echoed raw
        assert client.get("/healthz").status_code == 200


def test_deeply_nested_and_undecodable_bodies_stay_422(client: TestClient) -> None:
    for content in (b"[" * 90_000, b'{"a": ' * 15_000, b"\xff\xfe{", b'{"a": nan}'):
        answer = client.post(
            "/v1/score",
            content=content,
            headers={**auth("score"), "Content-Type": "application/json"},
        )
        assert answer.status_code == 422, (content[:20], answer.text[:200])


class _Payload:
    """A pickle that, once loaded, creates a directory: proof that a reload ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("auth_mode", ["on", "off"])
def test_reload_loads_only_the_configured_model_or_allowed_directories(
    world: World, tmp_path: Path, auth_mode: str
) -> None:
    """`POST /v1/admin/reload {"uri": …}` never unpickles what lies at an arbitrary path."""
    import pickle

    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "scorer.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "scorer.pkl").write_bytes(pickle.dumps({"not": "a scorer"}))
    settings = settings_for(world, tmp_path, auth=auth_mode, reload_paths=str(allowed))
    headers = auth("admin") if auth_mode == "on" else {}
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        serving = client.app.state.holder.current  # type: ignore[attr-defined]
        for uri, words in (
            (str(evil), "not a directory the server may load from"),
            (f"{allowed}/../evil", "not a directory the server may load from"),
            ("models:/someone-else@champion", "only the configured model's versions"),
            ("runs:/0123/model", "only models:/ URIs"),
            ("file:///etc", "only models:/ URIs"),
        ):
            answer = client.post("/v1/admin/reload", json={"uri": uri}, headers=headers)
            assert answer.status_code == 422, (uri, answer.text)
            assert words in answer.json()["detail"][0]["msg"], uri
        wrong_type = client.post("/v1/admin/reload", json={"uri": str(allowed)}, headers=headers)
        assert wrong_type.status_code == 422, wrong_type.text
        assert client.app.state.holder.current is serving  # type: ignore[attr-defined]
    assert not marker.exists()


def test_a_missing_store_is_named_and_never_created(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Started outside a project, the server logs where it looked for MLflow's store (the
    answer does not say: no paths in answers) and leaves no empty mlflow.db behind."""
    (tmp_path / "elsewhere").mkdir()
    store = tmp_path / "elsewhere" / "mlflow.db"  # its folder exists: MLflow would create it
    settings = settings_for(
        world,
        tmp_path,
        model_uri="models:/lead-scoring@champion",
        tracking_uri=f"sqlite:///{store}",
    )
    with TestClient(create_app(settings)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert str(tmp_path) not in ready.text
        assert "could not be loaded" in ready.json()["detail"]
    assert f"no MLflow store at {store}" in caplog.text
    assert not store.exists()
