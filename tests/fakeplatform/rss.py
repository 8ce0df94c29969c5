"""Fake RSS 2.0 and Atom 1.0 feeds under ``/feeds/<name>``, with ETag / Last-Modified and 304s.

Each :class:`Feed` renders its entries (newest first) on every request; its ``ETag`` is a hash
of the body and its ``Last-Modified`` the newest entry's date, so adding an entry changes both.
A conditional request that matches (``If-None-Match`` first, else ``If-Modified-Since``, as
RFC 9110 says) gets a bodiless 304. :attr:`FakeFeeds.bodies_sent` counts the full bodies.
A feed of kind ``"html"`` is a web page where a feed should be (a moved feed, a login wall).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from tests.fakeplatform.core import FakePlatform, Reply, Request

FeedKind = Literal["rss", "atom", "html"]
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Entry:
    """One item: ``link`` may be relative (resolved against the feed URL), ``guid`` may be absent."""

    title: str
    link: str
    summary_html: str = ""
    guid: str | None = None
    author: str | None = None
    published: datetime | None = None
    language: str | None = None  # Atom only: the entry's xml:lang


@dataclass
class Feed:
    kind: FeedKind
    title: str
    site: str
    language: str | None = None
    entries: list[Entry] = field(default_factory=list)
    send_validators: bool = True

    def last_modified(self) -> datetime:
        return max((e.published.astimezone(UTC) for e in self.entries if e.published), default=EPOCH)

    def render(self) -> bytes:
        if self.kind == "rss":
            return _rss(self).encode()
        if self.kind == "atom":
            return _atom(self).encode()
        page = f"<!DOCTYPE html><html><head><title>{self.title}</title></head><body><h1>Sign in</h1></body></html>"
        return page.encode()


@dataclass
class FakeFeeds:
    server: FakePlatform
    feeds: dict[str, Feed] = field(default_factory=dict)
    bodies_sent: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, feed: Feed) -> str:
        """Serve ``feed`` at ``/feeds/<name>``; returns its URL."""
        self.feeds[name] = feed
        return self.url(name)

    def url(self, name: str) -> str:
        return f"{self.server.url}/feeds/{name}"

    def requests_for(self, name: str) -> list[Request]:
        return self.server.hits(f"/feeds/{name}")

    def serve(self, req: Request, match: re.Match[str]) -> Reply:
        name = match.group(1)
        feed = self.feeds.get(name)
        if feed is None:
            return Reply(404, "<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
        body = feed.render()
        ctype = {"rss": "application/rss+xml", "atom": "application/atom+xml", "html": "text/html"}[feed.kind]
        headers = {"Content-Type": f"{ctype}; charset=utf-8"}
        if feed.send_validators and feed.kind != "html":
            headers["ETag"] = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers["Last-Modified"] = format_datetime(feed.last_modified(), usegmt=True)
            if _not_modified(req, headers["ETag"], feed.last_modified()):
                return Reply(304, b"", {k: v for k, v in headers.items() if k != "Content-Type"})
        self.bodies_sent[name] = self.bodies_sent.get(name, 0) + 1
        return Reply(200, body, headers)


def _not_modified(req: Request, etag: str, modified: datetime) -> bool:
    if (tags := req.headers.get("if-none-match")) is not None:
        return etag in [t.strip() for t in tags.split(",")] or tags.strip() == "*"
    if since := req.headers.get("if-modified-since"):
        try:
            return modified <= parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
    return False


def _rss(feed: Feed) -> str:
    items = []
    for e in feed.entries:
        parts = [f"<title>{escape(e.title)}</title>", f"<link>{escape(e.link)}</link>"]
        if e.guid:
            parts.append(f'<guid isPermaLink="false">{escape(e.guid)}</guid>')
        if e.author:
            parts.append(f"<dc:creator>{escape(e.author)}</dc:creator>")
        if e.published:
            parts.append(f"<pubDate>{format_datetime(e.published)}</pubDate>")
        parts.append(f"<description>{escape(e.summary_html)}</description>")
        items.append(f"<item>{''.join(parts)}</item>")
    language = f"<language>{escape(feed.language)}</language>" if feed.language else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>{escape(feed.title)}</title><link>{escape(feed.site)}</link>"
        f"<description>{escape(feed.title)}</description>{language}{''.join(items)}</channel></rss>"
    )


def _atom(feed: Feed) -> str:
    entries = []
    for e in feed.entries:
        lang = f" xml:lang={quoteattr(e.language)}" if e.language else ""
        stamp = (e.published or EPOCH).isoformat().replace("+00:00", "Z")
        author = f"<author><name>{escape(e.author)}</name></author>" if e.author else ""
        entries.append(
            f"<entry{lang}><id>{escape(e.guid or e.link)}</id><title>{escape(e.title)}</title>"
            f'<link rel="alternate" href={quoteattr(e.link)}/>'
            + (f"<published>{stamp}</published>" if e.published else "")
            + f"<updated>{stamp}</updated>{author}"
            f'<summary type="html">{escape(e.summary_html)}</summary></entry>'
        )
    lang = f" xml:lang={quoteattr(feed.language)}" if feed.language else ""
    updated = feed.last_modified().isoformat().replace("+00:00", "Z")
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<feed xmlns="http://www.w3.org/2005/Atom"{lang}><title>{escape(feed.title)}</title>'
        f"<id>{escape(feed.site)}</id><updated>{updated}</updated>"
        f'<link rel="alternate" href={quoteattr(feed.site)}/>{"".join(entries)}</feed>'
    )


def install(server: FakePlatform) -> FakeFeeds:
    """Register ``GET /feeds/<name>`` on ``server`` and return the feeds' state."""
    feeds = FakeFeeds(server)
    server.route("GET", r"/feeds/([\w.-]+)")(feeds.serve)
    return feeds
