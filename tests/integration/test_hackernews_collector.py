"""The Hacker News collector against a fake Algolia API on 127.0.0.1, through the real pipeline."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime

import pytest

from kulak.pipeline import CollectStats, collect
from listener.base import Batch, Collector, SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.hackernews import HackerNewsCollector, hackernews_collector, hn_queries
from storage import repository as repo
from storage.db import Database
from tests.collected import stored_mentions as stored
from tests.fakeplatform.core import FakePlatform, Reply, html_error_page, malformed_json
from tests.fakeplatform.hackernews import SEARCH_PATH, FakeHackerNews, HNItem, install

PAKETTO = (Brand("Paketto"),)
T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())


@pytest.fixture(scope="module")
def server() -> Iterator[FakePlatform]:
    with FakePlatform() as platform:
        yield platform


@pytest.fixture
def hn(server: FakePlatform) -> FakeHackerNews:
    """A fresh platform state on the module's server (starting a server per test costs 0.5 s to stop)."""
    server.reset()
    return install(server)


def make(
    hn: FakeHackerNews, waits: list[float], *, brands: tuple[Brand, ...] = PAKETTO, **options: object
) -> HackerNewsCollector:
    spec = SourceSpec(
        "hackernews", brands, {"base_url": hn.base_url, **options}, sleep=waits.append, rng=random.Random(7)
    )
    return hackernews_collector(spec)


def run(db: Database, collector: Collector, brands: tuple[Brand, ...] = PAKETTO) -> CollectStats:
    return collect(db, collector, BrandMatcher(brands))


def add_comments(hn: FakeHackerNews, n: int, *, start: int = 1000, word: str = "Paketto") -> None:
    for i in range(n):
        hn.add(HNItem(str(start + i), T0 + start + i, f"user{i}", comment_text=f"<p>{word} parcel {i}</p>"))


def seed(hn: FakeHackerNews) -> None:
    hn.add(
        HNItem(
            "41000001",
            T0,
            "pg_fan",
            title="Show HN: Paketto tracks parcels",
            story_text="We built it in a weekend.<p>Feedback &amp; ideas welcome",
            points=120,
            num_comments=31,
        )
    )
    hn.add(HNItem("41000002", T0 + 60, "dang_fan", comment_text="<p>Paketto lost my parcel &#x27;twice&#x27;</p>"))
    hn.add(HNItem("41000003", T0 + 120, "other", comment_text="Unrelated talk about Rust"))


@pytest.mark.parametrize(
    ("brands", "queries"),
    [
        ((Brand("Paketto"),), ("Paketto",)),
        ((Brand("Paketto", aliases=("Paketto Express", "PAKETTO")),), ("Paketto", '"Paketto Express"')),
        ((Brand("Paketto", handles=("@paketto_tr",)), Brand("Kargolux")), ("Paketto", "paketto_tr", "Kargolux")),
    ],
)
def test_hn_queries__one_query_per_distinct_term_with_phrases_quoted(
    brands: tuple[Brand, ...], queries: tuple[str, ...]
) -> None:
    assert hn_queries(brands) == queries


def test_hackernews__stores_stories_and_comments_with_deep_links_and_engagement(
    db: Database, hn: FakeHackerNews
) -> None:
    seed(hn)
    stats = run(db, make(hn, []))
    assert (stats.error, stats.seen, stats.new) == (None, 2, 2)
    (request,) = hn.searches()
    assert request.query["query"] == ["Paketto"] and request.query["tags"] == ["(story,comment)"]
    assert "numericFilters" not in request.query, "the first run reads from the newest back"
    mentions = stored(db)
    story, comment = mentions["41000001"], mentions["41000002"]
    assert story.url == "https://news.ycombinator.com/item?id=41000001"
    assert story.text == "Show HN: Paketto tracks parcels\n\nWe built it in a weekend.\nFeedback & ideas welcome"
    assert (story.author, story.engagement, story.followers, story.language) == ("pg_fan", 151, None, None)
    assert story.created_at == datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert comment.text == "Paketto lost my parcel 'twice'" and comment.engagement is None
    with db.transaction() as s:
        assert repo.get_cursors(s, "hackernews") == {"Paketto": str(T0 + 60)}


def test_hackernews__rerun__sends_the_cursor_as_numeric_filter_and_stores_only_new_posts(
    db: Database, hn: FakeHackerNews
) -> None:
    seed(hn)
    run(db, make(hn, []))
    hn.add(HNItem("41000009", T0 + 600, "late", comment_text="Paketto support answered, finally"))
    stats = run(db, make(hn, []))
    assert (stats.error, stats.seen, stats.new) == (None, 1, 1)
    assert hn.searches()[-1].query["numericFilters"] == [f"created_at_i>{T0 + 60}"]
    again = run(db, make(hn, []))
    assert (again.seen, again.new) == (0, 0)
    with db.transaction() as s:
        assert repo.count_mentions(s, source="hackernews") == 3
        assert repo.get_cursors(s, "hackernews") == {"Paketto": str(T0 + 600)}


def test_hackernews__each_brand_term_has_its_own_cursor(db: Database, hn: FakeHackerNews) -> None:
    brands = (Brand("Paketto", aliases=("Kargo Lux",)),)
    seed(hn)
    hn.add(HNItem("41000005", T0 + 300, "ali", comment_text="Kargo Lux delivered on a Sunday"))
    hn.add(HNItem("41000006", T0 + 400, "veli", comment_text="kargo is not lux here"))
    stats = run(db, make(hn, [], brands=brands), brands)
    assert (stats.error, stats.new) == (None, 3)
    assert [r.arg("query") for r in hn.searches()] == ["Paketto", '"Kargo Lux"']
    with db.transaction() as s:
        assert repo.get_cursors(s, "hackernews") == {"Paketto": str(T0 + 60), '"Kargo Lux"': str(T0 + 300)}


def test_hackernews__follows_pages_until_the_results_end(db: Database, hn: FakeHackerNews) -> None:
    add_comments(hn, 150)
    stats = run(db, make(hn, [], max_pages=5))
    assert (stats.error, stats.new, stats.skipped) == (None, 150, [])
    assert [r.arg("page") for r in hn.searches()] == ["0", "1"]


def test_hackernews__stops_at_max_pages_and_says_older_results_were_not_read(db: Database, hn: FakeHackerNews) -> None:
    add_comments(hn, 250)
    stats = run(db, make(hn, [], max_pages=2))
    assert (stats.error, stats.new) == (None, 200)
    assert len(hn.searches()) == 2
    (note,) = stats.skipped
    assert "more than 2 pages of new results" in note and "raise max_pages" in note
    with db.transaction() as s:
        assert repo.get_cursors(s, "hackernews") == {"Paketto": str(T0 + 1249)}


def test_hackernews__cursor_moves_only_with_the_last_page_so_a_crash_rereads_instead_of_skipping(
    hn: FakeHackerNews,
) -> None:
    add_comments(hn, 250)
    batches = list(make(hn, []).collect({"Paketto": str(T0)}))
    assert [len(b.mentions) for b in batches] == [100, 100, 50]
    assert [b.cursor for b in batches] == [str(T0), str(T0), str(T0 + 1249)]


def test_hackernews__5xx_burst__retries_with_backoff_and_recovers(db: Database, hn: FakeHackerNews) -> None:
    seed(hn)
    hn.server.fail(SEARCH_PATH, Reply(503, "upstream down"), times=2)
    waits: list[float] = []
    stats = run(db, make(hn, waits))
    assert (stats.error, stats.new) == (None, 2)
    assert len(waits) == 2 and all(0 <= w <= 2 for w in waits)
    with db.transaction() as s:
        (health,) = repo.source_health(s)
    assert health.consecutive_failures == 0 and health.last_success_at is not None


def test_hackernews__5xx_that_persists__gives_up_and_health_says_so(db: Database, hn: FakeHackerNews) -> None:
    seed(hn)
    hn.server.fail(SEARCH_PATH, Reply(502, "bad gateway"), times=10)
    waits: list[float] = []
    stats = run(db, make(hn, waits, max_retries=2))
    assert stats.error is not None and stats.error.startswith("SourceUnavailable: ")
    assert "HTTP 502" in stats.error and "gave up after 3 attempts" in stats.error
    assert len(waits) == 2
    with db.transaction() as s:
        (health,) = repo.source_health(s)
    assert health.consecutive_failures == 1 and "HTTP 502" in (health.last_error or "")


class BreaksAfterFirstBatch:
    """The API starts answering ``reply`` once the first batch is stored (a mid-run outage)."""

    def __init__(self, inner: HackerNewsCollector, hn: FakeHackerNews, reply: Reply) -> None:
        self.inner, self.hn, self.reply = inner, hn, reply
        self.name = inner.name

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        for i, batch in enumerate(self.inner.collect(cursors)):
            yield batch
            if i == 0:
                self.hn.server.fail(SEARCH_PATH, self.reply, times=4)


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (html_error_page(), "answered with an HTML page instead of its API"),
        (malformed_json(), "answered with malformed JSON"),
        (Reply(200, {"message": "ok", "results": []}), "answered JSON without a 'hits' list"),
    ],
)
def test_hackernews__a_non_api_answer_mid_run__is_recorded_and_earlier_batches_are_kept(
    db: Database, hn: FakeHackerNews, reply: Reply, says: str
) -> None:
    brands = (Brand("Paketto"), Brand("Kargolux"))
    seed(hn)
    hn.add(HNItem("41000007", T0 + 900, "ayse", comment_text="Kargolux is faster"))
    waits: list[float] = []
    stats = run(db, BreaksAfterFirstBatch(make(hn, waits, brands=brands), hn, reply), brands)
    assert stats.error is not None and stats.error.startswith("SourceUnavailable: ") and says in stats.error
    with db.transaction() as s:
        assert repo.count_mentions(s, source="hackernews") == 2, "the Paketto batch stored before the outage stays"
        assert repo.get_cursors(s, "hackernews") == {"Paketto": str(T0 + 60)}
        (health,) = repo.source_health(s)
    assert health.consecutive_failures == 1 and says in (health.last_error or "")
    recovered = run(db, make(hn, [], brands=brands), brands)
    assert (recovered.error, recovered.new) == (None, 1), "the next run picks up only what was missed"


def test_hackernews__trickling_server__hits_the_deadline_and_the_run_ends(db: Database, hn: FakeHackerNews) -> None:
    seed(hn)
    hn.server.fail(SEARCH_PATH, Reply(200, {"hits": [], "nbPages": 0}, trickle=0.05), times=10)
    started = time.monotonic()
    stats = run(db, make(hn, [], timeout=0.5, max_retries=0))
    assert time.monotonic() - started < 5
    assert stats.error is not None and "timed out" in stats.error and "took more than 0.5s" in stats.error


def test_hackernews__server_that_never_answers__times_out_with_bounded_retries(
    db: Database, hn: FakeHackerNews
) -> None:
    seed(hn)
    hn.server.fail(SEARCH_PATH, Reply(200, {"hits": []}, hang=30), times=2)
    waits: list[float] = []
    started = time.monotonic()
    stats = run(db, make(hn, waits, timeout=0.3, max_retries=1))
    assert time.monotonic() - started < 5, "each attempt ends at the timeout, not when the server gives up"
    assert stats.error is not None and "timed out" in stats.error and "gave up after 2 attempts" in stats.error
    assert len(hn.searches()) == 2 and len(waits) == 1
    with db.transaction() as s:
        (health,) = repo.source_health(s)
    assert health.consecutive_failures == 1 and "timed out" in (health.last_error or "")
    assert run(db, make(hn, [])).new == 2, "once the server answers again, the next run collects"


def test_hackernews__429_with_retry_after__waits_that_long_then_continues(db: Database, hn: FakeHackerNews) -> None:
    seed(hn)
    hn.server.fail(SEARCH_PATH, Reply(429, {"message": "Too many requests"}, {"Retry-After": "7"}))
    waits: list[float] = []
    stats = run(db, make(hn, waits))
    assert (stats.error, stats.new) == (None, 2)
    assert waits == [7.0]
