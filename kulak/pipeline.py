"""Wiring: collectors → brand matching → storage → scoring → summary."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kulak.config import Config
from kulak.errors import ConfigError, SourceError
from kulak.progress import progress, progress_bar
from listener.base import Batch, Collector, SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.demo import DEMO_BRANDS
from listener.files import FileImporter
from listener.registry import RegisteredCollector, collector_registry
from reports.health import health_warnings
from sentiment.language import LanguageDetector
from sentiment.scorer import Scorer, load_scorer
from sentiment.types import Score
from storage import repository as repo
from storage.db import Database

log = logging.getLogger(__name__)

SCORE_CHUNK = 256  # mentions per scoring transaction: a crash loses at most one chunk of work
KNOWN_TEXTS_LIMIT = 100_000  # distinct texts remembered per scoring run


@dataclass
class CollectStats:
    """What one collection from one source did."""

    source: str
    seen: int = 0
    new: int = 0
    unmatched: int = 0
    skipped: list[str] = field(default_factory=list)
    error: str | None = None


def brands_from_config(cfg: Config) -> tuple[Brand, ...]:
    """Configured brands, or the demo's fictional brands when none are configured."""
    if not cfg.brands:
        return DEMO_BRANDS
    return tuple(Brand(b.name, b.aliases, b.handles, b.competitor) for b in cfg.brands)


def build_collectors(cfg: Config, *, registry: Mapping[str, RegisteredCollector] | None = None) -> dict[str, Collector]:
    """The enabled collectors by name: the demo (``[demo]``) and each enabled ``[sources.<name>]``."""
    registry = collector_registry() if registry is None else registry
    brands = brands_from_config(cfg)
    wanted: dict[str, Mapping[str, object]] = {}
    if cfg.demo.enabled:
        wanted["demo"] = asdict(cfg.demo)
    for name, table in cfg.sources.items():
        if table.get("enabled", True):
            wanted[name] = table
    collectors: dict[str, Collector] = {}
    for name, options in wanted.items():
        kind = str(options.get("type") or name)
        if kind not in registry:
            raise ConfigError(
                f"unknown collector {kind!r} for [sources.{name}]; installed collectors: "
                f'{", ".join(sorted(registry))}. Set type = "..." to one of them; see `kulak collectors`.'
            )
        try:
            collectors[name] = registry[kind].factory(SourceSpec(name, brands, options))
        except SourceError as exc:  # e.g. a credential variable not set: that source fails, the others run
            collectors[name] = UnusableCollector(name, exc)
    return collectors


class UnusableCollector:
    """Stands in for a source whose collector could not be built; every collection reports why."""

    def __init__(self, name: str, error: SourceError) -> None:
        self.name, self.error = name, error

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        raise self.error
        yield  # pragma: no cover - makes this a generator like every collector


def only_source(collectors: Mapping[str, Collector], name: str) -> dict[str, Collector]:
    """The one collector ``name`` (for ``kulak run --once --source NAME``)."""
    if name not in collectors:
        enabled = ", ".join(sorted(collectors)) or "none"
        raise ConfigError(f"source {name!r} is not enabled (enabled sources: {enabled}); see `kulak collectors`.")
    return {name: collectors[name]}


def open_database(cfg: Config) -> Database:
    """Open and migrate the configured database."""
    db = Database(cfg.database_url)
    db.migrate()
    return db


@contextmanager
def opened_database(cfg: Config) -> Iterator[Database]:
    """:func:`open_database` for the length of a ``with`` block; the engine is disposed after."""
    db = open_database(cfg)
    try:
        yield db
    finally:
        db.dispose()


def load_configured_scorer(cfg: Config) -> Scorer:
    """The scorer named by ``model.name`` (the bundled model by default)."""
    head = Path(cfg.model.head) if cfg.model.head else None
    return load_scorer(
        cfg.model.name,
        cache_dir=cfg.data_dir / "models",
        head_path=head,
        batch_size=cfg.model.batch_size,
        max_length=cfg.model.max_length,
        backend=cfg.model.backend,
    )


def store_batch(
    db: Database,
    batch: Batch,
    *,
    source: str,
    matcher: BrandMatcher,
    stats: CollectStats,
    detector: LanguageDetector | None = None,
) -> None:
    """Store one batch's brand-matched mentions and its cursor in a single transaction."""
    matched = [(m, matcher.match(m.text)) for m in batch.mentions]
    kept = [(m, brands) for m, brands in matched if brands]
    stats.unmatched += len(matched) - len(kept)
    languages = detector.detect([m.text for m, _ in kept]) if detector and kept else [None] * len(kept)
    items = [repo.NewMention(m, brands, lang) for (m, brands), lang in zip(kept, languages, strict=True)]
    cursor = (source, batch.query, batch.cursor) if batch.cursor is not None else None
    with db.transaction() as session:
        stats.new += repo.store_mentions(session, items, cursor=cursor)
    stats.seen += len(batch.mentions)
    stats.skipped.extend(batch.skipped)


def language_detector(cfg: Config) -> LanguageDetector | None:
    """The configured language detector, or None when detection is off."""
    return LanguageDetector(cfg.language.candidates) if cfg.language.enabled else None


def _guarded(collector: Collector, cursors: Mapping[str, str], stats: CollectStats) -> Iterator[Batch]:
    """The collector's batches; a failure of the collector (not of storage) ends them and is noted."""
    try:
        yield from collector.collect(cursors)
    except SourceError as exc:
        stats.error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:  # a collector bug must not silence the other sources
        log.exception("collector %s crashed", collector.name)
        stats.error = f"internal error in the {collector.name} collector: {type(exc).__name__}: {exc}"


def collect(
    db: Database, collector: Collector, matcher: BrandMatcher, *, detector: LanguageDetector | None = None
) -> CollectStats:
    """Run one collection: every batch the collector yields after its stored cursor.

    A failing source never stops the run: batches stored before the failure stay stored (each
    with its cursor), the error goes into the source's health record, and the caller carries on.
    """
    stats = CollectStats(source=collector.name)
    with db.transaction() as session:
        cursors = repo.get_cursors(session, collector.name)
    batches = _guarded(collector, cursors, stats)
    for batch in progress(batches, desc=f"collecting {collector.name}", unit="batch"):
        store_batch(db, batch, source=collector.name, matcher=matcher, stats=stats, detector=detector)
    with db.transaction() as session:
        if stats.error is None:
            repo.record_success(session, collector.name, new_mentions=stats.new)
        else:
            repo.record_failure(session, collector.name, error=stats.error)
    log.info("%s: %d seen, %d new, %d without a brand", collector.name, stats.seen, stats.new, stats.unmatched)
    return stats


def _score_once(scorer: Scorer, texts: list[str], known: dict[str, Score]) -> list[Score]:
    """Score texts, reusing scores of texts already seen in this run (retweets, copy-paste campaigns)."""
    if len(known) > KNOWN_TEXTS_LIMIT:
        known.clear()
    new = list(dict.fromkeys(t for t in texts if t not in known))
    if new:
        known.update(zip(new, scorer.score(new), strict=True))
    return [known[t] for t in texts]


def score_pending(db: Database, scorer: Scorer, *, chunk: int | None = None) -> int:
    """Score every stored mention that has no score from this model version yet.

    Works in chunks, each saved in its own transaction, so an interrupted run keeps what it
    scored and the next run carries on from there.
    """
    model_id, version, chunk = scorer.model_id, scorer.model_version, chunk or SCORE_CHUNK
    with db.transaction() as session:
        total = repo.count_unscored(session, model_id=model_id, model_version=version)
    done, known = 0, dict[str, Score]()
    with progress_bar(total=total, desc="scoring", unit="post") as bar:
        while True:
            with db.transaction() as session:
                pending = repo.unscored_mentions(session, model_id=model_id, model_version=version, limit=chunk)
            if not pending:
                return done
            scores = _score_once(scorer, [m.mention.text for m in pending], known)
            with db.transaction() as session:
                pairs = [(m.id, s) for m, s in zip(pending, scores, strict=True)]
                repo.save_scores(session, pairs, model_id=model_id, model_version=version)
            done += len(pending)
            bar.update(len(pending))
            log.info("scored %d of %d mentions (%d distinct texts)", done, total, len(known))


def collect_all(
    db: Database,
    collectors: Mapping[str, Collector],
    brands: Iterable[Brand],
    *,
    detector: LanguageDetector | None = None,
) -> list[CollectStats]:
    """Collect once from each collector."""
    matcher = BrandMatcher(brands)
    return [collect(db, c, matcher, detector=detector) for c in collectors.values()]


def import_file(cfg: Config, db: Database, path: Path) -> CollectStats:
    """Import one JSONL/CSV export; the whole file is validated before one transaction stores it."""
    importer = FileImporter(path, source=cfg.import_.source, columns=asdict(cfg.import_.columns))
    parsed = importer.parse()
    stats = CollectStats(source=importer.name)
    batch = Batch(parsed.mentions, cursor=None, skipped=parsed.skipped)
    matcher = BrandMatcher(brands_from_config(cfg))
    store_batch(db, batch, source=importer.name, matcher=matcher, stats=stats, detector=language_detector(cfg))
    return stats


@dataclass(frozen=True)
class RunResult:
    """What ``kulak run --once`` did and found."""

    collected: list[CollectStats]
    scored: int
    summaries: list[repo.BrandSummary]
    model: str
    brands: tuple[Brand, ...]
    warnings: list[str] = field(default_factory=list)


def run_once(
    cfg: Config, *, db: Database, scorer: Scorer, collectors: Mapping[str, Collector] | None = None
) -> RunResult:
    """Collect from every enabled source, score what is new, and summarize per brand."""
    brands = brands_from_config(cfg)
    chosen = collectors if collectors is not None else build_collectors(cfg)
    stats = collect_all(db, chosen, brands, detector=language_detector(cfg))
    scored = score_pending(db, scorer)
    since = datetime.now(UTC) - timedelta(hours=cfg.report.window_hours) if cfg.report.window_hours else None
    with db.transaction() as session:
        summaries = repo.brand_summaries(
            session,
            model_id=scorer.model_id,
            model_version=scorer.model_version,
            top_n=cfg.report.top_negative,
            since=since,
        )
        warnings = health_warnings(repo.source_health(session))
    return RunResult(stats, scored, summaries, f"{scorer.model_id} ({scorer.model_version})", brands, warnings)
