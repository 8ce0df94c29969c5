"""`kulak train-sentiment` with the real encoder on a hand-written miniature of the data folder.

Marked slow (the real e5 is rebuilt once per session and shared with the other slow tests).
The point is the correction loop: labels exported from kulak go into training with ``--extra``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from kulak.cli import main
from sentiment.finetune import Adapter
from sentiment.head import Head
from sentiment.train import XLMT_LANGUAGES

pytestmark = pytest.mark.slow

ROWS = {
    "negative": ["terrible service, never again", "my parcel is lost and nobody answers", "worst update ever"],
    "neutral": ["the shop opens at nine", "new timetable published today", "the parcel is in Ankara"],
    "positive": ["great support, thank you!", "love the new app", "delivered early, brilliant"],
}
HU = {
    "negative": ["borzasztó film, unalmas", "elrontották a végét"],
    "neutral": ["a film két órás", "a rendező francia"],
    "positive": ["csodálatos alakítás", "nagyon jó film"],
}
TR = {"negative": ["berbat bir film", "sıkıcı ve uzun"], "positive": ["harika bir film", "çok güzel oyunculuk"]}


def _mean(scores: dict[str, float]) -> float:
    return sum(scores.values()) / len(scores)


def _write(path: Path, rows: list[tuple[str, str]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\tlabel\n" + "".join(f"{t}\t{label}\n" for t, label in rows), encoding="utf-8")
    return len(rows)


def _rows(table: dict[str, list[str]], repeat: int = 1) -> list[tuple[str, str]]:
    return [(f"{text} {i}" if i else text, label) for i in range(repeat) for label, ts in table.items() for text in ts]


def _data_root(root: Path) -> int:
    """The standard files in miniature; returns the number of training rows."""
    s = root / "sentiment"
    n = _write(s / "en_tweets_train.tsv", _rows(ROWS, 2))
    n += _write(s / "hu_sst_train.tsv", _rows(HU, 3))
    n += _write(s / "tr_reviews_train.tsv", _rows(TR, 4))
    _write(s / "en_tweets_val.tsv", _rows(ROWS))
    for lang in XLMT_LANGUAGES:
        n += _write(s / "xlmt" / f"{lang}_train.tsv", _rows(ROWS))
        _write(s / "xlmt" / f"{lang}_val.tsv", _rows(ROWS))
    return n


def _labels_export(path: Path) -> int:
    corrections = [("Paketto kayıp kargo, rezalet", "negative"), ("Paketto çok hızlı, teşekkürler", "positive")]
    return _write(path, corrections * 3)


def test_train_sentiment__extra_labels_join_the_training_rows(tmp_path: Path, model_cache: Path) -> None:
    root, extra = tmp_path / "data", tmp_path / "labels.tsv"
    base_rows, extra_rows = _data_root(root), _labels_export(extra)
    args = ["--data-dir", str(model_cache.parent), "train-sentiment", "--data-root", str(root)]

    assert main([*args, "-o", str(tmp_path / "plain.npz")]) == 0
    assert main([*args, "--extra", str(extra), "-o", str(tmp_path / "head.npz")]) == 0

    plain, head = Head.load(tmp_path / "plain.npz").meta, Head.load(tmp_path / "head.npz").meta
    assert plain["train_rows"] == base_rows and "labels.tsv" not in plain["train_files"]
    assert head["train_rows"] == base_rows + extra_rows and head["train_files"][-1] == "labels.tsv"


def test_train_sentiment_finetune__extra_labels_and_held_out_validation(
    tmp_path: Path, model_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, extra = tmp_path / "data", tmp_path / "labels.tsv"
    base_rows, extra_rows = _data_root(root), _labels_export(extra)
    out = tmp_path / "adapter.npz"
    args = ["--data-dir", str(model_cache.parent), "train-sentiment", "--finetune", "--epochs", "2"]
    args += ["--data-root", str(root)]

    assert main([*args, "--top-layers", "13", "-o", str(out)]) == 2
    assert not out.exists()
    assert main([*args, "--extra", str(extra), "--top-layers", "2", "-o", str(out)]) == 0

    adapter = Adapter.load(out)
    meta = adapter.meta
    assert meta["settings"]["top_layers"] == 2
    assert {key.split(".")[0] for key in adapter.arrays} == {"l10", "l11"}
    assert "labels.tsv" in meta["train_files"]
    held_out = 2 + 2  # a tenth of the 18 Hungarian and 16 Turkish rows, rounded
    assert meta["train_rows"] == base_rows + extra_rows - held_out
    assert "hu_sst_train.tsv[held-out]" in meta["val_files"] and "tr_reviews_train.tsv[held-out]" in meta["val_files"]
    # Each epoch is scored on the int8 path kulak ships; the best mean there is kept.
    first = capsys.readouterr().out
    means = [float(m) for m in re.findall(r"epoch \d: mean validation macro-recall int8 ([0-9.]+)", first)]
    assert len(means) == 2, first
    kept = means.index(max(means)) + 1
    assert meta["epoch"] == kept and meta["selected_on"] == "int8 validation"
    assert _mean(meta["int8_validation_macro_recall"]) == pytest.approx(max(means), abs=1e-4)
    epoch_file = Adapter.load(model_cache.parent / "cache" / "finetune" / f"adapter.epoch{kept}.npz")
    assert all(np.array_equal(epoch_file.arrays[k], v) for k, v in adapter.arrays.items())
    assert "int8 validation macro-recall tr_reviews_train.tsv[held-out]" in first
    assert f"kept epoch {kept}: int8 " in first and "the adapter it replaced" not in first

    # --resume continues from the saved training state; after the last epoch nothing is left to
    # run and the same adapter comes out. Other settings, or no --finetune, are refused.
    again = tmp_path / "again.npz"
    again.write_bytes(out.read_bytes())
    assert main([*args, "--extra", str(extra), "--top-layers", "2", "--resume", "-o", str(again)]) == 0
    assert all(np.array_equal(Adapter.load(again).arrays[k], v) for k, v in adapter.arrays.items())
    # It replaced an adapter (itself), so the two are compared on the int8 path: no better.
    second = capsys.readouterr().out
    assert "the adapter it replaced: int8 " in second and "no better than the one it replaced" in second
    assert main([*args, "--extra", str(extra), "--top-layers", "3", "--resume", "-o", str(again)]) == 2
    plain = ["--data-dir", str(model_cache.parent), "train-sentiment", "--data-root", str(root), "--resume"]
    assert main(plain) == 2
