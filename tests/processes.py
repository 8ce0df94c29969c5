"""Driving a real `kulak run` process in tests: no sleeping, only its own output."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


def start_kulak_run(cmd: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """Start ``cmd`` (a `kulak run`) with pipes, Ctrl-C reaching it as it would from a terminal.

    A test run started in the background of a non-interactive shell (``cmd &`` in a CI script)
    inherits SIGINT as ignored, and Python then never turns it into KeyboardInterrupt; the child
    gets the default disposition back before it starts.
    """
    return subprocess.Popen(
        list(cmd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@dataclass(frozen=True)
class Stopped:
    """What a `kulak run` printed up to its first summary, and how it ended after Ctrl-C."""

    first_round: list[str]
    out: str
    err: str
    returncode: int


def first_round_then_ctrl_c(proc: subprocess.Popen[str]) -> Stopped:
    """Read ``proc``'s output until its first per-brand summary, send SIGINT, wait for it to exit."""
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # blocks on the process's own output, no sleeping
            lines.append(line)
            if line.startswith("Sentiment by brand"):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Stopped(lines, out, err, proc.returncode)
