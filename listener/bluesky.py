"""Bluesky: post search through atproto, signed in with an app password; one query per brand term.

Cursor design
-------------
``searchPosts`` with ``sort=latest`` answers newest first and pages *backwards* in time with an
opaque cursor; ``since`` (inclusive) and ``until`` (exclusive) bound results by ``sortAt`` (the
earlier of ``indexedAt`` and ``createdAt``). Every search "pass" has a lower bound: the stored
``since``, or ``lookback_hours`` before now on the first run. The cursor of a query is

- a bare timestamp (``2026-11-02T09:05:00.000Z``): everything from there on is unread;
- or, while a pass is unfinished, a small JSON object ``{"since", "until", "newest"}``: the pass
  goes on below ``until`` (re-reading the oldest millisecond stored: dedup absorbs it), and
  ``newest`` becomes the next ``since`` once it ends.

Each stored page carries the cursor of what is left, so a crash, an error or the ``max_pages``
budget only ever causes a re-read, never a gap. Posts indexed long after they were written
(``sortAt`` before the cursor) cannot be seen by any ``since`` search; that is Bluesky's design.

Timeouts: atproto talks through httpx, not requests, so kulak's requests adapter does not apply.
The httpx client gets ``timeout`` as its connect/read/write timeouts and :class:`DeadlineTransport`
adds the same total deadline per request as the requests adapter: a server that trickles its
answer is cut off after ``timeout`` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import httpx
from atproto import Client
from atproto_client import exceptions as atp
from atproto_client.request import Request
from atproto_core.exceptions import AtProtocolError

from kulak.errors import AuthError, RateLimited, SourceError, SourceUnavailable
from listener.base import Batch, Mention, SourceSpec
from listener.http import USER_AGENT
from listener.policy import call_with_retries

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://bsky.social/xrpc"
PAGE_SIZE = 100  # searchPosts' maximum
T = TypeVar("T")


def stamp(when: datetime) -> str:
    """Bluesky's timestamp format, millisecond precision: ``2026-11-02T09:00:00.000Z``."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_time(value: object) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string, or None if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


@dataclass(frozen=True)
class SearchCursor:
    """Where one query's search stands; see the module docstring."""

    since: str | None = None
    until: str | None = None
    newest: str | None = None

    @classmethod
    def parse(cls, value: str | None) -> SearchCursor:
        """Read a stored cursor; anything unreadable starts over (with a warning)."""
        if not value:
            return cls()
        if not value.startswith("{"):
            return cls(since=value) if parse_time(value) else cls._unreadable(value)
        try:
            data = json.loads(value)
            parts = {k: str(data[k]) for k in ("since", "until", "newest") if data.get(k)}
        except (ValueError, TypeError, AttributeError):
            return cls._unreadable(value)
        if not all(parse_time(v) for v in parts.values()):
            return cls._unreadable(value)
        return cls(**parts)

    @classmethod
    def _unreadable(cls, value: str) -> SearchCursor:
        log.warning("ignoring an unreadable Bluesky cursor %r: searching the lookback window again", value[:80])
        return cls()

    def dump(self) -> str:
        """The stored value: a bare timestamp between passes, JSON while a pass is unfinished."""
        if self.until is None and self.newest is None and self.since is not None:
            return self.since
        return json.dumps({k: v for k, v in vars(self).items() if v is not None}, sort_keys=True)


class DeadlineTransport(httpx.HTTPTransport):
    """An httpx transport that reads each whole response within ``deadline`` seconds."""

    def __init__(self, deadline: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deadline = deadline

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read its body, raising :class:`httpx.ReadTimeout` past the deadline."""
        start = time.monotonic()
        response = super().handle_request(request)
        chunks: list[bytes] = []
        try:
            for chunk in response.stream:  # type: ignore[union-attr]
                chunks.append(chunk)
                if time.monotonic() - start > self.deadline:
                    raise httpx.ReadTimeout(
                        f"{request.url.host} took more than {self.deadline:g}s to answer", request=request
                    )
        finally:
            response.close()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(b"".join(chunks)),
            extensions=response.extensions,
            request=request,
        )


def build_client(spec: SourceSpec) -> Client:
    """The real atproto client for ``spec`` (``base_url`` may be given with or without ``/xrpc``)."""
    timeout = httpx.Timeout(spec.timeout, connect=min(10.0, spec.timeout))
    request = Request(timeout=timeout, transport=DeadlineTransport(spec.timeout))
    request.add_additional_header("User-Agent", USER_AGENT)
    return Client(base_url=spec.base_url or DEFAULT_BASE_URL, request=request)


def search_terms_for(spec: SourceSpec) -> tuple[str, ...]:
    """One search per brand name and alias (quoted phrases when they have spaces) plus ``queries``."""
    terms = [t.strip() for b in spec.brands for t in (b.name, *b.aliases)]
    quoted = [f'"{t}"' if " " in t else t for t in terms if t]
    return tuple(dict.fromkeys([*quoted, *(str(q) for q in spec.option("queries", []))]))


def _attr(obj: Any, snake: str, camel: str) -> Any:
    """A field of an atproto model, or of a DotDict/dict holding an unknown record type."""
    value = getattr(obj, snake, None)
    if value is None and isinstance(obj, Mapping):
        value = obj.get(camel)
    if value is None and hasattr(obj, "to_dict"):
        value = obj.to_dict().get(camel)
    return value


def sort_at(post: Any) -> datetime | None:
    """What ``since``/``until`` compare: the earlier of ``indexedAt`` and the record's ``createdAt``."""
    times = [t for t in (parse_time(post.indexed_at), parse_time(_attr(post.record, "created_at", "createdAt"))) if t]
    return min(times, default=None)


def post_to_mention(post: Any, *, source: str) -> Mention:
    """A :class:`Mention` from a ``postView``. Raises ValueError when it has no usable time."""
    record = post.record
    created = parse_time(_attr(record, "created_at", "createdAt")) or parse_time(post.indexed_at)
    if created is None:
        raise ValueError(f"post {post.uri} has no readable createdAt or indexedAt")
    handle = post.author.handle
    profile = handle if handle and handle != "handle.invalid" else post.author.did
    langs = _attr(record, "langs", "langs") or []
    counts = (post.like_count, post.repost_count, post.reply_count, post.quote_count)
    return Mention(
        source=source,
        external_id=str(post.uri),
        platform="bluesky",
        url=f"https://bsky.app/profile/{profile}/post/{str(post.uri).rsplit('/', 1)[-1]}",
        author=str(handle or post.author.did),
        text=str(_attr(record, "text", "text") or ""),
        created_at=created,
        followers=None,  # search results carry no follower counts
        engagement=sum(c or 0 for c in counts),
        language=str(langs[0]) if langs else None,
    )


class BlueskyCollector:
    """``app.bsky.feed.searchPosts`` for each brand term, signed in with ``handle`` and an app password."""

    def __init__(self, spec: SourceSpec, *, client: Client | None = None) -> None:
        self.name = spec.name
        self.spec = spec
        self._client = client
        self._signed_in = False
        self.lookback = timedelta(hours=float(spec.option("lookback_hours", 24)))

    @property
    def client(self) -> Client:
        """The client given to the constructor, else the real one (built on first use)."""
        if self._client is None:
            self._client = build_client(self.spec)
        return self._client

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """Sign in (once per collector), then yield a batch per page of every search term."""
        try:
            self._sign_in()
            for term in search_terms_for(self.spec):
                yield from self._search(term, SearchCursor.parse(cursors.get(term)))
        except AuthError:
            self._signed_in = False  # the next run signs in afresh
            raise

    def _sign_in(self) -> None:
        if self._signed_in:
            return
        handle = str(self.spec.option("handle") or "")
        if not handle:
            raise AuthError(
                f'source {self.name!r} needs the account to sign in with: set handle = "you.bsky.social" in '
                f"[sources.{self.name}] and app_password_env to the variable holding an app password."
            )
        password = self.spec.credential("app_password") or ""
        login = partial(self.client.login, handle, password, fetch_bsky_profile=False)
        self._call(login, f"Bluesky sign-in as {handle}")
        self._signed_in = True

    def _search(self, term: str, state: SearchCursor) -> Iterator[Batch]:
        what = f"Bluesky search for {term}"
        since = state.since or stamp(datetime.now(UTC) - self.lookback)
        newest = state.newest
        api_cursor: str | None = None
        search = self.client.app.bsky.feed.search_posts
        for _ in range(self.spec.max_pages):
            wanted = {"q": term, "sort": "latest", "since": since, "until": state.until, "cursor": api_cursor}
            params: dict[str, Any] = {k: v for k, v in wanted.items() if v is not None} | {"limit": PAGE_SIZE}
            response = self._call(partial(search, params=params), what)
            posts = list(response.posts)
            times = [t for t in map(sort_at, posts) if t is not None]
            newest = max([stamp(t) for t in times] + ([newest] if newest else []), default=None)
            api_cursor = response.cursor
            if not posts or not api_cursor:
                left = SearchCursor(since=newest or since)
            else:
                oldest = min(times, default=None)
                until = stamp(oldest + timedelta(milliseconds=1)) if oldest else state.until
                left = SearchCursor(since=since, until=until, newest=newest)
            mentions, skipped = self._mentions(posts)
            yield Batch(mentions, cursor=left.dump(), query=term, skipped=skipped)
            if left.until is None:
                return

    def _mentions(self, posts: list[Any]) -> tuple[tuple[Mention, ...], tuple[str, ...]]:
        mentions, skipped = [], []
        for post in posts:
            try:
                mentions.append(post_to_mention(post, source=self.name))
            except (ValueError, AttributeError) as exc:
                skipped.append(f"post {getattr(post, 'uri', '?')}: {exc}")
        return tuple(mentions), tuple(skipped)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """``fn()`` with atproto's and httpx's errors translated and the shared retry policy applied."""

        def attempt() -> T:
            try:
                return fn()
            except (AtProtocolError, httpx.HTTPError, ValueError) as exc:
                raise translate(exc, what) from None

        return call_with_retries(
            attempt, policy=self.spec.policy(), sleep=self.spec.sleep, rng=self.spec.rng, what=what
        )


def translate(exc: Exception, what: str) -> SourceError:
    """The kulak error for an atproto, httpx or JSON decoding failure."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    details = str(exc) or str(exc.__cause__ or "") or type(exc).__name__
    if isinstance(exc, atp.RateLimitExceededError):
        wait = exc.retry_after
        if wait is None and exc.reset_at is not None:
            wait = max(0.0, (exc.reset_at - datetime.now(UTC)).total_seconds())
        hint = f", reset in {wait:.0f}s" if wait is not None else ", no reset time given"
        return RateLimited(f"{what} is rate-limiting kulak (HTTP 429{hint})", retry_after=wait)
    if isinstance(exc, atp.UnauthorizedError | atp.LoginRequiredError) or "ExpiredToken" in details:
        return AuthError(
            f"{what} was refused ({details}); check the handle and the app password in the variable named by "
            "app_password_env (Settings → Privacy and security → App passwords), and that it was not revoked."
        )
    if isinstance(exc, atp.InvokeTimeoutError | httpx.TimeoutException):
        return SourceUnavailable(f"{what} timed out ({details})")
    if isinstance(exc, atp.NetworkError | httpx.HTTPError):
        return SourceUnavailable(f"{what} could not be reached or failed in transit ({details})")
    if isinstance(exc, atp.ModelError | ValueError):
        return SourceUnavailable(f"{what} answered with something that is not its API (an HTML page or bad JSON)")
    if status is not None and status >= 500:
        return SourceUnavailable(f"{what} answered HTTP {status} (server error)")
    return SourceError(f"{what} refused the request ({details})")


def bluesky_collector(spec: SourceSpec) -> BlueskyCollector:
    """The registry's factory for ``type = "bluesky"``: search signed in as ``handle``."""
    return BlueskyCollector(spec)
