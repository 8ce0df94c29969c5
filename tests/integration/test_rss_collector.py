"""The RSS/Atom collector against fake feeds on 127.0.0.1, through the real pipeline."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from kulak.errors import ConfigError
from kulak.pipeline import CollectStats, collect
from listener.base import SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.registry import collector_registry
from listener.rss import RssCollector, rss_collector
from storage import repository as repo
from storage.db import Database
from tests.collected import stored_mentions as stored
from tests.fakeplatform.core import FakePlatform, Reply
from tests.fakeplatform.rss import Entry, FakeFeeds, Feed, install

BRANDS = (Brand("Paketto"),)
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server() -> Iterator[FakePlatform]:
    with FakePlatform() as platform:
        yield platform


@pytest.fixture
def feeds(server: FakePlatform) -> FakeFeeds:
    """A fresh platform state on the module's server (starting a server per test costs 0.5 s to stop)."""
    server.reset()
    return install(server)


def make(urls: list[str], waits: list[float] | None = None, **options: object) -> RssCollector:
    recorded = waits if waits is not None else []
    spec = SourceSpec("news", BRANDS, {"feeds": urls, **options}, sleep=recorded.append, rng=random.Random(3))
    return rss_collector(spec)


def run(db: Database, collector: RssCollector) -> CollectStats:
    return collect(db, collector, BrandMatcher(BRANDS))


def forum_feed() -> Feed:
    return Feed(
        "rss",
        "Kargo Forum",
        "https://forum.example/",
        language="tr-TR",
        entries=[
            Entry(
                "Paketto kargom nerede?",
                "https://forum.example/t/101",
                "<p>Üç gündür <b>bekliyorum</b> &amp; cevap yok</p>",
                guid="101",
                author="ayse",
                published=datetime(2026, 11, 2, 12, 0, tzinfo=timezone(timedelta(hours=3))),
            ),
            Entry("Paketto ile iade", "/t/102", "<p>iade kolay</p>", published=T0 - timedelta(hours=1)),
            Entry("Başka kargo firması", "https://forum.example/t/103", "alakasız", guid="103", published=T0),
        ],
    )


def review_feed() -> Feed:
    return Feed(
        "atom",
        "Csomag Reviews",
        "https://reviews.example/",
        language="hu",
        entries=[
            Entry(
                "Paketto értékelés",
                "https://reviews.example/r/1",
                "<p>A csomag <i>gyorsan</i> megjött</p>",
                guid="tag:reviews.example,2026:1",
                published=T0,
            ),
            Entry(
                "Paketto in English",
                "https://reviews.example/r/2",
                "Fast delivery",
                guid="tag:reviews.example,2026:2",
                author="bob",
                published=T0 - timedelta(days=1),
                language="en",
            ),
        ],
    )


def test_rss__rss_and_atom_entries__are_stored_with_deep_links_dates_authors_and_language(
    db: Database, feeds: FakeFeeds
) -> None:
    forum, reviews = feeds.add("forum.xml", forum_feed()), feeds.add("reviews.atom", review_feed())
    stats = run(db, make([forum, reviews]))
    assert (stats.error, stats.seen, stats.new, stats.unmatched) == (None, 5, 4, 1)
    mentions = stored(db)
    ayse = mentions[f"{forum}#101"]
    assert (ayse.url, ayse.author, ayse.platform, ayse.language) == (
        "https://forum.example/t/101",
        "ayse",
        "rss",
        "tr-TR",
    )
    assert ayse.text == "Paketto kargom nerede?\n\nÜç gündür bekliyorum & cevap yok"
    assert ayse.created_at == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert (ayse.followers, ayse.engagement) == (None, None)
    no_guid = mentions["sha256:" + hashlib.sha256(f"{feeds.server.url}/t/102".encode()).hexdigest()]
    assert no_guid.url == f"{feeds.server.url}/t/102", "a relative link resolves against the feed's URL"
    assert no_guid.author == "Kargo Forum", "an entry without an author is credited to its feed"
    hu, en = mentions["tag:reviews.example,2026:1"], mentions["tag:reviews.example,2026:2"]
    assert (hu.url, hu.language, hu.author, hu.created_at) == (
        "https://reviews.example/r/1",
        "hu",
        "Csomag Reviews",
        T0,
    )
    assert hu.text == "Paketto értékelés\n\nA csomag gyorsan megjött"
    assert (en.language, en.author) == ("en", "bob")
    with db.transaction() as s:
        assert set(repo.get_cursors(s, "news")) == {forum, reviews}


def test_rss__second_run__sends_the_validators_and_a_304_transfers_nothing(db: Database, feeds: FakeFeeds) -> None:
    forum = feeds.add("forum.xml", forum_feed())
    run(db, make([forum]))
    with db.transaction() as s:
        first_cursor = repo.get_cursors(s, "news")[forum]
    stats = run(db, make([forum]))
    assert (stats.error, stats.seen, stats.new) == (None, 0, 0)
    first, second = feeds.requests_for("forum.xml")
    assert "if-none-match" not in first.headers and "if-modified-since" not in first.headers
    cursor = json.loads(first_cursor)
    assert second.headers["if-none-match"] == cursor["etag"]
    assert second.headers["if-modified-since"] == "Mon, 02 Nov 2026 09:00:00 GMT"
    assert feeds.bodies_sent == {"forum.xml": 1}, "the unchanged feed was not downloaded again"
    with db.transaction() as s:
        assert repo.get_cursors(s, "news")[forum] == first_cursor
        assert repo.count_mentions(s, source="news") == 2


@pytest.mark.parametrize("validators", [True, False], ids=["with-etag", "without-validators"])
def test_rss__new_entry__only_it_is_new(db: Database, feeds: FakeFeeds, validators: bool) -> None:
    feed = forum_feed()
    feed.send_validators = validators
    forum = feeds.add("forum.xml", feed)
    run(db, make([forum]))
    feed.entries.insert(0, Entry("Paketto geldi!", "https://forum.example/t/104", "teşekkürler", guid="104"))
    stats = run(db, make([forum]))
    assert (stats.error, stats.seen, stats.new) == (None, 1, 1)
    assert feeds.bodies_sent == {"forum.xml": 2}
    new = stored(db)[f"{forum}#104"]
    assert new.url == "https://forum.example/t/104" and new.created_at > T0, "an undated entry is dated when collected"


def test_rss__html_page_as_a_feed__error_names_the_feed_and_the_other_feed_is_stored(
    db: Database, feeds: FakeFeeds
) -> None:
    moved = feeds.add("moved.xml", Feed("html", "Forum has moved", "https://old.example/"))
    reviews = feeds.add("reviews.atom", review_feed())
    waits: list[float] = []
    stats = run(db, make([moved, reviews], waits, max_retries=1))
    assert stats.error is not None and stats.error.startswith("SourceUnavailable: 1 of 2 feeds failed")
    assert f"feed {moved} is not an RSS or Atom feed (text/html" in stats.error
    assert "[sources.news] feeds" in stats.error and len(waits) == 1
    with db.transaction() as s:
        assert repo.count_mentions(s, source="news") == 2, "the good feed's entries are stored"
        assert set(repo.get_cursors(s, "news")) == {reviews}
        (health,) = repo.source_health(s)
    assert health.consecutive_failures == 1 and moved in (health.last_error or "")


def test_rss__5xx_burst__retries_and_recovers(db: Database, feeds: FakeFeeds) -> None:
    forum = feeds.add("forum.xml", forum_feed())
    feeds.server.fail("/feeds/forum.xml", Reply(503, "busy"), times=2)
    waits: list[float] = []
    stats = run(db, make([forum], waits))
    assert (stats.error, stats.new, len(waits)) == (None, 2, 2)


BROKEN_BUT_READABLE = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>Sloppy blog</title><link>https://blog.example/</link>
<item><title>Paketto&nbsp;review</title><link>https://blog.example/p/1</link><guid>https://blog.example/p/1</guid>
<description>fine</description></item></channel></rss>"""


def test_rss__feed_with_minor_xml_errors__keeps_its_entries_and_is_fetched_whole_next_time(
    db: Database, feeds: FakeFeeds
) -> None:
    url = feeds.url("sloppy.xml")
    headers = {"Content-Type": "application/rss+xml", "ETag": '"v1"'}
    feeds.server.fail("/feeds/sloppy.xml", Reply(200, BROKEN_BUT_READABLE, headers), times=2)
    stats = run(db, make([url]))
    assert (stats.error, stats.new) == (None, 1)
    assert stored(db)["https://blog.example/p/1"].url == "https://blog.example/p/1"
    again = run(db, make([url]))
    assert (again.error, again.seen) == (None, 0)
    assert "if-none-match" not in feeds.requests_for("sloppy.xml")[-1].headers


@pytest.mark.parametrize(
    "options", [{}, {"feeds": []}, {"feeds": [""]}, {"feeds": 3}, {"feeds": ["/etc/passwd"]}], ids=str
)
def test_rss__missing_empty_or_non_http_feeds__is_a_config_error_naming_the_setting(options: dict[str, object]) -> None:
    spec = SourceSpec("news", BRANDS, {"type": "rss", **options})
    with pytest.raises(ConfigError, match=r"\[sources\.news\] feeds"):
        collector_registry()["rss"].factory(spec)


def test_rss__platform_option__names_the_mentions_platform(feeds: FakeFeeds) -> None:
    reviews = feeds.add("reviews.atom", review_feed())
    (batch,) = make([reviews], platform="trustpilot").collect({})
    assert {m.platform for m in batch.mentions} == {"trustpilot"}
