"""The one polling/backoff policy shared by every collector.

Collectors never sleep: they raise :class:`~kulak.errors.RateLimited` or
:class:`~kulak.errors.SourceUnavailable`, and :func:`call_with_retries` decides whether and how
long to wait. ``sleep`` and ``rng`` come in as arguments, so tests run without waiting.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from kulak.errors import RateLimited, SourceUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    ``max_retries`` extra attempts after the first; waits grow ``base * 2**attempt`` up to ``cap``
    seconds. A rate limit that names its reset time is honoured up to ``max_wait``; a longer
    one (a usage cap, a reset hours away) ends the attempt at once instead of blocking the run.
    """

    max_retries: int = 3
    base: float = 1.0
    cap: float = 60.0
    max_wait: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), with full jitter."""
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))

    def delays(self, rng: random.Random) -> Iterator[float]:
        """The backoff delays of one call, in order."""
        for attempt in range(self.max_retries):
            yield self.backoff(attempt, rng)


def call_with_retries(
    fn: Callable[[], T],
    *,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    what: str = "request",
) -> T:
    """Call ``fn``; retry on :class:`SourceUnavailable` and short :class:`RateLimited` waits.

    Authentication errors and other :class:`~kulak.errors.SourceError` subclasses are not
    retried: waiting does not fix a revoked token. The last error is re-raised with the number
    of attempts added to its message.
    """
    rng = rng or random.Random()
    delays = policy.delays(rng)
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except RateLimited as exc:
            wait = exc.retry_after if exc.retry_after is not None else next(delays, None)
            if wait is None or wait > policy.max_wait or attempt > policy.max_retries:
                raise RateLimited(f"{exc} (gave up after {attempt} attempts)", retry_after=exc.retry_after) from exc
            log.warning("%s rate-limited; waiting %.1fs (attempt %d)", what, wait, attempt)
            sleep(wait)
        except SourceUnavailable as exc:
            wait = next(delays, None)
            if wait is None:
                raise SourceUnavailable(f"{exc} (gave up after {attempt} attempts)") from exc
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, wait)
            sleep(wait)
