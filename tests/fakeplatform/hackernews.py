"""A fake Algolia Hacker News search API: ``GET /api/v1/search_by_date``.

Speaks the wire format of https://hn.algolia.com/api: ``query`` (words ANDed, a quoted phrase
matched as a phrase, case-insensitive), ``tags=(story,comment)``, ``numericFilters=created_at_i>X``,
``page`` (0-based) and ``hitsPerPage``; answers newest first with ``hits``, ``nbHits``, ``nbPages``,
``page`` and ``hitsPerPage``. Tests add stories and comments to :attr:`FakeHackerNews.items`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.fakeplatform.core import FakePlatform, Reply, Request

SEARCH_PATH = "/api/v1/search_by_date"


@dataclass
class HNItem:
    """A story (``title``, optional ``story_text``) or a comment (``comment_text``)."""

    object_id: str
    created_at_i: int
    author: str
    title: str | None = None
    story_text: str | None = None
    comment_text: str | None = None
    points: int | None = None
    num_comments: int | None = None
    story_id: int | None = None

    @property
    def kind(self) -> str:
        return "comment" if self.comment_text is not None else "story"

    def searchable(self) -> str:
        return " ".join(t for t in (self.title, self.story_text, self.comment_text) if t).lower()

    def hit(self) -> dict[str, Any]:
        created = datetime.fromtimestamp(self.created_at_i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        hit: dict[str, Any] = {
            "objectID": self.object_id,
            "created_at": created,
            "created_at_i": self.created_at_i,
            "author": self.author,
            "title": self.title,
            "url": None,
            "story_text": self.story_text,
            "comment_text": self.comment_text,
            "points": self.points,
            "num_comments": self.num_comments,
            "story_id": self.story_id,
            "parent_id": self.story_id,
            "_tags": [self.kind, f"author_{self.author}", f"story_{self.story_id or self.object_id}"],
            "_highlightResult": {},
        }
        return hit


@dataclass
class FakeHackerNews:
    """The platform's state: every indexed item, searched on each request."""

    server: FakePlatform
    items: list[HNItem] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/api/v1"

    def add(self, item: HNItem) -> HNItem:
        self.items.append(item)
        return item

    def searches(self) -> list[Request]:
        return self.server.hits(SEARCH_PATH)

    def search(self, req: Request, match: re.Match[str]) -> Reply:
        query = req.arg("query", "") or ""
        tags = _tags(req.arg("tags", "") or "")
        since = _numeric_filter(req.arg("numericFilters", "") or "")
        if since is None and req.arg("numericFilters"):
            return Reply(400, {"message": "invalid numericFilters", "status": 400})
        per_page = int(req.arg("hitsPerPage", "20") or 20)
        page = int(req.arg("page", "0") or 0)
        found = [
            item
            for item in self.items
            if _matches(query, item.searchable())
            and (not tags or item.kind in tags)
            and (since is None or item.created_at_i > since)
        ]
        found.sort(key=lambda item: item.created_at_i, reverse=True)
        pages = -(-len(found) // per_page)
        chunk = found[page * per_page : (page + 1) * per_page]
        return Reply(
            200,
            {
                "hits": [item.hit() for item in chunk],
                "nbHits": len(found),
                "page": page,
                "nbPages": pages,
                "hitsPerPage": per_page,
                "exhaustiveNbHits": True,
                "query": query,
                "params": "",
                "processingTimeMS": 1,
            },
        )


def _tags(value: str) -> set[str]:
    """``(story,comment)`` means story OR comment; a bare ``story`` means story."""
    return {t for t in value.strip("()").split(",") if t}


def _numeric_filter(value: str) -> int | None:
    m = re.fullmatch(r"created_at_i>(\d+)", value)
    return int(m.group(1)) if m else None


def _matches(query: str, text: str) -> bool:
    phrases = [p.lower() for p in re.findall(r'"([^"]+)"', query)]
    words = re.sub(r'"[^"]*"', " ", query).lower().split()
    return all(p in text for p in phrases) and all(re.search(rf"\b{re.escape(w)}\b", text) for w in words)


def install(server: FakePlatform) -> FakeHackerNews:
    """Register the search route on ``server`` and return the platform's state."""
    hn = FakeHackerNews(server)
    server.route("GET", SEARCH_PATH)(hn.search)
    return hn
