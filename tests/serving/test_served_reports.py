"""The dashboard shows the evaluation reports beside the model they describe only: reports of
another model (a challenger the gate refused, an older run) are withheld, never mixed in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World


def _artifacts(world: World, tmp_path: Path, fingerprint: str | None) -> Path:
    arts = tmp_path / "arts"
    shutil.copytree(world.artifacts, arts)
    for name in ("metrics.json", "kpis.json"):
        document = json.loads((arts / name).read_text())
        if fingerprint is not None:
            document["model_fingerprint"] = fingerprint
        (arts / name).write_text(json.dumps(document))
    return arts


@pytest.mark.parametrize("same", [True, False])
def test_reports_only_beside_their_model(world: World, tmp_path: Path, same: bool) -> None:
    fingerprint = world.scorer.fingerprint() if same else "0123456789abcdef"
    arts = _artifacts(world, tmp_path, fingerprint)
    with TestClient(create_app(settings_for(world, tmp_path, artifacts=arts))) as client:
        card = client.get("/v1/dashboard/model", headers=auth("score")).json()
        kpis = client.get("/v1/dashboard/kpis", headers=auth("score")).json()
        document = client.get("/v1/model", headers=auth("score")).json()
    assert document["model"]["fingerprint"] == world.scorer.fingerprint()
    channels = kpis["kpis"]["by_channel"]
    if same:
        assert card["reports_note"] is None
        assert card["plots"]["calibration"]
        assert card["card"]
        assert document["metrics"]["converted"]["model"]["roc_auc"] > 0.5
        assert any("predicted_conversion" in row for row in channels)
        assert kpis["note"] is None
    else:
        assert "another model" in card["reports_note"]
        assert card["plots"]["calibration"] == {}
        assert card["card"] is None
        assert document["metrics"] is None
        assert "another model" in document["metrics_source"]
        assert not any("predicted_conversion" in row for row in channels)
        assert all("conversion" in row for row in channels)  # the data's own KPIs stay
        assert "another model" in kpis["note"]


def test_fingerprint_names_the_trained_model(world: World) -> None:
    scorer = world.scorer
    assert scorer.fingerprint() == scorer.fingerprint()
    assert len(scorer.fingerprint()) == 16
    other = world.scorer
    target = next(iter(other.models.values()))
    before = other.fingerprint()
    original = target.best_iteration
    try:
        target.best_iteration = original - 1  # fewer trees: another model
        assert other.fingerprint() != before
    finally:
        target.best_iteration = original
    assert other.fingerprint() == before
