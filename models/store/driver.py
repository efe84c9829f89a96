"""Reads on the API's hot path, run straight on the database driver.

SQLAlchemy's execution of one small SELECT costs about 100 µs of Python per call (connection
checkout, transaction events, compiled-parameter and result set-up), while SQLite answers the
history read in about 9 µs. A :class:`DriverQuery` keeps what SQLAlchemy knows and drops that
work: the statement is compiled once for the engine's dialect, its values go through the same
bind processors and its rows through the same result processors SQLAlchemy's own execution
applies (a test holds the two to the same answers on SQLite and PostgreSQL), and it runs on a
:class:`DriverConnections` connection that each reading thread keeps for itself.

Those connections are detached from the engine's pool (they never return to it, so what is
set on them here cannot leak into the store's writes) and run in autocommit: each read is one
statement, which both databases answer from one consistent snapshot. A driver error closes the
thread's connection (the next read opens a fresh one, so a restarted server costs one failed
read) and is raised as SQLAlchemy's own :class:`~sqlalchemy.exc.DBAPIError`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, Select
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection

Processor = Callable[[Any], Any] | None


class DriverQuery:
    """``statement`` compiled for ``dialect``; :meth:`values` binds the named parameters,
    :meth:`row` converts a fetched row like SQLAlchemy would."""

    def __init__(self, statement: Select[Any], dialect: Dialect, names: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.names = tuple(names)
        self.columns = tuple(str(c.key) for c in statement.selected_columns)
        binders: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        # the statement's own values (LIMIT, OFFSET), already bound
        fixed = compiled.construct_params({name: None for name in self.names})
        for name, value in fixed.items():
            if name not in self.names and (binder := binders.get(name)) is not None:
                fixed[name] = binder(value)
        self._binders = {name: binders.get(name) for name in self.names}
        self._order: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        self._fixed = fixed
        self._dialect = dialect
        self._types = tuple(column.type for column in statement.selected_columns)
        # result processors depend on the driver's type codes (PostgreSQL's numerics)
        self._readers: dict[tuple[Any, ...], tuple[Processor, ...]] = {}

    def values(self, **given: Any) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for ``given`` (every name of the query, no others)."""
        if given.keys() != set(self.names):
            raise TypeError(f"expected the values {sorted(self.names)}, got {sorted(given)}")
        bound = dict(self._fixed)
        for name, value in given.items():
            binder = self._binders[name]
            bound[name] = binder(value) if binder is not None and value is not None else value
        if self._order is None:
            return bound
        return [bound[name] for name in self._order]

    def row(self, fetched: Sequence[Any], description: Sequence[Sequence[Any]]) -> dict[str, Any]:
        """A fetched row as ``{column: value}``, each value as SQLAlchemy would return it
        (``description``: the cursor's, for the driver's type codes)."""
        codes = tuple(column[1] for column in description)
        readers = self._readers.get(codes)
        if readers is None:
            readers = tuple(
                kind.dialect_impl(self._dialect).result_processor(self._dialect, code)
                for kind, code in zip(self._types, codes, strict=True)
            )
            self._readers[codes] = readers
        return {
            name: reader(value) if reader is not None else value
            for name, reader, value in zip(self.columns, readers, fetched, strict=True)
        }


class DriverConnections:
    """One autocommit driver connection per reading thread, opened from ``engine`` on first
    use; :meth:`close` closes all of them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[PoolProxiedConnection] = []
        self._closed = False

    def first(self, query: DriverQuery, **given: Any) -> dict[str, Any] | None:
        """The query's first row for ``given``, or None when it has none."""
        values = query.values(**given)
        connection = self._connection()
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(query.sql, values)
                fetched = cursor.fetchone()
                description = cursor.description
            finally:
                cursor.close()
        except self._engine.dialect.loaded_dbapi.Error as error:
            self._drop(connection)
            raise DBAPIError.instance(
                query.sql, values, error, self._engine.dialect.loaded_dbapi.Error
            ) from error
        return None if fetched is None else query.row(fetched, description)

    def _connection(self) -> PoolProxiedConnection:
        if self._closed:
            raise RuntimeError("the store is closed")
        connection: PoolProxiedConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        connection = self._engine.raw_connection()
        try:
            if self._engine.dialect.name == "postgresql":
                connection.driver_connection.autocommit = True  # type: ignore[union-attr]
            # SQLite: the store's connect hook already took sqlite3's transactions over
            connection.detach()  # ours until closed: never handed to the store's writes
        except BaseException:
            connection.invalidate()
            raise
        with self._lock:
            self._open.append(connection)
        self._local.connection = connection
        return connection

    def _drop(self, connection: PoolProxiedConnection) -> None:
        self._local.connection = None
        with self._lock:
            if connection in self._open:
                self._open.remove(connection)
        with contextlib.suppress(Exception):  # a broken connection may fail to close too
            connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._open = self._open, []
        for connection in connections:
            with contextlib.suppress(Exception):  # one dead connection must not fail close
                connection.close()
