"""The schedule: one job per enabled source, at its own interval, stored in kulak's database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from kulak.config import Config
from kulak.scheduler import build_scheduler, job_id, next_run_times
from storage.db import Database


@pytest.fixture
def started(db: Database) -> Iterator[Callable[[Config], Any]]:
    schedulers: list[Any] = []

    def start(cfg: Config) -> Any:
        scheduler = build_scheduler(cfg, db, scheduler_class=BackgroundScheduler)
        scheduler.start(paused=True)  # paused: nothing runs, the store still fills
        schedulers.append(scheduler)
        return scheduler

    yield start
    for scheduler in schedulers:
        if scheduler.running:
            scheduler.shutdown(wait=False)


def test_scheduler__one_job_per_enabled_source_at_its_own_interval(
    db: Database, make_config: Callable[..., Config], started: Callable[[Config], Any]
) -> None:
    sources = {"hn": {"type": "hackernews", "interval": 900}, "feeds": {"type": "rss"}, "off": {"enabled": False}}
    cfg = make_config()
    cfg = replace(cfg, sources=sources, schedule=replace(cfg.schedule, interval_seconds=3600))
    scheduler = started(cfg)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"collect:demo", "collect:hn", "collect:feeds"}
    assert jobs["collect:hn"].trigger.interval.total_seconds() == 900
    assert jobs["collect:feeds"].trigger.interval.total_seconds() == 3600
    assert jobs["collect:hn"].args == ("hn",)
    assert (jobs["collect:hn"].coalesce, jobs["collect:hn"].max_instances) == (True, 1)
    assert set(next_run_times(db)) == {"demo", "hn", "feeds"}, "kulak sources reads next runs from the store"


def test_scheduler__jobs_of_removed_sources_leave_the_store_and_ids_stay_stable(
    db: Database, make_config: Callable[..., Config], started: Callable[[Config], Any]
) -> None:
    cfg = replace(make_config(), sources={"hn": {"type": "hackernews"}})
    started(cfg).shutdown(wait=False)
    assert set(next_run_times(db)) == {"demo", "hn"}
    scheduler = started(replace(cfg, sources={}))
    assert [job.id for job in scheduler.get_jobs()] == [job_id("demo")]
    assert set(next_run_times(db)) == {"demo"}
