"""Fixtures of the serving tests: the shared small world, apps on it, TestClients."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

with warnings.catch_warnings():  # Starlette prefers httpx2 for its TestClient; httpx works
    warnings.filterwarnings("ignore", message=".*starlette.testclient.*")
    from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import Settings
from tests.serving.world import World

KEYS = {"score": "unit-score-key-0001", "admin": "unit-admin-key-0001"}
KEY_SETTING = f"{KEYS['score']}:score,{KEYS['admin']}:admin"


def settings_for(world: World, tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "model_uri": str(world.bundle),
        "api_keys": KEY_SETTING,
        "artifacts": world.artifacts,
        "validated": world.raw,  # canonical tables, as the validate stage writes them
        "store_url": f"sqlite:///{tmp / 'scores.db'}",
        "params": world.params_path,
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        "model_cache": str(tmp / "model-cache"),
        "auth": "on",
        "max_batch": 40,
        "max_events_per_lead": 300,
        "max_body_bytes": 100_000,
        "reload_paths": str(world.train),  # the train output: a second model to reload
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def app(world: World, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(settings_for(world, tmp_path_factory.mktemp("app")))


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def auth(role: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[role]}
