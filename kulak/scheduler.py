"""``kulak run``: one APScheduler 3.11 scheduler whose job store lives in kulak's database."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from kulak.config import Config
from kulak.pipeline import RunResult, build_collectors, only_source, run_once
from listener.base import Collector
from sentiment.scorer import Scorer
from storage.db import Database

log = logging.getLogger(__name__)

JOB_PREFIX = "collect:"  # one job per source, id "collect:<source>": stable across restarts
JOBS_TABLE = "apscheduler_jobs"


def job_id(source: str) -> str:
    """The stable job id of ``source``'s scheduled collection."""
    return JOB_PREFIX + source


@dataclass
class _Runtime:
    cfg: Config
    db: Database
    scorer: Scorer
    on_result: Callable[[RunResult], None]
    # Built once per `kulak run`: clients keep their sessions (Bluesky limits sign-ins per day).
    collectors: dict[str, Collector]


# The job function must be importable and its arguments picklable (they are stored in the
# database), so the live objects are kept here instead of in the job's arguments.
_runtime: _Runtime | None = None


def collect_job(source: str) -> None:
    """The scheduled job of one source: collect from it, score what is new, summarize."""
    if _runtime is None:  # pragma: no cover - only if a stale job store is run by hand
        log.error("collect job ran outside `kulak run`; ignoring it")
        return
    collectors = _runtime.collectors
    if source not in collectors:  # pragma: no cover - removed from the config while queued
        log.warning("source %s is no longer enabled; skipping its job", source)
        return
    result = run_once(_runtime.cfg, db=_runtime.db, scorer=_runtime.scorer, collectors=only_source(collectors, source))
    _runtime.on_result(result)


def source_intervals(cfg: Config) -> dict[str, int]:
    """Seconds between collections of each enabled source (its ``interval``, else the global one)."""
    intervals = {"demo": cfg.schedule.interval_seconds} if cfg.demo.enabled else {}
    for name, table in cfg.sources.items():
        if table.get("enabled", True):
            intervals[name] = int(table.get("interval") or cfg.schedule.interval_seconds)
    return intervals


def build_scheduler(cfg: Config, db: Database, *, scheduler_class: Any = None) -> Any:
    """A blocking scheduler with the SQLAlchemy job store in ``db`` and one job per enabled source.

    Jobs run one at a time (a single worker thread): sources take turns instead of competing for
    the database and the model. Jobs of sources no longer enabled are removed from the store.
    """
    from apscheduler.events import EVENT_SCHEDULER_START
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = (scheduler_class or BlockingScheduler)(
        jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)},
        executors={"default": ThreadPoolExecutor(max_workers=1)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": cfg.schedule.misfire_grace_seconds,
        },
        timezone=UTC,
    )
    intervals = source_intervals(cfg)
    now = datetime.now(UTC)
    for source, seconds in intervals.items():
        scheduler.add_job(
            "kulak.scheduler:collect_job",
            trigger="interval",
            args=[source],
            seconds=seconds,
            jitter=cfg.schedule.jitter_seconds or None,
            id=job_id(source),
            name=f"collect {source}, score and summarize",
            replace_existing=True,
            next_run_time=now,
        )
    scheduler.add_listener(_forget_stale_jobs(scheduler, set(map(job_id, intervals))), mask=EVENT_SCHEDULER_START)
    return scheduler


def _forget_stale_jobs(scheduler: Any, wanted: set[str]) -> Any:
    """A listener that drops stored jobs of sources removed from the config once the store is open."""

    def listener(_event: Any) -> None:
        for job in scheduler.get_jobs():
            if job.id not in wanted:
                log.info("removing the scheduled job %s: its source is no longer enabled", job.id)
                scheduler.remove_job(job.id)

    return listener


def run_forever(cfg: Config, *, db: Database, scorer: Scorer, on_result: Callable[[RunResult], None]) -> None:
    """Run the schedule until Ctrl-C or SIGTERM; a running collection finishes before exit."""
    global _runtime
    _runtime = _Runtime(cfg, db, scorer, on_result, build_collectors(cfg))
    scheduler = build_scheduler(cfg, db)

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except KeyboardInterrupt:
        log.warning("interrupted, stopping after the current run")
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=True)
        signal.signal(signal.SIGTERM, previous)
        _runtime = None


def next_run_times(db: Database) -> dict[str, datetime]:
    """When each source's scheduled collection runs next, from the job store (empty before `kulak run`)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from sqlalchemy import inspect

    with db.engine.connect() as conn:
        if JOBS_TABLE not in inspect(conn).get_table_names():
            return {}
    store = SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)
    return {
        job.id[len(JOB_PREFIX) :]: job.next_run_time
        for job in store.get_all_jobs()
        if job.id.startswith(JOB_PREFIX) and job.next_run_time is not None
    }
