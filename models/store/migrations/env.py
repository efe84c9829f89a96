"""Alembic's environment for the score store.

At run time :func:`models.store.migrate.upgrade` passes an open connection, already inside the
transaction that holds the migration lock, in ``config.attributes["connection"]``; every
revision then runs in that one transaction. A developer writing a new revision can instead
point ``sqlalchemy.url`` at a scratch database, e.g.
``alembic -x url=sqlite:///scratch.db revision --autogenerate -m "..."`` with a two-line
alembic.ini naming ``script_location = models/store/migrations``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from models.store.schema import VERSION_TABLE, metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite can ALTER little: later revisions rebuild tables in batch mode
        render_as_batch=True,
        # both SQLite (with the store's own BEGIN) and PostgreSQL roll DDL back
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no connection: open the store with models.store.open_store")
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            _run(connection)
    finally:
        engine.dispose()


_main()
