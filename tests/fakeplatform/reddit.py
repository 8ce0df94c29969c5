"""A fake Reddit: app-only OAuth, site-wide search and subreddit listings, in Reddit's wire format.

What praw 8 / prawcore 4 request, pointed at this server with ``oauth_url = reddit_url = url``:

- ``POST /api/v1/access_token`` with HTTP basic auth (client id and secret) and
  ``grant_type=client_credentials``; answers a bearer token (``expires_in`` one day).
- ``GET /r/all/search/?q=…&sort=new&t=day&syntax=lucene&restrict_sr=False&limit=…&raw_json=1``
- ``GET /r/<sub>/new?limit=…&raw_json=1`` and ``GET /r/<sub>/comments/?limit=…&raw_json=1``

Listings are newest first, at most 100 children a page, and page with ``after`` (the fullname of
the last child). Every API answer carries ``x-ratelimit-*`` headers like Reddit's; by default they
leave plenty of quota, so prawcore's pacing asks for no wait. A revoked app gets 401 with
``www-authenticate: Bearer realm="reddit", error="invalid_token"`` on the API and 401 on the token
endpoint, as Reddit answers.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from tests.fakeplatform.core import FakePlatform, Reply, Request

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC).timestamp()
PAGE_MAX = 100
TIME_FILTERS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 31 * 86400, "year": 366 * 86400}
UNAUTHORIZED = {"message": "Unauthorized", "error": 401}


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def search_terms(q: str) -> list[str]:
    """The alternatives of a Reddit query like ``"Paketto" OR "Paketto Kargo" OR kargo``."""
    return [t.strip().strip('"').casefold() for t in re.split(r"\s+OR\s+", q) if t.strip().strip('"')]


class FakeReddit:
    """Routes and state of the fake Reddit on ``platform``.

    ``submissions`` and ``comments`` are Reddit's ``data`` objects; add more between runs with
    :meth:`submit` and :meth:`comment`. ``now`` is the server's clock (epoch seconds) for ``t=day``.
    ``ratelimit_remaining`` overrides the ``x-ratelimit-remaining`` header (e.g. ``0`` when the
    quota is used up). :meth:`revoke` withdraws the app: its tokens stop working and no new ones
    are issued; ``revoke_after`` does it after that many API answers (mid-run). A subreddit not in
    ``subreddits`` is answered like Reddit answers a missing one: 302 to the subreddit search; one
    in ``private_subreddits`` gets Reddit's 403 with ``"reason": "private"``.
    """

    def __init__(
        self, platform: FakePlatform, *, client_id: str = "kulak-app", client_secret: str = "s3cret-app-key"
    ) -> None:
        self.platform = platform
        self.client_id = client_id
        self.client_secret = client_secret
        self.tokens: set[str] = set()
        self.revoked = False
        self.now = NOW
        self.submissions: list[dict[str, Any]] = []
        self.comments: list[dict[str, Any]] = []
        self.ratelimit_remaining: float | None = None
        self.ratelimit_reset = 300
        self.used = 0
        self.revoke_after: int | None = None
        self.subreddits = {"Turkey", "istanbul", "europe"}
        self.private_subreddits: set[str] = set()
        self._next_id = 1_000_000
        platform.route("POST", r"/api/v1/access_token/?")(self._access_token)
        platform.route("GET", r"/r/all/search/?(?:\.json)?")(self._search)
        platform.route("GET", r"/r/(?P<sub>\w+)/new/?(?:\.json)?")(self._new)
        platform.route("GET", r"/r/(?P<sub>\w+)/comments/?(?:\.json)?")(self._comments)

    # -- state -------------------------------------------------------------------------------------
    def _new_id(self) -> str:
        self._next_id += 1
        return _base36(self._next_id)

    def submit(
        self,
        title: str,
        *,
        selftext: str = "",
        subreddit: str = "Turkey",
        author: str = "deniz_k",
        minutes_ago: float = 10,
        score: int = 1,
        num_comments: int = 0,
    ) -> dict[str, Any]:
        """Add a self post ``minutes_ago`` before :attr:`now`; returns its data (``name`` is the fullname)."""
        post_id = self._new_id()
        slug = re.sub(r"\W+", "_", title.casefold()).strip("_")[:50]
        permalink = f"/r/{subreddit}/comments/{post_id}/{slug}/"
        created = self.now - minutes_ago * 60
        data = {
            "id": post_id,
            "name": f"t3_{post_id}",
            "title": title,
            "selftext": selftext,
            "author": author,
            "author_fullname": f"t2_{abs(hash(author)) % 10**8:x}",
            "subreddit": subreddit,
            "subreddit_name_prefixed": f"r/{subreddit}",
            "subreddit_id": "t5_2qh1k",
            "created_utc": created,
            "created": created,
            "permalink": permalink,
            "url": f"https://www.reddit.com{permalink}",
            "is_self": True,
            "over_18": False,
            "score": score,
            "ups": score,
            "downs": 0,
            "upvote_ratio": 1.0,
            "num_comments": num_comments,
            "link_flair_text": None,
            "stickied": False,
        }
        self.submissions.append(data)
        return data

    def comment(
        self,
        body: str,
        *,
        on: dict[str, Any] | None = None,
        subreddit: str = "Turkey",
        author: str = "ayse_y",
        minutes_ago: float = 5,
        score: int = 1,
    ) -> dict[str, Any]:
        """Add a comment on submission ``on`` (a new one in ``subreddit`` when omitted)."""
        link = on or self.submit("Daily chat thread", subreddit=subreddit, minutes_ago=minutes_ago + 60)
        comment_id = self._new_id()
        created = self.now - minutes_ago * 60
        data = {
            "id": comment_id,
            "name": f"t1_{comment_id}",
            "body": body,
            "author": author,
            "subreddit": link["subreddit"],
            "subreddit_name_prefixed": f"r/{link['subreddit']}",
            "subreddit_id": "t5_2qh1k",
            "link_id": link["name"],
            "parent_id": link["name"],
            "link_title": link["title"],
            "link_author": link["author"],
            "link_permalink": link["url"],
            "created_utc": created,
            "created": created,
            "permalink": f"{link['permalink']}{comment_id}/",
            "score": score,
            "ups": score,
            "downs": 0,
            "controversiality": 0,
            "depth": 0,
            "stickied": False,
        }
        self.comments.append(data)
        return data

    def revoke(self) -> None:
        """Withdraw the app: existing tokens are refused and no new ones are issued."""
        self.revoked = True
        self.tokens.clear()

    # -- wire format -------------------------------------------------------------------------------
    def ratelimit_headers(self) -> dict[str, str]:
        """Reddit's quota headers: requests used and remaining in this window, seconds to its reset."""
        remaining = self.ratelimit_remaining if self.ratelimit_remaining is not None else 1000.0 - self.used
        return {
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-remaining": f"{max(remaining, 0.0):.1f}",
            "x-ratelimit-reset": str(self.ratelimit_reset),
        }

    def _access_token(self, req: Request, _: re.Match[str]) -> Reply:
        # prawcore asks for "Connection: close" here; saying so in the answer keeps the client from
        # reusing a connection the server is closing (a race that surfaces as RemoteDisconnected).
        close = {"Connection": "close"}
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if self.revoked or req.headers.get("authorization") != f"Basic {expected}":
            return Reply(401, UNAUTHORIZED, close)
        if req.form().get("grant_type") != ["client_credentials"]:
            return Reply(200, {"error": "unsupported_grant_type"}, close)
        token = "fake-" + secrets.token_hex(8)
        self.tokens.add(token)
        return Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": 86400, "scope": "*"}, close)

    def _authorized(self, req: Request) -> Reply | None:
        auth = req.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or auth[7:] not in self.tokens:
            headers = {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'}
            return Reply(401, UNAUTHORIZED, headers)
        self.used += 1
        if self.revoke_after is not None and self.used >= self.revoke_after:
            self.revoke()
        return None

    def _missing(self, sub: str) -> Reply | None:
        if sub.casefold() in {s.casefold() for s in self.private_subreddits}:
            return Reply(403, {"reason": "private", "message": "Forbidden", "error": 403}, self.ratelimit_headers())
        if sub.casefold() in {s.casefold() for s in self.subreddits}:
            return None
        location = f"https://www.reddit.com/subreddits/search.json?q={sub}"
        return Reply(302, b"", {"Location": location, **self.ratelimit_headers()})

    def _listing(self, req: Request, kind: str, items: list[dict[str, Any]]) -> Reply:
        items = sorted(items, key=lambda d: d["created_utc"], reverse=True)
        if after := req.arg("after"):
            names = [d["name"] for d in items]
            items = items[names.index(after) + 1 :] if after in names else []
        limit = min(int(req.arg("limit") or 25), PAGE_MAX)
        page = items[:limit]
        body = {
            "kind": "Listing",
            "data": {
                "after": page[-1]["name"] if len(items) > limit else None,
                "dist": len(page),
                "modhash": None,
                "geo_filter": "",
                "children": [{"kind": kind, "data": d} for d in page],
                "before": None,
            },
        }
        return Reply(200, body, self.ratelimit_headers())

    def _search(self, req: Request, _: re.Match[str]) -> Reply:
        if refused := self._authorized(req):
            return refused
        terms = search_terms(req.arg("q") or "")
        window = TIME_FILTERS.get(req.arg("t") or "all")
        found = [
            d
            for d in self.submissions
            if any(t in f"{d['title']}\n{d['selftext']}".casefold() for t in terms)
            and (window is None or d["created_utc"] >= self.now - window)
        ]
        return self._listing(req, "t3", found)

    def _new(self, req: Request, m: re.Match[str]) -> Reply:
        if refused := self._authorized(req) or self._missing(m["sub"]):
            return refused
        sub = m["sub"].casefold()
        return self._listing(req, "t3", [d for d in self.submissions if d["subreddit"].casefold() == sub])

    def _comments(self, req: Request, m: re.Match[str]) -> Reply:
        if refused := self._authorized(req) or self._missing(m["sub"]):
            return refused
        sub = m["sub"].casefold()
        return self._listing(req, "t1", [d for d in self.comments if d["subreddit"].casefold() == sub])
