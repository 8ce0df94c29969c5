"""Mastodon: hashtag timelines (gap-free, no token needed) and full-text search (token, instance permitting).

Queries, each with its own cursor (the newest status id it has read):

- ``#tag`` for every brand name and alias with the spaces and punctuation removed, lower-cased,
  plus the ``hashtags`` option. Read with ``timeline_hashtag``. On the first run the newest
  ``max_pages`` pages are read going back in time (``max_id`` paging) and the cursor is saved only
  after the last of them, so a crash mid-way re-reads instead of leaving a gap. Later runs read
  forward from the cursor with ``min_id``, which Mastodon answers with the *oldest* page after it:
  every page covers the whole span from the cursor to its newest status, so the cursor can be
  saved with each page, and a run cut short by ``max_pages`` carries on next time without a gap.
- the brand names and aliases (quoted when they have spaces) through ``search_v2`` when
  ``search`` is on and an access token is configured (Mastodon gives statuses for free text only
  to signed-in users, and only where the instance runs full-text search). Search results are read
  with ``min_id`` = cursor and offset paging; the cursor is saved only after the last page read.
  Search is best effort: results come newest first, so more than ``max_pages`` pages of new
  results in one interval leave the older ones unread (hashtags are the gap-free path). An
  instance that does not serve search has that query skipped with a note, not a failure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from html.parser import HTMLParser
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mastodon import (
    Mastodon,
    MastodonAPIError,
    MastodonError,
    MastodonNetworkError,
    MastodonNotFoundError,
    MastodonRatelimitError,
    MastodonServerError,
    MastodonUnauthorizedError,
    MastodonVersionError,
)

from kulak.errors import AuthError, RateLimited, SourceError, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.http import USER_AGENT, session_for
from listener.policy import call_with_retries

log = logging.getLogger(__name__)

PAGE_SIZE = 40  # Mastodon's maximum for timelines and search
DEFAULT_INSTANCE = "https://mastodon.social"
T = TypeVar("T")


class NotServed(SourceError):
    """The instance does not serve this endpoint (404), or is too old for it."""


class _TextExtractor(HTMLParser):
    """Plain text of a status's HTML: paragraphs become blank lines, ``<br>`` a line break."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("p", "blockquote", "li", "pre"):
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(content: str) -> str:
    """Plain text of Mastodon's HTML ``content``, with sane line breaks and entities decoded."""
    parser = _TextExtractor()
    parser.feed(content)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def hashtags_for(spec: SourceSpec) -> tuple[str, ...]:
    """Brand names and aliases as hashtags (``Paketto Express`` → ``pakettoexpress``) plus ``hashtags``."""
    names = [t for b in spec.brands for t in (b.name, *b.aliases)]
    names += [str(t) for t in spec.option("hashtags", [])]
    tags = (re.sub(r"[\W]+", "", name).lower() for name in names)
    return tuple(dict.fromkeys(t for t in tags if t))


def search_terms_for(spec: SourceSpec) -> tuple[str, ...]:
    """One full-text query per brand name and alias, quoted when it has more than one word."""
    terms = (t.strip() for b in spec.brands for t in (b.name, *b.aliases))
    return tuple(dict.fromkeys(f'"{t}"' if " " in t else t for t in terms if t))


def _id_key(value: object) -> tuple[int, str]:
    """Sort key of a status id: snowflakes compare as numbers, other ids as strings of equal length."""
    text = str(value)
    return (len(text), text)


def _newest(ids: list[object]) -> str | None:
    return max((str(i) for i in ids), key=_id_key, default=None)


def _utc(value: Any) -> datetime | None:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _count(status: Mapping[str, Any], key: str) -> int:
    return int(status.get(key) or 0)


def status_to_mention(status: Mapping[str, Any], *, source: str) -> Mention:
    """A :class:`Mention` from a status (a reblog becomes its original). Raises ValueError if unusable."""
    status = status.get("reblog") or status
    account = status.get("account") or {}
    created = _utc(status.get("created_at"))
    if not status.get("uri") or created is None:
        raise ValueError(f"status {status.get('id')} has no uri or created_at")
    acct = str(account.get("acct") or account.get("username") or "")
    if acct and "@" not in acct and (host := urlsplit(str(account.get("url") or "")).netloc):
        acct = f"{acct}@{host}"  # local accounts have no domain in acct; keep authors unique across instances
    text = html_to_text(str(status.get("content") or ""))
    if spoiler := str(status.get("spoiler_text") or "").strip():
        text = f"{spoiler}\n\n{text}"
    followers = account.get("followers_count")
    return Mention(
        source=source,
        external_id=str(status["uri"]),
        platform="mastodon",
        url=str(status.get("url") or status["uri"]),
        author=acct,
        text=text,
        created_at=created,
        followers=int(followers) if followers is not None else None,
        engagement=sum(_count(status, k) for k in ("favourites_count", "reblogs_count", "replies_count")),
        language=status.get("language") or None,
    )


class MastodonCollector:
    """Hashtag timelines and (optionally) full-text search of one Mastodon instance."""

    def __init__(self, spec: SourceSpec, *, client: Mastodon | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self._client = client
        self.hashtags = hashtags_for(spec)

    @property
    def client(self) -> Mastodon:
        """The client given to the constructor, else the real one (built on first use, so a missing
        token variable fails this source's collection, not the whole configuration)."""
        if self._client is None:
            self._client = build_client(self.spec)
        return self._client

    @property
    def host(self) -> str:
        base = str(self.client.api_base_url)
        return urlsplit(base).netloc or base

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """Yield a batch per page of every hashtag, then of every search term."""
        signed_in = self.client.access_token is not None
        search = bool(self.spec.option("search", True))
        if search and not signed_in:
            log.info("%s: no access token, so only hashtags are read (search needs a signed-in user)", self.name)
        for tag in self.hashtags:
            yield from self._hashtag(tag, cursors.get(f"#{tag}"))
        for term in search_terms_for(self.spec) if search and signed_in else ():
            yield from self._search(term, cursors.get(term))

    # -- queries -----------------------------------------------------------------------------------
    def _hashtag(self, tag: str, cursor: str | None) -> Iterator[Batch]:
        key, what = f"#{tag}", f"Mastodon ({self.host}) #{tag} timeline"
        forward = cursor is not None
        # Explicit min_id/max_id rather than the Link header: not every server sends one.
        bound: dict[str, str | None] = {"min_id": cursor}
        backfill_newest: str | None = None
        for _ in range(self.spec.max_pages):
            fetch = partial(self.client.timeline_hashtag, tag, limit=PAGE_SIZE, **bound)
            statuses = list(self._call(fetch, what) or ())
            if not statuses:
                break
            ids = sorted((str(s.get("id")) for s in statuses), key=_id_key)
            mentions, skipped = self._mentions(statuses)
            # Forward pages span cursor..newest, so their cursor is safe; backfill pages are not.
            yield Batch(mentions, cursor=ids[-1] if forward else None, query=key, skipped=skipped)
            backfill_newest = backfill_newest or ids[-1]
            if len(statuses) < PAGE_SIZE:
                break
            bound = {"min_id": ids[-1]} if forward else {"max_id": ids[0]}
        if not forward and backfill_newest is not None:
            yield Batch((), cursor=backfill_newest, query=key)

    def _search(self, term: str, cursor: str | None) -> Iterator[Batch]:
        what = f"Mastodon ({self.host}) search for {term}"
        newest = cursor
        try:
            page: Any = self._call(
                partial(
                    self.client.search_v2,
                    term,
                    resolve=False,
                    result_type="statuses",
                    min_id=cursor,
                    limit=PAGE_SIZE,
                ),
                what,
            )
            for number in range(1, self.spec.max_pages + 1):
                found = list(page.get("statuses") or ()) if page else []
                fresh = [s for s in found if cursor is None or _id_key(s.get("id")) > _id_key(cursor)]
                newest = _newest([i for i in (newest, *(s.get("id") for s in fresh)) if i is not None])
                mentions, skipped = self._mentions(fresh)
                if mentions or skipped:
                    yield Batch(mentions, cursor=None, query=term, skipped=skipped)
                if len(found) < PAGE_SIZE or number == self.spec.max_pages:
                    break
                page = self._call(partial(self.client.fetch_next, page), what)
        except NotServed as exc:
            log.warning("%s: %s; skipping this search", self.name, exc)
            yield Batch((), cursor=None, query=term, skipped=(f"{exc}; skipped",))
            return
        if newest is not None and newest != cursor:
            yield Batch((), cursor=newest, query=term)

    def _mentions(self, statuses: list[Any]) -> tuple[tuple[Mention, ...], tuple[str, ...]]:
        mentions, skipped = [], []
        for status in statuses:
            try:
                mentions.append(status_to_mention(status, source=self.name))
            except (ValueError, TypeError) as exc:
                skipped.append(f"status {status.get('id')}: {exc}")
        return tuple(mentions), tuple(skipped)

    # -- errors ------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` with Mastodon.py's errors translated and the shared retry policy applied."""

        def attempt() -> T:
            try:
                return fn()
            except MastodonError as exc:
                raise self._translate(exc, what) from None

        return call_with_retries(
            attempt, policy=self.spec.policy(), sleep=self.spec.sleep, rng=self.spec.rng, what=what
        )

    def _translate(self, exc: MastodonError, what: str) -> SourceError:
        if isinstance(exc, MastodonRatelimitError):
            reset = self.client.ratelimit_reset
            wait = max(0.0, float(reset) - time.time()) if reset else None
            hint = f", reset in {wait:.0f}s" if wait is not None else ", no reset time given"
            return RateLimited(f"{what} is rate-limiting kulak (HTTP 429{hint})", retry_after=wait)
        needs_user = _status(exc) == 422 and "authenticated" in _error_text(exc)
        if isinstance(exc, MastodonUnauthorizedError) or _status(exc) == 403 or needs_user:
            if self.client.access_token is None:
                return AuthError(
                    f"{what} needs a signed-in user (HTTP {_status(exc)}): create an access token (read scope) "
                    f'on the instance and set access_token_env = "VARIABLE" in [sources.{self.name}].'
                )
            return AuthError(
                f"{what} rejected the access token (HTTP {_status(exc)}); it may have been revoked or lack the "
                "read scope: create a new one and put it in the variable named by access_token_env."
            )
        if isinstance(exc, MastodonNotFoundError):
            return NotServed(f"{what}: the instance does not serve this (HTTP 404)")
        if isinstance(exc, MastodonVersionError):
            return NotServed(f"{what}: the instance is too old or did not say its version ({exc})")
        if isinstance(exc, MastodonServerError):
            return SourceUnavailable(f"{what} answered HTTP {_status(exc)} (server error)")
        if isinstance(exc, MastodonNetworkError):
            return SourceUnavailable(f"{what} could not be reached or timed out: {exc}")
        if isinstance(exc, MastodonAPIError) and _status(exc) is None:
            body = str(exc.args[0]).lower() if exc.args else ""
            kind = "an HTML page" if "<!doctype" in body or "<html" in body else "malformed JSON"
            return SourceUnavailable(f"{what} answered with {kind} instead of its API (a proxy or maintenance page?)")
        if _status(exc) is None:
            return SourceError(f"{what} failed: {type(exc).__name__}: {exc}")
        return SourceError(f"{what} refused the request (HTTP {_status(exc)}): {_error_text(exc)}")


def _status(exc: MastodonError) -> int | None:
    """The HTTP status of an API error (Mastodon.py puts it in ``args[1]``)."""
    return exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None


def _error_text(exc: MastodonError) -> str:
    return str(exc.args[3]) if len(exc.args) > 3 and exc.args[3] else "no details"


def build_client(spec: SourceSpec) -> Mastodon:
    """The real Mastodon.py client for ``spec``, signed in when ``access_token_env`` is set.

    Rate limits are thrown (never slept on inside the client), version checks are off (no probe
    at start; hashtag timelines still ask ``/api/v2/instance/`` once whether they are public), and
    every request has kulak's total deadline.
    """
    token = spec.credential("access_token", required=bool(spec.option("access_token_env")))
    return Mastodon(
        api_base_url=spec.base_url or str(spec.option("instance", DEFAULT_INSTANCE)),
        access_token=token,
        session=session_for(timeout=spec.timeout),
        request_timeout=spec.timeout,
        ratelimit_method="throw",
        version_check_mode="none",
        user_agent=USER_AGENT,
    )


def mastodon_collector(spec: SourceSpec) -> MastodonCollector:
    """The registry's factory: a collector on ``base_url`` or ``instance`` (default mastodon.social)."""
    return MastodonCollector(spec)
