"""A fake X API v2: recent search with the real wire format, on a :class:`FakePlatform`.

State: users, tweets (ids are increasing integers as strings, like snowflakes), a clock ``now``
and the bearer tokens it accepts. Answers are newest first; ``next_token`` pages backwards by id,
so tweets posted between two pages never shift a page. Like X, it answers 400 for a ``since_id``
older than the 7-day window, 400 for ``max_results`` outside 10..100, and 401 for an unknown or
revoked bearer token.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.fakeplatform.core import FakePlatform, Reply, Request

SEARCH_PATH = "/2/tweets/search/recent"
WINDOW = timedelta(days=7)
TOKEN = "test-bearer-token"


@dataclass
class FakeUser:
    id: str
    username: str
    followers: int = 0

    def json(self, fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "name": self.username.title(), "username": self.username}
        if "public_metrics" in fields:
            out["public_metrics"] = {
                "followers_count": self.followers,
                "following_count": 10,
                "tweet_count": 100,
                "listed_count": 0,
                "like_count": 5,
            }
        return out


@dataclass
class FakeTweet:
    id: str
    text: str
    author_id: str
    created_at: datetime
    lang: str = "en"
    likes: int = 0
    retweets: int = 0
    replies: int = 0
    quotes: int = 0

    def json(self, fields: set[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text, "edit_history_tweet_ids": [self.id]}
        if "created_at" in fields:
            out["created_at"] = self.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")
        if "author_id" in fields:
            out["author_id"] = self.author_id
        if "lang" in fields:
            out["lang"] = self.lang
        if "public_metrics" in fields:
            out["public_metrics"] = {
                "retweet_count": self.retweets,
                "reply_count": self.replies,
                "like_count": self.likes,
                "quote_count": self.quotes,
                "bookmark_count": 0,
                "impression_count": 100,
            }
        return out


def _csv(value: str | None) -> set[str]:
    return {v for v in (value or "").split(",") if v}


def invalid_request(message: str, parameter: str, value: str) -> Reply:
    """X's 400 answer for a parameter it refuses (problem type invalid-request)."""
    return Reply(
        400,
        {
            "errors": [{"parameters": {parameter: [value]}, "message": message}],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
    )


def unauthorized() -> Reply:
    """X's answer to a bad or revoked bearer token."""
    return Reply(401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})


def usage_capped() -> Reply:
    """X's 429 when the account's monthly read cap is spent (not a rate limit)."""
    return Reply(
        429,
        {
            "title": "UsageCapExceeded",
            "detail": "Usage cap exceeded: Monthly product cap",
            "type": "https://api.x.com/2/problems/usage-capped",
            "period": "Monthly",
            "scope": "Product",
        },
    )


class FakeX:
    """X's recent search, registered on ``platform``. Add posts with :meth:`post` at any time."""

    def __init__(self, platform: FakePlatform, *, now: datetime | None = None) -> None:
        self.platform = platform
        self.now = now or datetime.now(UTC).replace(microsecond=0)
        self.tokens = {TOKEN}
        self.users: dict[str, FakeUser] = {}
        self.tweets: list[FakeTweet] = []
        self.searches = 0  # search requests that passed the auth check
        self._last_id = 1_000_000
        self._lock = threading.Lock()
        self._revocations: list[tuple[str, int]] = []
        self._scheduled: list[tuple[int, int, Reply]] = []
        platform.route("GET", re.escape(SEARCH_PATH))(self._search)

    # -- state ---------------------------------------------------------------------------------
    def user(self, username: str, *, followers: int = 0) -> FakeUser:
        """The user ``username``, created on first use."""
        for user in self.users.values():
            if user.username == username:
                return user
        user = FakeUser(str(len(self.users) + 1), username, followers)
        self.users[user.id] = user
        return user

    def post(self, text: str, *, by: str = "ayse", age: timedelta = timedelta(hours=1), **fields: Any) -> FakeTweet:
        """A new tweet with the next id, posted ``age`` before ``now``."""
        with self._lock:
            self._last_id += 1
            tweet = FakeTweet(str(self._last_id), text, self.user(by).id, self.now - age, **fields)
            self.tweets.append(tweet)
        return tweet

    def revoke(self, token: str = TOKEN, *, after: int = 0) -> None:
        """The token stops working after ``after`` more search requests."""
        self._revocations.append((token, self.searches + after))

    def fail_after(self, served: int, reply: Reply, *, times: int = 1) -> None:
        """After ``served`` more answered searches, the next ``times`` searches get ``reply``."""
        start = self.searches + served + 1
        self._scheduled.append((start, start + times, reply))

    # -- wire format ---------------------------------------------------------------------------
    def page(self, tweets: list[FakeTweet], *, next_token: str | None = None) -> dict[str, Any]:
        """A search answer for ``tweets`` as X sends it (all fields and the author expansion)."""
        fields = {"created_at", "author_id", "lang", "public_metrics"}
        meta: dict[str, Any] = {"result_count": len(tweets)}
        body: dict[str, Any] = {"meta": meta}
        if tweets:
            body["data"] = [t.json(fields) for t in tweets]
            body["includes"] = {"users": [self.users[t.author_id].json({"public_metrics"}) for t in tweets]}
            meta.update(newest_id=tweets[0].id, oldest_id=tweets[-1].id)
        if next_token:
            meta["next_token"] = next_token
        return body

    def _search(self, req: Request, match: re.Match[str]) -> Reply:
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.tokens:
            return unauthorized()
        self.searches += 1
        for revoked, after in self._revocations:
            if revoked == token and self.searches > after:
                self.tokens.discard(token)
                return unauthorized()
        for start, end, reply in self._scheduled:
            if start <= self.searches < end:
                return reply
        return self._answer(req)

    def _answer(self, req: Request) -> Reply:
        size = int(req.arg("max_results") or 10)
        if not 10 <= size <= 100:
            return invalid_request(
                f"The `max_results` query parameter value [{size}] is not between 10 and 100", "max_results", str(size)
            )
        oldest_allowed = self.now - WINDOW
        since_id = req.arg("since_id")
        if since_id and self._time_of(since_id) < oldest_allowed:
            return invalid_request(
                f"Invalid 'since_id':'{since_id}'. 'since_id' must be a tweet id created after "
                f"{oldest_allowed.strftime('%Y-%m-%dT%H:%MZ')}.",
                "since_id",
                since_id,
            )
        before: int | None = None
        if token := req.arg("next_token"):
            if not token.startswith("b26v") or not token[4:].isdigit():
                return invalid_request(f"Invalid 'next_token':'{token}'.", "next_token", token)
            before = int(token[4:])
        hits = [
            t
            for t in sorted(self.tweets, key=lambda t: int(t.id), reverse=True)
            if t.created_at >= oldest_allowed
            and (since_id is None or int(t.id) > int(since_id))
            and (before is None or int(t.id) < before)
            and self._matches(req.arg("query") or "", t)
        ]
        page, rest = hits[:size], hits[size:]
        return Reply(200, self._body(req, page, f"b26v{page[-1].id}" if rest else None))

    def _body(self, req: Request, page: list[FakeTweet], next_token: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"result_count": len(page)}
        body: dict[str, Any] = {"meta": meta}
        if page:
            body["data"] = [t.json(_csv(req.arg("tweet.fields"))) for t in page]
            meta.update(newest_id=page[0].id, oldest_id=page[-1].id)
            if "author_id" in _csv(req.arg("expansions")):
                authors = dict.fromkeys(t.author_id for t in page)
                fields = _csv(req.arg("user.fields"))
                body["includes"] = {"users": [self.users[a].json(fields) for a in authors]}
        if next_token:
            meta["next_token"] = next_token
        return body

    def _time_of(self, tweet_id: str) -> datetime:
        """When ``tweet_id`` was posted (a snowflake id encodes its time; here: the nearest older tweet)."""
        older = [t for t in self.tweets if int(t.id) <= int(tweet_id)]
        return max(older, key=lambda t: int(t.id)).created_at if older else self.now - 2 * WINDOW

    @staticmethod
    def _matches(query: str, tweet: FakeTweet) -> bool:
        """A small subset of X's query language: quoted phrases, @handles, -is:retweet, lang:xx."""
        text = tweet.text.casefold()
        if "-is:retweet" in query and text.startswith("rt @"):
            return False
        if (lang := re.search(r"\blang:(\w+)", query)) and tweet.lang != lang.group(1):
            return False
        terms = re.findall(r'"([^"]+)"|(@\w+)', query)
        return any((phrase or handle).casefold() in text for phrase, handle in terms)
