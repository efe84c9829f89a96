"""The score store's tables, as SQLAlchemy Core tables: what every score and every sales
verdict leaves behind.

The migrations in ``migrations/versions`` create exactly these tables; a change here needs a
new revision there (``tests/models/store/test_migrations.py`` compares the two). Reads and
writes go through Core statements on these tables, not the ORM: the recorder inserts
thousands of rows a second and has no use for identity maps.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB

SOURCES = ("api", "batch", "queue", "rescore")
"""Where a score was given: the API, ``leadscore score``, the queue stage, ``leadscore rescore``."""
GRADES = ("A", "B", "C", "D")
VERDICTS = ("contacted", "accepted", "rejected")
NOTE_MAX_CHARS = 2000
"""A feedback note is a sentence or two from sales, not a document."""
ACTOR_MAX_CHARS = 200
REASON_MAX_CHARS = 200

VERSION_TABLE = "leadscore_store_version"
"""Alembic's revision table, under its own name so that a PostgreSQL database shared with other
Alembic-managed applications keeps their ``alembic_version`` apart from ours."""

# Deterministic constraint and index names: the same on SQLite and PostgreSQL, so that a
# later migration can drop or alter them by name.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware timestamp that always comes back as a UTC-aware ``datetime``.

    PostgreSQL stores ``timestamptz`` and returns it in the session's time zone; SQLite has no
    timestamp type and SQLAlchemy would silently drop the offset of an aware value. So every
    value is converted to UTC on the way in (naive values are refused: their zone is a guess),
    stored without offset on SQLite (fixed-width text, so text order is time order), and made
    UTC-aware on the way out on both."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"the score store takes timezone-aware datetimes only, got {value}")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


# SQLite autoincrements only an INTEGER PRIMARY KEY (the rowid), which is 64-bit anyway.
Id = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


scores = Table(
    "scores",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_id", Text, nullable=False),
    Column("as_of", UtcDateTime, nullable=False),
    Column("scored_at", UtcDateTime, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("model_version", Text, nullable=False),
    Column("probabilities", Json, nullable=False),
    Column("probability", Double, nullable=False),
    Column("score", SmallInteger, nullable=False),
    Column("grade", Text, nullable=False),
    Column("handoff", Boolean(create_constraint=False), nullable=False),
    Column("reasons", Json, nullable=False),
    Column("source", Text, nullable=False),
    CheckConstraint("score BETWEEN 0 AND 100", name="score_range"),
    CheckConstraint(_one_of("grade", GRADES), name="grade"),
    CheckConstraint(_one_of("source", SOURCES), name="source"),
    # history and latest/trend read one lead's scores newest first
    Index("ix_scores_lead_id_scored_at", "lead_id", "scored_at"),
    # scores_between reads a time range across leads (monitoring, backtests)
    Index("ix_scores_scored_at", "scored_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("lead_id", Text, nullable=False, index=True),
    Column("verdict", Text, nullable=False),
    Column("reason", Text, nullable=True),
    Column("note", Text, nullable=True),
    Column("actor", Text, nullable=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    CheckConstraint(_one_of("verdict", VERDICTS), name="verdict"),
    CheckConstraint(f"length(note) <= {NOTE_MAX_CHARS}", name="note_length"),
    CheckConstraint(f"length(actor) <= {ACTOR_MAX_CHARS}", name="actor_length"),
    CheckConstraint(f"length(reason) <= {REASON_MAX_CHARS}", name="reason_length"),
)
