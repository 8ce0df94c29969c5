"""A fake Bluesky PDS/AppView: app-password sessions and post search, in the XRPC wire format.

Posts live in :attr:`FakeBluesky.posts` (add more with :meth:`FakeBluesky.post` between runs).
``app.bsky.feed.searchPosts`` answers like Bluesky's: ``sort=latest`` newest first by ``sortAt``
(the earlier of ``indexedAt`` and ``createdAt``), ``since`` inclusive, ``until`` exclusive, an opaque
``cursor`` while more results remain, ``limit`` up to 100. Sessions are JWTs with a real-looking
payload (atproto reads ``exp`` from them to decide when to refresh).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakeplatform.core import FakePlatform, Reply, Request

XRPC = "/xrpc"
SEARCH_PATH = f"{XRPC}/app.bsky.feed.searchPosts"
SESSION_PATH = f"{XRPC}/com.atproto.server.createSession"


def iso(when: datetime) -> str:
    """Bluesky's timestamp format: ``2026-11-02T09:00:00.000Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(did: str, *, scope: str, lifetime: timedelta) -> str:
    """An unsigned-looking JWT whose payload atproto can read (``exp``, ``sub``, ``scope``)."""
    now = int(time.time())
    header = {"typ": "at+jwt", "alg": "ES256K"}
    payload = {
        "scope": scope,
        "sub": did,
        "iat": now,
        "exp": now + int(lifetime.total_seconds()),
        "jti": secrets.token_hex(8),
    }
    return f"{_b64(header)}.{_b64(payload)}.{base64.urlsafe_b64encode(b'fake-signature').rstrip(b'=').decode()}"


class FakeBluesky:
    """Routes and state on ``platform``: one account (``handle``/``app_password``) may sign in."""

    def __init__(
        self, platform: FakePlatform, *, handle: str = "kulak.example.com", app_password: str = "abcd-efgh-ijkl-mnop"
    ) -> None:
        self.platform = platform
        self.handle = handle
        self.app_password = app_password
        self.did = "did:plc:kulakfakeaccount000000"
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.posts: list[dict[str, Any]] = []
        self.start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
        self.revoke_after: int | None = None  # searches allowed before every session is revoked
        platform.route("POST", rf"{XRPC}/com\.atproto\.server\.createSession")(self._create_session)
        platform.route("POST", rf"{XRPC}/com\.atproto\.server\.refreshSession")(self._refresh_session)
        platform.route("GET", rf"{XRPC}/app\.bsky\.feed\.searchPosts")(self._search)

    # -- state -------------------------------------------------------------------------------------
    def post(
        self,
        text: str,
        *,
        handle: str = "alice.bsky.social",
        langs: tuple[str, ...] = ("en",),
        likes: int = 0,
        reposts: int = 0,
        replies: int = 0,
        quotes: int = 0,
        created_at: datetime | None = None,
        indexed_late: timedelta = timedelta(seconds=2),
    ) -> dict[str, Any]:
        """Add a post; by default each is a second after the previous one, starting 3 hours ago."""
        number = len(self.posts)
        created = created_at or self.start + timedelta(seconds=number)
        did = f"did:plc:{re.sub(r'[^a-z0-9]', '', handle)[:20]:0<24}"
        rkey = f"3l{number:011d}k2"
        post = {
            "uri": f"at://{did}/app.bsky.feed.post/{rkey}",
            "cid": f"bafyreig{number:052d}",
            "author": {"did": did, "handle": handle, "displayName": handle.split(".")[0].title(), "labels": []},
            "record": {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(created), "langs": list(langs)},
            "replyCount": replies,
            "repostCount": reposts,
            "likeCount": likes,
            "quoteCount": quotes,
            "indexedAt": iso(created + indexed_late),
            "labels": [],
        }
        self.posts.append(post)
        return post

    @staticmethod
    def sort_at(post: dict[str, Any]) -> datetime:
        return min(parse(post["indexedAt"]), parse(post["record"]["createdAt"]))

    # -- helpers -----------------------------------------------------------------------------------
    def _issue(self) -> dict[str, Any]:
        access = jwt(self.did, scope="com.atproto.appPass", lifetime=timedelta(hours=2))
        refresh = jwt(self.did, scope="com.atproto.refresh", lifetime=timedelta(days=60))
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {"accessJwt": access, "refreshJwt": refresh, "handle": self.handle, "did": self.did, "active": True}

    @staticmethod
    def _bearer(req: Request) -> str:
        return req.headers.get("authorization", "").removeprefix("Bearer ").strip()

    @staticmethod
    def _error(status: int, error: str, message: str) -> Reply:
        return Reply(status, {"error": error, "message": message})

    # -- routes ------------------------------------------------------------------------------------
    def _create_session(self, req: Request, m: re.Match[str]) -> Reply:
        body = req.json() or {}
        if body.get("identifier") not in (self.handle, self.did) or body.get("password") != self.app_password:
            return self._error(401, "AuthenticationRequired", "Invalid identifier or password")
        return Reply(200, self._issue())

    def _refresh_session(self, req: Request, m: re.Match[str]) -> Reply:
        token = self._bearer(req)
        if token not in self.refresh_tokens:
            return self._error(400, "ExpiredToken", "Token has been revoked")
        self.refresh_tokens.discard(token)
        return Reply(200, self._issue())

    def _search(self, req: Request, m: re.Match[str]) -> Reply:
        if self.revoke_after is not None:
            if self.revoke_after <= 0:
                self.access_tokens.clear()
            self.revoke_after -= 1
        if self._bearer(req) not in self.access_tokens:
            return self._error(401, "AuthenticationRequired", "Token could not be verified")
        q = (req.arg("q") or "").strip()
        if not q:
            return self._error(400, "InvalidRequest", 'Error: Params must have the property "q"')
        phrase = q.strip('"').lower()
        found = [p for p in self.posts if phrase in p["record"]["text"].lower()]
        if since := req.arg("since"):
            found = [p for p in found if self.sort_at(p) >= parse(since)]
        if until := req.arg("until"):
            found = [p for p in found if self.sort_at(p) < parse(until)]
        found.sort(key=self.sort_at, reverse=True)
        offset, limit = int(req.arg("cursor") or 0), min(int(req.arg("limit") or 25), 100)
        page = found[offset : offset + limit]
        body: dict[str, Any] = {"posts": page, "hitsTotal": len(found)}
        if offset + limit < len(found):
            body["cursor"] = str(offset + limit)
        return Reply(200, body)
