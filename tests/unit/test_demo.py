from __future__ import annotations

from collections import Counter
from datetime import timedelta

from listener.brands import BrandMatcher
from listener.demo import DEMO_BRANDS, OUTAGE_BRAND, OUTAGE_HOURS, DemoCollector, DemoSettings


def _all(collector: DemoCollector, cursor: str | None = None) -> tuple[list, str | None]:
    mentions, last = [], cursor
    for batch in collector.collect({"": cursor} if cursor else {}):
        mentions.extend(batch.mentions)
        last = batch.cursor
    return mentions, last


def test_demo__same_seed_gives_same_posts() -> None:
    a, _ = _all(DemoCollector(DemoSettings(seed=3)))
    b, _ = _all(DemoCollector(DemoSettings(seed=3)))
    c, _ = _all(DemoCollector(DemoSettings(seed=4)))
    assert [m.text for m in a] == [m.text for m in b]
    assert [m.text for m in a] != [m.text for m in c]


def test_demo__covers_three_languages_several_platforms_and_a_competitor() -> None:
    mentions, _ = _all(DemoCollector())
    assert {m.language for m in mentions} == {"en", "tr", "hu"}
    assert len({m.platform for m in mentions}) >= 4
    matcher = BrandMatcher(DEMO_BRANDS)
    brands = Counter(b for m in mentions for b in matcher.match(m.text))
    assert set(brands) == {b.name for b in DEMO_BRANDS}
    assert any(b.competitor for b in DEMO_BRANDS)
    assert all(m.url.startswith("https://") and m.author and m.followers is not None for m in mentions)
    assert len({m.external_id for m in mentions}) == len(mentions)


def test_demo__outage_hours_hold_a_turkish_spike_about_one_brand() -> None:
    collector = DemoCollector()
    normal = collector.posts_in_hour(10)
    spike = collector.posts_in_hour(OUTAGE_HOURS[0])
    matcher = BrandMatcher(DEMO_BRANDS)
    spike_tr = [m for m in spike if m.language == "tr" and OUTAGE_BRAND in matcher.match(m.text)]
    normal_tr = [m for m in normal if m.language == "tr" and OUTAGE_BRAND in matcher.match(m.text)]
    assert len(spike_tr) >= len(normal_tr) + 10


def test_demo__feature_requests_recur_across_languages() -> None:
    mentions, _ = _all(DemoCollector())
    requests = [m for m in mentions if any(k in m.text.lower() for k in ("dark mode", "karanlık mod", "sötét mód"))]
    assert len(requests) >= 5
    assert {m.language for m in requests} == {"en", "tr", "hu"}


def test_demo__later_collections_continue_the_simulated_clock() -> None:
    settings = DemoSettings(step=timedelta(hours=2))
    collector = DemoCollector(settings)
    first, cursor = _all(collector)
    second, cursor2 = _all(collector, cursor)
    assert second, "a scheduled run must find new posts"
    assert min(m.created_at for m in second) >= max(m.created_at for m in first)
    assert cursor2 is not None and cursor is not None and cursor2 > cursor
    assert {m.external_id for m in first}.isdisjoint({m.external_id for m in second})
