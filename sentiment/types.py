"""Value types shared by every sentiment model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Label = Literal["negative", "neutral", "positive"]
LABELS: tuple[Label, Label, Label] = ("negative", "neutral", "positive")


@dataclass(frozen=True)
class Score:
    """One text's sentiment: the winning label and the three class probabilities."""

    label: Label
    negative: float
    neutral: float
    positive: float

    @classmethod
    def from_probs(cls, probs: tuple[float, float, float]) -> Score:
        """Build a score from (negative, neutral, positive) probabilities."""
        best = max(range(3), key=lambda i: probs[i])
        return cls(LABELS[best], probs[0], probs[1], probs[2])
