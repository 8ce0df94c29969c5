"""Progress bars for long work: shown on a terminal, silent when output is redirected."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], *, total: int | None = None, desc: str, unit: str = "it") -> Iterator[T]:
    """Wrap ``items`` in a tqdm bar on stderr; tqdm's ``disable=None`` hides it off a TTY."""
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, unit=unit, disable=None, leave=False)


def progress_bar(*, total: int, desc: str, unit: str = "it") -> Any:
    """A manual bar (``with progress_bar(...) as bar: bar.update(n)``), silent off a TTY."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)
