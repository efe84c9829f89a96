"""Serving the registry's champion (the default ``models:/lead-scoring@champion``): the alias
is resolved to its version, and the run's metrics come along."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from features.params import load_params
from models.packaging.registry import RunInputs, register
from serving.app import create_app
from serving.holder import read_scorer, unflatten
from tests.serving.conftest import auth, settings_for
from tests.serving.world import World


@pytest.fixture(scope="module")
def store(world: World, tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    params = load_params(world.params_path)
    metrics = json.loads((world.artifacts / "metrics.json").read_text())
    record = register(
        RunInputs(world.bundle, params, world.snapshots, lambda: world.tables, results=metrics),
        uri=uri,
    )
    assert record["alias"] == "champion"
    return uri


def test_alias_resolves_to_its_version(store: str) -> None:
    _scorer, info = read_scorer("models:/lead-scoring@champion", store)
    assert (info.name, info.version, info.source) == ("lead-scoring", "1", "registry")
    assert info.run_id
    assert info.metrics is not None
    assert info.metrics["converted"]["model"]["roc_auc"] > 0.5
    _, exact = read_scorer("models:/lead-scoring/1", store)
    assert exact.version == "1"


def test_unknown_alias_is_a_load_error(store: str) -> None:
    from models.packaging.loading import ModelLoadError

    with pytest.raises(ModelLoadError, match="not found"):
        read_scorer("models:/lead-scoring@nobody", store)


def test_model_route_shows_the_runs_metrics(world: World, store: str, tmp_path: Path) -> None:
    settings = settings_for(
        world, tmp_path, model_uri="models:/lead-scoring@champion", tracking_uri=store
    )
    with TestClient(create_app(settings)) as client:
        document: dict[str, Any] = client.get("/v1/model", headers=auth("score")).json()
        answer = client.get("/readyz").json()
    assert document["model"]["version"] == "1"
    assert document["metrics_source"].startswith("MLflow run")
    assert answer["model"] == {"name": "lead-scoring", "version": "1"}


def test_unflatten() -> None:
    assert unflatten({"a.b": 1, "a.c.d": 2, "e": 3}) == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
