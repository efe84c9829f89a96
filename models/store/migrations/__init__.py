"""Alembic migrations of the score store, applied by :func:`models.store.migrate.upgrade`
when a store is opened (``env.py`` and ``versions/`` are loaded by Alembic from their files;
they are a package only so that setuptools ships them)."""
