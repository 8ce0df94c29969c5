"""What a collection left in the database, read the way the collector tests check it."""

from __future__ import annotations

from listener.base import Mention
from storage import repository as repo
from storage.db import Database


def stored_mentions(db: Database) -> dict[str, Mention]:
    """Every stored mention by external id (none is scored in these tests)."""
    with db.transaction() as s:
        rows = repo.unscored_mentions(s, model_id="none", model_version="none", limit=10_000)
    return {r.mention.external_id: r.mention for r in rows}


def health_of(db: Database, source: str) -> repo.SourceHealth:
    """The health record of ``source``."""
    with db.transaction() as s:
        (record,) = [h for h in repo.source_health(s) if h.source == source]
    return record
