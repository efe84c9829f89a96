"""Shared fixtures: simulator data made once per test session, small and deterministic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, load_params
from tests.serving.world import World, make_world

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def score_store_of_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Servers and commands started by tests record into a throw-away SQLite store, never into
    a ``scores.db`` of the checkout; a test about the store sets its own URL."""
    if os.environ.get("LEADSCORE_STORE_URL"):
        yield
        return
    path = tmp_path_factory.mktemp("store") / "scores.db"
    os.environ["LEADSCORE_STORE_URL"] = f"sqlite:///{path}"
    try:
        yield
    finally:
        os.environ.pop("LEADSCORE_STORE_URL", None)


@pytest.fixture(scope="session")
def repo_params() -> Params:
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory: pytest.TempPathFactory, repo_params: Params) -> Path:
    """The default-sized simulator output (20,000 leads), as the pipeline's ingest writes it."""
    out = tmp_path_factory.mktemp("raw")
    simulate(repo_params.generate, out, window_days=repo_params.quality_lead.window_days)
    return out


@pytest.fixture(scope="session")
def dirty_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dirty")
    simulate(GenerateParams(leads=3000, seed=7, dirty=True), out)
    return out


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The small trained world the serving and integration tests share."""
    return make_world(tmp_path_factory)
