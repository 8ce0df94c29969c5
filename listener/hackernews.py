"""Hacker News stories and comments through Algolia's public search API (no credentials needed).

One Algolia query per distinct brand term (name, aliases, handles without ``@``): ``query=``
has no OR, and one query per term is the only way to find every term, at one request per term
per run when nothing is new. Each query has its own cursor (the query string is the key): the
newest ``created_at_i`` (epoch seconds) seen, sent back as ``numericFilters=created_at_i>X``.

Results come newest first, so the cursor may only move once the run has read every page it is
going to read for that query: the batches before the last carry the *old* cursor, and only the
last one carries the newest timestamp. A crash mid-query then re-reads pages that dedup absorbs,
never skips the older ones. When a query has more new results than ``max_pages`` pages, the
older ones are not read; the batch says so in ``skipped`` (raise ``max_pages`` or collect more
often). The filter is strict (``>``), so the newest post is not read twice; a post indexed late
with a timestamp at or before the cursor is not seen (Algolia usually indexes within a minute).

Options of ``[sources.<name>]``: ``base_url`` (default https://hn.algolia.com/api/v1),
``max_pages`` per query per run (pages of 100 hits, at least 1, default 5), and the common
``timeout``/``max_retries``. No credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import requests

from kulak.errors import SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.brands import Brand, fold
from listener.http import get_json, session_for
from listener.policy import call_with_retries

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://hn.algolia.com/api/v1"
ITEM_URL = "https://news.ycombinator.com/item?id={}"
HITS_PER_PAGE = 100
MAX_AUTHOR = 256  # the storage column's width

_BLOCK_TAGS = frozenset({"p", "br", "div", "li", "pre", "blockquote", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "hr"})
_HIDDEN_TAGS = frozenset({"script", "style"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_TAGS:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, one line per paragraph.

    Used for HN comments and feed summaries; scripts and styles are dropped with their content.
    """
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    return "\n".join(line for line in lines if line)


def hn_queries(brands: Iterable[Brand]) -> tuple[str, ...]:
    """One Algolia query per distinct brand term, multi-word terms quoted as phrases.

    Handles are searched without their ``@`` (Algolia drops punctuation anyway); terms that fold
    to the same text (case, accents) are searched once.
    """
    seen: dict[str, str] = {}
    for brand in brands:
        for term in brand.terms():
            words = term.lstrip("@").replace('"', " ").split()
            if not words:
                continue
            query = f'"{" ".join(words)}"' if len(words) > 1 else words[0]
            seen.setdefault(fold(query), query)
    return tuple(seen.values())


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def hit_to_mention(source: str, hit: Mapping[str, Any]) -> Mention:
    """A :class:`Mention` from one Algolia hit (a story or a comment).

    Raises ``KeyError``/``TypeError``/``ValueError`` for a hit without an id or a timestamp.
    """
    object_id = str(hit["objectID"])
    created_at = datetime.fromtimestamp(int(hit["created_at_i"]), UTC)
    if hit.get("comment_text"):
        text = html_to_text(str(hit["comment_text"]))
    else:
        parts = [str(hit.get("title") or ""), html_to_text(str(hit.get("story_text") or ""))]
        text = "\n\n".join(p for p in parts if p)
    counts = [c for c in (_int_or_none(hit.get("points")), _int_or_none(hit.get("num_comments"))) if c is not None]
    return Mention(
        source=source,
        external_id=object_id,
        platform="hackernews",
        url=ITEM_URL.format(object_id),
        author=str(hit.get("author") or "unknown")[:MAX_AUTHOR],
        text=text,
        created_at=created_at,
        followers=None,
        engagement=sum(counts) if counts else None,
        language=None,
    )


def _parse_cursor(query: str, cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        log.warning("ignoring unreadable Hacker News cursor %r for query %s", cursor, query)
        return None


class HackerNewsCollector:
    """Collects HN stories and comments matching the brands, newest first, page by page."""

    def __init__(self, spec: SourceSpec, *, session: requests.Session) -> None:
        self.spec = spec
        self.name = spec.name
        self.session = session
        self.base_url = (spec.base_url or DEFAULT_BASE_URL).rstrip("/")
        self.queries = hn_queries(spec.brands)
        self.what = f"Hacker News search ({self.base_url})"

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """One run of every brand query after its stored cursor (see the module docstring)."""
        for query in self.queries:
            yield from self._collect_query(query, _parse_cursor(query, cursors.get(query)))

    def _collect_query(self, query: str, since: int | None) -> Iterator[Batch]:
        old_cursor = str(since) if since is not None else None
        newest = since
        max_pages = max(1, self.spec.max_pages)
        for page in range(max_pages):
            hits, pages = self._page(query, since, page)
            mentions, skipped = self._mentions(hits)
            for mention in mentions:
                stamp = int(mention.created_at.timestamp())
                newest = stamp if newest is None else max(newest, stamp)
            more = bool(hits) and (page + 1 < pages if pages is not None else len(hits) >= HITS_PER_PAGE)
            if more and page + 1 < max_pages:
                yield Batch(mentions, cursor=old_cursor, query=query, skipped=skipped)
                continue
            if more:
                skipped += (
                    f"{self.what}: query {query} has more than {max_pages} pages of new results; older ones "
                    "were not read (raise max_pages or collect more often)",
                )
                log.warning("%s: query %s stopped at max_pages=%d", self.name, query, max_pages)
            yield Batch(mentions, cursor=str(newest) if newest is not None else None, query=query, skipped=skipped)
            return

    def _page(self, query: str, since: int | None, page: int) -> tuple[list[Any], int | None]:
        params: dict[str, str | int] = {
            "query": query,
            "tags": "(story,comment)",
            "hitsPerPage": HITS_PER_PAGE,
            "page": page,
        }
        if since is not None:
            params["numericFilters"] = f"created_at_i>{since}"
        url = f"{self.base_url}/search_by_date"
        data = call_with_retries(
            lambda: self._search(url, params),
            policy=self.spec.policy(),
            sleep=self.spec.sleep,
            rng=self.spec.rng,
            what=self.what,
        )
        return data["hits"], _int_or_none(data.get("nbPages"))

    def _search(self, url: str, params: Mapping[str, str | int]) -> dict[str, Any]:
        """One search request; an answer without ``hits`` is retried like an HTML error page."""
        data = get_json(self.session, url, params=params, what=self.what)
        if not isinstance(data, dict) or not isinstance(data.get("hits"), list):
            raise SourceUnavailable(
                f"{self.what} answered JSON without a 'hits' list; check that base_url points at the "
                "Algolia Hacker News API (https://hn.algolia.com/api/v1)."
            )
        return data

    def _mentions(self, hits: list[Any]) -> tuple[tuple[Mention, ...], tuple[str, ...]]:
        mentions: list[Mention] = []
        skipped: list[str] = []
        for hit in hits:
            try:
                mentions.append(hit_to_mention(self.name, hit))
            except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:
                ident = hit.get("objectID", "?") if isinstance(hit, dict) else "?"
                skipped.append(
                    f"{self.what}: hit {ident} skipped (missing or invalid field: {type(exc).__name__}: {exc})"
                )
        return tuple(mentions), tuple(skipped)


def hackernews_collector(spec: SourceSpec) -> HackerNewsCollector:
    """The Hacker News collector for ``[sources.<name>]`` (``base_url``, ``max_pages``, ``timeout``)."""
    return HackerNewsCollector(spec, session=session_for(timeout=spec.timeout))
