"""The Reddit collector: real praw/prawcore against a fake Reddit on 127.0.0.1, through the pipeline."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kulak.errors import ConfigError
from kulak.pipeline import CollectStats, collect
from listener.base import SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.reddit import RedditCollector, brand_query, reddit_collector
from storage import repository as repo
from storage.db import Database
from tests.collected import health_of
from tests.collected import stored_mentions as stored
from tests.fakeplatform.core import FakePlatform, Reply, html_error_page
from tests.fakeplatform.reddit import FakeReddit

BRANDS = (Brand("Paketto", ("Paketto Kargo",), ("pakettotr",)), Brand("Kargonet"))
ENV = {"REDDIT_CLIENT_ID": "kulak-app", "REDDIT_CLIENT_SECRET": "s3cret-app-key"}
SEARCH = "/r/all/search"
PAKETTO_SEARCH = 'search:"Paketto" OR "Paketto Kargo"'


@pytest.fixture(autouse=True)
def no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """prawcore's pacing and retries must wait through the policy's ``sleep``, never ``time.sleep``."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"time.sleep({seconds}) called during a Reddit collection")

    monkeypatch.setattr(time, "sleep", refuse)


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform() as server:
        yield server


@pytest.fixture
def fake(platform: FakePlatform) -> FakeReddit:
    return FakeReddit(platform)


@pytest.fixture
def waits() -> list[float]:
    return []


def reddit(platform: FakePlatform, waits: list[float], env: dict[str, str] = ENV, **options: Any) -> RedditCollector:
    table = {
        "base_url": platform.url,
        "client_id_env": "REDDIT_CLIENT_ID",
        "client_secret_env": "REDDIT_CLIENT_SECRET",
        "subreddits": ["Turkey"],
        **options,
    }
    spec = SourceSpec("reddit", BRANDS, table, env=env, sleep=waits.append, rng=random.Random(7))
    return reddit_collector(spec)


def run(db: Database, collector: RedditCollector) -> CollectStats:
    return collect(db, collector, BrandMatcher(BRANDS))


def health(db: Database) -> repo.SourceHealth:
    return health_of(db, "reddit")


def cursors(db: Database) -> dict[str, str]:
    with db.transaction() as s:
        return repo.get_cursors(s, "reddit")


def test_brand_query__quotes_names_and_aliases_and_leaves_handles_out() -> None:
    assert brand_query(BRANDS[0]) == '"Paketto" OR "Paketto Kargo"'
    assert brand_query(Brand('Ka"rgo  Net')) == '"Ka rgo Net"'


def test_reddit__search_and_subreddit_listings__stores_posts_and_comments_with_deep_links(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    post = fake.submit("Paketto lost my parcel", selftext="third time", subreddit="istanbul", score=12, num_comments=4)
    local = fake.submit("Kargonet vs Paketto Kargo?", subreddit="Turkey", author="mert", minutes_ago=90, score=3)
    reply = fake.comment("Paketto Kargo delivered on a Sunday, nice", on=local, author="zeynep", score=5)
    fake.comment("the ferry was late again", on=local)

    stats = run(db, reddit(platform, waits))

    assert stats.error is None and stats.new == 3
    mentions = stored(db)
    assert set(mentions) == {post["name"], local["name"], reply["name"]}
    first = mentions[post["name"]]
    assert first.url == f"https://www.reddit.com/r/istanbul/comments/{post['id']}/paketto_lost_my_parcel/"
    assert (first.author, first.text, first.engagement, first.platform) == (
        "deniz_k",
        "Paketto lost my parcel\n\nthird time",
        16,
        "reddit",
    )
    comment = mentions[reply["name"]]
    assert comment.url == f"https://www.reddit.com{local['permalink']}{reply['id']}/"
    assert (comment.author, comment.engagement, comment.followers, comment.language) == ("zeynep", 5, None, None)
    assert set(cursors(db)) == {PAKETTO_SEARCH, 'search:"Kargonet"', "r/Turkey/new", "r/Turkey/comments"}
    (search,) = [r for r in platform.hits(SEARCH) if "Paketto" in (r.arg("q") or "")]
    assert (search.arg("sort"), search.arg("t"), search.arg("raw_json")) == ("new", "day", "1")
    assert waits == [], "generous x-ratelimit headers ask for no pacing"


def test_reddit__subreddit_comments__only_brand_mentions_are_kept(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    texts = {
        "PAKETTO KARGO kaybetti paketimi": True,
        "paketto'nun kuryesi kapıya bile gelmedi": True,
        "Ordered from kargonet, arrived fine": True,
        "Pakettocu arkadaş yine yok": False,
        "kargo always late in this city": False,
    }
    made = {fake.comment(text, minutes_ago=i + 1)["name"]: keep for i, (text, keep) in enumerate(texts.items())}

    stats = run(db, reddit(platform, waits, search=False))

    assert stats.error is None
    assert set(stored(db)) == {name for name, keep in made.items() if keep}
    assert platform.hits(SEARCH) == [], "search = false reads only the subreddits"


def test_reddit__rerun__reads_only_what_is_new_and_never_duplicates(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.submit("Paketto lost my parcel", minutes_ago=300)
    fake.comment("Paketto Kargo again", minutes_ago=240)
    collector = reddit(platform, waits)
    assert run(db, collector).new == 2
    before = cursors(db)

    fresh_post = fake.submit("Kargonet is fast now", minutes_ago=30)
    fresh_comment = fake.comment("Paketto finally came", minutes_ago=20)
    second = run(db, collector)
    third = run(db, collector)

    assert (second.new, third.new) == (2, 0)
    assert len(stored(db)) == 4 and {fresh_post["name"], fresh_comment["name"]} <= set(stored(db))
    after = cursors(db)
    assert after[PAKETTO_SEARCH] == before[PAKETTO_SEARCH], "nothing new about Paketto in search"
    assert int(after["r/Turkey/comments"]) == int(fresh_comment["created_utc"])
    assert all(len(platform.hits(p)) == 3 for p in ("/r/Turkey/new", "/r/Turkey/comments")), "one page per run"


def test_reddit__post_indexed_late_within_the_overlap__is_still_stored(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.submit("Paketto lost my parcel", minutes_ago=60)
    collector = reddit(platform, waits, subreddits=[])
    run(db, collector)
    late = fake.submit("Paketto courier was rude", minutes_ago=63)  # older, but only now in the search index

    stats = run(db, collector)

    assert stats.new == 1 and late["name"] in stored(db)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"time_filter": "fortnight"}, "time_filter must be one of hour, day"),
        ({"subreddits": "Turkey"}, "subreddits must be a list of names"),
    ],
)
def test_reddit__bad_options__config_error_when_kulak_starts(options: dict[str, Any], message: str) -> None:
    spec = SourceSpec("reddit", BRANDS, {"client_id_env": "REDDIT_CLIENT_ID", **options}, env=ENV)
    with pytest.raises(ConfigError, match=message):
        reddit_collector(spec)


def test_reddit__many_new_posts__pages_with_after_up_to_max_pages(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    posts = [fake.submit(f"Paketto update {i}", minutes_ago=i + 1) for i in range(150)]

    stats = run(db, reddit(platform, waits, max_pages=2, subreddits=[]))

    assert stats.error is None and stats.new == 150
    pages = [r for r in platform.hits(SEARCH) if "Paketto" in (r.arg("q") or "")]
    assert [r.arg("after") for r in pages] == [None, posts[99]["name"]]
    assert cursors(db)[PAKETTO_SEARCH] == str(int(posts[0]["created_utc"]))


def test_reddit__more_new_posts_than_max_pages__reads_the_newest_and_says_what_was_left(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.submit("Paketto first post", minutes_ago=600)
    collector = reddit(platform, waits, max_pages=1, subreddits=[])
    run(db, collector)
    for i in range(120):
        fake.submit(f"Paketto flood {i}", minutes_ago=i + 1)

    stats = run(db, collector)

    assert stats.new == 100
    assert any("more than 100 new items" in line and "max_pages" in line for line in stats.skipped)


def test_reddit__token_revoked_mid_query__keeps_the_first_page_and_cursor_stays_until_the_query_ends(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    for i in range(150):
        fake.submit(f"Paketto update {i}", minutes_ago=i + 1)
    fake.revoke_after = 1
    collector = reddit(platform, waits, max_pages=2, subreddits=[])

    stats = run(db, collector)

    assert stats.new == 100, "the page read before the revocation is stored"
    record = health(db)
    assert record.consecutive_failures == 1
    assert record.last_error is not None and record.last_error.startswith("AuthError:")
    assert "client_id_env" in record.last_error and "s3cret" not in record.last_error
    assert PAKETTO_SEARCH not in cursors(db), "the cursor may not move past the unread older page"

    fake.revoked, fake.revoke_after = False, None
    again = run(db, collector)
    assert (again.error, again.new, len(stored(db))) == (None, 50, 150)


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        ({"retry-after": "7", "x-ratelimit-remaining": "0.0", "x-ratelimit-used": "1000", "x-ratelimit-reset": "7"}, 7),
        ({"x-ratelimit-remaining": "0.0", "x-ratelimit-used": "1000", "x-ratelimit-reset": "42"}, 42),
    ],
    ids=["retry-after", "x-ratelimit-reset-only"],
)
def test_reddit__429__waits_as_long_as_reddit_says_then_continues(
    db: Database,
    platform: FakePlatform,
    fake: FakeReddit,
    waits: list[float],
    headers: dict[str, str],
    expected_wait: float,
) -> None:
    post = fake.submit("Paketto lost my parcel")
    platform.fail(SEARCH, Reply(429, {"message": "Too Many Requests", "error": 429}, headers))

    stats = run(db, reddit(platform, waits, subreddits=[]))

    assert waits == [expected_wait]
    assert stats.error is None and post["name"] in stored(db)


def test_reddit__quota_used_up__waits_for_the_window_reset_through_the_policy(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.submit("Paketto lost my parcel")
    fake.ratelimit_remaining, fake.ratelimit_reset = 0, 120

    stats = run(db, reddit(platform, waits, search=False))

    assert stats.error is None and stats.new == 1
    assert len(waits) == 1 and 119 < waits[0] <= 120, "the second request waits for the reset, without time.sleep"


def test_reddit__short_5xx_burst__retries_and_stores_everything(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    post = fake.submit("Paketto lost my parcel")
    platform.fail(SEARCH, Reply(503, {"message": "Service Unavailable", "error": 503}), times=3)

    stats = run(db, reddit(platform, waits, subreddits=[]))

    assert stats.error is None and post["name"] in stored(db)
    assert len(waits) == 1, "prawcore retried once at once; kulak's policy backed off once"


def test_reddit__long_5xx_burst__gives_up_after_bounded_retries_and_health_says_so(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.submit("Paketto lost my parcel")
    platform.fail(SEARCH, Reply(503, {"message": "Service Unavailable", "error": 503}), times=1000)

    stats = run(db, reddit(platform, waits, max_retries=2))

    assert len(platform.hits(SEARCH)) == 6, "3 attempts, each with prawcore's one immediate retry"
    assert len(waits) == 2
    assert stats.error is not None and stats.error.startswith("SourceUnavailable:")
    assert "HTTP 503" in stats.error and "gave up after 3 attempts" in stats.error
    assert health(db).consecutive_failures == 1 and health(db).last_success_at is None


def test_reddit__html_page_with_200__is_source_unavailable(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.submit("Paketto lost my parcel")
    platform.fail(SEARCH, html_error_page(), times=1000)

    run(db, reddit(platform, waits, max_retries=1))

    error = health(db).last_error
    assert error is not None and error.startswith("SourceUnavailable:") and "an HTML page" in error
    assert len(platform.hits(SEARCH)) == 2 and len(waits) == 1


@pytest.mark.parametrize(
    ("subreddit", "explained"),
    [("NoSuchSubreddit", "does not exist or is private or banned"), ("staffonly", "the subreddit is private")],
    ids=["missing", "private"],
)
def test_reddit__unreadable_subreddit__health_names_it_and_the_earlier_results_are_kept(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float], subreddit: str, explained: str
) -> None:
    fake.private_subreddits = {"staffonly"}
    post = fake.submit("Paketto lost my parcel")

    stats = run(db, reddit(platform, waits, subreddits=["Turkey", subreddit]))

    assert post["name"] in stored(db)
    assert stats.error is not None and stats.error.startswith("SourceError:")
    assert f"r/{subreddit}/new" in stats.error and explained in stats.error and "subreddits" in stats.error


@pytest.mark.parametrize(
    ("options", "env", "named"),
    [
        ({"client_id_env": None}, ENV, "client_id_env"),
        ({}, {"REDDIT_CLIENT_ID": "kulak-app"}, "REDDIT_CLIENT_SECRET"),
    ],
    ids=["setting-missing", "variable-unset"],
)
def test_reddit__missing_credential__auth_error_names_the_setting_and_nothing_is_sent(
    db: Database,
    platform: FakePlatform,
    waits: list[float],
    options: dict[str, Any],
    env: dict[str, str],
    named: str,
) -> None:
    collector = reddit(platform, waits, env=env, **options)

    run(db, collector)

    error = health(db).last_error
    assert error is not None and error.startswith("AuthError:") and named in error
    assert platform.requests == []


def test_reddit__wrong_client_secret__auth_error_says_which_settings_to_check(
    db: Database, platform: FakePlatform, fake: FakeReddit, waits: list[float]
) -> None:
    fake.client_secret = "rotated-secret"

    stats = run(db, reddit(platform, waits))

    assert stats.error is not None and stats.error.startswith("AuthError:")
    assert "HTTP 401" in stats.error and "client_secret_env" in stats.error and "s3cret" not in stats.error
    assert len(platform.hits("/api/v1/access_token")) == 1, "a refused app is not retried"
