"""The score store's one error type."""

from __future__ import annotations

from features.errors import UserError


class StoreError(UserError):
    """The store cannot be opened or used: a bad ``LEADSCORE_STORE_URL``, a database that does
    not answer, a schema newer than this leadscore. One line naming the URL (never its
    password): a :class:`~features.errors.UserError`, so the CLI prints it without a
    traceback."""
