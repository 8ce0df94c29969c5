"""The X collector: the real tweepy client against a fake X API v2 on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from kulak.errors import ConfigError
from kulak.pipeline import CollectStats, collect
from listener.base import Batch, SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.registry import collector_registry
from listener.x import SearchCursor, brand_query, x_collector
from storage import repository as repo
from storage.db import Database
from tests.fakeplatform.core import FakePlatform, Reply, html_error_page, malformed_json
from tests.fakeplatform.x import SEARCH_PATH, TOKEN, FakeX, usage_capped

PAKETTO = Brand("Paketto", aliases=("Paketto Kargo",), handles=("@paketto",))
VANTRO = Brand("Vantro", handles=("@vantro",), competitor=True)
PAKETTO_QUERY = '("Paketto" OR "Paketto Kargo" OR @paketto) -is:retweet'
TOO_MANY_REQUESTS = {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429}


@pytest.fixture
def fake() -> Iterator[FakeX]:
    with FakePlatform() as platform:
        yield FakeX(platform)


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_spec(
    fake: FakeX, sleeps: list[float], *, brands: tuple[Brand, ...] = (PAKETTO,), **options: Any
) -> SourceSpec:
    table = {"base_url": fake.platform.url, "bearer_token_env": "KULAK_X_TOKEN", "page_size": 10, **options}
    env = {"KULAK_X_TOKEN": TOKEN}
    return SourceSpec("x", brands, table, env=env, sleep=sleeps.append, rng=random.Random(7))


def run(db: Database, fake: FakeX, sleeps: list[float], **options: Any) -> CollectStats:
    spec = make_spec(fake, sleeps, **options)
    return collect(db, x_collector(spec), BrandMatcher(spec.brands))


def batches_of(fake: FakeX, sleeps: list[float], **options: Any) -> list[Batch]:
    """Every batch of one run, straight from the collector (for checks that need no database)."""
    return list(x_collector(make_spec(fake, sleeps, **options)).collect({}))


def post_many(fake: FakeX, n: int, *, start_age: timedelta = timedelta(hours=1)) -> list[str]:
    """``n`` Paketto tweets, oldest first, a minute apart; their ids."""
    return [
        fake.post(f"Paketto Kargo lost my parcel #{i}", by=f"user{i % 4}", age=start_age + timedelta(minutes=n - i)).id
        for i in range(n)
    ]


def health_of(db: Database) -> repo.SourceHealth:
    with db.transaction() as s:
        return {h.source: h for h in repo.source_health(s)}["x"]


def stored(db: Database) -> int:
    with db.transaction() as s:
        return repo.count_mentions(s, source="x")


def cursor_of(db: Database, query: str = PAKETTO_QUERY) -> SearchCursor:
    with db.transaction() as s:
        return SearchCursor.parse(repo.get_cursor(s, "x", query))


@pytest.mark.parametrize(
    ("brand", "lang", "query"),
    [
        (PAKETTO, None, PAKETTO_QUERY),
        (Brand("Lumora Market", handles=("lumoraapp",)), "tr", '("Lumora Market" OR @lumoraapp) -is:retweet lang:tr'),
        (Brand('Say "hi"'), None, '("Say hi") -is:retweet'),
    ],
)
def test_x_query__quotes_names_keeps_handles_and_drops_retweets(brand: Brand, lang: str | None, query: str) -> None:
    assert brand_query(brand, lang=lang) == query


def test_x__mentions_carry_deep_link_author_reach_engagement_and_language(fake: FakeX, sleeps: list[float]) -> None:
    fake.user("kargocu", followers=1234)
    tweet = fake.post("@paketto nerede kargom?", by="kargocu", lang="tr", likes=3, retweets=2, replies=1, quotes=4)
    fake.post("Paketto 📦", by="kargocu", lang="qme")
    batches = batches_of(fake, sleeps)
    mention = next(m for b in batches for m in b.mentions if m.external_id == tweet.id)
    assert mention.url == f"https://x.com/kargocu/status/{tweet.id}"
    assert (mention.author, mention.followers, mention.engagement, mention.language) == ("kargocu", 1234, 10, "tr")
    assert mention.created_at == tweet.created_at and mention.platform == "x"
    assert [m.language for b in batches for m in b.mentions if m.external_id != tweet.id] == [None]
    (hit,) = fake.platform.hits(SEARCH_PATH)
    assert hit.headers["authorization"] == f"Bearer {TOKEN}"


def test_x__author_expansion_off__requests_no_includes_and_links_by_id(fake: FakeX, sleeps: list[float]) -> None:
    fake.user("kargocu", followers=1234)
    tweet = fake.post("Paketto again late", by="kargocu")
    (batch,) = x_collector(make_spec(fake, sleeps, expand_authors=False)).collect({})
    (hit,) = fake.platform.hits(SEARCH_PATH)
    assert "expansions" not in hit.query and "user.fields" not in hit.query
    (mention,) = batch.mentions
    assert mention.url == f"https://x.com/i/web/status/{tweet.id}"
    assert (mention.author, mention.followers) == (tweet.author_id, None)


def test_x__collects_every_page_and_stores_all(db: Database, fake: FakeX, sleeps: list[float]) -> None:
    ids = post_many(fake, 25)
    stats = run(db, fake, sleeps)
    assert (stats.error, stats.new, stored(db)) == (None, 25, 25)
    hits = fake.platform.hits(SEARCH_PATH)
    assert [h.arg("next_token") is not None for h in hits] == [False, True, True]
    assert cursor_of(db) == SearchCursor(since_id=ids[-1])
    assert health_of(db).last_success_at is not None


def test_x__rerun__collects_only_newer_tweets_and_never_duplicates(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    ids = post_many(fake, 12)
    run(db, fake, sleeps)
    newer = [fake.post(f"Paketto update {i}", age=timedelta(minutes=5 - i)).id for i in range(3)]
    stats = run(db, fake, sleeps)
    assert (stats.seen, stats.new, stored(db)) == (3, 3, 15)
    assert fake.platform.hits(SEARCH_PATH)[-1].arg("since_id") == ids[-1]
    assert cursor_of(db) == SearchCursor(since_id=newer[-1])
    assert run(db, fake, sleeps).new == 0


def test_x__page_budget_spent__next_run_resumes_older_pages_then_newer(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    ids = post_many(fake, 25)
    assert run(db, fake, sleeps, max_pages=1).new == 10
    pending = cursor_of(db)
    assert pending.since_id is None and pending.newest_id == ids[-1] and pending.next_token
    newest = fake.post("Paketto is fast today", age=timedelta(minutes=1)).id
    stats = run(db, fake, sleeps, max_pages=5)
    assert (stats.new, stored(db)) == (16, 26), "the older pages of run 1 are not skipped"
    assert cursor_of(db) == SearchCursor(since_id=newest)
    assert fake.platform.hits(SEARCH_PATH)[-1].arg("since_id") == ids[-1]


def test_x__one_cursor_per_brand_query(db: Database, fake: FakeX, sleeps: list[float]) -> None:
    paketto = fake.post("Paketto Kargo was quick").id
    vantro = fake.post("@vantro lost it again").id
    stats = run(db, fake, sleeps, brands=(PAKETTO, VANTRO))
    assert stats.new == 2
    vantro_query = '("Vantro" OR @vantro) -is:retweet'
    assert [h.arg("query") for h in fake.platform.hits(SEARCH_PATH)] == [PAKETTO_QUERY, vantro_query]
    with db.transaction() as s:
        cursors = repo.get_cursors(s, "x")
    assert {q: SearchCursor.parse(c).since_id for q, c in cursors.items()} == {
        PAKETTO_QUERY: paketto,
        vantro_query: vantro,
    }


def test_x__since_id_older_than_seven_days__falls_back_to_the_whole_window_once(
    db: Database, fake: FakeX, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    post_many(fake, 3)
    run(db, fake, sleeps)
    fake.now += timedelta(days=8)
    fresh = [fake.post(f"Paketto week two {i}").id for i in range(2)]
    with caplog.at_level(logging.WARNING, logger="listener.x"):
        stats = run(db, fake, sleeps)
    assert (stats.error, stats.new, stored(db)) == (None, 2, 5)
    assert [h.arg("since_id") is None for h in fake.platform.hits(SEARCH_PATH)[-2:]] == [False, True]
    (warning,) = [r for r in caplog.records if r.name == "listener.x"]
    assert "since_id" in warning.getMessage()
    assert cursor_of(db) == SearchCursor(since_id=max(fresh))


def test_x__429_with_reset_header__waits_until_reset_then_continues(fake: FakeX, sleeps: list[float]) -> None:
    post_many(fake, 5)
    reset = {"x-rate-limit-reset": str(int(time.time()) + 60), "x-rate-limit-remaining": "0"}
    fake.platform.fail(SEARCH_PATH, Reply(429, TOO_MANY_REQUESTS, reset))
    batches = batches_of(fake, sleeps)
    assert sum(len(b.mentions) for b in batches) == 5
    assert len(sleeps) == 1 and 55 <= sleeps[0] <= 61
    assert len(fake.platform.hits(SEARCH_PATH)) == 2


def test_x__429_without_reset__backs_off_with_jitter_then_gives_up(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    post_many(fake, 5)
    fake.platform.fail(SEARCH_PATH, Reply(429, TOO_MANY_REQUESTS), times=100)
    stats = run(db, fake, sleeps, max_retries=3)
    assert len(fake.platform.hits(SEARCH_PATH)) == 4
    assert len(sleeps) == 3 and all(0 <= s <= 2**i for i, s in enumerate(sleeps)) and len(set(sleeps)) == 3
    assert stats.error is not None and stats.error.startswith("RateLimited:")
    health = health_of(db)
    assert health.consecutive_failures == 1 and "rate-limiting" in (health.last_error or "")


def test_x__usage_capped__stops_at_once_without_retrying(db: Database, fake: FakeX, sleeps: list[float]) -> None:
    post_many(fake, 5)
    fake.platform.fail(SEARCH_PATH, usage_capped(), times=100)
    run(db, fake, sleeps, brands=(PAKETTO, VANTRO))
    assert len(fake.platform.hits(SEARCH_PATH)) == 1 and sleeps == []
    error = health_of(db).last_error or ""
    assert error.startswith("UsageCapped:") and "usage cap" in error


def test_x__5xx_burst_shorter_than_the_retry_budget__recovers(db: Database, fake: FakeX, sleeps: list[float]) -> None:
    post_many(fake, 15)
    fake.platform.fail(SEARCH_PATH, Reply(503, {"title": "Service Unavailable"}), times=2)
    stats = run(db, fake, sleeps, max_retries=3)
    assert (stats.error, stats.new, len(sleeps)) == (None, 15, 2)
    assert health_of(db).consecutive_failures == 0


def test_x__5xx_outage_longer_than_the_retry_budget__gives_up_after_bounded_requests(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    post_many(fake, 5)
    fake.platform.fail(SEARCH_PATH, Reply(503, {"title": "Service Unavailable"}), times=100)
    stats = run(db, fake, sleeps, max_retries=2, brands=(PAKETTO, VANTRO))
    assert len(fake.platform.hits(SEARCH_PATH)) == 3, "no second query after the source failed"
    assert stats.error is not None and "HTTP 503" in stats.error and "gave up after 3 attempts" in stats.error
    assert health_of(db).last_error == stats.error


def test_x__trickling_server__total_deadline_ends_the_run(db: Database, fake: FakeX, sleeps: list[float]) -> None:
    fake.post("Paketto slow")
    fake.platform.fail(SEARCH_PATH, Reply(200, {"meta": {"result_count": 0}}, trickle=0.05), times=10)
    started = time.monotonic()
    stats = run(db, fake, sleeps, timeout=0.5, max_retries=0)
    assert time.monotonic() - started < 3
    assert stats.error is not None and stats.error.startswith("SourceUnavailable:") and "more than 0.5s" in stats.error
    assert len(fake.platform.hits(SEARCH_PATH)) == 1 and stored(db) == 0
    assert (health_of(db).last_error or "").startswith("SourceUnavailable:")


@pytest.mark.parametrize(("reply", "said"), [(html_error_page(), "HTML page"), (malformed_json(), "malformed JSON")])
def test_x__non_json_answer_with_status_200__unavailable_and_earlier_pages_stay_stored(
    db: Database, fake: FakeX, sleeps: list[float], reply: Reply, said: str
) -> None:
    post_many(fake, 25)
    fake.fail_after(1, reply, times=2)
    stats = run(db, fake, sleeps, max_retries=1)
    assert stats.error is not None and stats.error.startswith("SourceUnavailable:") and said in stats.error
    assert stored(db) == 10 and health_of(db).consecutive_failures == 1
    assert run(db, fake, sleeps).new == 15, "the next run picks up the pages the failure cut off"
    assert stored(db) == 25


def test_x__repeating_next_token__ends_the_run(fake: FakeX, sleeps: list[float]) -> None:
    tweets = [fake.post(f"Paketto loop {i}") for i in range(2)]
    fake.platform.fail(SEARCH_PATH, Reply(200, fake.page(tweets, next_token="b26vSAME")), times=100)
    batches = batches_of(fake, sleeps, max_pages=50)
    assert len(fake.platform.hits(SEARCH_PATH)) == 2
    assert SearchCursor.parse(batches[-1].cursor) == SearchCursor(since_id=tweets[-1].id)


def test_x__empty_page_with_next_token__ends_the_run(fake: FakeX, sleeps: list[float]) -> None:
    empty = {"meta": {"result_count": 0, "next_token": "b26v999"}}
    fake.platform.fail(SEARCH_PATH, Reply(200, empty), times=100)
    batches = batches_of(fake, sleeps, max_pages=50)
    assert [len(b.mentions) for b in batches] == [0]
    assert len(fake.platform.hits(SEARCH_PATH)) == 1


def test_x__credentials_revoked_mid_run__auth_error_first_page_kept_no_retry(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    post_many(fake, 25)
    fake.revoke(after=1)
    stats = run(db, fake, sleeps)
    assert stats.error is not None and stats.error.startswith("AuthError:") and "KULAK_X_TOKEN" in stats.error
    assert TOKEN not in stats.error
    assert stored(db) == 10 and len(fake.platform.hits(SEARCH_PATH)) == 2 and sleeps == []


def test_x__access_withdrawn_mid_run_403__auth_error_first_page_kept_no_retry(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    post_many(fake, 25)
    forbidden = {
        "title": "Client Forbidden",
        "detail": "This request must be made using an approved developer account that is enrolled in the "
        "requested endpoint.",
        "reason": "client-not-enrolled",
        "type": "https://api.twitter.com/2/problems/client-forbidden",
    }
    fake.fail_after(1, Reply(403, forbidden), times=5)
    stats = run(db, fake, sleeps)
    assert stats.error is not None and stats.error.startswith("AuthError:") and "HTTP 403" in stats.error
    assert stored(db) == 10 and len(fake.platform.hits(SEARCH_PATH)) == 2 and sleeps == []


def test_x__token_variable_not_set__auth_error_names_it_and_nothing_is_sent(
    db: Database, fake: FakeX, sleeps: list[float]
) -> None:
    spec = make_spec(fake, sleeps)
    spec = SourceSpec(spec.name, spec.brands, spec.options, env={}, sleep=spec.sleep, rng=spec.rng)
    stats = collect(db, x_collector(spec), BrandMatcher(spec.brands))
    assert stats.error is not None and stats.error.startswith("AuthError:") and "KULAK_X_TOKEN" in stats.error
    assert fake.platform.hits("/") == []


def test_x__cursor_round_trips_and_tolerates_old_or_broken_values() -> None:
    pending = SearchCursor("5", "9", "b26v7")
    assert SearchCursor.parse(pending.dump()) == pending
    assert json.loads(pending.finished().dump()) == {"since_id": "9"}
    assert SearchCursor.parse("1234") == SearchCursor(since_id="1234")
    assert SearchCursor.parse("{not json") == SearchCursor()


@pytest.mark.parametrize("page_size", [5, 101, "lots"])
def test_x__page_size_outside_what_x_allows__is_a_config_error(page_size: object) -> None:
    spec = SourceSpec("x", (PAKETTO,), {"bearer_token_env": "KULAK_X_TOKEN", "page_size": page_size})
    with pytest.raises(ConfigError, match="page_size"):
        collector_registry()["x"].factory(spec)
