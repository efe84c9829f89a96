"""Score store benchmark: how fast scores are recorded, beside the database driver alone.

    python bench/bench_store.py [--rows 50000] [--batch-size N] [--submits 200000]
                                [--postgres URL] [--params params.yaml]

For SQLite (a file in a temporary directory) and PostgreSQL (``--postgres URL`` of an empty
database, or else a throw-away local cluster with fsync on, started as the tests do):

* ``ScoreStore.record`` in batches of ``store.batch_size`` (params.yaml), one transaction
  each: records/s;
* the peer: the same rows through the driver alone (``sqlite3`` / ``psycopg``
  ``executemany`` of a plain INSERT, one transaction per batch, JSON serialised with
  ``json.dumps``): records/s, and the store's cost relative to it;
* ``Recorder.submit`` of one record per call, as the API does per answer: µs per call on the
  caller's thread (mean, p50, p99, max), and how long ``close`` then takes to write them all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/postgres.py starts the throw-away PostgreSQL

import psycopg  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from features.params import StoreParams, load_params  # noqa: E402
from models.store import Recorder, ScoreRecord, ScoreStore  # noqa: E402

COLUMNS = (
    "lead_id, as_of, scored_at, model_name, model_version, probabilities, probability, "
    "score, grade, handoff, reasons, source"
)
T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def records(count: int, prefix: str) -> list[ScoreRecord]:
    return [
        ScoreRecord(
            lead_id=f"{prefix}{i:07d}",
            as_of=T0 + dt.timedelta(seconds=i),
            scored_at=T0 + dt.timedelta(seconds=i),
            model_name="lead-scoring",
            model_version="7",
            probabilities={"converted": (i % 97) / 100, "accepted": (i % 89) / 100},
            probability=(i % 97) / 100,
            score=i % 97,
            grade="ABCD"[i % 4],  # type: ignore[arg-type]
            handoff=i % 2 == 0,
            source="api",
            positive_reasons=("attended a webinar 3 days ago", "seniority: vp", "industry: saas"),
            negative_reasons=("no demo requests", "country: unknown"),
        )
        for i in range(count)
    ]


def batches(rows: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def driver_tuple(record: ScoreRecord, sqlite: bool) -> tuple[Any, ...]:
    row = record.row()
    if sqlite:  # what the store stores on SQLite: naive UTC text
        for name in ("as_of", "scored_at"):
            row[name] = row[name].astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    row["probabilities"] = json.dumps(row["probabilities"])
    row["reasons"] = json.dumps(row["reasons"])
    return tuple(row.values())


def peer_sqlite(path: str, rows: list[ScoreRecord], size: int) -> tuple[float, float]:
    """Seconds to convert the records to driver tuples, and to insert those."""
    start = time.perf_counter()
    tuples = [driver_tuple(r, sqlite=True) for r in rows]
    convert = time.perf_counter() - start
    connection = sqlite3.connect(path, isolation_level=None)
    sql = f"INSERT INTO scores ({COLUMNS}) VALUES ({', '.join('?' * 12)})"

    def run() -> None:
        for batch in batches(tuples, size):
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(sql, batch)
            connection.execute("COMMIT")

    try:
        return convert, timed(run)
    finally:
        connection.close()


def peer_postgres(url: str, rows: list[ScoreRecord], size: int) -> tuple[float, float]:
    start = time.perf_counter()
    tuples = [driver_tuple(r, sqlite=False) for r in rows]
    convert = time.perf_counter() - start
    parsed = make_url(url)
    connection = psycopg.connect(
        host=parsed.host,
        port=parsed.port,
        user=parsed.username,
        password=parsed.password,
        dbname=parsed.database,
    )
    sql = (
        f"INSERT INTO scores ({COLUMNS}) VALUES "
        "(%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s::jsonb, %s)"
    )

    def run() -> None:
        for batch in batches(tuples, size):
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany(sql, batch)

    try:
        return convert, timed(run)
    finally:
        connection.close()


def bench_backend(name: str, url: str, args: argparse.Namespace, params: StoreParams) -> None:
    size = params.batch_size
    store = ScoreStore(url, params)
    try:
        rows = records(args.rows, "S")
        seconds = timed(lambda: [store.record(b) for b in batches(rows, size)] and None)
        store_rate = args.rows / seconds
        peer_rows = records(args.rows, "P")
        if name == "sqlite":
            database = make_url(url).database
            assert database is not None
            convert, peer_seconds = peer_sqlite(database, peer_rows, size)
        else:
            convert, peer_seconds = peer_postgres(url, peer_rows, size)
        peer_rate = args.rows / peer_seconds
        peer_all = args.rows / (peer_seconds + convert)
        print(
            f"{name:10s} ScoreStore.record  {store_rate:10,.0f} records/s  "
            f"({args.rows:,} records in batches of {size}, from ScoreRecords)"
        )
        print(
            f"{name:10s} driver executemany {peer_rate:10,.0f} records/s  "
            f"(ready tuples; the store takes {peer_rate / store_rate:.2f}× its time)"
        )
        print(
            f"{name:10s} driver + conversion{peer_all:10,.0f} records/s  "
            f"(from the same ScoreRecords, json.dumps included; store: "
            f"{peer_all / store_rate:.2f}×)"
        )

        submit_rows = records(args.submits, "R")
        recorder = Recorder(store, params.model_copy(update={"max_pending": args.submits}))
        costs = []
        clock = time.perf_counter_ns
        for record in submit_rows:
            one = [record]
            start = clock()
            recorder.submit(one)
            costs.append(clock() - start)
        close_seconds = timed(lambda: recorder.close(timeout=None) and None)
        counts = recorder.counts()
        costs.sort()
        micro = [c / 1000 for c in costs]
        print(
            f"{name:10s} Recorder.submit    mean {statistics.fmean(micro):.2f} µs  "
            f"p50 {micro[len(micro) // 2]:.2f}  p99 {micro[int(len(micro) * 0.99)]:.2f}  "
            f"max {micro[-1]:.0f} µs per call  ({args.submits:,} calls of one record; "
            f"recorded {counts.recorded:,}, not recorded {counts.not_recorded:,}, "
            f"close wrote the rest in {close_seconds:.2f} s)"
        )
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--submits", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--postgres", default=None, help="URL of an empty PostgreSQL database")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    args = parser.parse_args()
    params = load_params(args.params).store if args.params.exists() else StoreParams()
    if args.batch_size:
        params = params.model_copy(update={"batch_size": args.batch_size})

    with tempfile.TemporaryDirectory() as directory:
        bench_backend("sqlite", f"sqlite:///{Path(directory) / 'scores.db'}", args, params)

    if args.postgres:
        bench_backend("postgresql", args.postgres, args, params)
        return
    from tests.postgres import start_cluster

    cluster = start_cluster(durable=True)
    try:
        bench_backend("postgresql", cluster.create_database("bench"), args, params)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
