"""Every answer is recorded in the score store and carries the lead's trend and previous score;
the store being unusable never fails an answer (real SQLite store, the app in-process)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from models.store import ScoreRecord, ScoreStore
from serving.app import create_app
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World, open_lead_ids, request_for


@pytest.fixture(scope="module")
def bodies(world: World) -> list[dict[str, Any]]:
    as_of = pd.Timestamp("2025-03-01", tz="UTC")
    return [
        request_for(world.tables, i, as_of)
        for i in open_lead_ids(world.tables, 6, seed=4, created_before=as_of)
    ]


def _flush(client: TestClient) -> None:
    keeper = client.app.state.keeper  # type: ignore[attr-defined]
    assert keeper.recorder.flush(10)


def _stored(url: str, lead_id: str) -> list[Any]:
    with ScoreStore(url) as store:
        return store.history(lead_id, limit=100)


def test_answers_are_recorded_with_history(world: World, tmp_path: Path, bodies: list) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    with TestClient(create_app(settings_for(world, tmp_path, store_url=url))) as client:
        first = client.post("/v1/score", json=bodies[0], headers=auth("score")).json()
        assert first["trend"] == "not enough history"
        assert first["previous_score"] is None
        _flush(client)
        second = client.post("/v1/score", json=bodies[0], headers=auth("score")).json()
        assert second["previous_score"] == first["score"]
        assert second["trend"] == "steady"  # the same lead, the same history: the same p
        client.post("/v1/score/batch", json={"leads": bodies[1:3]}, headers=auth("score"))
        client.post("/v1/queue", json={"leads": bodies[3:], "capacity": 2}, headers=auth("score"))
        _flush(client)
        history = client.get(f"/v1/leads/{first['lead_id']}/scores", headers=auth("score"))
        page = client.get(f"/v1/leads/{first['lead_id']}/scores?limit=1", headers=auth("score"))
        assert client.get(f"/v1/leads/{first['lead_id']}/scores").status_code == 401
        metrics = client.get("/metrics").text
    stored = _stored(url, first["lead_id"])
    assert len(stored) == 2
    assert stored[0].source == "api"
    assert stored[0].probability == pytest.approx(first["p_converted"], abs=1e-12)
    assert stored[0].probabilities["accepted"] == pytest.approx(first["p_accepted"], abs=1e-12)
    assert stored[0].grade == first["grade"]
    assert list(stored[0].positive_reasons) == [r["text"] for r in first["reasons_positive"]]
    assert stored[0].as_of == dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
    scores = history.json()["scores"]
    assert [s["score"] for s in scores] == [second["score"], first["score"]]
    assert page.json()["more"] is True
    assert len(page.json()["scores"]) == 1
    with ScoreStore(url) as store:
        frame = store.scores_between(
            dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
        )
    assert sorted(frame["source"].value_counts().items()) == [("api", 4), ("queue", 2)]
    assert 'leadscore_scores_stored_total{outcome="recorded"} 6.0' in metrics


def test_trend_follows_the_stored_history(world: World, tmp_path: Path, bodies: list) -> None:
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    with TestClient(create_app(settings_for(world, tmp_path, store_url=url))) as client:
        answer = client.post("/v1/score", json=bodies[1], headers=auth("score")).json()
    p = answer["p_converted"]
    earlier = min(1.0, p + 0.3) if p < 0.5 else max(0.0, p - 0.3)
    expected = "declining" if earlier > p else "improving"
    now = dt.datetime.now(dt.UTC)
    with ScoreStore(url) as store:
        store.record(
            [
                ScoreRecord(
                    lead_id=answer["lead_id"],
                    as_of=now,
                    scored_at=now - dt.timedelta(days=d),
                    model_name="m",
                    model_version="0",
                    probabilities={"converted": v},
                    probability=v,
                    score=round(v * 100),
                    grade="C",
                    handoff=False,
                    source="rescore",
                )
                for d, v in ((100, p), (10, earlier))  # the one 100 days ago is outside the window
            ]
        )
    with TestClient(create_app(settings_for(world, tmp_path, store_url=url))) as client:
        again = client.post("/v1/score", json=bodies[1], headers=auth("score")).json()
    assert again["trend"] == expected
    # the store history holds the first API answer (newest) and the two made-up ones
    assert again["previous_score"] == answer["score"]


def test_an_unusable_store_never_fails_an_answer(
    world: World, tmp_path: Path, bodies: list
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the store's directory should be")
    url = f"sqlite:///{blocked / 'scores.db'}"
    with TestClient(create_app(settings_for(world, tmp_path, store_url=url))) as client:
        answer = client.post("/v1/score", json=bodies[0], headers=auth("score"))
        assert answer.status_code == 200
        assert answer.json()["trend"] is None
        scores = client.get(f"/v1/leads/{answer.json()['lead_id']}/scores", headers=auth("score"))
        assert scores.json()["recorded"] is False
        metrics = client.get("/metrics").text
    assert 'leadscore_scores_stored_total{outcome="not_recorded"} 1.0' in metrics
    off = settings_for(world, tmp_path, store_url="off")
    with TestClient(create_app(off)) as client:
        answer = client.post("/v1/score", json=bodies[0], headers=auth("score"))
        assert answer.status_code == 200
        assert answer.json()["trend"] is None
