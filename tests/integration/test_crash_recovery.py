"""`kulak run` killed with SIGKILL in the middle of a collection loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from storage.models import CursorRow, MentionBrandRow, MentionRow
from tests.fakeplatform.core import FakePlatform, Reply, Request
from tests.fakeplatform.hackernews import SEARCH_PATH, FakeHackerNews, HNItem
from tests.processes import first_round_then_ctrl_c, start_kulak_run

T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())


class Gate:
    """Holds the search request for one page until the test has killed the process."""

    def __init__(self, hn: FakeHackerNews, page: str) -> None:
        self.hn, self.page = hn, page
        self.reached, self.release = threading.Event(), threading.Event()

    def __call__(self, req: Request, match: re.Match[str]) -> Reply:
        if req.arg("page", "0") == self.page and not self.release.is_set():
            self.reached.set()
            self.release.wait(60)  # the client is killed meanwhile; this answer goes nowhere
        return self.hn.search(req, match)


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    with FakePlatform() as server:
        yield server


def _write_config(path: Path, data: Path, base_url: str) -> None:
    path.write_text(
        f"""
data_dir = "{data}"
[demo]
enabled = false
[schedule]
jitter_seconds = 0
[[brands]]
name = "Paketto"
[sources.hn]
type = "hackernews"
base_url = "{base_url}"
max_pages = 5
""",
        encoding="utf-8",
    )


def _start(config: Path, model: Path) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "kulak", "--config", str(config), "--model", str(model), "run"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return start_kulak_run(cmd, env)


def _counts(engine: Engine) -> tuple[int, int, int, int]:
    with engine.connect() as conn:
        mentions = conn.scalar(select(func.count()).select_from(MentionRow)) or 0
        distinct = conn.scalar(select(func.count(func.distinct(MentionRow.external_id)))) or 0
        links = conn.scalar(select(func.count()).select_from(MentionBrandRow)) or 0
        cursors = conn.scalar(select(func.count()).select_from(CursorRow)) or 0
    return mentions, distinct, links, cursors


def test_run__sigkill_mid_collection_then_restart__no_mention_lost_none_duplicated(
    platform: FakePlatform, tmp_path: Path, tiny_model_dir: Path
) -> None:
    hn = FakeHackerNews(platform)
    gate = Gate(hn, page="2")
    platform.route("GET", SEARCH_PATH)(gate)
    for i in range(250):  # three pages of 100, newest first
        hn.add(HNItem(str(5000 + i), T0 + i, f"user{i}", comment_text=f"Paketto parcel {i} is late"))
    config, data = tmp_path / "kulak.toml", tmp_path / "data"
    _write_config(config, data, f"{platform.url}/api/v1")

    proc = _start(config, tiny_model_dir)
    try:
        assert gate.reached.wait(120), "the collection never reached its third page"
        proc.send_signal(signal.SIGKILL)  # no cleanup, no finally blocks: a power cut
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    engine = create_engine(f"sqlite:///{data / 'kulak.db'}")
    mentions, _, _, cursors = _counts(engine)
    assert mentions == 200, "the two pages stored before the kill are kept"
    assert cursors == 0, "their batches carry the old cursor (none yet): the restart must re-read"

    gate.release.set()
    hn.add(HNItem("9999", T0 + 10_000, "late", comment_text="Paketto again, after the crash"))
    run = first_round_then_ctrl_c(_start(config, tiny_model_dir))
    assert run.returncode == 0, run.err
    assert any(line.startswith("hn: ") and "-- FAILED" not in line for line in run.first_round), run.first_round
    mentions, distinct, links, _ = _counts(engine)
    engine.dispose()
    assert (mentions, distinct, links) == (251, 251, 251), "every post exactly once, each linked to its brand once"
