"""The score store's revisions, oldest first (Alembic ignores this file)."""
