"""What every collector produces and the protocol it follows."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from kulak.errors import AuthError
from listener.brands import Brand
from listener.policy import RetryPolicy


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
    """A source of mentions. It never writes to the database and never leaks client errors.

    ``cursors`` holds the source's stored cursors keyed by query (a collector with one query uses
    ``""``); each :class:`Batch` names the query its cursor belongs to. Waiting between retries
    goes through the source's :class:`RetryPolicy` and ``SourceSpec.sleep``, never ``time.sleep``.
    """

    name: str

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """Yield batches of new mentions after the stored cursors (empty on the first run)."""
        ...


@dataclass(frozen=True)
class SourceSpec:
    """What a collector factory gets: its name, the brands, and its ``[sources.<name>]`` table.

    ``env`` is where credentials are looked up (``os.environ`` by default): the config names the
    variable (``bearer_token_env = "X_BEARER_TOKEN"``), never the secret itself. ``sleep`` and
    ``rng`` drive retry waits, so tests run without waiting.
    """

    name: str
    brands: tuple[Brand, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    @property
    def type(self) -> str:
        """Which collector reads this source: ``type`` in its table, else its name."""
        return str(self.options.get("type") or self.name)

    @property
    def max_pages(self) -> int:
        return int(self.options.get("max_pages", 5))

    @property
    def base_url(self) -> str | None:
        return self.options.get("base_url") or None

    @property
    def timeout(self) -> float:
        """Seconds one request may take in all (connect, wait and read, a trickling server too)."""
        return float(self.options.get("timeout", 30))

    @property
    def interval(self) -> int | None:
        """Seconds between scheduled collections of this source (None: the global schedule)."""
        value = self.options.get("interval")
        return int(value) if value else None

    def policy(self) -> RetryPolicy:
        """The retry policy, with ``max_retries`` overridable per source."""
        return RetryPolicy(max_retries=int(self.options.get("max_retries", RetryPolicy.max_retries)))

    def option(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)

    def credential(self, key: str, *, required: bool = True) -> str | None:
        """The secret named by ``<key>_env`` in the source's table, read from the environment.

        Errors name the setting and the variable, never a value.
        """
        setting = f"{key}_env"
        var = self.options.get(setting)
        if not var:
            if not required:
                return None
            raise AuthError(
                f'source {self.name!r} needs a {key.replace("_", " ")}: set {setting} = "VARIABLE" in '
                f"[sources.{self.name}] and put the secret in that environment variable."
            )
        value = self.env.get(str(var), "")
        if not value:
            if not required:
                return None
            raise AuthError(
                f"source {self.name!r}: environment variable {var} (named by {setting}) is not set or empty; "
                "export it before running kulak."
            )
        return value
