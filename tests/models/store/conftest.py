"""Every store test runs twice: on a SQLite file and on a real PostgreSQL server (one
cluster per session, a new database per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from models.store import ScoreStore
from tests.postgres import PostgresCluster, start_cluster

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """The session's PostgreSQL server; fails (never skips) without one."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty store on ``backend``."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[ScoreStore]:
    opened = ScoreStore(store_url)
    try:
        yield opened
    finally:
        opened.close()
