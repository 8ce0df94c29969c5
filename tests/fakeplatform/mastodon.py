"""A fake Mastodon instance: instance info, hashtag timelines and v2 search, in Mastodon's wire format.

Statuses live in :attr:`FakeMastodon.statuses` (add more with :meth:`FakeMastodon.post` between runs).
Timelines page like Mastodon's: newest first, ``max_id``/``since_id``/``min_id`` exclusive bounds,
``limit`` up to 40, and a ``Link`` header with ``rel="next"`` (``max_id``) and ``rel="prev"``
(``min_id``). Every answer carries ``X-RateLimit-*`` headers like a real instance.
"""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

from tests.fakeplatform.core import FakePlatform, Reply, Request

SearchMode = Literal["full", "off", "missing"]

FIRST_ID = 113_000_000_000_000_000
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def iso(when: datetime) -> str:
    """Mastodon's timestamp format: ``2026-11-02T09:00:00.000Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def strip_tags(content: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", content))


class FakeMastodon:
    """Routes and state of one instance on ``platform``.

    ``search``: ``"full"`` (full-text search of statuses, for authenticated requests), ``"off"``
    (an instance without Elasticsearch: no statuses for free text) or ``"missing"`` (404, as from
    a server that has no v2 search). ``tokens`` are the valid access tokens.
    """

    def __init__(
        self,
        platform: FakePlatform,
        *,
        domain: str = "mastodon.example",
        search: SearchMode = "full",
        tokens: tuple[str, ...] = ("good-token",),
    ) -> None:
        self.platform = platform
        self.domain = domain
        self.search = search
        self.tokens = set(tokens)
        self.statuses: list[dict[str, Any]] = []
        self.revoke_after: dict[str, int] = {}
        platform.route("GET", r"/api/v1/instance/?")(self._instance_v1)
        platform.route("GET", r"/api/v2/instance/?")(self._instance_v2)
        platform.route("GET", r"/api/v1/timelines/tag/(?P<tag>[^/]+)")(self._tag_timeline)
        platform.route("GET", r"/api/v2/search")(self._search)

    # -- state -------------------------------------------------------------------------------------
    def post(
        self,
        text: str,
        *,
        tags: tuple[str, ...] = (),
        user: str = "alice",
        domain: str | None = None,
        followers: int = 10,
        language: str | None = "en",
        favourites: int = 0,
        reblogs: int = 0,
        replies: int = 0,
        spoiler: str = "",
        html_content: str | None = None,
    ) -> dict[str, Any]:
        """Add a public status (``text`` becomes a ``<p>``, hashtags are appended as links)."""
        number = len(self.statuses)
        status_id = str(FIRST_ID + number)
        home = domain or self.domain
        links = " ".join(
            f'<a href="https://{self.domain}/tags/{t}" class="mention hashtag" rel="tag">#<span>{t}</span></a>'
            for t in tags
        )
        content = html_content or f"<p>{html.escape(text)}{' ' + links if links else ''}</p>"
        status = {
            "id": status_id,
            "created_at": iso(START + timedelta(minutes=number)),
            "in_reply_to_id": None,
            "in_reply_to_account_id": None,
            "sensitive": bool(spoiler),
            "spoiler_text": spoiler,
            "visibility": "public",
            "language": language,
            "uri": f"https://{home}/users/{user}/statuses/{status_id}",
            "url": f"https://{home}/@{user}/{status_id}",
            "replies_count": replies,
            "reblogs_count": reblogs,
            "favourites_count": favourites,
            "edited_at": None,
            "content": content,
            "reblog": None,
            "account": {
                "id": str(1000 + abs(hash((user, home))) % 100000),
                "username": user,
                "acct": user if home == self.domain else f"{user}@{home}",
                "display_name": user.title(),
                "url": f"https://{home}/@{user}",
                "followers_count": followers,
                "following_count": 1,
                "statuses_count": 1,
                "created_at": iso(START - timedelta(days=100)),
            },
            "media_attachments": [],
            "mentions": [],
            "tags": [{"name": t.lower(), "url": f"https://{self.domain}/tags/{t.lower()}"} for t in tags],
            "emojis": [],
            "card": None,
            "poll": None,
        }
        self.statuses.append(status)
        return status

    # -- helpers -----------------------------------------------------------------------------------
    def _auth(self, req: Request) -> Reply | None:
        """None when the request may go on; a 401 for an unknown or revoked token."""
        header = req.headers.get("authorization", "")
        if not header:
            return None
        token = header.removeprefix("Bearer ").strip()
        if token in self.revoke_after:
            if self.revoke_after[token] <= 0:
                self.tokens.discard(token)
            self.revoke_after[token] -= 1
        if token not in self.tokens:
            return Reply(401, {"error": "The access token was revoked"}, self._ratelimit_headers())
        return None

    @staticmethod
    def _ratelimit_headers() -> dict[str, str]:
        reset = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
        return {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "299", "X-RateLimit-Reset": iso(reset)}

    @staticmethod
    def _page(statuses: list[dict[str, Any]], req: Request, *, default: int = 20) -> list[dict[str, Any]]:
        """Mastodon's id pagination: newest first; ``min_id`` returns the oldest page above it."""
        limit = min(int(req.arg("limit") or default), 40)
        max_id, since_id, min_id = (req.arg(k) for k in ("max_id", "since_id", "min_id"))
        chosen = sorted(statuses, key=lambda s: int(s["id"]))
        if max_id:
            chosen = [s for s in chosen if int(s["id"]) < int(max_id)]
        if since_id:
            chosen = [s for s in chosen if int(s["id"]) > int(since_id)]
        # min_id: the oldest page above it; otherwise the newest page
        chosen = [s for s in chosen if int(s["id"]) > int(min_id)][:limit] if min_id else chosen[-limit:]
        return list(reversed(chosen))

    # -- routes ------------------------------------------------------------------------------------
    def _instance_v1(self, req: Request, m: re.Match[str]) -> Reply:
        return Reply(200, {"uri": self.domain, "title": "Fake", "version": "4.3.2", "languages": ["en"]})

    def _instance_v2(self, req: Request, m: re.Match[str]) -> Reply:
        return Reply(
            200,
            {
                "domain": self.domain,
                "title": "Fake",
                "version": "4.3.2",
                "api_versions": {"mastodon": 2},
                "configuration": {"statuses": {"max_characters": 500}},
            },
        )

    def _tag_timeline(self, req: Request, m: re.Match[str]) -> Reply:
        if denied := self._auth(req):
            return denied
        tag = m["tag"].lower()
        tagged = [s for s in self.statuses if any(t["name"] == tag for t in s["tags"])]
        page = self._page(tagged, req)
        headers = self._ratelimit_headers()
        if page:
            base = f"http://{req.headers.get('host', '127.0.0.1')}{req.path}"
            extra = {"limit": req.arg("limit")} if req.arg("limit") else {}
            older = urlencode({**extra, "max_id": page[-1]["id"]})
            newer = urlencode({**extra, "min_id": page[0]["id"]})
            headers["Link"] = f'<{base}?{older}>; rel="next", <{base}?{newer}>; rel="prev"'
        return Reply(200, page, headers)

    def _search(self, req: Request, m: re.Match[str]) -> Reply:
        if self.search == "missing":
            return Reply(404, "<!DOCTYPE html><html><body>The page you are looking for isn't here.</body></html>")
        if denied := self._auth(req):
            return denied
        signed_in = bool(req.headers.get("authorization"))
        if not signed_in and (req.arg("offset") or req.arg("resolve") in ("1", "true")):
            return Reply(401, {"error": "Search queries pagination is not supported without authentication"})
        q = (req.arg("q") or "").strip().strip('"').lower()
        found: list[dict[str, Any]] = []
        if self.search == "full" and signed_in and req.arg("type") in (None, "statuses"):
            found = [s for s in self.statuses if q in strip_tags(s["content"]).lower()]
        min_id, max_id = req.arg("min_id"), req.arg("max_id")
        found = sorted(found, key=lambda s: int(s["id"]), reverse=True)
        found = [s for s in found if (not min_id or int(s["id"]) > int(min_id))]
        found = [s for s in found if (not max_id or int(s["id"]) < int(max_id))]
        offset, limit = int(req.arg("offset") or 0), min(int(req.arg("limit") or 20), 40)
        page = found[offset : offset + limit]
        return Reply(200, {"accounts": [], "statuses": page, "hashtags": []}, self._ratelimit_headers())
