"""RSS and Atom feeds (forums, news, review sites, alert feeds) fetched with requests, parsed by feedparser.

The feed is the filter: every entry is yielded and kulak's brand matcher keeps the ones that
name a brand. Each feed has its own cursor (the query is the feed URL), a JSON object::

    {"etag": "...", "last_modified": "...", "ids": ["newest entry id", ...]}

``etag`` and ``last_modified`` go back as ``If-None-Match`` / ``If-Modified-Since``; a 304 costs
no body and yields nothing. ``ids`` are the entries already yielded (the current feed window
first, at most :data:`MAX_IDS`), so a changed feed yields only its new entries. A feed that
parsed with errors (feedparser's ``bozo``) keeps its entries but not its validators, so the next
run fetches it whole again.

One failing feed does not stop the others: every feed is collected, then a
:class:`~kulak.errors.SourceError` lists the feeds that failed (the pipeline records it in the
source's health, and the entries of the good feeds are already stored).

Options of ``[sources.<name>]``: ``feeds`` (required, a list of http(s) URLs), ``platform`` (the
mentions' platform, default ``"rss"``: say ``"trustpilot"`` for a review site's feed), and the
common ``timeout``/``max_retries``. ``base_url`` and ``max_pages`` are not used: every feed URL is
complete and a feed is one page.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import feedparser
import requests

from kulak.errors import ConfigError, SourceError, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.hackernews import html_to_text
from listener.http import request, session_for
from listener.policy import call_with_retries

log = logging.getLogger(__name__)

MAX_IDS = 1000  # entry ids remembered per feed; older ones only cost a re-read that dedup absorbs
MAX_KEY = 512  # widths of the storage columns for cursor queries and external ids
MAX_AUTHOR = 256
MAX_LANGUAGE = 16


@dataclass(frozen=True)
class FeedCursor:
    """What is remembered of one feed between runs."""

    etag: str | None = None
    last_modified: str | None = None
    ids: tuple[str, ...] = ()

    @classmethod
    def load(cls, raw: str | None, *, feed: str) -> FeedCursor:
        """The cursor stored as JSON; an unreadable one starts afresh (dedup absorbs the re-read)."""
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
            return cls(data.get("etag"), data.get("last_modified"), tuple(str(i) for i in data.get("ids") or ()))
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring unreadable cursor of feed %s", feed)
            return cls()

    def dump(self) -> str:
        return json.dumps({"etag": self.etag, "last_modified": self.last_modified, "ids": list(self.ids)})

    def headers(self) -> dict[str, str]:
        """Conditional request headers: only a changed feed sends a body."""
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def cursor_key(feed: str) -> str:
    """The cursor's query for ``feed``: its URL, or a hash of it when too long to store."""
    return feed if len(feed) <= MAX_KEY else "sha256:" + hashlib.sha256(feed.encode()).hexdigest()


def entry_id(entry: Mapping[str, Any], feed: str) -> str | None:
    """A stable id for an entry: its guid/id, else a hash of its link, else None.

    A guid that is not URI-like (``"42"`` rather than ``tag:…``/``https://…``) is only unique in
    its feed, so the feed URL is prefixed: two feeds of one source may both have an entry ``42``.
    """
    raw = str(entry.get("id") or "").strip()
    if raw:
        ident = raw if ":" in raw else f"{feed}#{raw}"
    elif link := str(entry.get("link") or "").strip():
        ident = "sha256:" + hashlib.sha256(link.encode()).hexdigest()
    else:
        return None
    return ident if len(ident) <= MAX_KEY else "sha256:" + hashlib.sha256(ident.encode()).hexdigest()


def _timestamp(entry: Mapping[str, Any]) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def _language(entry: Mapping[str, Any], feed_info: Mapping[str, Any]) -> str | None:
    for detail in ("summary_detail", "title_detail"):
        if lang := (entry.get(detail) or {}).get("language"):
            return str(lang)[:MAX_LANGUAGE]
    lang = str(feed_info.get("language") or "").strip()
    return lang[:MAX_LANGUAGE] or None


def _plain(value: Any, detail: Mapping[str, Any] | None) -> str:
    """Text of a title/summary/content value: HTML stripped when feedparser says it is HTML."""
    text = str(value or "")
    if "html" in str((detail or {}).get("type", "text/html")):
        return html_to_text(text)
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def entry_to_mention(
    entry: Mapping[str, Any], ident: str, *, source: str, platform: str, feed: str, feed_info: Mapping[str, Any]
) -> Mention:
    """A :class:`Mention` from one parsed entry.

    An entry without a date gets the collection time: it is new to kulak now, and a feed
    without dates still shows up in time windows.
    """
    title = _plain(entry.get("title"), entry.get("title_detail"))
    if entry.get("summary"):
        body = _plain(entry["summary"], entry.get("summary_detail"))
    else:
        content = (entry.get("content") or [{}])[0]
        body = _plain(content.get("value"), content)
    author = " ".join(str(entry.get("author") or feed_info.get("title") or "").split()) or feed
    return Mention(
        source=source,
        external_id=ident,
        platform=platform,
        url=str(entry.get("link") or feed_info.get("link") or feed),
        author=author[:MAX_AUTHOR],
        text="\n\n".join(p for p in (title, body) if p),
        created_at=_timestamp(entry) or datetime.now(UTC),
        language=_language(entry, feed_info),
    )


def parse_feed(response: requests.Response, feed: str, *, source: str) -> Any:
    """feedparser's result for a fetched body; something that is not a feed is SourceUnavailable.

    feedparser never fetches anything itself here: it gets the bytes (in a stream, so a body
    that happens to look like a file path is never opened) and the response headers (encoding,
    language, the base URL that relative links resolve against).
    """
    headers = {k.lower(): v for k, v in response.headers.items()}
    headers.setdefault("content-location", response.url or feed)
    parsed = feedparser.parse(io.BytesIO(response.content), response_headers=headers)
    if not parsed.entries and (parsed.get("bozo") or not parsed.get("version")):
        ctype = headers.get("content-type", "no content type").split(";")[0]
        problem = parsed.get("bozo_exception") or "no RSS or Atom root element"
        raise SourceUnavailable(
            f"feed {feed} is not an RSS or Atom feed ({ctype}: {problem}); check the URL in "
            f"[sources.{source}] feeds, or whether the site now shows a login or error page."
        )
    if parsed.get("bozo"):
        log.info("feed %s parsed with errors (%s); keeping its entries", feed, parsed.get("bozo_exception"))
    return parsed


class RssCollector:
    """Collects the new entries of each configured feed, one batch per changed feed."""

    def __init__(
        self, spec: SourceSpec, *, session: requests.Session, feeds: Sequence[str], platform: str = "rss"
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.session = session
        self.feeds = tuple(feeds)
        self.platform = platform

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """Every feed in turn; the failures, if any, are raised together at the end."""
        failed: list[SourceError] = []
        for feed in self.feeds:
            key = cursor_key(feed)
            try:
                batch = self._collect_feed(feed, key, FeedCursor.load(cursors.get(key), feed=feed))
            except SourceError as exc:
                log.warning("%s: feed %s failed: %s", self.name, feed, exc)
                failed.append(exc)
                continue
            if batch is not None:
                yield batch
        if failed:
            raise _combined(failed, total=len(self.feeds))

    def _collect_feed(self, feed: str, key: str, cursor: FeedCursor) -> Batch | None:
        what = f"feed {feed}"
        fetched = call_with_retries(
            lambda: self._fetch(feed, cursor, what=what),
            policy=self.spec.policy(),
            sleep=self.spec.sleep,
            rng=self.spec.rng,
            what=what,
        )
        if fetched is None:
            return None
        response, parsed = fetched
        seen = set(cursor.ids)
        current: list[str] = []
        mentions: list[Mention] = []
        skipped: list[str] = []
        for entry in parsed.entries:
            ident = entry_id(entry, feed)
            if ident is None:
                skipped.append(f"{what}: an entry without id or link was skipped ({entry.get('title', 'untitled')})")
                continue
            current.append(ident)
            if ident not in seen:
                seen.add(ident)
                mentions.append(
                    entry_to_mention(
                        entry, ident, source=self.name, platform=self.platform, feed=feed, feed_info=parsed.feed
                    )
                )
        ids = tuple(dict.fromkeys([*current, *cursor.ids]))[:MAX_IDS]
        clean = not parsed.get("bozo")
        after = FeedCursor(
            response.headers.get("ETag") if clean else None,
            response.headers.get("Last-Modified") if clean else None,
            ids,
        )
        return Batch(tuple(mentions), cursor=after.dump(), query=key, skipped=tuple(skipped))

    def _fetch(self, feed: str, cursor: FeedCursor, *, what: str) -> tuple[requests.Response, Any] | None:
        """One conditional GET: None for 304, else the response and its parsed feed.

        Something that is not a feed is retried like a 5xx: it is often a proxy's error page.
        """
        response = request(self.session, "GET", feed, headers=cursor.headers(), what=what)
        if response.status_code == 304:
            return None
        return response, parse_feed(response, feed, source=self.name)


def _combined(failed: Sequence[SourceError], *, total: int) -> SourceError:
    """One error for the source naming each failed feed; SourceUnavailable when all were outages."""
    if len(failed) == 1 and total == 1:
        return failed[0]
    details = "; ".join(str(exc) for exc in failed)
    message = f"{len(failed)} of {total} feeds failed (the others were collected): {details}"
    if all(isinstance(exc, SourceUnavailable) for exc in failed):
        return SourceUnavailable(message)
    return SourceError(message)


def rss_collector(spec: SourceSpec) -> RssCollector:
    """The RSS/Atom collector for ``[sources.<name>]``: ``feeds`` (required), ``platform`` (default ``"rss"``)."""
    feeds = spec.option("feeds")
    if isinstance(feeds, str):
        feeds = [feeds]
    if not feeds or not isinstance(feeds, list | tuple) or not all(isinstance(f, str) and f.strip() for f in feeds):
        raise ConfigError(
            f"source {spec.name!r} needs its feeds: set [sources.{spec.name}] feeds = "
            '["https://example.com/feed.xml", ...] (a list of RSS or Atom URLs).'
        )
    urls = list(dict.fromkeys(f.strip() for f in feeds))
    if bad := [u for u in urls if not u.lower().startswith(("http://", "https://"))]:
        raise ConfigError(f"[sources.{spec.name}] feeds must be http(s) URLs; these are not: {', '.join(bad)}")
    platform = str(spec.option("platform", "rss") or "rss")[:64]
    return RssCollector(spec, session=session_for(timeout=spec.timeout), feeds=urls, platform=platform)
