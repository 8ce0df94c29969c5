"""Classification metrics as the TweetEval papers report them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sentiment.types import LABELS


@dataclass(frozen=True)
class Metrics:
    """Macro-averaged recall and F1 over the classes present in the gold labels, plus accuracy."""

    n: int
    macro_recall: float
    macro_f1: float
    accuracy: float
    recall: dict[str, float] = field(default_factory=dict)  # per class present in the gold labels


def evaluate(gold: Sequence[str], predicted: Sequence[str]) -> Metrics:
    """Compare predictions with gold labels; classes absent from ``gold`` are left out."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    classes = [c for c in LABELS if c in set(gold)]
    recalls, f1s, by_class = [], [], dict[str, float]()
    for c in classes:
        tp = sum(1 for g, p in zip(gold, predicted, strict=True) if g == c and p == c)
        n_gold = sum(1 for g in gold if g == c)
        n_pred = sum(1 for p in predicted if p == c)
        recall = tp / n_gold if n_gold else 0.0
        precision = tp / n_pred if n_pred else 0.0
        recalls.append(recall)
        by_class[c] = recall
        f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    correct = sum(1 for g, p in zip(gold, predicted, strict=True) if g == p)
    k = len(classes) or 1
    return Metrics(
        n=len(gold),
        macro_recall=sum(recalls) / k,
        macro_f1=sum(f1s) / k,
        accuracy=correct / len(gold) if gold else 0.0,
        recall=by_class,
    )
