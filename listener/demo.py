"""The built-in demo source: fictional brands, deterministic posts on a simulated clock.

Every simulated hour has its own seeded random generator, so the same seed always yields the
same posts whatever the collection schedule. The first collection back-fills a few days (with a
Turkish delivery outage of Paketto that makes an angry-customer spike); each later collection
advances the simulated clock by ``step`` so scheduled runs keep finding new posts.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kulak.errors import ConfigError
from listener import demo_texts as T
from listener.base import Batch, Mention, SourceSpec
from listener.brands import Brand

SOURCE = "demo"

DEMO_BRANDS = (
    Brand("Paketto", aliases=("Paketto Kargo",), handles=("@paketto", "@pakettotr")),
    Brand("Lumora", aliases=("Lumora Market",), handles=("@lumoraapp",)),
    Brand("Vantro", aliases=("Vantro Express",), handles=("@vantro",), competitor=True),
)

OUTAGE_BRAND = "Paketto"
OUTAGE_HOURS = range(40, 47)  # simulated hours after the start: the spike
OUTAGE_POSTS_PER_HOUR = 14

_PLATFORMS = ("x", "reddit", "mastodon", "bluesky", "hackernews")
_LANG_WEIGHTS = {"en": 5, "tr": 3, "hu": 2}
_KINDS = {"positive": 30, "neutral": 30, "negative": 25, "request": 10, "comparison": 5}
_BRAND_WEIGHTS = {"Paketto": 45, "Lumora": 30, "Vantro": 25}


@dataclass(frozen=True)
class DemoSettings:
    """How the demo behaves; see the ``[demo]`` section of the configuration."""

    seed: int = 7
    posts_per_hour: int = 40
    step: timedelta = timedelta(hours=3)
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    backfill: timedelta = timedelta(hours=72)


def _pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _deep_link(platform: str, author: str, post_id: str) -> str:
    links = {
        "x": f"https://x.com/{author}/status/{post_id}",
        "reddit": f"https://www.reddit.com/r/parcels/comments/{post_id}/",
        "mastodon": f"https://mastodon.social/@{author}/{post_id}",
        "bluesky": f"https://bsky.app/profile/{author}.bsky.social/post/{post_id}",
        "hackernews": f"https://news.ycombinator.com/item?id={post_id}",
    }
    return links[platform]


class DemoCollector:
    """Collector for the demo source (see the module docstring)."""

    name = SOURCE

    def __init__(self, settings: DemoSettings = DemoSettings()) -> None:
        self.settings = settings
        self._brands = {b.name: b for b in DEMO_BRANDS}

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """One batch per simulated hour, each carrying the cursor (ISO time) it reaches."""
        s = self.settings
        cursor = cursors.get("")
        begin = datetime.fromisoformat(cursor) if cursor else s.start
        end = begin + (s.step if cursor else s.backfill)
        hour = begin
        while hour < end:
            nxt = min(hour + timedelta(hours=1), end)
            mentions = tuple(m for m in self.posts_in_hour(self._hour_index(hour)) if hour <= m.created_at < nxt)
            yield Batch(mentions=mentions, cursor=nxt.isoformat())
            hour = nxt

    def _hour_index(self, when: datetime) -> int:
        return int((when - self.settings.start).total_seconds() // 3600)

    def posts_in_hour(self, index: int) -> list[Mention]:
        """Every demo post of simulated hour ``index`` (0 = the configured start)."""
        s = self.settings
        rng = random.Random(f"{s.seed}:{index}")
        base = s.start + timedelta(hours=index)
        count = rng.randint(s.posts_per_hour // 2, s.posts_per_hour * 3 // 2)
        posts = [self._post(rng, base, index, i) for i in range(count)]
        if index in OUTAGE_HOURS:
            posts += [self._outage_post(rng, base, index, i) for i in range(OUTAGE_POSTS_PER_HOUR)]
        return sorted(posts, key=lambda m: m.created_at)

    def _term(self, rng: random.Random, brand: str) -> str:
        b = self._brands[brand]
        return rng.choice((b.name, b.name, *b.aliases, *b.handles))

    def _post(self, rng: random.Random, base: datetime, hour: int, i: int) -> Mention:
        lang, kind = _pick(rng, _LANG_WEIGHTS), _pick(rng, _KINDS)
        brand = _pick(rng, _BRAND_WEIGHTS)
        if kind == "comparison":
            other = rng.choice([n for n in self._brands if n != brand])
            text = rng.choice(T.COMPARISONS[lang]).format(b=self._term(rng, brand), c=self._term(rng, other))
        else:
            pool = {"positive": T.POSITIVE, "neutral": T.NEUTRAL, "negative": T.NEGATIVE, "request": T.REQUESTS}
            text = rng.choice(pool[kind][lang]).format(b=self._term(rng, brand))
        return self._mention(rng, base, hour, i, lang, text)

    def _outage_post(self, rng: random.Random, base: datetime, hour: int, i: int) -> Mention:
        text = rng.choice(T.OUTAGE_TR).format(b=self._term(rng, OUTAGE_BRAND))
        return self._mention(rng, base, hour, 1000 + i, "tr", text)

    def _mention(self, rng: random.Random, base: datetime, hour: int, i: int, lang: str, text: str) -> Mention:
        platform = rng.choice(_PLATFORMS)
        author = f"{rng.choice(T.FIRST_NAMES[lang])}{rng.randint(1, 999)}"
        post_id = f"{self.settings.seed}{hour:05d}{i:04d}"
        return Mention(
            source=SOURCE,
            external_id=post_id,
            platform=platform,
            url=_deep_link(platform, author, post_id),
            author=author,
            text=text,
            created_at=base + timedelta(seconds=rng.uniform(0, 3599)),
            followers=int(rng.lognormvariate(5.5, 1.6)),
            engagement=int(rng.expovariate(1 / 12)),
            language=lang,
        )


def demo_collector(spec: SourceSpec) -> DemoCollector:
    """Registry factory: settings come from the ``[demo]`` section (see the configuration)."""
    o = spec.options
    try:
        start = datetime.fromisoformat(str(o.get("start", "2026-11-02T00:00:00Z")).replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"demo.start {o.get('start')!r} is not an ISO 8601 time (e.g. 2026-11-02T00:00:00Z)."
        ) from None
    defaults = DemoSettings()
    return DemoCollector(
        DemoSettings(
            seed=int(o.get("seed", defaults.seed)),
            posts_per_hour=int(o.get("posts_per_hour", defaults.posts_per_hour)),
            step=timedelta(minutes=int(o.get("step_minutes", defaults.step.total_seconds() // 60))),
            start=start if start.tzinfo else start.replace(tzinfo=UTC),
        )
    )
