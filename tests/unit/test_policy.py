from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from kulak.errors import AuthError, RateLimited, SourceUnavailable
from listener.policy import RetryPolicy, call_with_retries


def _failing(errors: list[Exception], result: str = "ok") -> Callable[[], str]:
    def fn() -> str:
        if errors:
            raise errors.pop(0)
        return result

    return fn


def test_retries__a_5xx_burst_then_success_waits_with_growing_jittered_backoff() -> None:
    waits: list[float] = []
    fn = _failing([SourceUnavailable("503")] * 3)
    policy = RetryPolicy(max_retries=3, base=1.0, cap=60.0)
    assert call_with_retries(fn, policy=policy, sleep=waits.append, rng=random.Random(1)) == "ok"
    assert len(waits) == 3
    assert all(0 <= w <= 2**i for i, w in enumerate(waits))


def test_retries__are_bounded_and_the_error_says_how_many_attempts() -> None:
    waits: list[float] = []
    fn = _failing([SourceUnavailable("HTTP 502")] * 10)
    with pytest.raises(SourceUnavailable, match=r"HTTP 502 \(gave up after 3 attempts\)"):
        call_with_retries(fn, policy=RetryPolicy(max_retries=2), sleep=waits.append, rng=random.Random(0))
    assert len(waits) == 2


def test_rate_limit__with_a_reset_time_waits_exactly_that_long() -> None:
    waits: list[float] = []
    fn = _failing([RateLimited("429", retry_after=7.0)])
    assert call_with_retries(fn, sleep=waits.append) == "ok"
    assert waits == [7.0]


def test_rate_limit__far_in_the_future_or_a_usage_cap_gives_up_at_once() -> None:
    waits: list[float] = []
    fn = _failing([RateLimited("usage-capped: monthly read cap reached", retry_after=86_400.0)])
    with pytest.raises(RateLimited, match="usage-capped"):
        call_with_retries(fn, sleep=waits.append)
    assert waits == []


def test_rate_limit__without_a_reset_header_backs_off_instead_of_spinning() -> None:
    waits: list[float] = []
    fn = _failing([RateLimited("429")] * 2)
    assert call_with_retries(fn, sleep=waits.append, rng=random.Random(3)) == "ok"
    assert len(waits) == 2 and all(w >= 0 for w in waits)


def test_auth_errors__are_never_retried() -> None:
    waits: list[float] = []
    with pytest.raises(AuthError):
        call_with_retries(_failing([AuthError("401 revoked")]), sleep=waits.append)
    assert waits == []
