"""Reddit through praw: a site-wide keyword search per brand, and new posts and comments of chosen subreddits.

Queries and cursors
-------------------
Each query has its own cursor (the query is the key):

``search:<q>``
    ``reddit.subreddit("all").search(q, sort="new", time_filter=...)`` for one brand, ``q`` in
    Reddit's search syntax: the brand's name and aliases as quoted phrases joined by ``OR``
    (``"Paketto" OR "Paketto Kargo"``). One query per brand, so each brand's cursor and its share
    of ``max_pages`` are its own. Search finds submissions only (titles and self text).
``r/<sub>/new`` and ``r/<sub>/comments``
    for each name in ``subreddits``: the subreddit's newest submissions and comments, kept only
    when they mention a brand (Reddit cannot search comments, so they are filtered here).

Listings come newest first and page backwards in time. The cursor is the newest ``created_utc``
(epoch seconds) read so far; a run reads a listing until it meets an item older than the cursor
minus ``overlap_seconds`` (search is indexed with a delay, so a post can turn up a little after
newer ones; the overlap re-reads those, and dedup on the fullname absorbs the re-reads). The
cursor may only move once a query has read every page it is going to read: batches before the last
carry the *old* cursor and only the last one the new, so a crash or an error mid-query re-reads
pages next time and never skips the older ones. When a query has more new items than
``max_pages`` pages (100 items each), the older ones are not read and the last batch says so in
``skipped``.

Waiting
-------
prawcore paces requests from Reddit's ``x-ratelimit-*`` headers and retries 5xx answers, both with
``time.sleep``. The client built here hands those waits to kulak's retry policy instead: pacing
raises :class:`~kulak.errors.RateLimited` (the policy waits through ``SourceSpec.sleep`` and
tries again) and prawcore retries once, at once (for a token that expired early, or a one-off
5xx); longer outages are the policy's backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import praw
import praw.exceptions
import praw.models
import prawcore
from prawcore.rate_limit import RateLimiter
from prawcore.sessions import FiniteRetryStrategy
from requests import Response

from kulak import __version__
from kulak.errors import AuthError, ConfigError, RateLimited, SourceError, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.brands import Brand, BrandMatcher
from listener.http import parse_json, raise_for_status, retry_after, session_for
from listener.policy import call_with_retries

log = logging.getLogger(__name__)

PLATFORM = "reddit"
WEB_URL = "https://www.reddit.com"
PAGE_SIZE = 100  # Reddit's largest listing page
DEFAULT_USER_AGENT = f"kulak/{__version__} (self-hosted listening)"
TIME_FILTERS = ("hour", "day", "week", "month", "year", "all")

Listing = Iterator[Any]


def brand_query(brand: Brand) -> str:
    """Reddit search syntax for one brand: its name and aliases as quoted phrases joined by ``OR``.

    Social handles are left out: ``@name`` means nothing to Reddit search.
    """
    terms: list[str] = []
    for term in (brand.name, *brand.aliases):
        clean = " ".join(term.replace('"', " ").split())
        if clean and f'"{clean}"' not in terms:
            terms.append(f'"{clean}"')
    return " OR ".join(terms)


@dataclass(frozen=True)
class _Query:
    """One listing read with its own cursor; ``filtered`` listings keep only brand mentions."""

    key: str
    open: Callable[[int], Listing]
    filtered: bool


class RedditCollector:
    """Collects Reddit submissions and comments about the configured brands.

    ``reddit`` is a ready :class:`praw.Reddit` (custom setups; pass it through :func:`use_kulak_waits`
    so it never sleeps); by default one is built on the first :meth:`collect` from the source's
    table, so a missing credential is reported in the source's health rather than when kulak starts.
    """

    def __init__(self, spec: SourceSpec, *, reddit: praw.Reddit | None = None) -> None:
        self.spec = spec
        self.name = spec.name
        self.matcher = BrandMatcher(spec.brands)
        self.subreddits = _subreddits(spec)
        self.time_filter = str(spec.option("time_filter", "day"))
        if self.time_filter not in TIME_FILTERS:
            raise ConfigError(
                f"[sources.{spec.name}] time_filter must be one of {', '.join(TIME_FILTERS)}, not {self.time_filter!r}."
            )
        self.search = bool(spec.option("search", True))
        self.overlap = float(spec.option("overlap_seconds", 300))
        self._reddit = reddit

    @property
    def reddit(self) -> praw.Reddit:
        """The client, built from the source's table on first use."""
        if self._reddit is None:
            self._reddit = build_reddit(self.spec)
        return self._reddit

    def queries(self) -> list[_Query]:
        """The searches (one per brand) and subreddit listings this source reads, in order."""
        reddit, out = self.reddit, []
        if self.search:
            for q in dict.fromkeys(brand_query(b) for b in self.spec.brands):
                if q:
                    out.append(_Query(f"search:{q}", self._searcher(reddit, q), filtered=False))
        for sub in self.subreddits:
            subreddit = reddit.subreddit(sub)
            out.append(_Query(f"r/{sub}/new", _new_submissions(subreddit), filtered=True))
            out.append(_Query(f"r/{sub}/comments", _new_comments(subreddit), filtered=True))
        return out

    def _searcher(self, reddit: praw.Reddit, q: str) -> Callable[[int], Listing]:
        everywhere = reddit.subreddit("all")
        return lambda n: everywhere.search(q, sort="new", time_filter=self.time_filter, limit=n)

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """Yield each query's new items in pages; see the module docstring for the cursor rules."""
        for query in self.queries():
            yield from self._collect_query(query, cursors.get(query.key))

    def _collect_query(self, query: _Query, cursor: str | None) -> Iterator[Batch]:
        since = _parse_cursor(cursor)
        budget = self.spec.max_pages * PAGE_SIZE
        listing = query.open(budget)
        what = f"reddit ({self.name}, {query.key})"
        newest, read, reached, page = since, 0, since is None, list[Mention]()
        while (item := self._next(listing, what)) is not None:
            created = float(vars(item).get("created_utc") or 0)
            if since is not None and created < since - self.overlap:
                reached = True
                break
            read += 1
            newest = created if newest is None else max(newest, created)
            mention = self._mention(item)
            if mention is not None and (not query.filtered or self.matcher.match(mention.text)):
                page.append(mention)
            if read % PAGE_SIZE == 0 and page:
                yield Batch(tuple(page), cursor, query=query.key)
                page = []
        skipped: tuple[str, ...] = ()
        if not reached and read >= budget:
            skipped = (
                f"{query.key}: more than {budget} new items since the last run; older ones were not read "
                f"(raise max_pages = {self.spec.max_pages} or collect more often)",
            )
            log.warning("%s", skipped[0])
        new_cursor = str(int(newest)) if newest is not None else cursor
        if page or new_cursor != cursor or skipped:
            yield Batch(tuple(page), new_cursor, query=query.key, skipped=skipped)

    def _next(self, listing: Listing, what: str) -> Any:
        """The listing's next item (fetching a page when needed), with retries; None at its end."""

        def step() -> Any:
            with translated_errors(what):
                return next(listing, None)

        return call_with_retries(step, policy=self.spec.policy(), sleep=self.spec.sleep, rng=self.spec.rng, what=what)

    def _mention(self, item: Any) -> Mention | None:
        # vars(), not attributes: a field missing from the listing would make praw fetch the item.
        data = vars(item)
        if isinstance(item, praw.models.Submission):
            text = "\n\n".join(p for p in (data.get("title") or "", data.get("selftext") or "") if p.strip())
            engagement = _int(data.get("score")) + _int(data.get("num_comments"))
        elif isinstance(item, praw.models.Comment):
            text, engagement = data.get("body") or "", _int(data.get("score"))
        else:
            return None
        author = data.get("author")
        return Mention(
            source=self.name,
            external_id=str(item.fullname),
            platform=PLATFORM,
            url=WEB_URL + str(data.get("permalink") or ""),
            author=str(author) if author is not None else "[deleted]",
            text=text,
            created_at=datetime.fromtimestamp(float(data.get("created_utc") or 0), UTC),
            followers=None,
            engagement=engagement,
            language=None,
        )


def reddit_collector(spec: SourceSpec) -> RedditCollector:
    """The ``reddit`` collector for ``[sources.<name>]``; the client is built on first use.

    Keys besides the common ones: ``client_id_env``, ``client_secret_env``, ``user_agent``,
    ``subreddits`` (list), ``search`` (bool), ``time_filter``, ``overlap_seconds``.
    """
    return RedditCollector(spec)


def build_reddit(spec: SourceSpec) -> praw.Reddit:
    """A read-only (app-only OAuth) praw client for ``spec``.

    Credentials come from the variables named by ``client_id_env`` and ``client_secret_env``
    (:class:`AuthError` naming them when unset). ``base_url`` points the OAuth API and the token
    endpoint at another host (a proxy, a test server). Every request has the source's total
    ``timeout``, and prawcore's waits go through kulak's retry policy (module docstring).
    """
    client_id = spec.credential("client_id")
    client_secret = spec.credential("client_secret")
    urls: dict[str, Any] = {}
    if spec.base_url:
        base = spec.base_url.rstrip("/")
        # prawcore joins API paths onto oauth_url (a trailing slash keeps a path prefix) and
        # appends "/api/v1/access_token" to reddit_url.
        urls = {"oauth_url": base + "/", "reddit_url": base, "short_url": base}
    reddit = praw.Reddit(
        client_id=client_id,
        client_secret=client_secret,
        user_agent=str(spec.option("user_agent", DEFAULT_USER_AGENT)),
        check_for_updates=False,
        ratelimit_seconds=0,
        requestor_kwargs={"session": session_for(timeout=spec.timeout)},
        **urls,
    )
    use_kulak_waits(reddit)
    return reddit


def use_kulak_waits(reddit: praw.Reddit) -> None:
    """Make ``reddit``'s prawcore sessions hand every wait to kulak's retry policy (never sleep)."""
    for core in (reddit._read_only_core, reddit._authorized_core):
        if core is None:
            continue
        if not isinstance(getattr(core, "_rate_limiter", None), RateLimiter) or not hasattr(
            core, "_retry_strategy_class"
        ):
            raise SourceError(
                f"prawcore {prawcore.__version__} is not supported by kulak's Reddit collector (it cannot take "
                'over its waits); install the tested one: pip install "praw>=8,<9" "prawcore>=4,<5".'
            )
        core._rate_limiter = PolicyPacedRateLimiter(window_size=core._rate_limiter.window_size)
        core._retry_strategy_class = RetryOnceAtOnce


class PolicyPacedRateLimiter(RateLimiter):
    """prawcore's pacing from ``x-ratelimit-*`` headers, with the wait raised as :class:`RateLimited`.

    A 429 does not set the pace: its wait comes with the error (``retry-after`` or
    ``x-ratelimit-reset``), and the policy would otherwise wait for it twice.
    """

    def call(
        self,
        *,
        method: str,
        request_function: Callable[..., Response],
        set_header_callback: Callable[[], dict[str, str]],
        url: str,
        **kwargs: Any,
    ) -> Response:
        """Send one request after the pace allows it; remember the pace the answer asks for."""
        self.delay()
        kwargs["headers"] = set_header_callback()
        response = request_function(method, url, **kwargs)
        if response.status_code != 429:
            self.update(response_headers=response.headers)
        return response

    def delay(self) -> None:
        """Raise :class:`RateLimited` when the next request is not due yet (once per pace)."""
        due, self.next_request_timestamp_ns = self.next_request_timestamp_ns, None
        if due is not None and (wait := (due - time.monotonic_ns()) / 1e9) > 0:
            raise RateLimited(
                f"reddit: pacing requests to stay within the rate limit ({self.remaining} left in this window)",
                retry_after=wait,
            )


@dataclass(frozen=True)
class RetryOnceAtOnce(FiniteRetryStrategy):
    """prawcore's retry (a refreshed token after a 401, a one-off 5xx or reset connection), once, without sleeping."""

    DEFAULT_RETRIES: ClassVar[int] = 1
    retries: int = 1

    def _sleep_seconds(self) -> float | None:
        return None


@contextmanager
def translated_errors(what: str) -> Iterator[None]:
    """Turn praw and prawcore exceptions raised in the block into kulak's :class:`SourceError` types."""
    try:
        yield
    except prawcore.Forbidden as exc:
        if reason := _refusal_reason(exc.response):
            raise SourceError(
                f"{what}: the subreddit is {reason} (HTTP 403); remove it from subreddits or ask its moderators "
                "for access."
            ) from None
        raise AuthError(_auth_message(what, exc)) from None
    except (prawcore.InvalidToken, prawcore.InsufficientScope, prawcore.OAuthException) as exc:
        raise AuthError(_auth_message(what, exc)) from None
    except prawcore.TooManyRequests as exc:
        wait = retry_after(exc.response.headers)
        hint = f", retry in {wait:.0f}s" if wait is not None else ""
        raise RateLimited(f"{what} is rate-limiting kulak (HTTP 429{hint})", retry_after=wait) from None
    except prawcore.BadJSON as exc:
        parse_json(exc.response.content, what=what)  # raises SourceUnavailable naming an HTML page
        raise SourceUnavailable(f"{what} answered with something that is not JSON") from None
    except prawcore.Redirect as exc:
        raise SourceError(
            f"{what}: Reddit redirected to {exc.path}; the subreddit does not exist or is private or banned. "
            "Check the names in subreddits."
        ) from None
    except prawcore.NotFound:
        raise SourceError(f"{what}: not found (HTTP 404); check the subreddit names and base_url.") from None
    except prawcore.ResponseException as exc:
        status = exc.response.status_code
        if status in (401, 403):
            raise AuthError(_auth_message(what, exc)) from None
        raise_for_status(status, exc.response.headers, exc.response.content, what=what)
        raise SourceUnavailable(f"{what} gave an unexpected answer (HTTP {status})") from None
    except prawcore.RequestException as exc:
        original = exc.original_exception
        raise SourceUnavailable(f"{what} could not be reached: {type(original).__name__}: {original}") from None
    except (prawcore.PrawcoreException, praw.exceptions.PRAWException) as exc:
        raise SourceError(f"{what} failed: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # praw could not read the JSON as a listing (a proxy's JSON error page)
        raise SourceUnavailable(f"{what} answered with JSON that is not a Reddit listing ({exc})") from None


def _auth_message(what: str, exc: Exception) -> str:
    response = getattr(exc, "response", None)
    status = f"HTTP {response.status_code}" if response is not None else type(exc).__name__
    return (
        f"{what} rejected the app's credentials ({status}): check that the Reddit app's client id and secret "
        "in the variables named by client_id_env and client_secret_env are right and the app is not revoked."
    )


def _new_submissions(subreddit: praw.models.Subreddit) -> Callable[[int], Listing]:
    return lambda n: subreddit.new(limit=n)


def _new_comments(subreddit: praw.models.Subreddit) -> Callable[[int], Listing]:
    return lambda n: subreddit.comments(limit=n)


def _refusal_reason(response: Response) -> str | None:
    """Why Reddit refused a listing (``private``, ``quarantined``, ``banned``...), from its JSON body."""
    try:
        body = response.json()
    except ValueError:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return str(reason) if reason else None


def _parse_cursor(cursor: str | None) -> float | None:
    if not cursor:
        return None
    try:
        return float(cursor)
    except ValueError:
        log.warning("ignoring an unreadable reddit cursor %r: reading the listing from the top", cursor[:80])
        return None


def _subreddits(spec: SourceSpec) -> tuple[str, ...]:
    value = spec.option("subreddits", [])
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f'[sources.{spec.name}] subreddits must be a list of names, e.g. ["Turkey", "istanbul"].')
    names = (v.strip().removeprefix("/").removeprefix("r/").strip("/") for v in value)
    return tuple(dict.fromkeys(n for n in names if n))


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0
