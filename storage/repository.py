"""Repository functions: the only way the rest of kulak reads or writes the database.

They take a session from :meth:`storage.db.Database.transaction` and hand out plain
dataclasses, never ORM objects.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from listener.base import Mention
from sentiment.types import Score
from storage.models import Base, CorrectionRow, CursorRow, MentionBrandRow, MentionRow, ScoreRow, SourceHealthRow

_CHUNK = 500  # rows per INSERT statement, well under SQLite's variable limit


@dataclass(frozen=True)
class NewMention:
    """A collected mention ready to store: the brands it matched and its detected language."""

    mention: Mention
    brands: tuple[str, ...]
    detected_language: str | None = None


@dataclass(frozen=True)
class StoredMention:
    """A mention as stored: its database id, the collected values and its matched brands."""

    id: int
    mention: Mention
    brands: tuple[str, ...]


@dataclass(frozen=True)
class ScoredPost:
    """A scored mention, as listed in summaries."""

    mention_id: int
    text: str
    url: str
    author: str
    platform: str
    created_at: datetime
    negative: float


@dataclass(frozen=True)
class BrandSummary:
    """Per-brand counts for one model's scores."""

    brand: str
    mentions: int
    scored: int
    negative: int
    neutral: int
    positive: int
    most_negative: tuple[ScoredPost, ...]

    @property
    def share_negative(self) -> float:
        return self.negative / self.scored if self.scored else 0.0


NATIVE_UPSERT_DIALECTS = ("sqlite", "postgresql")  # INSERT ... ON CONFLICT; others take the portable path


def _insert_new(session: Session, table: type[Base], rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> int:
    """Insert the rows whose ``keys`` are not stored yet; return how many were inserted.

    SQLite and PostgreSQL use ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (psycopg reports
    ``rowcount`` -1 there, so the returned rows are counted). Other databases look the keys up
    first, which is correct for kulak's single writer per database.
    """
    if not rows:
        return 0
    columns = [getattr(table, k) for k in keys]
    dialect = session.get_bind().dialect.name
    if dialect in NATIVE_UPSERT_DIALECTS:
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(table).values(list(rows)).on_conflict_do_nothing(index_elements=list(keys))
        return len(session.execute(stmt.returning(*columns)).all())
    wanted = {tuple(row[k] for k in keys) for row in rows}
    existing = {tuple(r) for r in session.execute(select(*columns).where(tuple_(*columns).in_(list(wanted))))}
    fresh, seen = [], set(existing)
    for row in rows:
        key = tuple(row[k] for k in keys)
        if key not in seen:
            seen.add(key)
            fresh.append(row)
    if fresh:
        session.execute(insert(table), fresh)
    return len(fresh)


def store_mentions(
    session: Session,
    mentions: Sequence[NewMention],
    *,
    cursor: tuple[str, str, str] | None = None,
    now: datetime | None = None,
) -> int:
    """Insert new mentions with their brands, and the cursor, in the caller's transaction.

    Mentions already stored
    (same source and external id) are left as they are. ``cursor`` is (source, query, value).
    Returns how many mentions were new. Counts ``RETURNING`` rows, because psycopg reports
    ``rowcount`` -1 after ``ON CONFLICT DO NOTHING``.
    """
    now = now or datetime.now(UTC)
    inserted = 0
    for start in range(0, len(mentions), _CHUNK):
        chunk = mentions[start : start + _CHUNK]
        rows = [_mention_values(item, now) for item in chunk]
        inserted += _insert_new(session, MentionRow, rows, ("source", "external_id"))
        keys = [(item.mention.source, fit_key(item.mention.external_id, 512)) for item in chunk]
        found = session.execute(
            select(MentionRow.source, MentionRow.external_id, MentionRow.id).where(
                tuple_(MentionRow.source, MentionRow.external_id).in_(keys)
            )
        )
        ids = {(src, ext): mid for src, ext, mid in found}
        links = [
            {"mention_id": ids[(item.mention.source, fit_key(item.mention.external_id, 512))], "brand": brand}
            for item in chunk
            for brand in item.brands
        ]
        _insert_new(session, MentionBrandRow, links, ("mention_id", "brand"))
    if cursor is not None:
        save_cursor(session, *cursor, now=now)
    return inserted


def fit_key(value: str, limit: int) -> str:
    """A key column value that fits ``limit``: long ones become a stable hash (still unique)."""
    if len(value) <= limit:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _clip(value: str | None, limit: int) -> str | None:
    return value[:limit] if value is not None else None


def _mention_values(item: NewMention, now: datetime) -> dict[str, object]:
    # Column limits hold on every database (PostgreSQL enforces them, SQLite would not).
    m = item.mention
    return {
        "source": m.source,
        "external_id": fit_key(m.external_id, 512),
        "platform": m.platform[:64],
        "url": m.url,
        "author": m.author[:256],
        "author_followers": m.followers,
        "engagement": m.engagement,
        "language": _clip(m.language, 16),
        "detected_language": item.detected_language,
        "text": m.text,
        "created_at": m.created_at,
        "collected_at": now,
    }


def save_cursor(session: Session, source: str, query: str, value: str, *, now: datetime | None = None) -> None:
    """Upsert the collection cursor of (source, query)."""
    row = CursorRow(source=source, query=fit_key(query, 512), value=value, updated_at=now or datetime.now(UTC))
    session.merge(row)


def get_cursor(session: Session, source: str, query: str = "") -> str | None:
    """The stored cursor of (source, query), or None before the first collection."""
    key = fit_key(query, 512)
    return session.scalar(select(CursorRow.value).where(CursorRow.source == source, CursorRow.query == key))


class StoredCursors(dict[str, str]):
    """A source's cursors keyed by query; looking up a query longer than the column finds its hashed key."""

    def __getitem__(self, query: str) -> str:
        return super().__getitem__(fit_key(query, 512))

    def __contains__(self, query: object) -> bool:
        return isinstance(query, str) and super().__contains__(fit_key(query, 512))

    def get(self, query: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(fit_key(query, 512), default)


def get_cursors(session: Session, source: str) -> StoredCursors:
    """Every stored cursor of ``source``, keyed by query."""
    rows = session.execute(select(CursorRow.query, CursorRow.value).where(CursorRow.source == source))
    return StoredCursors({query: value for query, value in rows})


def count_mentions(session: Session, *, source: str | None = None) -> int:
    """How many mentions are stored (optionally from one source)."""
    stmt = select(func.count()).select_from(MentionRow)
    if source is not None:
        stmt = stmt.where(MentionRow.source == source)
    return int(session.scalar(stmt) or 0)


def _unscored_filter(model_id: str, model_version: str) -> ColumnElement[bool]:
    scored = select(ScoreRow.id).where(
        ScoreRow.mention_id == MentionRow.id, ScoreRow.model_id == model_id, ScoreRow.model_version == model_version
    )
    return ~scored.exists()


def count_unscored(session: Session, *, model_id: str, model_version: str) -> int:
    """How many mentions have no score from this model version."""
    stmt = select(func.count()).select_from(MentionRow).where(_unscored_filter(model_id, model_version))
    return int(session.scalar(stmt) or 0)


def unscored_mentions(session: Session, *, model_id: str, model_version: str, limit: int) -> list[StoredMention]:
    """Up to ``limit`` mentions that have no score from this model version, oldest first."""
    stmt = select(MentionRow).where(_unscored_filter(model_id, model_version)).order_by(MentionRow.id).limit(limit)
    rows = session.scalars(stmt).all()
    brands = _brands_of(session, [r.id for r in rows])
    return [StoredMention(r.id, _to_mention(r), brands.get(r.id, ())) for r in rows]


def _to_mention(r: MentionRow) -> Mention:
    return Mention(
        source=r.source,
        external_id=r.external_id,
        platform=r.platform,
        url=r.url,
        author=r.author,
        text=r.text,
        created_at=r.created_at,
        followers=r.author_followers,
        engagement=r.engagement,
        language=r.language,
    )


def _brands_of(session: Session, ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    id_list = list(ids)
    for start in range(0, len(id_list), _CHUNK):
        chunk = id_list[start : start + _CHUNK]
        for mid, brand in session.execute(
            select(MentionBrandRow.mention_id, MentionBrandRow.brand)
            .where(MentionBrandRow.mention_id.in_(chunk))
            .order_by(MentionBrandRow.brand)
        ):
            out.setdefault(mid, []).append(brand)
    return {k: tuple(v) for k, v in out.items()}


def save_scores(
    session: Session,
    scores: Sequence[tuple[int, Score]],
    *,
    model_id: str,
    model_version: str,
    now: datetime | None = None,
) -> None:
    """Store one score per mention for this model version (a repeated score is ignored)."""
    now = now or datetime.now(UTC)
    for start in range(0, len(scores), _CHUNK):
        rows = [
            {
                "mention_id": mid,
                "model_id": model_id,
                "model_version": model_version,
                "label": s.label,
                "negative": s.negative,
                "neutral": s.neutral,
                "positive": s.positive,
                "scored_at": now,
            }
            for mid, s in scores[start : start + _CHUNK]
        ]
        _insert_new(session, ScoreRow, rows, ("mention_id", "model_id", "model_version"))


def brand_summaries(
    session: Session,
    *,
    model_id: str,
    model_version: str,
    top_n: int = 3,
    since: datetime | None = None,
) -> list[BrandSummary]:
    """Mentions, label counts and the most negative posts per brand, for one model version.

    A person's correction overrides the model's label wherever it exists.
    """
    score_join = and_(
        ScoreRow.mention_id == MentionRow.id, ScoreRow.model_id == model_id, ScoreRow.model_version == model_version
    )
    label = func.coalesce(CorrectionRow.label, ScoreRow.label)
    base = (
        select(MentionBrandRow.brand, label, func.count(MentionRow.id))
        .join(MentionRow, MentionRow.id == MentionBrandRow.mention_id)
        .outerjoin(ScoreRow, score_join)
        .outerjoin(CorrectionRow, CorrectionRow.mention_id == MentionRow.id)
        .group_by(MentionBrandRow.brand, label)
    )
    if since is not None:
        base = base.where(MentionRow.created_at >= since)
    counts: dict[str, dict[str | None, int]] = {}
    for brand, effective, n in session.execute(base):
        counts.setdefault(brand, {})[effective] = int(n)
    out = []
    for brand in sorted(counts):
        by_label = counts[brand]
        scored = sum(n for effective, n in by_label.items() if effective is not None)
        out.append(
            BrandSummary(
                brand=brand,
                mentions=sum(by_label.values()),
                scored=scored,
                negative=by_label.get("negative", 0),
                neutral=by_label.get("neutral", 0),
                positive=by_label.get("positive", 0),
                most_negative=_most_negative(session, brand, score_join, top_n=top_n, since=since),
            )
        )
    return out


def _most_negative(
    session: Session, brand: str, score_join: ColumnElement[bool], *, top_n: int, since: datetime | None
) -> tuple[ScoredPost, ...]:
    negativity = func.coalesce(ScoreRow.negative, 1.0)  # a post people marked negative needs no score
    worst = (
        select(MentionRow, negativity)
        .join(MentionBrandRow, MentionBrandRow.mention_id == MentionRow.id)
        .outerjoin(ScoreRow, score_join)
        .outerjoin(CorrectionRow, CorrectionRow.mention_id == MentionRow.id)
        .where(MentionBrandRow.brand == brand, func.coalesce(CorrectionRow.label, ScoreRow.label) == "negative")
        .order_by(negativity.desc(), MentionRow.id)
        .limit(top_n * 20)  # room to skip copies of the same text (retweets, campaigns)
    )
    if since is not None:
        worst = worst.where(MentionRow.created_at >= since)
    posts: list[ScoredPost] = []
    texts: set[str] = set()
    for r, neg in session.execute(worst):
        key = " ".join(r.text.casefold().split())
        if key not in texts and len(posts) < top_n:
            texts.add(key)
            posts.append(ScoredPost(r.id, r.text, r.url, r.author, r.platform, r.created_at, float(neg)))
    return tuple(posts)


def set_correction(session: Session, mention_id: int, label: str, *, by: str, now: datetime | None = None) -> None:
    """Record (or replace) a person's label for a mention; raises KeyError if the mention is unknown."""
    if session.get(MentionRow, mention_id) is None:
        raise KeyError(mention_id)
    session.merge(
        CorrectionRow(mention_id=mention_id, label=label, labelled_by=by, labelled_at=now or datetime.now(UTC))
    )


def corrected_texts(session: Session) -> list[tuple[str, str]]:
    """(text, label) of every corrected mention, oldest correction first."""
    rows = session.execute(
        select(MentionRow.text, CorrectionRow.label)
        .join(CorrectionRow, CorrectionRow.mention_id == MentionRow.id)
        .order_by(CorrectionRow.labelled_at, MentionRow.id)
    )
    return [(text, label) for text, label in rows]


@dataclass(frozen=True)
class SourceHealth:
    """The collection record of one source."""

    source: str
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    last_new_mentions: int


def _health_row(session: Session, source: str) -> SourceHealthRow:
    row = session.get(SourceHealthRow, source)
    if row is None:
        row = SourceHealthRow(source=source, consecutive_failures=0, last_new_mentions=0)
        session.add(row)
    return row


def record_success(session: Session, source: str, *, new_mentions: int, now: datetime | None = None) -> None:
    """A collection from ``source`` finished: failures reset."""
    row = _health_row(session, source)
    row.last_success_at = now or datetime.now(UTC)
    row.consecutive_failures = 0
    row.last_new_mentions = new_mentions


def record_failure(session: Session, source: str, *, error: str, now: datetime | None = None) -> None:
    """A collection from ``source`` failed with ``error`` (already free of secrets)."""
    row = _health_row(session, source)
    row.last_error_at = now or datetime.now(UTC)
    row.last_error = error[:2000]
    row.consecutive_failures = (row.consecutive_failures or 0) + 1


def source_health(session: Session) -> list[SourceHealth]:
    """Every source's record, by name."""
    rows = session.scalars(select(SourceHealthRow).order_by(SourceHealthRow.source)).all()
    return [
        SourceHealth(
            r.source, r.last_success_at, r.last_error_at, r.last_error, r.consecutive_failures, r.last_new_mentions
        )
        for r in rows
    ]
