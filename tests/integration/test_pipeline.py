"""The whole pipeline on the demo source, against fresh SQLite and PostgreSQL databases."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from kulak.config import Config
from kulak.errors import StorageError
from kulak.pipeline import (
    brands_from_config,
    build_collectors,
    collect_all,
    language_detector,
    load_configured_scorer,
    run_once,
)
from listener.base import Mention
from storage import repository as repo
from storage.db import Database
from storage.models import CursorRow, MentionBrandRow, MentionRow, ScoreRow


def _count(db: Database, model: type) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_run_once__stores_scores_and_summarizes_every_demo_brand(
    db: Database, make_config: Callable[..., Config]
) -> None:
    cfg = make_config()
    scorer = load_configured_scorer(cfg)
    result = run_once(cfg, db=db, scorer=scorer)
    stats = result.collected[0]
    assert stats.source == "demo" and stats.seen > 300 and stats.new == stats.seen
    assert _count(db, MentionRow) == stats.new
    assert result.scored == stats.new == _count(db, ScoreRow)
    assert {s.brand for s in result.summaries} == {"Paketto", "Lumora", "Vantro"}
    for s in result.summaries:
        assert s.mentions == s.scored == s.negative + s.neutral + s.positive
        assert all(p.url.startswith("https://") for p in s.most_negative)
    with db.transaction() as session:
        row = session.scalars(select(ScoreRow).limit(1)).one()
        assert (row.model_id, row.model_version) == (scorer.model_id, scorer.model_version)


def test_run_once__second_run_adds_only_new_posts_and_never_duplicates(
    db: Database, make_config: Callable[..., Config]
) -> None:
    cfg = make_config()
    scorer = load_configured_scorer(cfg)
    first = run_once(cfg, db=db, scorer=scorer).collected[0]
    second = run_once(cfg, db=db, scorer=scorer).collected[0]
    assert second.new > 0, "the simulated clock moves on, so a scheduled run finds new posts"
    assert _count(db, MentionRow) == first.new + second.new
    assert _count(db, ScoreRow) == _count(db, MentionRow)
    # forget the cursor: everything is read again, and dedup absorbs it
    with db.transaction() as session:
        session.query(CursorRow).delete()
    again = collect_all(db, build_collectors(cfg), brands_from_config(cfg))[0]
    assert again.seen == first.seen and again.new == 0
    with db.transaction() as session:
        dupes = session.execute(
            select(MentionRow.source, MentionRow.external_id)
            .group_by(MentionRow.source, MentionRow.external_id)
            .having(func.count() > 1)
        ).all()
    assert dupes == []


def test_store__a_mention_of_two_brands_is_stored_once_with_both(
    db: Database, make_config: Callable[..., Config]
) -> None:
    cfg = make_config()
    collect_all(db, build_collectors(cfg), brands_from_config(cfg))
    with db.transaction() as session:
        per_mention = session.execute(
            select(MentionBrandRow.mention_id, func.count())
            .group_by(MentionBrandRow.mention_id)
            .having(func.count() > 1)
        ).all()
    assert per_mention, "the demo has comparison posts naming two brands"
    assert all(n == 2 for _, n in per_mention)


def test_store__cursor_and_mentions_commit_together_or_not_at_all(
    db: Database, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = make_config()

    def broken_cursor(*args: object, **kwargs: object) -> None:
        raise StorageError("disk full")

    monkeypatch.setattr(repo, "save_cursor", broken_cursor)
    with pytest.raises(StorageError):
        collect_all(db, build_collectors(cfg), brands_from_config(cfg))
    assert _count(db, MentionRow) == 0, "no mention may be stored without its cursor"
    assert _count(db, CursorRow) == 0


def test_run_once__with_configured_brands_keeps_only_their_mentions(
    db: Database, make_config: Callable[..., Config]
) -> None:
    from kulak.config import BrandConfig

    cfg = replace(make_config(), brands=(BrandConfig("Vantro", competitor=True),))
    result = run_once(cfg, db=db, scorer=load_configured_scorer(cfg))
    assert [s.brand for s in result.summaries] == ["Vantro"]
    assert result.collected[0].unmatched > 0


def test_summary__most_negative_posts_are_distinct_texts(db: Database, make_config: Callable[..., Config]) -> None:
    cfg = make_config()
    result = run_once(cfg, db=db, scorer=load_configured_scorer(cfg))
    for s in result.summaries:
        texts = [p.text for p in s.most_negative]
        assert len(texts) == len(set(texts)) == min(cfg.report.top_negative, s.negative)


class CountingScorer:
    """Wraps a scorer and records every text it is asked to score."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.model_id = inner.model_id  # type: ignore[attr-defined]
        self.model_version = inner.model_version  # type: ignore[attr-defined]
        self.seen: list[str] = []

    def score(self, texts: list[str]) -> list[object]:
        self.seen.extend(texts)
        return self.inner.score(texts)  # type: ignore[attr-defined,no-any-return]


def test_score_pending__identical_texts_are_scored_once_per_run(
    db: Database, make_config: Callable[..., Config]
) -> None:
    from kulak.pipeline import score_pending

    cfg = make_config()
    collect_all(db, build_collectors(cfg), brands_from_config(cfg))
    scorer = CountingScorer(load_configured_scorer(cfg))
    scored = score_pending(db, scorer, chunk=50)  # type: ignore[arg-type]
    assert scored == _count(db, MentionRow)
    assert len(scorer.seen) == len(set(scorer.seen)) < scored, "the demo repeats texts; each is scored once"
    with db.transaction() as s:
        labels = s.execute(
            select(MentionRow.text, func.count(func.distinct(ScoreRow.label)))
            .join(ScoreRow, ScoreRow.mention_id == MentionRow.id)
            .group_by(MentionRow.text)
        ).all()
    assert all(n == 1 for _, n in labels), "copies of a text share one label"


def test_collect__stores_the_detected_language_beside_the_platform_tag(
    db: Database, make_config: Callable[..., Config]
) -> None:
    cfg = make_config()
    collect_all(db, build_collectors(cfg), brands_from_config(cfg), detector=language_detector(cfg))
    with db.transaction() as s:
        rows = s.execute(select(MentionRow.language, MentionRow.detected_language)).all()
    known = [(tag, found) for tag, found in rows if found is not None]
    assert len(known) >= 0.8 * len(rows), "most demo posts are long enough to tell"
    agree = sum(1 for tag, found in known if tag == found)
    assert agree >= 0.9 * len(known), f"detection agrees with the demo's tags on {agree}/{len(known)}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "is not a database URL"),
        ("mysql+pymysql://u:secret-pw@db.example/kulak", "Cannot use database .*pymysql"),
    ],
)
def test_database__unusable_urls_are_clear_errors_without_the_password(url: str, message: str) -> None:
    with pytest.raises(StorageError, match=message) as info:
        Database(url)
    assert "secret-pw" not in str(info.value)


def test_store__portable_path_for_other_databases_dedups_too(
    db: Database, make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Databases without ON CONFLICT take a look-up-then-insert path; it must dedup the same way."""
    monkeypatch.setattr(repo, "NATIVE_UPSERT_DIALECTS", ())
    cfg = make_config()
    scorer = load_configured_scorer(cfg)
    first = run_once(cfg, db=db, scorer=scorer).collected[0]
    with db.transaction() as session:
        session.query(CursorRow).delete()
    again = run_once(cfg, db=db, scorer=scorer)
    assert again.collected[0].new == 0 and again.scored == 0
    assert _count(db, MentionRow) == first.new == _count(db, ScoreRow)
    with db.transaction() as session:
        assert repo.get_cursor(session, "demo") is not None


def test_store__over_long_ids_queries_and_fields_fit_every_database(db: Database) -> None:
    when = datetime(2026, 11, 2, tzinfo=UTC)
    long_id = "at://did:plc:" + "x" * 600
    mention = Mention("feeds", long_id, "p" * 80, "https://e.example/1", "a" * 300, "Paketto!", when, language="x" * 20)
    query = "https://news.example/feed?" + "q" * 600
    for _ in range(2):  # the second time dedup must still recognise the hashed id
        with db.transaction() as session:
            repo.store_mentions(session, [repo.NewMention(mention, ("Paketto",))], cursor=("feeds", query, "c1"))
    with db.transaction() as session:
        assert repo.count_mentions(session, source="feeds") == 1
        assert repo.get_cursors(session, "feeds").get(query) == "c1"
        assert repo.get_cursor(session, "feeds", query) == "c1"
