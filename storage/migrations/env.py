"""Alembic environment: kulak passes its own connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from storage.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - kulak always passes a connection
    raise RuntimeError("run migrations through kulak (storage.db.Database.migrate)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
