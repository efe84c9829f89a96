"""The schema comes from the packaged Alembic migrations, applied when a store is opened:
from empty, idempotently, safely when several processes open a new store at once, and equal
to ``models/store/schema.py``."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from models.store import ScoreStore, StoreError, schema
from models.store import records as store_records
from models.store.connection import create_store_engine
from models.store.migrate import HEAD_REVISION, head_revision, upgrade

REPO = Path(__file__).resolve().parents[3]


def test_the_literals_spell_the_check_constraints() -> None:
    assert typing.get_args(store_records.Source) == schema.SOURCES
    assert typing.get_args(store_records.Grade) == schema.GRADES
    assert typing.get_args(store_records.Verdict) == schema.VERDICTS


def test_opening_creates_the_schema_from_empty(store_url: str) -> None:
    ScoreStore(store_url).close()
    engine = create_engine(store_url)
    try:
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == {"scores", "feedback", schema.VERSION_TABLE}
        assert [c["name"] for c in inspector.get_columns("scores")] == [
            c.name for c in schema.scores.columns
        ]
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("scores")}
        assert indexes["ix_scores_lead_id_scored_at"] == ["lead_id", "scored_at"]
        assert {i["name"] for i in inspector.get_indexes("feedback")} == {"ix_feedback_lead_id"}
        with engine.connect() as connection:
            version = connection.execute(text(f"SELECT version_num FROM {schema.VERSION_TABLE}"))
            assert version.scalars().all() == [head_revision()]
    finally:
        engine.dispose()


def test_the_migrations_build_what_schema_py_declares(store_url: str) -> None:
    ScoreStore(store_url).close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "version_table": schema.VERSION_TABLE}
            )
            assert compare_metadata(context, schema.metadata) == []
    finally:
        engine.dispose()


def test_opening_twice_changes_nothing(store_url: str) -> None:
    first = ScoreStore(store_url)
    first.close()
    engine = create_engine(store_url)
    try:
        assert upgrade(engine) is False
        with engine.connect() as connection:
            rows = connection.execute(text(f"SELECT count(*) FROM {schema.VERSION_TABLE}"))
            assert rows.scalar_one() == 1
    finally:
        engine.dispose()
    ScoreStore(store_url).close()


def _open_when_told(url: str, ready: typing.Any, go: typing.Any, results: typing.Any) -> None:
    ready.put(None)
    go.wait(60)
    engine = create_store_engine(url)
    try:
        results.put(upgrade(engine))
    except BaseException as error:
        results.put(f"{type(error).__name__}: {error}")
    finally:
        engine.dispose()


@pytest.mark.slow
def test_processes_opening_a_new_store_at_once_all_succeed(store_url: str) -> None:
    """Four processes, released together once all are running, migrate one empty database:
    exactly one migrates, the others find the head revision under the lock."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_open_when_told, args=(store_url, ready, go, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.get(timeout=120)
    go.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert sorted(outcomes, key=str) == [False, False, False, True]
    engine = create_engine(store_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text(f"SELECT version_num FROM {schema.VERSION_TABLE}"))
            assert rows.scalars().all() == [head_revision()]
    finally:
        engine.dispose()
    ScoreStore(store_url).close()


def test_a_schema_newer_than_this_leadscore_is_one_clear_line(store_url: str) -> None:
    ScoreStore(store_url).close()
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"revision 9999, newer than this leadscore") as caught:
        ScoreStore(store_url)
    assert "\n" not in str(caught.value)


def test_a_database_with_a_foreign_scores_table_is_one_clear_line(store_url: str) -> None:
    """Not ours and not migrated: the migration fails, is re-checked and retried, and the
    failure reaches the user as one line."""
    engine = create_engine(store_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE scores (x INTEGER)"))
    engine.dispose()
    with pytest.raises(StoreError, match=r"cannot open it: .*already exists") as caught:
        ScoreStore(store_url)
    assert "\n" not in str(caught.value)


def test_the_declared_head_is_alembics_and_an_open_at_head_imports_no_alembic(
    store_url: str,
) -> None:
    assert head_revision() == HEAD_REVISION
    ScoreStore(store_url).close()  # migrated: at head
    probe = (
        "import sys; from models.store import ScoreStore; "
        f"ScoreStore({store_url!r}).close(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert done.stdout.strip() == "[]", done.stderr
