"""Progress off a terminal: long work logs where it stands now and then, short work stays quiet."""

from __future__ import annotations

import io
import logging

import pytest

from kulak import progress as progress_module
from kulak.progress import LOG_EVERY, progress, progress_bar


class FakeClock:
    """A clock the test moves by hand (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def redirected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module.sys, "stderr", io.StringIO())  # not a terminal


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kulak.progress"]


def test_progress__off_a_terminal_logs_share_done_and_time_left(
    redirected: None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="kulak.progress")
    seen = []
    bar = progress(list(range(10)), desc="fine-tuning epoch 1/3", unit="batch", clock=clock)
    for item in bar:
        seen.append(item)
        clock.now += LOG_EVERY / 2  # each item takes half the interval
        bar.set_postfix(loss="0.512")

    assert seen == list(range(10)), "every item comes through, in order"
    lines = messages(caplog)
    assert len(lines) == 5, "one line per interval, not one per item"
    assert lines[0] == "fine-tuning epoch 1/3: 2/10 batch, 20%, 1 min 00 s elapsed, about 4 min 00 s left, loss=0.512"
    assert lines[-1].startswith("fine-tuning epoch 1/3: 10/10 batch, 100%, 5 min 00 s elapsed, about 0 s left")


def test_progress__work_shorter_than_the_interval_logs_nothing(
    redirected: None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="kulak.progress")
    for _ in progress(range(100), desc="embedding", clock=clock):
        clock.now += (LOG_EVERY - 1) / 100

    assert messages(caplog) == []


def test_progress_bar__off_a_terminal_counts_manual_updates_and_hours(
    redirected: None, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="kulak.progress")
    with progress_bar(total=40_000, desc="scoring", unit="post", clock=clock) as bar:
        clock.now += 3600 + 120
        bar.update(10_000)

    assert messages(caplog) == ["scoring: 10,000/40,000 post, 25%, 1 h 02 min elapsed, about 3 h 06 min left"]


def test_progress__without_a_total_logs_the_count_alone(redirected: None, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    caplog.set_level(logging.INFO, logger="kulak.progress")
    for _ in progress(iter(range(3)), desc="reading feed.jsonl", unit="row", clock=clock):
        clock.now += LOG_EVERY

    assert messages(caplog)[0] == "reading feed.jsonl: 1 row, 1 min 00 s elapsed"
