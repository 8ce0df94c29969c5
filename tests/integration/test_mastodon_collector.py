"""The Mastodon collector, with the real Mastodon.py client against a fake instance on 127.0.0.1."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kulak.pipeline import CollectStats, collect
from listener.base import SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.mastodon import MastodonCollector, html_to_text, mastodon_collector
from storage import repository as repo
from storage.db import Database
from tests.collected import health_of
from tests.collected import stored_mentions as stored
from tests.fakeplatform.core import FakePlatform, Reply, Request, html_error_page
from tests.fakeplatform.mastodon import FakeMastodon, SearchMode, iso

BRANDS = (Brand("Paketto", aliases=("Paketto Express",)),)
TAG_PATH = "/api/v1/timelines/tag/paketto"


@pytest.fixture
def instance() -> Iterator[FakeMastodon]:
    with FakePlatform() as platform:
        yield FakeMastodon(platform)


def make_collector(
    instance: FakeMastodon, waits: list[float] | None = None, *, token: str | None = "good-token", **options: Any
) -> MastodonCollector:
    """The collector the registry builds, on the fake instance; ``token=None``: no access token configured."""
    auth = {"access_token_env": "KULAK_TEST_MASTODON_TOKEN"} if token is not None else {}
    spec = SourceSpec(
        "mastodon",
        BRANDS,
        {"base_url": instance.platform.url, "timeout": 5, **auth, **options},
        env={"KULAK_TEST_MASTODON_TOKEN": token} if token else {},
        sleep=(waits if waits is not None else []).append,
        rng=random.Random(0),
    )
    return mastodon_collector(spec)


def tag_hits(instance: FakeMastodon) -> list[Request]:
    """Requests for #paketto (not #pakettoexpress, which shares the prefix)."""
    return [h for h in instance.platform.hits(TAG_PATH) if h.path == TAG_PATH]


def run(db: Database, collector: MastodonCollector) -> CollectStats:
    return collect(db, collector, BrandMatcher(BRANDS))


def health(db: Database) -> repo.SourceHealth:
    return health_of(db, "mastodon")


def test_mastodon__collects_tagged_and_searched_posts_with_links_authors_engagement_language(
    db: Database, instance: FakeMastodon
) -> None:
    local = instance.post(
        "Paketto lost my parcel",
        tags=("Paketto",),
        followers=1200,
        favourites=3,
        reblogs=2,
        replies=1,
        language="en",
    )
    remote = instance.post(
        "x",
        user="bob",
        domain="other.example",
        tags=("paketto",),
        language="de",
        html_content="<p>Paketto &amp; Co<br>zweite Zeile</p><p>neuer Absatz</p>",
    )
    searched = instance.post("Paketto Express was late again", user="carol", language="tr")
    instance.post("nothing to see here", tags=("cats",))

    stats = run(db, make_collector(instance))

    assert stats.error is None and stats.new == 3
    got = stored(db)
    first = got[local["uri"]]
    assert first.url == local["url"] and first.url.startswith("https://mastodon.example/@alice/")
    assert first.author == "alice@mastodon.example", "local accounts get their instance's domain"
    assert (first.followers, first.engagement, first.language) == (1200, 6, "en")
    assert first.text == "Paketto lost my parcel #Paketto"
    assert first.created_at.tzinfo is not None and first.created_at.utcoffset() == timedelta(0)
    second = got[remote["uri"]]
    assert second.author == "bob@other.example" and second.language == "de"
    assert second.text == "Paketto & Co\nzweite Zeile\n\nneuer Absatz"
    assert got[searched["uri"]].author == "carol@mastodon.example", "found by full-text search only"


def test_mastodon__rerun_reads_forward_from_each_cursor_and_never_duplicates(
    db: Database, instance: FakeMastodon
) -> None:
    for n in range(3):
        instance.post(f"Paketto delivery {n}", tags=("paketto",))
    assert run(db, make_collector(instance)).new == 3
    with db.transaction() as s:
        cursors = repo.get_cursors(s, "mastodon")
    newest = instance.statuses[-1]["id"]
    assert cursors["#paketto"] == newest and cursors["Paketto"] == newest

    instance.post("Paketto again", tags=("paketto",))
    before = len(tag_hits(instance))
    second = run(db, make_collector(instance))

    assert (second.error, second.new, second.seen) == (None, 1, 2), "one new post, seen by tag and by search"
    (rerun_hit,) = tag_hits(instance)[before:]
    assert rerun_hit.arg("min_id") == newest, "the rerun asks only for posts after the cursor"
    search_hits = [h for h in instance.platform.hits("/api/v2/search") if h.arg("q") == "Paketto"]
    assert search_hits[-1].arg("min_id") == newest
    assert len(stored(db)) == 4


def test_mastodon__pages_stop_at_max_pages_and_later_runs_carry_on_without_a_gap(
    db: Database, instance: FakeMastodon
) -> None:
    for n in range(100):
        instance.post(f"Paketto {n}", tags=("paketto",))
    first = run(db, make_collector(instance, max_pages=2, search=False))
    assert first.new == 80 and len(tag_hits(instance)) == 2, "2 pages of 40, newest first"

    for n in range(90):
        instance.post(f"Paketto later {n}", tags=("paketto",))
    second = run(db, make_collector(instance, max_pages=2, search=False))
    third = run(db, make_collector(instance, max_pages=2, search=False))

    assert (second.new, third.new) == (80, 10), "forward paging picks up where the previous run stopped"
    later = {s["uri"] for s in instance.statuses[100:]}
    assert later <= set(stored(db)), "every post after the first run is stored"
    with db.transaction() as s:
        assert repo.get_cursor(s, "mastodon", "#paketto") == instance.statuses[-1]["id"]


def test_mastodon__429_with_reset_header__waits_until_reset_then_continues(
    db: Database, instance: FakeMastodon
) -> None:
    instance.post("Paketto is fast", tags=("paketto",))
    reset = datetime.now(UTC) + timedelta(seconds=30)
    instance.platform.fail(TAG_PATH, Reply(429, {"error": "Too many requests"}, {"X-RateLimit-Reset": iso(reset)}))
    waits: list[float] = []

    stats = run(db, make_collector(instance, waits))

    assert stats.error is None and stats.new == 1
    (wait,) = waits
    assert 27 <= wait <= 31, "waits until the instance's reset time"


def test_mastodon__5xx_burst__bounded_retries_then_error_in_health(db: Database, instance: FakeMastodon) -> None:
    instance.post("Paketto", tags=("paketto",))
    instance.platform.fail(TAG_PATH, Reply(503, "<html>busy</html>", {"Content-Type": "text/html"}), times=50)
    waits: list[float] = []

    stats = run(db, make_collector(instance, waits, max_retries=2))

    assert stats.error is not None and stats.error.startswith("SourceUnavailable")
    assert "HTTP 503" in stats.error and "gave up after 3 attempts" in stats.error
    assert len(tag_hits(instance)) == 3 and len(waits) == 2
    assert health(db).consecutive_failures == 1


def test_mastodon__html_page_with_status_200__is_source_unavailable(db: Database, instance: FakeMastodon) -> None:
    instance.post("Paketto", tags=("paketto",))
    instance.platform.fail(TAG_PATH, html_error_page(), times=50)

    stats = run(db, make_collector(instance, max_retries=1))

    assert stats.error is not None and stats.error.startswith("SourceUnavailable")
    assert "HTML page" in stats.error
    assert "SourceUnavailable" in (health(db).last_error or "")


def test_mastodon__token_revoked_mid_run__auth_error_in_health_and_earlier_pages_kept(
    db: Database, instance: FakeMastodon
) -> None:
    for n in range(45):
        instance.post(f"Paketto {n}", tags=("paketto",))
    instance.revoke_after["good-token"] = 1
    waits: list[float] = []

    stats = run(db, make_collector(instance, waits))

    assert stats.error is not None and stats.error.startswith("AuthError")
    assert "access_token_env" in stats.error and "good-token" not in stats.error
    assert len(stored(db)) == 40, "the page read before the token was revoked is kept"
    assert waits == [], "a revoked token is not retried"
    assert len(tag_hits(instance)) == 2
    assert "AuthError" in (health(db).last_error or "")


@pytest.mark.parametrize("search", ["off", "missing"])
def test_mastodon__instance_without_search__hashtags_still_collected_without_failure(
    db: Database, search: SearchMode
) -> None:
    with FakePlatform() as platform:
        instance = FakeMastodon(platform, search=search)
        instance.post("Paketto was great", tags=("paketto",))
        instance.post("Paketto without a tag")

        stats = run(db, make_collector(instance))

    assert stats.error is None and stats.new == 1
    assert health(db).consecutive_failures == 0
    if search == "missing":
        assert any("search for Paketto" in note and "404" in note for note in stats.skipped)


def test_mastodon__without_token__reads_hashtags_and_does_not_search(db: Database, instance: FakeMastodon) -> None:
    instance.post("Paketto", tags=("paketto",))

    stats = run(db, make_collector(instance, token=None))

    assert stats.error is None and stats.new == 1
    assert instance.platform.hits("/api/v2/search") == []
    assert "authorization" not in tag_hits(instance)[0].headers


@pytest.mark.parametrize(
    ("content", "text"),
    [
        ("<p>one</p><p>two</p>", "one\n\ntwo"),
        ("<p>a<br />b<br>c</p>", "a\nb\nc"),
        (
            '<p>see <a href="https://x.example/a"><span class="invisible">https://</span>x.example/a</a></p>',
            "see https://x.example/a",
        ),
        ("<p>&lt;3 &amp; caf&eacute;</p>", "<3 & café"),
    ],
)
def test_html_to_text__keeps_paragraphs_and_line_breaks(content: str, text: str) -> None:
    assert html_to_text(content) == text


def test_mastodon__token_variable_not_set__auth_error_names_the_variable(db: Database, instance: FakeMastodon) -> None:
    stats = run(db, make_collector(instance, token=""))

    assert stats.error is not None and stats.error.startswith("AuthError")
    assert "KULAK_TEST_MASTODON_TOKEN" in stats.error
    assert instance.platform.requests == [], "nothing is sent without the configured token"
