"""The score store: every score leadscore gives, and sales' verdicts, in a real database.

:func:`open_store` resolves ``LEADSCORE_STORE_URL`` (see :mod:`models.store.connection`),
connects, migrates the schema to this leadscore's revision and returns a :class:`ScoreStore`,
or a :class:`NullStore` when recording is ``off``. Both satisfy :class:`Store`.

A store is thread-safe (one engine, a connection per call). It is not fork-safe: a process
that forks workers (uvicorn ``--workers``, multiprocessing) opens its store in each worker,
after the fork, never before: connections and the recorder's thread do not survive a fork.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from sqlalchemy import Connection, Engine, Row, bindparam, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from features.params import StoreParams
from models.store import migrate
from models.store.connection import (
    BEGIN_OPTION,
    create_store_engine,
    one_line,
    parse,
    redact,
    store_url,
)
from models.store.driver import DriverConnections, DriverQuery
from models.store.errors import StoreError
from models.store.records import FeedbackRecord, LeadTrend, ScoreRecord, StoredFeedback, StoredScore
from models.store.schema import feedback, scores
from models.store.trend import lead_trend, window_start

logger = logging.getLogger("leadscore.store")

IN_CHUNK = 5_000
"""Lead ids per query of :meth:`ScoreStore.latest` and :meth:`ScoreStore.trend`: one query up
to this many leads (SQLite allows 32,766 bound values per statement, PostgreSQL 65,535)."""

SCORE_COLUMNS = [c.name for c in scores.columns]
FEEDBACK_COLUMNS = [c.name for c in feedback.columns]


class Store(Protocol):
    """What the API, the CLI and the recorder use; a :class:`ScoreStore` or a :class:`NullStore`."""

    @property
    def enabled(self) -> bool: ...
    @property
    def description(self) -> str: ...
    def record(self, rows: Sequence[ScoreRecord]) -> int: ...
    def history(self, lead_id: str, limit: int = 50, offset: int = 0) -> list[StoredScore]: ...
    def latest(
        self, lead_ids: Iterable[str], before: dt.datetime | None = None
    ) -> dict[str, StoredScore]: ...
    def trend(
        self,
        lead_ids: Iterable[str],
        now: dt.datetime,
        window_days: int | None = None,
        threshold: float | None = None,
    ) -> dict[str, LeadTrend]: ...
    def history_ends(
        self, lead_ids: Iterable[str], now: dt.datetime, window_days: int
    ) -> dict[str, HistoryEnds]: ...
    def scores_between(self, start: dt.datetime, end: dt.datetime) -> pd.DataFrame: ...
    def add_feedback(self, entry: FeedbackRecord) -> StoredFeedback | None: ...
    def feedback(self, since: dt.datetime | None = None) -> pd.DataFrame: ...
    def close(self) -> None: ...


def open_store(
    project_dir: Path,
    params: StoreParams | None = None,
    environ: Mapping[str, str] | None = None,
) -> ScoreStore | NullStore:
    """The store ``LEADSCORE_STORE_URL`` names (default: ``<project_dir>/scores.db``), opened
    and migrated; a :class:`NullStore` when it is ``off``. Raises :class:`StoreError`."""
    params = params or StoreParams()
    url = store_url(project_dir, environ)
    if url is None:
        logger.info("score store: off (LEADSCORE_STORE_URL=off), scores are not recorded")
        return NullStore(params)
    return ScoreStore(url, params)


def _aware(name: str, value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class HistoryEnds:
    """A lead's latest stored score, and the count (up to 2) and oldest primary probability of
    its stored scores in the trend window."""

    previous: StoredScore | None
    window_scores: int
    window_oldest: float | None


FEW = 32
"""Up to this many leads, history reads seek the index per lead (the API's answers: fast
however many scores a lead has); beyond it, one windowed query per chunk of leads."""


class ScoreStore:
    """The store at ``url``: connects and migrates on construction (:class:`StoreError` if it
    cannot). Every method is one transaction; reads return UTC-aware datetimes."""

    def __init__(self, url: str, params: StoreParams | None = None) -> None:
        self.params = params or StoreParams()
        self.url = redact(parse(url))
        self._engine: Engine = create_store_engine(url)
        try:
            migrate.upgrade(self._engine)
        except migrate.NewerSchemaError as error:
            self._engine.dispose()
            raise StoreError(
                f"score store {self.url}: its schema is at revision {error}, newer than this "
                f"leadscore knows; upgrade leadscore"
            ) from None
        except (SQLAlchemyError, OSError) as error:
            self._engine.dispose()
            raise StoreError(
                f"score store {self.url}: cannot open it: {one_line(error, url)}"
            ) from None
        self._drivers = DriverConnections(self._engine)
        self._history_ends = DriverQuery(
            _HISTORY_ENDS, self._engine.dialect, ("lead", "start", "now")
        )

    @property
    def enabled(self) -> bool:
        return True

    @property
    def description(self) -> str:
        return f"recording scores in {self.url}"

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def __repr__(self) -> str:
        return f"ScoreStore({self.url!r})"

    def __enter__(self) -> ScoreStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with (
            self._engine.connect().execution_options(**{BEGIN_OPTION: "IMMEDIATE"}) as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as connection, connection.begin():
            yield connection

    # -- scores ---------------------------------------------------------------------------

    def record(self, rows: Sequence[ScoreRecord]) -> int:
        """Insert ``rows`` in one transaction (all or none); the number inserted.

        Raises SQLAlchemy's :class:`~sqlalchemy.exc.SQLAlchemyError` when the database fails
        (the :class:`~models.store.recorder.Recorder` turns that into "not recorded")."""
        if not rows:
            return 0
        values = [row.row() for row in rows]
        with self._writing() as connection:
            connection.execute(insert(scores), values)
        return len(values)

    def history(self, lead_id: str, limit: int = 50, offset: int = 0) -> list[StoredScore]:
        """One lead's scores, newest first (by ``scored_at``, then insertion order), a page of
        ``limit`` after skipping ``offset``."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be ≥ 0")
        query = (
            select(scores)
            .where(scores.c.lead_id == lead_id)
            .order_by(scores.c.scored_at.desc(), scores.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._reading() as connection:
            return [_stored_score(row._mapping) for row in connection.execute(query)]

    def latest(
        self, lead_ids: Iterable[str], before: dt.datetime | None = None
    ) -> dict[str, StoredScore]:
        """Each lead's latest stored score (``scored_at < before`` when given: the score a new
        one replaces, the answer's ``previous_score``); leads never scored are absent."""
        if before is not None:
            _aware("before", before)
        found: dict[str, StoredScore] = {}
        with self._reading() as connection:
            for chunk in _chunks(lead_ids):
                rank = (
                    func.row_number()
                    .over(
                        partition_by=scores.c.lead_id,
                        order_by=(scores.c.scored_at.desc(), scores.c.id.desc()),
                    )
                    .label("rank")
                )
                inner = select(scores, rank).where(scores.c.lead_id.in_(chunk))
                if before is not None:
                    inner = inner.where(scores.c.scored_at < before)
                ranked = inner.subquery()
                query = select(*[ranked.c[name] for name in SCORE_COLUMNS]).where(
                    ranked.c.rank == 1
                )
                for row in connection.execute(query):
                    found[row.lead_id] = _stored_score(row._mapping)
        return found

    def trend(
        self,
        lead_ids: Iterable[str],
        now: dt.datetime,
        window_days: int | None = None,
        threshold: float | None = None,
    ) -> dict[str, LeadTrend]:
        """Every lead's trend at ``now`` (rule: :mod:`models.store.trend`); window and threshold
        default to ``params.trend``. Every requested lead has an entry."""
        _aware("now", now)
        window_days = self.params.trend.window_days if window_days is None else window_days
        threshold = self.params.trend.threshold if threshold is None else threshold
        start = window_start(now, window_days)
        ids = list(dict.fromkeys(lead_ids))
        ends: dict[str, dict[str, Any]] = {lead: {"count": 0} for lead in ids}
        with self._reading() as connection:
            if len(ids) <= FEW:  # index seeks for both ends and a range count, per lead
                for lead in ids:
                    inside = (
                        scores.c.lead_id == lead,
                        scores.c.scored_at >= start,
                        scores.c.scored_at <= now,
                    )
                    end = ends[lead]
                    end["count"] = connection.execute(
                        select(func.count()).select_from(scores).where(*inside)
                    ).scalar_one()
                    if not end["count"]:
                        continue
                    for key, order in (
                        ("oldest", (scores.c.scored_at, scores.c.id)),
                        ("latest", (scores.c.scored_at.desc(), scores.c.id.desc())),
                    ):
                        end[key] = connection.execute(
                            select(scores.c.probability).where(*inside).order_by(*order).limit(1)
                        ).scalar_one()
                ids = []  # answered
            for chunk in _chunks(ids):
                partition = scores.c.lead_id
                window = select(
                    scores.c.lead_id,
                    scores.c.probability,
                    func.row_number()
                    .over(partition_by=partition, order_by=(scores.c.scored_at, scores.c.id))
                    .label("oldest"),
                    func.row_number()
                    .over(
                        partition_by=partition,
                        order_by=(scores.c.scored_at.desc(), scores.c.id.desc()),
                    )
                    .label("latest"),
                    func.count().over(partition_by=partition).label("count"),
                ).where(
                    scores.c.lead_id.in_(chunk),
                    scores.c.scored_at >= start,
                    scores.c.scored_at <= now,
                )
                ranked = window.subquery()
                query = select(ranked).where((ranked.c.oldest == 1) | (ranked.c.latest == 1))
                for row in connection.execute(query):
                    end = ends[row.lead_id]
                    end["count"] = row.count
                    if row.oldest == 1:
                        end["oldest"] = row.probability
                    if row.latest == 1:
                        end["latest"] = row.probability
        return {
            lead: lead_trend(end.get("oldest"), end.get("latest"), end["count"], threshold)
            for lead, end in ends.items()
        }

    def history_ends(
        self, lead_ids: Iterable[str], now: dt.datetime, window_days: int
    ) -> dict[str, HistoryEnds]:
        """What a new score is read against, per lead: its latest stored score before ``now``,
        and the count and oldest probability of its scores in the trend window ending at
        ``now``. Few leads: one statement each, run on the driver (:mod:`models.store.driver`:
        the API's hot path)."""
        _aware("now", now)
        ids = list(dict.fromkeys(lead_ids))
        if len(ids) > FEW:
            latest = self.latest(ids, before=now)
            trends = self.trend(ids, now, window_days)
            out = {}
            for lead in ids:
                previous, window = latest.get(lead), trends[lead]
                oldest = None
                if previous is not None and window.scores:
                    oldest = previous.probability - (window.change or 0.0)
                out[lead] = HistoryEnds(previous, min(window.scores, 2), oldest)
            return out
        start = window_start(now, window_days)
        found: dict[str, HistoryEnds] = {}
        for lead in ids:
            row = self._drivers.first(self._history_ends, lead=lead, start=start, now=now)
            if row is None:
                found[lead] = HistoryEnds(None, 0, None)
                continue
            count = int(row["window_scores"] or 0)
            oldest = float(row["window_oldest"]) if count else None
            found[lead] = HistoryEnds(_stored_score(row), count, oldest)
        return found

    def scores_between(self, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
        """Scores with ``start <= scored_at < end``, oldest first: one row per score, the
        columns of the ``scores`` table (``probabilities`` and ``reasons`` as dicts), times
        as ``datetime64[us, UTC]``."""
        _aware("start", start)
        _aware("end", end)
        query = (
            select(scores)
            .where(scores.c.scored_at >= start, scores.c.scored_at < end)
            .order_by(scores.c.scored_at, scores.c.id)
        )
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return _frame(rows, SCORE_COLUMNS, ("as_of", "scored_at"))

    # -- feedback -------------------------------------------------------------------------

    def add_feedback(self, entry: FeedbackRecord) -> StoredFeedback:
        """Record one verdict; it comes back with its id and ``recorded_at`` (now, UTC)."""
        recorded_at = dt.datetime.now(dt.UTC)
        values = {
            "lead_id": entry.lead_id,
            "verdict": entry.verdict,
            "reason": entry.reason,
            "note": entry.note,
            "actor": entry.actor,
            "occurred_at": entry.occurred_at,
            "recorded_at": recorded_at,
        }
        with self._writing() as connection:
            result = connection.execute(insert(feedback).returning(feedback.c.id), values)
            new_id = int(result.scalar_one())
        return StoredFeedback(
            id=new_id,
            recorded_at=recorded_at,
            lead_id=entry.lead_id,
            verdict=entry.verdict,
            occurred_at=entry.occurred_at.astimezone(dt.UTC),
            reason=entry.reason,
            note=entry.note,
            actor=entry.actor,
        )

    def feedback(self, since: dt.datetime | None = None) -> pd.DataFrame:
        """Verdicts with ``occurred_at >= since`` (all when None), oldest first, the columns of
        the ``feedback`` table, times as ``datetime64[us, UTC]``."""
        query = select(feedback).order_by(feedback.c.occurred_at, feedback.c.id)
        if since is not None:
            query = query.where(feedback.c.occurred_at >= _aware("since", since))
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return _frame(rows, FEEDBACK_COLUMNS, ("occurred_at", "recorded_at"))

    def close(self) -> None:
        """Close every connection; the store is unusable afterwards."""
        self._drivers.close()
        self._engine.dispose()


class NullStore:
    """The store when ``LEADSCORE_STORE_URL=off``: records nothing and says so —
    :attr:`enabled` is False, :meth:`record` returns 0, reads return nothing (every trend
    "not enough history"), :meth:`add_feedback` returns None."""

    def __init__(self, params: StoreParams | None = None) -> None:
        self.params = params or StoreParams()
        self.url = "off"

    @property
    def enabled(self) -> bool:
        return False

    @property
    def description(self) -> str:
        return "score recording is off (LEADSCORE_STORE_URL=off)"

    def __repr__(self) -> str:
        return "NullStore()"

    def __enter__(self) -> NullStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def record(self, rows: Sequence[ScoreRecord]) -> int:
        return 0

    def history(self, lead_id: str, limit: int = 50, offset: int = 0) -> list[StoredScore]:
        return []

    def latest(
        self, lead_ids: Iterable[str], before: dt.datetime | None = None
    ) -> dict[str, StoredScore]:
        return {}

    def trend(
        self,
        lead_ids: Iterable[str],
        now: dt.datetime,
        window_days: int | None = None,
        threshold: float | None = None,
    ) -> dict[str, LeadTrend]:
        return {lead: LeadTrend("not enough history", None, 0) for lead in lead_ids}

    def history_ends(
        self, lead_ids: Iterable[str], now: dt.datetime, window_days: int
    ) -> dict[str, HistoryEnds]:
        return {lead: HistoryEnds(None, 0, None) for lead in lead_ids}

    def scores_between(self, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
        return _frame([], SCORE_COLUMNS, ("as_of", "scored_at"))

    def add_feedback(self, entry: FeedbackRecord) -> StoredFeedback | None:
        return None

    def feedback(self, since: dt.datetime | None = None) -> pd.DataFrame:
        return _frame([], FEEDBACK_COLUMNS, ("occurred_at", "recorded_at"))

    def close(self) -> None:
        return None


def _chunks(lead_ids: Iterable[str]) -> Iterator[list[str]]:
    ids = list(dict.fromkeys(lead_ids))
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start : start + IN_CHUNK]


def _stored_score(row: Mapping[Any, Any]) -> StoredScore:
    reasons = row["reasons"] or {}
    return StoredScore(
        id=int(row["id"]),
        lead_id=row["lead_id"],
        as_of=row["as_of"],
        scored_at=row["scored_at"],
        model_name=row["model_name"],
        model_version=row["model_version"],
        probabilities=dict(row["probabilities"]),
        probability=float(row["probability"]),
        score=int(row["score"]),
        grade=row["grade"],
        handoff=bool(row["handoff"]),
        source=row["source"],
        positive_reasons=tuple(reasons.get("positive", ())),
        negative_reasons=tuple(reasons.get("negative", ())),
    )


def _frame(rows: Sequence[Row[Any]], columns: list[str], times: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame([tuple(row) for row in rows], columns=columns)
    for name in times:
        frame[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
    if "handoff" in frame:
        frame["handoff"] = frame["handoff"].astype(bool)
    return frame


def _history_ends_query() -> Any:
    """One statement per lead, compiled once: its latest score before ``now``, with the count
    and the oldest probability of its scores in ``[start, now)`` as scalar subqueries (each an
    index range on ``(lead_id, scored_at)``)."""
    lead = bindparam("lead", type_=scores.c.lead_id.type)
    start = bindparam("start", type_=scores.c.scored_at.type)
    now = bindparam("now", type_=scores.c.scored_at.type)
    other = scores.alias("window_scores")
    in_window = (other.c.lead_id == lead, other.c.scored_at >= start, other.c.scored_at < now)
    # counted up to 2: whether the window holds any score is all a trend needs, and a lead
    # scored thousands of times in the window must not cost thousands of index entries
    first_two = select(other.c.id).where(*in_window).limit(2).subquery()
    count = select(func.count()).select_from(first_two).scalar_subquery()
    oldest = (
        select(other.c.probability)
        .where(*in_window)
        .order_by(other.c.scored_at, other.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(
            *[scores.c[name] for name in SCORE_COLUMNS],
            count.label("window_scores"),
            oldest.label("window_oldest"),
        )
        .where(scores.c.lead_id == lead, scores.c.scored_at < now)
        .order_by(scores.c.scored_at.desc(), scores.c.id.desc())
        .limit(1)
    )


_HISTORY_ENDS = _history_ends_query()
