"""HTTP plumbing shared by the collectors that use ``requests`` (tweepy, praw, Mastodon.py, HN, RSS).

:class:`KulakAdapter` gives every request a total deadline (a server that trickles bytes cannot
hold a run hostage: ``requests``' own timeout is per read), and can send requests for a
client's hard-coded API host to ``base_url`` instead (self-hosted instances, proxies, tests).
:func:`raise_for_status` turns HTTP answers into kulak's error types, which the shared
retry policy understands.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from kulak import __version__
from kulak.errors import AuthError, RateLimited, SourceError, SourceUnavailable

USER_AGENT = f"kulak/{__version__} (self-hosted social listening)"


class UsageCapped(SourceError):
    """The account's paid usage cap is reached: no retry helps until the billing period resets."""


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The whole response took longer than the deadline (a slow or trickling server)."""


def rewrite_url(url: str, base_url: str) -> str:
    """``url`` with its scheme and host (and a path prefix) taken from ``base_url``."""
    src, dst = urlsplit(url), urlsplit(base_url)
    prefix = dst.path.rstrip("/")
    return urlunsplit((dst.scheme, dst.netloc, prefix + src.path, src.query, src.fragment))


class KulakAdapter(HTTPAdapter):
    """An adapter with a total deadline per request and optional redirection to ``base_url``."""

    def __init__(self, *, timeout: float = 30.0, base_url: str | None = None) -> None:
        super().__init__(max_retries=0)
        self.timeout = timeout
        self.base_url = base_url

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        if self.base_url and request.url:
            request.url = rewrite_url(request.url, self.base_url)
        deadline = time.monotonic() + self.timeout
        response = super().send(request, stream=True, timeout=(min(10.0, self.timeout), self.timeout), **kwargs)
        if stream:
            return response
        chunks = []
        try:
            # read1 returns whatever has arrived, so a server that trickles bytes meets the deadline
            while chunk := response.raw.read1(16384, decode_content=True):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(
                        f"{urlsplit(request.url or '').netloc} took more than {self.timeout:g}s to answer "
                        f"(it sent {sum(map(len, chunks))} bytes so far)",
                        request=request,
                    )
        finally:
            if time.monotonic() > deadline:
                response.close()
        response._content = b"".join(chunks)
        response._content_consumed = True
        return response


def session_for(
    *, timeout: float, base_url: str | None = None, session: requests.Session | None = None
) -> requests.Session:
    """A session (or ``session``, e.g. a client's own) with :class:`KulakAdapter` mounted."""
    session = session or requests.Session()
    adapter = KulakAdapter(timeout=timeout, base_url=base_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers.setdefault("User-Agent", USER_AGENT)
    return session


def retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After``, ``x-rate-limit-reset`` (epoch) or ``x-ratelimit-reset`` (seconds)."""
    now = now or datetime.now(UTC)
    lower = {k.lower(): v for k, v in headers.items()}
    if value := lower.get("retry-after"):
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
            except (TypeError, ValueError):
                pass
    if value := lower.get("x-rate-limit-reset"):
        try:
            return max(0.0, float(value) - now.timestamp())
        except ValueError:
            pass
    if value := lower.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return None


def is_usage_capped(body: bytes | str) -> bool:
    """True for X's "usage capped" 429 problem (monthly read cap), as opposed to a rate limit."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return "usage-capped" in text or "UsageCapExceeded" in text


def raise_for_status(status: int, headers: Mapping[str, str], body: bytes | str, *, what: str) -> None:
    """Raise the kulak error for a non-2xx answer; ``what`` names the source in the message."""
    if status < 400:
        return
    if status in (401, 403):
        raise AuthError(
            f"{what} rejected the credentials (HTTP {status}); check that the token in the configured "
            "environment variable is valid and not revoked."
        )
    if status == 429:
        if is_usage_capped(body):
            raise UsageCapped(
                f"{what}: the account's usage cap is reached (HTTP 429 usage-capped); no more reads "
                "until the cap resets or the plan is raised."
            )
        wait = retry_after(headers)
        hint = f", reset in {wait:.0f}s" if wait is not None else ", no reset time given"
        raise RateLimited(f"{what} is rate-limiting kulak (HTTP 429{hint})", retry_after=wait)
    if status >= 500:
        raise SourceUnavailable(f"{what} answered HTTP {status} (server error)")
    raise SourceError(f"{what} refused the request (HTTP {status}): {_snippet(body)}")


def _snippet(body: bytes | str, limit: int = 200) -> str:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text[:limit] + ("…" if len(text) > limit else "")


def parse_json(body: bytes | str, *, what: str) -> Any:
    """Decode a JSON body; an HTML error page or truncated JSON is a :class:`SourceUnavailable`."""
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        kind = "an HTML page" if text.lstrip().lower().startswith(("<!doctype", "<html")) else "malformed JSON"
        raise SourceUnavailable(f"{what} answered with {kind} instead of its API: {_snippet(text, 120)}") from None


def get_json(session: requests.Session, url: str, *, params: Mapping[str, Any] | None = None, what: str) -> Any:
    """GET ``url`` and return its JSON, raising kulak errors for HTTP and network failures."""
    response = request(session, "GET", url, params=params, what=what)
    return parse_json(response.content, what=what)


def request(session: requests.Session, method: str, url: str, *, what: str, **kwargs: Any) -> requests.Response:
    """One request with network failures and HTTP errors mapped to kulak errors."""
    try:
        response = session.request(method, url, **kwargs)
    except requests.exceptions.Timeout as exc:
        raise SourceUnavailable(f"{what} timed out: {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise SourceUnavailable(f"{what} could not be reached: {type(exc).__name__}: {exc}") from None
    raise_for_status(response.status_code, response.headers, response.content, what=what)
    return response
