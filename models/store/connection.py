"""Where the store lives (``LEADSCORE_STORE_URL``) and the SQLAlchemy engine that reaches it.

* unset or empty: a SQLite file ``scores.db`` in the project directory;
* ``off`` (any case): recording is disabled (:func:`store_url` returns None);
* anything else: a SQLAlchemy URL, e.g. ``sqlite:////var/lib/leadscore/scores.db`` or
  ``postgresql+psycopg://leadscore@db.internal:5432/leadscore`` (a bare ``postgresql://``
  means the same: psycopg 3 is the driver leadscore installs).

Nothing here runs at import: engines are created by :func:`create_store_engine` only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from models.store.errors import StoreError

ENV_VAR = "LEADSCORE_STORE_URL"
DEFAULT_FILE = "scores.db"
OFF = "off"
SQLITE_BUSY_SECONDS = 30.0
"""How long a SQLite writer waits for another process's write lock before failing."""
CONNECT_TIMEOUT_SECONDS = 10
"""How long a PostgreSQL connection attempt may take: an unreachable host fails in this time
instead of the operating system's minutes."""
BEGIN_OPTION = "leadscore_sqlite_begin"
"""Execution option naming the BEGIN a SQLite transaction starts with (IMMEDIATE for writes)."""


def store_url(project_dir: Path, environ: Mapping[str, str] | None = None) -> str | None:
    """The store's URL from ``LEADSCORE_STORE_URL`` (``environ`` defaults to the process's):
    None when recording is off."""
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not value:
        return URL.create(
            "sqlite", database=str(Path(project_dir) / DEFAULT_FILE)
        ).render_as_string()
    if value.lower() == OFF:
        return None
    return value


def redact(url: str | URL) -> str:
    """``url`` fit for a message or a log: its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        # not a URL SQLAlchemy can parse; still hide whatever sits in "user:password@"
        return re.sub(r"([^\s/:@]+:)[^\s/@]+@", r"\1***@", str(url))


def parse(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            f"score store: {redact(url)!r} is not a database URL "
            f"(set {ENV_VAR} to e.g. sqlite:///scores.db, "
            "postgresql+psycopg://user@host/db, or off)"
        ) from None
    if parsed.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2; leadscore ships psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # each pooled connection would see its own empty database, the recorder's included
        raise StoreError(
            f"score store {redact(parsed)}: an in-memory SQLite store is not supported; name a file"
        )
    return parsed


def create_store_engine(url: str) -> Engine:
    """An engine for the store at ``url``; it does not connect yet.

    SQLite: sqlite3's own transaction handling is switched off and the store emits BEGIN itself
    (SQLAlchemy's documented recipe), so DDL is transactional and writes can take the write
    lock up front (``BEGIN IMMEDIATE``), which makes concurrent openers and writers wait for
    each other instead of failing; write-ahead logging lets readers run beside the writer.
    PostgreSQL: a bounded connect timeout; both: connections checked before use, so a server
    restart costs one failed batch, not a pool of dead connections."""
    parsed = parse(url)
    backend = parsed.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args = {"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
    elif backend == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    try:
        # a SQLite file's connections never go stale: no ping per checkout on the hot path
        engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=backend != "sqlite")
    except (NoSuchModuleError, ImportError) as error:
        raise StoreError(f"score store {redact(parsed)}: no driver for it ({error})") from None
    except (ArgumentError, TypeError) as error:
        raise StoreError(f"score store {redact(parsed)}: {one_line(error)}") from None
    if backend == "sqlite":
        _take_over_sqlite_transactions(engine)
    return engine


def _take_over_sqlite_transactions(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        kind = connection.get_execution_options().get(BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {kind}")


def one_line(error: BaseException, url: str | URL | None = None) -> str:
    """The first line of a driver's error, without the SQL SQLAlchemy appends, and with the
    URL's password (should a driver echo it) removed."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    line = text[0].strip() if text else type(original).__name__
    if url is not None:
        password = make_url(url).password if not isinstance(url, URL) else url.password
        if password:
            line = line.replace(str(password), "***")
    return line
