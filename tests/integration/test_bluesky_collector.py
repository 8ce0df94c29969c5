"""The Bluesky collector, with the real atproto client against a fake PDS/AppView on 127.0.0.1."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kulak.pipeline import CollectStats, collect
from listener.base import SourceSpec
from listener.bluesky import BlueskyCollector, bluesky_collector, stamp
from listener.brands import Brand, BrandMatcher
from storage import repository as repo
from storage.db import Database
from tests.collected import health_of
from tests.collected import stored_mentions as stored
from tests.fakeplatform.bluesky import SEARCH_PATH, SESSION_PATH, FakeBluesky
from tests.fakeplatform.core import FakePlatform, Reply, Request, html_error_page, malformed_json

BRANDS = (Brand("Paketto", aliases=("Paketto Express",)),)
PASSWORD_VAR = "KULAK_TEST_BLUESKY_APP_PASSWORD"


@pytest.fixture
def bsky() -> Iterator[FakeBluesky]:
    with FakePlatform() as platform:
        yield FakeBluesky(platform)


def make_collector(
    bsky: FakeBluesky, waits: list[float] | None = None, *, password: str | None = None, **options: Any
) -> BlueskyCollector:
    """The collector the registry builds, signed in to the fake as its account."""
    spec = SourceSpec(
        "bluesky",
        BRANDS,
        {
            "base_url": bsky.platform.url,
            "handle": bsky.handle,
            "app_password_env": PASSWORD_VAR,
            "timeout": 5,
            **options,
        },
        env={PASSWORD_VAR: bsky.app_password if password is None else password},
        sleep=(waits if waits is not None else []).append,
        rng=random.Random(0),
    )
    return bluesky_collector(spec)


def run(db: Database, collector: BlueskyCollector) -> CollectStats:
    return collect(db, collector, BrandMatcher(BRANDS))


def searches(bsky: FakeBluesky, q: str = "Paketto") -> list[Request]:
    return [h for h in bsky.platform.hits(SEARCH_PATH) if h.arg("q") == q]


def cursor(db: Database, query: str = "Paketto") -> str | None:
    with db.transaction() as s:
        return repo.get_cursor(s, "bluesky", query)


def health(db: Database) -> repo.SourceHealth:
    return health_of(db, "bluesky")


def test_bluesky__collects_posts_with_deep_links_authors_engagement_language(db: Database, bsky: FakeBluesky) -> None:
    first = bsky.post("Paketto lost my parcel", likes=3, reposts=2, replies=1, quotes=4)
    second = bsky.post("Paketto Express kargo rezalet", handle="bob.example.tr", langs=("tr", "en"))
    invalid = bsky.post("Paketto is fine", handle="handle.invalid", langs=())
    bsky.post("nothing about brands")

    stats = run(db, make_collector(bsky))

    assert stats.error is None and stats.new == 3
    got = stored(db)
    one = got[first["uri"]]
    assert one.url == f"https://bsky.app/profile/alice.bsky.social/post/{first['uri'].rsplit('/', 1)[1]}"
    assert (one.author, one.text, one.engagement, one.followers, one.language) == (
        "alice.bsky.social",
        "Paketto lost my parcel",
        10,
        None,
        "en",
    )
    assert stamp(one.created_at) == first["record"]["createdAt"] and one.created_at.tzinfo is not None
    assert got[second["uri"]].language == "tr", "the first of the post's languages"
    assert got[invalid["uri"]].url.startswith(f"https://bsky.app/profile/{invalid['author']['did']}/post/")
    assert got[invalid["uri"]].language is None


def test_bluesky__rerun_searches_since_the_cursor_and_never_duplicates(db: Database, bsky: FakeBluesky) -> None:
    for n in range(3):
        bsky.post(f"Paketto delivery {n}")
    assert run(db, make_collector(bsky)).new == 3
    newest = bsky.posts[-1]["record"]["createdAt"]
    assert cursor(db) == newest

    bsky.post("Paketto again")
    second = run(db, make_collector(bsky))

    assert (second.error, second.new) == (None, 1)
    assert searches(bsky)[-1].arg("since") == newest, "the rerun only asks for posts since the cursor"
    assert len(stored(db)) == 4
    assert cursor(db) == bsky.posts[-1]["record"]["createdAt"]


def test_bluesky__pages_stop_at_max_pages_and_the_next_run_finishes_the_pass(db: Database, bsky: FakeBluesky) -> None:
    for n in range(250):
        bsky.post(f"Paketto {n}")

    first = run(db, make_collector(bsky, max_pages=2))
    assert first.new == 200 and len(searches(bsky)) == 2, "2 pages of 100, newest first"
    pending = json.loads(cursor(db) or "{}")
    assert pending["newest"] == bsky.posts[-1]["record"]["createdAt"] and "until" in pending

    second = run(db, make_collector(bsky, max_pages=2))
    assert second.new == 50, "the unfinished pass goes on below where the first run stopped"
    assert searches(bsky)[2].arg("until") == pending["until"]
    assert cursor(db) == bsky.posts[-1]["record"]["createdAt"], "the pass is done: since moves to its newest post"
    assert len(stored(db)) == 250


def test_bluesky__429_with_reset_header__waits_until_reset_then_continues(db: Database, bsky: FakeBluesky) -> None:
    bsky.post("Paketto is fast")
    reset = int(time.time()) + 30
    headers = {"ratelimit-limit": "3000", "ratelimit-remaining": "0", "ratelimit-reset": str(reset)}
    bsky.platform.fail(
        SEARCH_PATH, Reply(429, {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"}, headers)
    )
    waits: list[float] = []

    stats = run(db, make_collector(bsky, waits))

    assert stats.error is None and stats.new == 1
    (wait,) = waits
    assert 28 <= wait <= 30, "waits until the ratelimit-reset time"


def test_bluesky__5xx_burst__bounded_retries_then_error_in_health(db: Database, bsky: FakeBluesky) -> None:
    bsky.post("Paketto")
    bsky.platform.fail(SEARCH_PATH, Reply(503, {"error": "InternalServerError"}), times=50)
    waits: list[float] = []

    stats = run(db, make_collector(bsky, waits, max_retries=2))

    assert stats.error is not None and stats.error.startswith("SourceUnavailable")
    assert "HTTP 503" in stats.error and "gave up after 3 attempts" in stats.error
    assert len(searches(bsky)) == 3 and len(waits) == 2
    assert health(db).consecutive_failures == 1


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (html_error_page(), "not its API"),
        (malformed_json(), "not its API"),
        (Reply(drop=True), "could not be reached"),
        (Reply(200, {"posts": [], "padding": "x" * 200}, trickle=0.02), "timed out"),
    ],
    ids=["html-200", "malformed-json", "dropped-connection", "trickle"],
)
def test_bluesky__broken_answers__are_source_unavailable(
    db: Database, bsky: FakeBluesky, reply: Reply, says: str
) -> None:
    bsky.post("Paketto")
    bsky.platform.fail(SEARCH_PATH, reply, times=10)
    started = time.monotonic()

    stats = run(db, make_collector(bsky, max_retries=0, timeout=0.5))

    assert stats.error is not None and stats.error.startswith("SourceUnavailable") and says in stats.error
    assert time.monotonic() - started < 3, "a trickling server is cut off at the deadline"
    assert health(db).consecutive_failures == 1


def test_bluesky__wrong_app_password__auth_error_in_health_without_the_secret(db: Database, bsky: FakeBluesky) -> None:
    waits: list[float] = []

    stats = run(db, make_collector(bsky, waits, password="wrong-pass-word-1234"))

    assert stats.error is not None and stats.error.startswith("AuthError")
    assert "Invalid identifier or password" in stats.error and "app_password_env" in stats.error
    assert "wrong-pass-word-1234" not in stats.error
    assert waits == [] and len(bsky.platform.hits(SESSION_PATH)) == 1, "a wrong password is not retried"
    assert bsky.platform.hits(SEARCH_PATH) == []
    assert "AuthError" in (health(db).last_error or "")


def test_bluesky__session_revoked_mid_run__earlier_pages_kept_and_next_run_signs_in_again(
    db: Database, bsky: FakeBluesky
) -> None:
    for n in range(150):
        bsky.post(f"Paketto {n}")
    bsky.revoke_after = 1
    collector = make_collector(bsky)

    first = run(db, collector)

    assert first.error is not None and first.error.startswith("AuthError")
    assert len(stored(db)) == 100, "the page read before the session was revoked is kept"
    bsky.revoke_after = None
    second = run(db, collector)
    assert second.error is None and second.new == 50
    assert len(bsky.platform.hits(SESSION_PATH)) == 2
    assert health(db).consecutive_failures == 0
