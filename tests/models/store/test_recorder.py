"""The background recorder: nothing acknowledged is lost on a clean close, a full queue
drops and counts, and a database that goes away makes recording degrade, never raise."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from features.params import StoreParams
from models.store import NullStore, Recorder, ScoreStore
from models.store.schema import scores
from tests.models.store.samples import T0, score
from tests.postgres import PostgresCluster

FAST = StoreParams(batch_size=50, flush_seconds=0.05, max_pending=100_000)


def rows_in(store: ScoreStore) -> int:
    with store._engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(scores)).scalar_one())


@pytest.mark.slow
def test_close_writes_everything_submitted_from_many_threads(store: ScoreStore) -> None:
    recorder = Recorder(store, StoreParams(batch_size=64, flush_seconds=0.2, max_pending=100_000))
    per_thread, threads = 1_500, 6
    records = [score(f"L{i}", at=T0) for i in range(per_thread)]
    accepted: list[int] = []

    def work() -> None:
        for start in range(0, per_thread, 7):  # uneven chunks, as API batches come
            accepted.append(recorder.submit(records[start : start + 7]))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert recorder.close(timeout=120) is True
    total = per_thread * threads
    assert sum(accepted) == total
    counts = recorder.counts()
    assert (counts.recorded, counts.not_recorded, counts.pending) == (total, 0, 0)
    assert rows_in(store) == total
    assert recorder.submit(records[:3]) == 0  # after close: counted, not recorded
    assert recorder.not_recorded == 3


def test_a_score_waits_at_most_about_flush_seconds(store: ScoreStore) -> None:
    recorder = Recorder(store, StoreParams(batch_size=1000, flush_seconds=0.1, max_pending=10))
    try:
        recorder.submit([score("L1")])
        deadline = time.monotonic() + 10
        while recorder.recorded < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert recorder.recorded == 1
        assert rows_in(store) == 1
    finally:
        recorder.close()


def test_beyond_max_pending_records_are_dropped_and_counted(
    store: ScoreStore, caplog: pytest.LogCaptureFixture
) -> None:
    # a batch larger than max_pending and a long flush: nothing is written before close
    recorder = Recorder(store, StoreParams(batch_size=1000, flush_seconds=60, max_pending=100))
    caplog.set_level(logging.WARNING, logger="leadscore.store")
    assert recorder.submit([score(f"L{i}") for i in range(60)]) == 60
    assert recorder.submit([score(f"M{i}") for i in range(60)]) == 40
    assert recorder.submit([score("N")]) == 0
    assert len([r for r in caplog.records if "dropped" in r.getMessage()]) == 1
    counts = recorder.counts()
    assert (counts.recorded, counts.not_recorded, counts.pending) == (0, 21, 100)
    assert recorder.close(timeout=60) is True
    assert (recorder.recorded, recorder.not_recorded, recorder.pending) == (100, 21, 0)
    assert rows_in(store) == 100


def test_flush_writes_now(store: ScoreStore) -> None:
    recorder = Recorder(store, StoreParams(batch_size=1000, flush_seconds=60, max_pending=5000))
    try:
        recorder.submit([score(f"L{i}") for i in range(2500)])
        assert recorder.flush(timeout=60) is True
        assert (recorder.recorded, recorder.pending) == (2500, 0)
    finally:
        recorder.close()


@contextlib.contextmanager
def outage(backend: str, store: ScoreStore, cluster: PostgresCluster | None) -> Iterator[None]:
    """The database away for the block: PostgreSQL's server stopped; the SQLite file's scores
    table renamed (as a broken or replaced file would look to the writer)."""
    if backend == "postgresql":
        assert cluster is not None
        cluster.stop()
        try:
            yield
        finally:
            cluster.start()
        return
    path = make_url(store_url_of(store)).database
    assert path
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
        connection.execute("ALTER TABLE scores RENAME TO scores_away")
        connection.commit()
    try:
        yield
    finally:
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as connection:
            connection.execute("ALTER TABLE scores_away RENAME TO scores")
            connection.commit()


def store_url_of(store: ScoreStore) -> str:
    return store.url  # SQLite URLs have no password, so the redacted URL is the URL


@pytest.mark.slow
def test_recording_degrades_and_recovers_when_the_database_goes_away(
    backend: str,
    store: ScoreStore,
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = request.getfixturevalue("postgres") if backend == "postgresql" else None
    recorder = Recorder(store, FAST)
    caplog.set_level(logging.WARNING, logger="leadscore.store")
    try:
        assert recorder.submit([score(f"before{i}") for i in range(10)]) == 10
        assert recorder.flush(timeout=30)
        assert recorder.recorded == 10
        with outage(backend, store, cluster):
            for round_ in range(3):
                # never raises, never blocks on the database
                started = time.perf_counter()
                recorder.submit([score(f"away{round_}-{i}") for i in range(5)])
                assert time.perf_counter() - started < 0.5
                assert recorder.flush(timeout=60)
            counts = recorder.counts()
            assert (counts.recorded, counts.not_recorded, counts.pending) == (10, 15, 0)
            assert counts.failing
        failures = [r for r in caplog.records if "writing failed" in r.getMessage()]
        assert len(failures) == 1, [r.getMessage() for r in caplog.records]
        assert "\n" not in failures[0].getMessage()
        recorder.submit([score(f"after{i}") for i in range(7)])
        assert recorder.flush(timeout=60)
        counts = recorder.counts()
        assert (counts.recorded, counts.not_recorded, counts.failing) == (17, 15, False)
        assert [r for r in caplog.records if "recovered" in r.getMessage()]
        assert rows_in(store) == 17
    finally:
        recorder.close()


def test_submit_never_raises_even_on_nonsense(store: ScoreStore) -> None:
    recorder = Recorder(store, FAST)
    try:
        assert recorder.submit(None) == 0  # type: ignore[arg-type]
        assert recorder.submit([]) == 0
    finally:
        recorder.close()


def test_a_recorder_on_a_null_store_records_nothing_and_counts_it() -> None:
    recorder = Recorder(NullStore(), FAST)
    assert recorder.submit([score("L1"), score("L2")]) == 0
    assert (recorder.recorded, recorder.not_recorded, recorder.pending) == (0, 2, 0)
    assert recorder.close() is True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_recorder_inherited_across_a_fork_records_nothing_in_the_child(
    store: ScoreStore,
) -> None:
    recorder = Recorder(store, StoreParams(batch_size=1000, flush_seconds=60, max_pending=100))
    try:
        recorder.submit([score("parent")])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: must neither hang nor write
            try:
                accepted = recorder.submit([score("child1"), score("child2")])
                os.write(write, f"{accepted} {recorder.not_recorded} {recorder.pending}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            child = pipe.read()
        os.waitpid(pid, 0)
        assert child == "0 2 0"
        assert recorder.close(timeout=60)
        assert [s.lead_id for s in store.history("parent")] == ["parent"]
        assert store.history("child1") == []
    finally:
        recorder.close()
