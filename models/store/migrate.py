"""Bringing a store's schema to this leadscore's revision, when the store is opened.

Alembic runs from a :class:`~alembic.config.Config` built here (no alembic.ini at run time)
on one connection, inside one transaction that first takes a lock every opener of the same
store takes: PostgreSQL's transaction-scoped advisory lock, SQLite's write lock
(``BEGIN IMMEDIATE``). So two processes opening a new store at once serialise: the first
migrates, the second finds the head revision under the lock and does nothing. Should a
database lack such a lock, the loser's failure is caught and the revision re-checked.

Alembic is imported only when there is something to migrate: a store already at
:data:`HEAD_REVISION` (every open but the first) is one query, and the API's cold start does
not pay Alembic's imports (about 0.2 s warm, 0.55 s on a first run).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, column, inspect, select, table, text
from sqlalchemy.exc import DBAPIError

from models.store.connection import BEGIN_OPTION
from models.store.schema import VERSION_TABLE

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger("leadscore.store")

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
ADVISORY_LOCK_KEY = 0x1EAD5C0E
"""PostgreSQL advisory lock taken while migrating (any fixed 64-bit number; this one is ours)."""
ATTEMPTS = 3
HEAD_REVISION = "0001"
"""The newest revision in ``migrations/versions`` (a test checks it is Alembic's head)."""


class NewerSchemaError(Exception):
    """The database is at a revision this leadscore does not know (a newer one migrated it)."""


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Alembic's head, read from the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the store's migrations have no head"
    return head


def current_revision(connection: Connection) -> str | None:
    """The store's revision, None for an empty database. Read directly rather than through
    Alembic's MigrationContext, which logs its setup on every call: a store is opened by
    every CLI command and every API worker."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    version = table(VERSION_TABLE, column("version_num"))
    revisions = connection.execute(select(version.c.version_num)).scalars().all()
    if len(revisions) > 1:
        raise NewerSchemaError(", ".join(sorted(revisions)))  # branches: not ours
    return revisions[0] if revisions else None


def _known(revision: str | None) -> None:
    if revision is None or revision == HEAD_REVISION:
        return
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    if revision not in {r.revision for r in script.walk_revisions()}:
        raise NewerSchemaError(revision)


def upgrade(engine: Engine) -> bool:
    """Migrate the store to head; True if this call changed the schema."""
    with engine.connect() as connection:
        revision = current_revision(connection)
    if revision == HEAD_REVISION:  # the common case: one cheap read, no lock, no Alembic
        return False
    _known(revision)
    head = head_revision()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return _upgrade_locked(engine, head)
        except DBAPIError:
            # another process may have created the tables between our read and our DDL
            with engine.connect() as connection:
                revision = current_revision(connection)
            _known(revision)
            if revision == head:
                return False
            if attempt == ATTEMPTS:
                raise
            logger.info("score store migration raced another process; trying again")
    return False  # pragma: no cover - the loop returns or raises


def _upgrade_locked(engine: Engine, head: str) -> bool:
    with (
        engine.connect().execution_options(**{BEGIN_OPTION: "IMMEDIATE"}) as connection,
        connection.begin(),
    ):
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
        revision = current_revision(connection)
        _known(revision)
        if revision == head:
            return False
        logger.info("score store: migrating from %s to %s", revision or "an empty database", head)
        from alembic import command

        command.upgrade(alembic_config(connection), "head")
        return True
