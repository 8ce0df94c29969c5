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
    assert m.recall == pytest.approx({"negative": 0.5, "neutral": 1.0, "positive": 2 / 3})


def test_evaluate__binary_gold_ignores_the_missing_class() -> None:
    m = evaluate(["negative", "positive"], ["negative", "positive"])
    assert m.macro_recall == 1.0 and set(m.recall) == {"negative", "positive"}


def test_model_card__marks_targets_met_and_missed() -> None:
    from sentiment.evaluate import XLMT, FileResult, render_model_card
    from sentiment.metrics import Metrics

    def result(name: str, recall: float, f1: float, acc: float, binary: bool = False) -> FileResult:
        per_class = {"negative": 0.25, "positive": 0.75} | ({} if binary else {"neutral": 0.5})
        return FileResult(name, binary, Metrics(10, recall, f1, acc, recall=per_class))

    results = [result("en_tweets_test.tsv", 0.73, 0.7, 0.7), result("hu_sst_dev.tsv", 0.5, 0.4, 0.5)]
    results += [result("tr_reviews_dev.tsv", 0.9, 0.9, 0.86, binary=True)]
    results += [result(f"{lang}_test.tsv", 0.6, 0.64, 0.6) for lang in XLMT]
    card = render_model_card(results, model="m", command="kulak eval --card x", date="2026-11-22")
    assert "| en_tweets_test macro-recall | 0.730 | 0.72 | yes |" in card
    assert "| XLM-T average macro-F1 | 0.640 | 0.66 | **no** |" in card
    assert "| hu_sst_dev macro-recall | 0.500 | 0.60 | **no** |" in card
    assert "| tr_reviews_dev accuracy | 0.860 | 0.85 | yes |" in card
    assert "BERTweet 73.4" in card
    assert "| hu_sst_dev.tsv | 0.250 | 0.500 | 0.750 |" in card
    assert "| tr_reviews_dev.tsv | 0.250 | – | 0.750 |" in card


def test_model_card__describes_the_adapter_from_its_recorded_settings() -> None:
    from sentiment.evaluate import XLMT, render_model_card
    from sentiment.finetune import FinetuneSettings

    upsample = {f"{lang}_": 2 for lang in XLMT} | {"hu_sst_": 3}
    settings = {"rank": 16, "top_layers": 6, "epochs": FinetuneSettings.epochs + 1, "upsample": upsample}
    epochs = FinetuneSettings.epochs + 1
    card = render_model_card([], model="m", command="c", date="d", adapter_meta={"settings": settings, "epoch": 1})
    text = " ".join(card.split())
    assert "LoRA rank 16 on every linear layer and the LayerNorms of the top 6 encoder layers" in text
    assert f"for {epochs} epoch(s) over the multilingual training mix (upsampled: XLM-T files ×2; hu_sst ×3)" in text
    assert f"--finetune --data-root ../shared/data --top-layers 6 --epochs {epochs}" in text
    assert "Epoch 1 was kept, chosen by mean macro-recall over the validation files" in text
    assert "Runtime" not in text
    timed = render_model_card([], model="m", command="c", date="d", runtime="ONNX Runtime int8")
    assert "- Runtime of the figures above: ONNX Runtime int8." in timed
    plain = render_model_card([], model="m", command="c", date="d", adapter_meta={"hidden": 512})
    assert "No adapters" in plain and "LoRA" not in plain
    default = {**settings, "top_layers": FinetuneSettings.top_layers, "epochs": FinetuneSettings.epochs}
    meta = {"settings": default, "epoch": 2, "selected_on": "int8 validation"}
    card = " ".join(render_model_card([], model="m", command="c", date="d", adapter_meta=meta).split())
    assert "--finetune --data-root ../shared/data`" in card and "--top-layers" not in card and "--epochs" not in card
    assert "Epoch 2 was kept, chosen on the int8 path (the CPU default) by mean macro-recall" in card
