"""Shared fixtures: simulator data made once per test session, small and deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.ingest.simulate import simulate
from features.params import GenerateParams, Params, load_params
from tests.serving.world import World, make_world

REPO = Path(__file__).resolve().parents[1]


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
