"""The hot-path read on the driver (models.store.driver): the same answers as SQLAlchemy's own
execution, one connection per thread, and a broken connection costing one failed read."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from models.store import ScoreStore
from models.store.store import _HISTORY_ENDS, SCORE_COLUMNS
from tests.models.store.samples import T0, score

DAY = dt.timedelta(days=1)


def _through_sqlalchemy(store: ScoreStore, lead: str, now: dt.datetime) -> dict[str, object]:
    start = now - 30 * DAY
    with store._engine.connect() as connection:
        row = connection.execute(_HISTORY_ENDS, {"lead": lead, "start": start, "now": now}).first()
    assert row is not None
    return dict(row._mapping)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    zone_minutes=st.integers(-14 * 60, 14 * 60),
    microseconds=st.integers(0, 999_999),
    probability=st.floats(0.0, 1.0),
)
def test_a_driver_row_equals_sqlalchemys(
    store: ScoreStore, zone_minutes: int, microseconds: int, probability: float
) -> None:
    """Values of every type the row carries (UTC instants from any zone, JSON, a boolean, a
    float, the scalar subqueries) come back exactly as SQLAlchemy's execution returns them."""
    lead = f"D{zone_minutes}-{microseconds}-{probability}"
    zone = dt.timezone(dt.timedelta(minutes=zone_minutes))
    at = (T0 - DAY).replace(microsecond=microseconds).astimezone(zone)
    store.record([score(lead, at=at, probability=probability), score(lead, at=at - 2 * DAY)])
    now = T0
    found = store._drivers.first(store._history_ends, lead=lead, start=now - 30 * DAY, now=now)
    assert found == _through_sqlalchemy(store, lead, now)
    assert set(SCORE_COLUMNS) <= set(found)
    assert found["scored_at"] == at
    assert found["scored_at"].tzinfo == dt.UTC
    assert found["window_scores"] == 2


def test_each_reading_thread_keeps_its_own_connection(store: ScoreStore) -> None:
    store.record([score(f"T{i}", at=T0 - DAY, probability=i / 10) for i in range(8)])
    seen: dict[int, float] = {}
    errors: list[BaseException] = []

    def read(i: int) -> None:
        try:
            for _ in range(50):
                ends = store.history_ends([f"T{i}"], T0, 30)[f"T{i}"]
                assert ends.previous is not None
                seen[i] = ends.previous.probability
        except BaseException as error:  # collected: an assertion in a thread is lost
            errors.append(error)

    threads = [threading.Thread(target=read, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert seen == {i: i / 10 for i in range(8)}
    assert len(store._drivers._open) == 8


def test_a_broken_connection_costs_one_read(store: ScoreStore, backend: str) -> None:
    store.record([score("B1", at=T0 - DAY)])
    assert store.history_ends(["B1"], T0, 30)["B1"].previous is not None
    connection = store._drivers._local.connection
    if backend == "postgresql":  # the server ends the session, as a restart would
        with create_engine(store._engine.url).connect() as admin:
            admin.execute(
                text("SELECT pg_terminate_backend(:pid)"),
                {"pid": connection.dbapi_connection.info.backend_pid},
            )
    else:
        connection.dbapi_connection.close()
    with pytest.raises(DBAPIError) as raised:
        store.history_ends(["B1"], T0, 30)
    assert isinstance(raised.value, SQLAlchemyError)  # what the API's keeper degrades on
    again = store.history_ends(["B1"], T0, 30)["B1"]  # a fresh connection
    assert again.previous is not None
    assert again.previous.lead_id == "B1"


def test_closing_the_store_closes_the_reads(store_url: str) -> None:
    store = ScoreStore(store_url)
    store.record([score("C1")])
    store.history_ends(["C1"], T0 + DAY, 30)
    assert len(store._drivers._open) == 1
    store.close()
    assert store._drivers._open == []
    with pytest.raises(RuntimeError, match="closed"):
        store.history_ends(["C1"], T0 + DAY, 30)


def test_a_read_sees_what_was_written_since(store: ScoreStore) -> None:
    """Autocommit: the thread's connection holds no snapshot open between reads."""
    store.record([score("S1", at=T0 - 2 * DAY, probability=0.1)])
    assert store.history_ends(["S1"], T0, 30)["S1"].previous.probability == 0.1  # type: ignore[union-attr]
    store.record([score("S1", at=T0 - DAY, probability=0.7)])
    ends = store.history_ends(["S1"], T0, 30)["S1"]
    assert ends.previous is not None
    assert ends.previous.probability == 0.7
    assert ends.window_scores == 2
    assert ends.window_oldest == 0.1
