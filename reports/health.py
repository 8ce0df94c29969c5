"""Source health: the `kulak sources` table and the warnings that keep a broken collector visible."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from storage.repository import SourceHealth

FAILURES_BEFORE_WARNING = 3


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def health_warnings(records: Sequence[SourceHealth], *, threshold: int = FAILURES_BEFORE_WARNING) -> list[str]:
    """One line per source that has failed ``threshold`` or more times in a row."""
    return [
        f"WARNING: source {r.source!r} has failed {r.consecutive_failures} times in a row "
        f"(last success: {_when(r.last_success_at)}; last error: {r.last_error}). "
        f"Its silence is not a quiet week: run `kulak sources` and fix the source."
        for r in records
        if r.consecutive_failures >= threshold
    ]


def render_health(records: Sequence[SourceHealth], *, next_runs: Mapping[str, datetime]) -> str:
    """The `kulak sources` table: one line per source, with its next scheduled run."""
    if not records:
        return "No collection has run yet: start one with `kulak run --once`."
    header = (
        f"{'source':<14} {'status':<9} {'last success':<22} {'failures':>8}  {'new':>5}  {'next run':<22} last error"
    )
    lines = [header]
    for r in records:
        status = (
            "FAILING"
            if r.consecutive_failures >= FAILURES_BEFORE_WARNING
            else ("error" if r.consecutive_failures else "ok")
        )
        error = (r.last_error or "")[:80] if r.consecutive_failures else ""
        next_run = _when(next_runs[r.source]) if r.source in next_runs else "not scheduled"
        lines.append(
            f"{r.source:<14} {status:<9} {_when(r.last_success_at):<22} {r.consecutive_failures:>8}  "
            f"{r.last_new_mentions:>5}  {next_run:<22} {error}"
        )
    if not next_runs:
        lines += ["", "No collection is scheduled: `kulak run` is not running (or has never run)."]
    lines.extend(health_warnings(records))
    return "\n".join(lines)
