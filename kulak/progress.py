"""Progress for long work: a bar on a terminal, a log line now and then when output is redirected.

A fine-tune or a first-time embedding run lasts tens of minutes; started from cron, systemd or
``nohup … > log`` it would otherwise say nothing until it ends. Off a terminal, progress is
logged at INFO (shown with ``kulak -v``) at most once every ``LOG_EVERY`` seconds, with the share
done and an estimate of the time left; work that ends sooner logs nothing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

LOG_EVERY = 60.0  # seconds between progress log lines off a terminal


def progress(
    items: Iterable[T],
    *,
    total: int | None = None,
    desc: str,
    unit: str = "it",
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """``items`` wrapped in a tqdm bar on stderr, or in a :class:`LoggedProgress` off a terminal.

    Iterate the result as ``items``; ``set_postfix(loss=...)`` adds to what is shown. ``total``
    defaults to ``len(items)`` where it has one.
    """
    if total is None and isinstance(items, Sized):
        total = len(items)
    if _on_terminal():
        from tqdm import tqdm

        return tqdm(items, total=total, desc=desc, unit=unit, leave=False)
    return LoggedProgress(items, total=total, desc=desc, unit=unit, clock=clock)


def progress_bar(*, total: int, desc: str, unit: str = "it", clock: Callable[[], float] = time.monotonic) -> Any:
    """A manual bar (``with progress_bar(...) as bar: bar.update(n)``); logged off a terminal."""
    if _on_terminal():
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False)
    return LoggedProgress((), total=total, desc=desc, unit=unit, clock=clock)


class LoggedProgress(Generic[T]):
    """The off-terminal stand-in for a tqdm bar: iterable, ``update``, ``set_postfix``, a context manager."""

    def __init__(
        self, items: Iterable[T], *, total: int | None, desc: str, unit: str, clock: Callable[[], float]
    ) -> None:
        self.items, self.total, self.desc, self.unit, self.clock = items, total, desc, unit, clock
        self.done = 0
        self.postfix = ""
        self.started = self.last = clock()

    def __iter__(self) -> Iterator[T]:
        for item in self.items:
            yield item
            self.update(1)

    def __enter__(self) -> LoggedProgress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set_postfix(self, **values: object) -> None:
        """Shown after the counts in the next log line, as tqdm shows it after the bar."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n: int = 1) -> None:
        """Count ``n`` more done; log a line when ``LOG_EVERY`` seconds have passed since the last."""
        self.done += n
        now = self.clock()
        if now - self.last < LOG_EVERY:
            return
        self.last = now
        elapsed = now - self.started
        counts = f"{self.done:,}/{self.total:,}" if self.total else f"{self.done:,}"
        parts = [f"{self.desc}: {counts} {self.unit}"]
        if self.total:
            parts.append(f"{100 * self.done / self.total:.0f}%")
        parts.append(f"{_duration(elapsed)} elapsed")
        if self.total and self.done:
            parts.append(f"about {_duration(elapsed * (self.total - self.done) / self.done)} left")
        if self.postfix:
            parts.append(self.postfix)
        log.info("%s", ", ".join(parts))


def _on_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def _duration(span: float) -> str:
    seconds = round(span)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
