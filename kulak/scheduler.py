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
from kulak.pipeline import RunResult, run_once
from sentiment.scorer import Scorer
from storage.db import Database

log = logging.getLogger(__name__)

JOB_ID = "kulak-collect"
JOBS_TABLE = "apscheduler_jobs"


@dataclass
class _Runtime:
    cfg: Config
    db: Database
    scorer: Scorer
    on_result: Callable[[RunResult], None]


# The job function must be importable and its arguments picklable (they are stored in the
# database), so the live objects are kept here instead of in the job's arguments.
_runtime: _Runtime | None = None


def collect_job() -> None:
    """The scheduled job: one collect → score → summarize round."""
    if _runtime is None:  # pragma: no cover - only if a stale job store is run by hand
        log.error("collect job ran outside `kulak run`; ignoring it")
        return
    result = run_once(_runtime.cfg, db=_runtime.db, scorer=_runtime.scorer)
    _runtime.on_result(result)


def build_scheduler(cfg: Config, db: Database) -> Any:
    """A blocking scheduler with the SQLAlchemy job store in ``db`` and kulak's one job."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    scheduler = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": cfg.schedule.misfire_grace_seconds,
        },
        timezone=UTC,
    )
    scheduler.add_job(
        "kulak.scheduler:collect_job",
        trigger="interval",
        seconds=cfg.schedule.interval_seconds,
        jitter=cfg.schedule.jitter_seconds or None,
        id=JOB_ID,
        name="collect, score and summarize",
        replace_existing=True,
        next_run_time=datetime.now(UTC),
    )
    return scheduler


def run_forever(cfg: Config, *, db: Database, scorer: Scorer, on_result: Callable[[RunResult], None]) -> None:
    """Run the schedule until Ctrl-C or SIGTERM; a running collection finishes before exit."""
    global _runtime
    _runtime = _Runtime(cfg, db, scorer, on_result)
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


def next_run_time(db: Database) -> datetime | None:
    """When the scheduled collection runs next, from the job store (None before `kulak run`)."""
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from sqlalchemy import inspect

    with db.engine.connect() as conn:
        if JOBS_TABLE not in inspect(conn).get_table_names():
            return None
    store = SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)
    job = store.lookup_job(JOB_ID)
    return job.next_run_time if job is not None else None
