"""A broken source never stops the run and never goes silent."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kulak.cli import main
from kulak.config import Config
from kulak.errors import AuthError, SourceUnavailable
from kulak.pipeline import build_collectors, load_configured_scorer, run_once
from listener.base import Batch, Mention
from storage import repository as repo
from storage.db import Database


class FlakyCollector:
    """Yields one good batch, then fails the way it is told to (or not at all)."""

    name = "flaky"

    def __init__(self) -> None:
        self.error: Exception | None = SourceUnavailable("HTTP 503 from api.example (3 retries)")
        self.calls = 0

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        self.calls += 1
        when = datetime(2026, 11, 2, 12, self.calls, tzinfo=UTC)
        mention = Mention("flaky", f"f{self.calls}", "x", "https://x.com/a/status/1", "a", "Paketto again", when)
        yield Batch((mention,), cursor=f"c{self.calls}")
        if self.error is not None:
            raise self.error


def test_failing_source__keeps_what_it_stored_and_the_other_sources_run(
    db: Database, make_config: Callable[..., Config]
) -> None:
    cfg = make_config()
    flaky = FlakyCollector()
    result = run_once(
        cfg, db=db, scorer=load_configured_scorer(cfg), collectors={**build_collectors(cfg), "flaky": flaky}
    )
    by_source = {s.source: s for s in result.collected}
    assert by_source["demo"].error is None and by_source["demo"].new > 0
    assert by_source["flaky"].error == "SourceUnavailable: HTTP 503 from api.example (3 retries)"
    with db.transaction() as s:
        assert repo.count_mentions(s, source="flaky") == 1, "the batch before the failure is kept"
        assert repo.get_cursor(s, "flaky") == "c1"
        health = {h.source: h for h in repo.source_health(s)}
    assert health["flaky"].consecutive_failures == 1 and health["flaky"].last_success_at is None
    assert health["demo"].consecutive_failures == 0 and health["demo"].last_success_at is not None


def test_failing_source__warns_after_three_failures_and_recovers(
    db: Database, make_config: Callable[..., Config]
) -> None:
    cfg = make_config()
    scorer = load_configured_scorer(cfg)
    flaky = FlakyCollector()
    flaky.error = AuthError("401 Unauthorized: the token was revoked; set a new one in KULAK_X_TOKEN")
    results = [run_once(cfg, db=db, scorer=scorer, collectors={"flaky": flaky}) for _ in range(3)]
    assert results[1].warnings == []
    (warning,) = results[2].warnings
    assert "'flaky' has failed 3 times in a row" in warning and "401 Unauthorized" in warning
    flaky.error = None
    assert run_once(cfg, db=db, scorer=scorer, collectors={"flaky": flaky}).warnings == []


def test_crashing_collector__is_recorded_not_raised(db: Database, make_config: Callable[..., Config]) -> None:
    cfg = make_config()
    flaky = FlakyCollector()
    flaky.error = KeyError("items")
    result = run_once(cfg, db=db, scorer=load_configured_scorer(cfg), collectors={"flaky": flaky})
    assert result.collected[0].error == "internal error in the flaky collector: KeyError: 'items'"


def test_sources_command__shows_health_and_next_run(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data-dir", str(tmp_path / "d"), "--model", str(tiny_model_dir), "--set", "demo.posts_per_hour=4"]
    assert main([*args, "sources"]) == 0
    assert "No collection has run yet" in capsys.readouterr().out
    assert main([*args, "run", "--once"]) == 0
    capsys.readouterr()
    assert main([*args, "sources"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["demo", "ok"]
    assert "not scheduled" in out.splitlines()[1]
    assert "No collection is scheduled: `kulak run` is not running" in out
