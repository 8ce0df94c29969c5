"""X (Twitter) recent search through tweepy: one query and one cursor per configured brand.

Cursor design
-------------
Recent search answers newest first and pages *backwards* in time with ``next_token``, while
``since_id`` bounds the pages from below. Storing the newest id of page 1 as the next run's
``since_id`` as soon as page 1 is stored would be wrong: if the run then stops after page 1
(a crash, a 5xx, the ``max_pages`` budget), the older tweets of pages 2..n would lie below the new
``since_id`` and never be read. So the cursor of a query is a small JSON object
(:class:`SearchCursor`) with three parts:

``since_id``
    everything at or below this id is stored; a search "pass" reads the tweets above it.
``newest_id``
    the newest id of the pass in progress (from its first page), not yet safe to resume from.
``next_token``
    where the pass in progress continues.

After each stored page the batch carries the cursor of "what is left": while a pass has more
pages, ``since_id`` stays where it was and ``newest_id``/``next_token`` are pending; only when the
pass ends (no ``next_token``) does ``since_id`` advance to ``newest_id``. A run that stops mid-pass
is resumed from ``next_token`` by the next run, which then starts one fresh pass (above the new
``since_id``) with the pages left of its budget. Every failure mode re-reads at worst; the
``(source, tweet id)`` key makes re-reads harmless, so nothing is ever skipped or duplicated.

X answers 400 for a ``since_id`` older than its 7-day window (and for an expired ``next_token``):
the collector then drops that part of the cursor and searches the whole window again, once,
with a warning in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import requests
import tweepy

from kulak.errors import AuthError, ConfigError, SourceError, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.brands import Brand
from listener.http import parse_json, raise_for_status, session_for
from listener.policy import call_with_retries

log = logging.getLogger(__name__)

PLATFORM = "x"
TWEET_FIELDS = ["created_at", "lang", "public_metrics", "author_id"]
USER_FIELDS = ["username", "public_metrics"]
# X's tags for "no language": undetermined, media/hashtag/mention/cashtag-only tweets.
_NO_LANGUAGE = frozenset({"und", "zxx", "qme", "qht", "qam", "qct", "qst"})
_ENGAGEMENT = ("like_count", "retweet_count", "reply_count", "quote_count")

Param = Literal["since_id", "next_token"]


def brand_query(brand: Brand, *, lang: str | None = None) -> str:
    """The recent-search query for one brand: any of its terms, retweets left out.

    Names and aliases are quoted (exact phrases), handles stay operators (``@paketto``), e.g.
    ``("Paketto" OR "Paketto Kargo" OR @paketto) -is:retweet lang:tr``.
    """
    terms: list[str] = []
    for term in brand.terms():
        clean = " ".join(term.replace('"', " ").split())
        if not clean:
            continue
        text = clean if clean.startswith("@") and " " not in clean else f'"{clean}"'
        if text not in terms:
            terms.append(text)
    query = f"({' OR '.join(terms)}) -is:retweet"
    return f"{query} lang:{lang}" if lang else query


@dataclass(frozen=True)
class SearchCursor:
    """Where one query's search stands; see the module docstring for why it has three parts."""

    since_id: str | None = None
    newest_id: str | None = None
    next_token: str | None = None

    @classmethod
    def parse(cls, value: str | None) -> SearchCursor:
        """Read a stored cursor; a bare tweet id is a ``since_id``, anything unreadable starts over."""
        if not value:
            return cls()
        if value.isdigit():
            return cls(since_id=value)
        try:
            data = json.loads(value)
            return cls(**{k: str(data[k]) for k in ("since_id", "newest_id", "next_token") if data.get(k)})
        except (ValueError, TypeError, AttributeError):
            log.warning("ignoring an unreadable X cursor %r: searching the whole 7-day window", value[:80])
            return cls()

    def dump(self) -> str:
        """The JSON stored as the cursor value (only the parts that are set)."""
        return json.dumps({k: v for k, v in vars(self).items() if v is not None}, sort_keys=True)

    def next_page(self, token: str) -> SearchCursor:
        """The pass goes on at ``token``; ``since_id`` must not move yet."""
        return SearchCursor(self.since_id, self.newest_id, token)

    def finished(self) -> SearchCursor:
        """The pass is complete: everything up to its newest tweet is stored."""
        return SearchCursor(since_id=self.newest_id or self.since_id)

    def without(self, param: Param) -> SearchCursor:
        """The cursor with a parameter X refused dropped (and the pass restarted)."""
        return SearchCursor() if param == "since_id" else SearchCursor(since_id=self.since_id)


class _RefusedParameter(SourceError):
    """X refused our ``since_id`` or ``next_token`` (too old, expired): search without it."""

    def __init__(self, message: str, *, param: Param) -> None:
        super().__init__(message)
        self.param = param


def _newest(ids: Iterable[object]) -> str | None:
    """The largest of some tweet ids (numeric strings of any length)."""
    clean = [str(i) for i in ids if i is not None and str(i).isdigit()]
    return max(clean, key=lambda i: (len(i.lstrip("0")), i.lstrip("0")), default=None)


def _as_dict(result: Any) -> dict[str, Any]:
    """The raw JSON of a search answer (the client may be built with any ``return_type``)."""
    well_formed = isinstance(result, dict) and isinstance(result.get("data") or [], list)
    if well_formed and isinstance(result.get("meta") or {}, dict):
        return result  # type: ignore[no-any-return]
    if isinstance(result, tweepy.Response):
        includes = {k: [getattr(v, "data", v) for v in vs] for k, vs in (result.includes or {}).items()}
        data = [getattr(t, "data", t) for t in result.data or []]
        return {"data": data, "includes": includes, "meta": dict(result.meta or {})}
    raise SourceUnavailable(f"X answered something that is not a search result ({type(result).__name__})")


class XCollector:
    """Recent search on X for every configured brand, through tweepy.

    ``client`` is a ``tweepy.Client`` built with ``return_type=dict`` (any return type works);
    by default it is built on first use from the ``bearer_token_env`` variable, with ``base_url``
    and ``timeout`` applied to its session. Each query reads at most ``max_pages`` pages per run.
    """

    def __init__(self, spec: SourceSpec, *, client: Any = None) -> None:
        self.spec = spec
        self.name = spec.name
        self._client = client
        page_size = spec.option("page_size", 100)
        if not (isinstance(page_size, int | str) and str(page_size).isdigit() and 10 <= int(page_size) <= 100):
            raise ConfigError(
                f"[sources.{spec.name}] page_size = {page_size!r} is not valid: X returns 10 to 100 posts per page."
            )
        self.page_size = int(page_size)
        expand = spec.option("expand_authors", True)
        self.expand_authors = (
            expand.strip().lower() in {"1", "true", "yes", "on"} if isinstance(expand, str) else bool(expand)
        )
        lang = spec.option("lang")
        self.queries = tuple(dict.fromkeys(brand_query(b, lang=str(lang) if lang else None) for b in spec.brands))

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """Yield one batch per page, per brand query, after each query's stored cursor."""
        client = self._client if self._client is not None else self._build_client()
        for query in self.queries:
            yield from self._collect_query(client, query, SearchCursor.parse(cursors.get(query)))

    def _build_client(self) -> Any:
        token = self.spec.credential("bearer_token")
        client = tweepy.Client(bearer_token=token, wait_on_rate_limit=False, return_type=dict)
        session_for(timeout=self.spec.timeout, base_url=self.spec.base_url, session=client.session)
        self._client = client
        return client

    def _collect_query(self, client: Any, query: str, state: SearchCursor) -> Iterator[Batch]:
        """Page through one query: resume a pending pass, then (budget left) one fresh pass."""
        pages = 0
        fresh_pass = state.next_token is None
        tokens_seen = {state.next_token} if state.next_token else set()
        while pages < self.spec.max_pages:
            current = state
            try:
                body = call_with_retries(
                    self._requester(client, query, current),
                    policy=self.spec.policy(),
                    sleep=self.spec.sleep,
                    rng=self.spec.rng,
                    what=f"X search for {query!r}",
                )
            except _RefusedParameter as exc:
                log.warning("%s; searching again without it (posts already stored are skipped)", exc)
                state, fresh_pass = state.without(exc.param), True
                continue
            pages += 1
            data = body.get("data") or []
            meta = body.get("meta") or {}
            if current.next_token is None:  # first page of a pass: remember its newest tweet
                newest = _newest([meta.get("newest_id"), *(t.get("id") for t in data if isinstance(t, dict))])
                state = SearchCursor(current.since_id, newest)
            token = self._usable_token(meta.get("next_token"), data, tokens_seen, query)
            state = state.next_page(token) if token else state.finished()
            mentions, skipped = self._mentions(body)
            yield Batch(mentions, state.dump(), query=query, skipped=skipped)
            if token is None:
                if fresh_pass:
                    return
                fresh_pass = True  # the resumed pass is done; look for newer posts

    @staticmethod
    def _usable_token(token: object, data: list[Any], seen: set[str], query: str) -> str | None:
        """``next_token`` if paging should go on: not after an empty page, never a token seen before."""
        if not token:
            return None
        if not data:
            log.warning("X returned an empty page with a next_token for %r; ending this search", query)
            return None
        if str(token) in seen:
            log.warning("X repeated a next_token for %r; ending this search instead of looping", query)
            return None
        seen.add(str(token))
        return str(token)

    def _requester(self, client: Any, query: str, state: SearchCursor) -> Callable[[], dict[str, Any]]:
        def search() -> dict[str, Any]:
            return self._search(client, query, state)

        return search

    def _search(self, client: Any, query: str, state: SearchCursor) -> dict[str, Any]:
        """One page of recent search, with every client failure translated to a kulak error."""
        params: dict[str, Any] = {"max_results": self.page_size, "tweet_fields": TWEET_FIELDS}
        if self.expand_authors:
            params.update(expansions=["author_id"], user_fields=USER_FIELDS)
        if state.since_id:
            params["since_id"] = state.since_id
        if state.next_token:
            params["next_token"] = state.next_token
        what = f"X (source {self.name!r})"
        try:
            result = client.search_recent_tweets(query, **params)
        except tweepy.BadRequest as exc:
            raise self._bad_request(exc, query, state) from None
        except tweepy.HTTPException as exc:
            raise self._http_error(exc, what) from None
        except requests.exceptions.JSONDecodeError as exc:
            parse_json(exc.doc or "", what=what)  # raises SourceUnavailable naming HTML or malformed JSON
            raise SourceUnavailable(f"{what} answered with malformed JSON") from None
        except requests.exceptions.Timeout as exc:
            raise SourceUnavailable(f"{what} timed out: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(f"{what} could not be reached: {type(exc).__name__}: {exc}") from None
        except (tweepy.TweepyException, ValueError) as exc:
            raise SourceUnavailable(f"{what} failed: {type(exc).__name__}: {exc}") from None
        return _as_dict(result)

    def _bad_request(self, exc: Any, query: str, state: SearchCursor) -> SourceError:
        detail = " ".join(str(m) for m in getattr(exc, "api_messages", []) or [])
        raw = json.dumps(getattr(exc, "api_errors", []), default=str) + " " + detail
        if state.since_id and "since_id" in raw:
            return _RefusedParameter(
                f"X refused since_id {state.since_id} for {query!r} (older than its 7-day window?)", param="since_id"
            )
        if state.next_token and ("next_token" in raw or "pagination_token" in raw):
            return _RefusedParameter(f"X refused the saved next_token for {query!r} (expired?)", param="next_token")
        return SourceError(
            f"X refused the search {query!r} (HTTP 400): {detail or 'no details given'}; check the brands and the "
            f"lang option of [sources.{self.name}]."
        )

    def _http_error(self, exc: Any, what: str) -> SourceError:
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        variable = self.spec.option("bearer_token_env", "bearer_token_env")
        if status == 401:
            return AuthError(
                f"{what} rejected the bearer token (HTTP 401): it is invalid or was revoked; put a valid token "
                f"in the environment variable {variable}."
            )
        if status == 403:
            return AuthError(
                f"{what} refused access (HTTP 403): the app behind the token in {variable} may lack access to "
                "recent search on its plan, or the token lacks permission."
            )
        try:
            raise_for_status(status, response.headers, response.content, what=what)
        except SourceError as mapped:
            return mapped
        return SourceError(f"{what} answered HTTP {status} unexpectedly")

    def _mentions(self, body: Mapping[str, Any]) -> tuple[tuple[Mention, ...], tuple[str, ...]]:
        includes = body.get("includes") or {}
        users = {str(u["id"]): u for u in includes.get("users") or [] if isinstance(u, dict) and "id" in u}
        mentions: list[Mention] = []
        skipped: list[str] = []
        for tweet in body.get("data") or []:
            try:
                mentions.append(self._mention(tweet, users))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                tid = tweet.get("id", "?") if isinstance(tweet, dict) else "?"
                skipped.append(f"tweet {tid}: missing or bad field {exc}")
        return tuple(mentions), tuple(skipped)

    def _mention(self, tweet: Mapping[str, Any], users: Mapping[str, Mapping[str, Any]]) -> Mention:
        tweet_id = str(tweet["id"])
        author_id = str(tweet.get("author_id") or "")
        user = users.get(author_id) or {}
        username = user.get("username")
        url = f"https://x.com/{username}/status/{tweet_id}" if username else f"https://x.com/i/web/status/{tweet_id}"
        followers = (user.get("public_metrics") or {}).get("followers_count")
        metrics = tweet.get("public_metrics")
        engagement = sum(int(metrics.get(k) or 0) for k in _ENGAGEMENT) if metrics else None
        lang = tweet.get("lang")
        created = datetime.fromisoformat(str(tweet["created_at"]).replace("Z", "+00:00"))
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
        return Mention(
            source=self.name,
            external_id=tweet_id,
            platform=PLATFORM,
            url=url,
            author=str(username or author_id),
            text=str(tweet["text"]),
            created_at=created,
            followers=int(followers) if followers is not None else None,
            engagement=engagement,
            language=None if not lang or lang in _NO_LANGUAGE else str(lang),
        )


def x_collector(spec: SourceSpec) -> XCollector:
    """The registry's factory for ``type = "x"``: recent search with the token named by ``bearer_token_env``."""
    return XCollector(spec)
