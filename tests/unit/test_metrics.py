from __future__ import annotations

import pytest

from sentiment.metrics import evaluate


def test_evaluate__macro_recall_and_f1_match_hand_computation() -> None:
    gold = ["negative", "negative", "neutral", "positive", "positive", "positive"]
    pred = ["negative", "neutral", "neutral", "positive", "positive", "negative"]
    m = evaluate(gold, pred)
    # recalls: neg 1/2, neu 1/1, pos 2/3
    assert m.macro_recall == pytest.approx((0.5 + 1 + 2 / 3) / 3)
    # precisions: neg 1/2, neu 1/2, pos 2/2 -> F1s: 0.5, 2/3, 0.8
    assert m.macro_f1 == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)
    assert m.accuracy == pytest.approx(4 / 6)


def test_evaluate__binary_gold_ignores_the_missing_class() -> None:
    m = evaluate(["negative", "positive"], ["negative", "positive"])
    assert m.macro_recall == 1.0
