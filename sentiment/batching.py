"""Length-sorted batching: short texts are padded only against texts of similar length.

Sorting before batching lets each batch pad to its own longest text (dynamic padding) instead
of a global maximum, which the model notes measured as a 3x saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TokenBatch:
    """One padded batch: which texts it holds and their ``(rows, tokens)`` int64 arrays."""

    indices: list[int]
    input_ids: np.ndarray
    attention_mask: np.ndarray


def token_batches(
    tokenizer: Any, texts: Sequence[str], *, batch_size: int, max_length: int, prefix: str = ""
) -> list[TokenBatch]:
    """Tokenize ``texts`` once, then batch them by token count, longest first, each padded to its own longest.

    Sorting by tokens rather than characters matters on social media text: URLs, emoji and
    hashtags make character counts a poor guide, and on TweetEval tweets the int8 path ran 1.3x
    faster with batches sorted by tokens (docs/benchmarks.md).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not texts:  # transformers' fast tokenizers fail on an empty list
        return []
    ids: list[list[int]] = tokenizer(
        [prefix + t for t in texts], truncation=True, max_length=max_length, return_attention_mask=False
    )["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
    batches = []
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = np.full((len(idx), width), pad, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for row, i in enumerate(idx):
            n = len(ids[i])
            cols = slice(width - n, width) if left else slice(0, n)
            input_ids[row, cols] = ids[i]
            mask[row, cols] = 1
        batches.append(TokenBatch(idx, input_ids, mask))
    return batches
