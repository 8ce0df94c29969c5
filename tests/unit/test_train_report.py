"""What `kulak train-sentiment --finetune` says when its adapter replaces another."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import sentiment.onnx_backend
from kulak.training import _compare_with_replaced
from sentiment.finetune import Adapter
from sentiment.head import Head


def _adapter(int8: dict[str, float] | None = None, *, bias: float = 0.0) -> Adapter:
    head = Head(w2=np.zeros((3, 4), np.float32), b2=np.full(3, bias, np.float32))
    meta: dict[str, Any] = {"int8_validation_macro_recall": int8} if int8 else {}
    return Adapter(arrays={}, scale=1.0, head=head, meta=meta)


@pytest.mark.parametrize(
    ("replaced", "warning"),
    [
        (0.70, "is no better than the one it replaced"),
        (0.69, "gains 0.50 points, within the noise of these validation sets (under 1"),
        (0.68, None),
    ],
)
def test_compare_with_replaced__warns_unless_the_gain_is_beyond_validation_noise(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], replaced: float, warning: str | None
) -> None:
    def old_scores(checkpoint: Path, adapter: Adapter, val: Any) -> tuple[dict[str, float], Path]:
        return {"a.tsv": replaced, "b.tsv": replaced}, Path("unused")

    monkeypatch.setattr(sentiment.onnx_backend, "int8_validation", old_scores)
    chosen = _adapter({"a.tsv": 0.69, "b.tsv": 0.70})  # mean 0.695
    _compare_with_replaced(Path("checkpoint"), _adapter(bias=1.0), chosen, [])  # another head: scored
    out = capsys.readouterr().out
    assert f"the adapter it replaced: int8 {replaced:.4f} on the same validation sets (this one: 0.6950)" in out
    if warning is None:
        assert "warning" not in out
    else:
        assert warning in out and "git checkout sentiment/assets/sentiment-adapter.npz" in out
