"""What every collector produces and the protocol it follows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from listener.brands import Brand


@dataclass(frozen=True)
class Mention:
    """One post about (possibly) one of the configured brands.

    ``created_at`` is an aware UTC datetime; ``external_id`` is unique within ``source``.
    ``followers`` is the author's reach and ``engagement`` likes + reposts + replies, when known.
    """

    source: str
    external_id: str
    platform: str
    url: str
    author: str
    text: str
    created_at: datetime
    followers: int | None = None
    engagement: int | None = None
    language: str | None = None

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise ValueError(f"mention {self.source}:{self.external_id} has a naive created_at")
        if not self.external_id:
            raise ValueError(f"mention from {self.source} has no external id")


@dataclass(frozen=True)
class Batch:
    """What one collection step yields: mentions and the cursor that follows them.

    The cursor must be stored in the same transaction as the mentions, so a crash between
    the two can only cause a re-read (absorbed by dedup), never a gap.
    """

    mentions: tuple[Mention, ...]
    cursor: str | None
    query: str = ""
    skipped: tuple[str, ...] = field(default=())


@runtime_checkable
class Collector(Protocol):
    """A source of mentions. It never sleeps, never writes to the database, never leaks client errors."""

    name: str

    def collect(self, cursor: str | None) -> Iterator[Batch]:
        """Yield batches of new mentions after ``cursor`` (None on the first run)."""
        ...


@dataclass(frozen=True)
class SourceSpec:
    """What a collector factory gets: its name, the brands, and its ``[sources.<name>]`` table."""

    name: str
    brands: tuple[Brand, ...]
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def max_pages(self) -> int:
        return int(self.options.get("max_pages", 5))

    @property
    def base_url(self) -> str | None:
        return self.options.get("base_url") or None
