"""The weekly loop in one chain, on the default data, through the real tools: `dvc repro` in a
fresh copy of the project, every snapshot of the test period scored through a real
`leadscore serve` (the champion from the copy's MLflow registry, the default score store: a
SQLite file in the project), the server stopped with SIGTERM, then the monitor stage re-run
the way the README says (`dvc repro -f -s monitor`). Every answer is in the store, and the
track record it gives falls grade by grade, with a PSI for every feature."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from features.storage import read_validated
from models.store import ScoreStore
from tests.postgres import free_port
from tests.project import BIN, commit_all, copy_project, pipeline_env, run_ok, wait_ready
from tests.serving.world import requests_for

pytestmark = pytest.mark.slow

KEY = "weekly-loop-key-of-the-tests"
PER_REQUEST = 250
EVER = (pd.Timestamp("2000-01-01", tz="UTC"), pd.Timestamp("2100-01-01", tz="UTC"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the project with the default params, reproduced; the store is the default
    one (``scores.db`` in the project), as on a fresh machine."""
    repo = tmp_path_factory.mktemp("weekly") / "repo"
    env = pipeline_env(repo)
    env.pop("LEADSCORE_STORE_URL", None)
    copy_project(repo)
    commit_all(repo, env, "weekly loop")
    run_ok([str(BIN / "dvc"), "repro"], repo, env)
    return repo, env


@pytest.fixture(scope="module")
def scored(project: tuple[Path, dict[str, str]]) -> dict[str, Any]:
    """Every test-period snapshot scored through the API, the server then stopped cleanly."""
    repo, env = project
    snapshots = pd.read_parquet(repo / "data" / "features" / "snapshots.parquet")
    test = snapshots[snapshots["split"] == "test"].reset_index(drop=True)
    points = test[["lead_id", "as_of"]]
    # labelled: its outcome window closed by the data's horizon (the others are censored)
    labelled = int(test["label_converted"].notna().sum())
    tables = read_validated(repo / "data" / "validated")
    bodies = requests_for(tables, points)
    port = free_port()
    log = repo / "server.log"
    server_env = {**env, "LEADSCORE_API_KEYS": f"{KEY}:score"}
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(BIN / "leadscore"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=repo,
            env=server_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    answers: list[dict[str, Any]] = []
    try:
        wait_ready(base, server, log, 120)
        with httpx.Client(base_url=base, timeout=120, headers={"X-API-Key": KEY}) as client:
            for start in range(0, len(bodies), PER_REQUEST):
                batch = bodies[start : start + PER_REQUEST]
                response = client.post("/v1/score/batch", json={"leads": batch})
                assert response.status_code == 200, response.text[:2000]
                answers.extend(response.json()["results"])
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        code = server.wait(timeout=60)
    # a clean shutdown: the lifespan ran (the recorder flushed), then the CLI's exit for SIGTERM
    assert code == 143, log.read_text()[-3000:]
    assert "Application shutdown complete" in log.read_text()
    return {"repo": repo, "env": env, "points": points, "answers": answers, "labelled": labelled}


def test_every_answer_of_the_api_is_in_the_store(scored: dict[str, Any]) -> None:
    repo, points, answers = scored["repo"], scored["points"], scored["answers"]
    assert len(answers) == len(points) > 5000
    assert [a["lead_id"] for a in answers] == points["lead_id"].astype(str).tolist()
    assert all("trend" in a and "previous_score" in a for a in answers)
    with ScoreStore(f"sqlite:///{repo / 'scores.db'}") as store:
        stored = store.scores_between(EVER[0].to_pydatetime(), EVER[1].to_pydatetime())
    api = stored[stored["source"] == "api"]
    assert len(api) == len(answers)
    given = pd.DataFrame(
        {
            "lead_id": [a["lead_id"] for a in answers],
            "as_of": pd.to_datetime([a["as_of"] for a in answers], utc=True, format="ISO8601"),
            "score": [a["score"] for a in answers],
            "grade": [a["grade"] for a in answers],
        }
    )
    kept = api[["lead_id", "as_of", "score", "grade"]].astype({"as_of": "datetime64[us, UTC]"})
    merged = given.astype({"as_of": "datetime64[us, UTC]"}).merge(
        kept, on=["lead_id", "as_of"], suffixes=("", "_stored"), validate="one_to_one"
    )
    assert len(merged) == len(answers)
    assert (merged["score"] == merged["score_stored"]).all()
    assert (merged["grade"] == merged["grade_stored"]).all()
    # the rescore stage of `dvc repro` recorded its own scores beside them
    assert (stored["source"] == "rescore").sum() > 0


def test_the_monitor_stage_gives_the_track_record_of_those_answers(
    scored: dict[str, Any],
) -> None:
    repo, env = scored["repo"], scored["env"]
    run_ok([str(BIN / "dvc"), "repro", "-f", "-s", "monitor"], repo, env)
    report = json.loads((repo / "artifacts" / "monitoring.json").read_text())
    backtest = report["backtest"]
    # every labelled point of the test period has matured (the API's answers at it, and the
    # censored ones have not), and nothing else has: the queue and rescore scored at the horizon
    assert backtest["matured"] == scored["labelled"] > 3000
    assert backtest["not_matured"] == report["scores"]["points"] - scored["labelled"]
    rows = {row["grade"]: row for row in backtest["by_grade"]}
    assert all(rows[g]["scored"] >= 30 for g in "ABCD"), rows
    observed = [rows[g]["observed"] for g in "ABCD"]
    assert observed == sorted(observed, reverse=True), observed
    assert backtest["roc_auc"] > 0.75
    features = report["drift"]["features"]
    spec = json.loads((repo / "data" / "features" / "feature_spec.json").read_text())
    assert set(features) == {feature["name"] for feature in spec["features"]}
    assert all(entry["psi"] is not None for entry in features.values())
    assert report["drift"]["score"]["band"] == "stable"
    assert report["retrain_recommended"] is False, report["retrain_reasons"]
