"""LoRA fine-tuning of the encoder's top layers: trains, saves small, and merges back exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentiment.encoder import Encoder
from sentiment.finetune import Adapter, FinetuneSettings, finetune, load_base
from sentiment.head import Head
from sentiment.scorer import read_model_file

TEXTS = [
    "good great love",
    "thanks amazing parcel",
    "bad terrible delivery",
    "lost parcel never again",
    "the parcel is late",
    "my delivery and the parcel",
    "useless broken",
    "rezalet berbat kargo",
]
LABELS = np.array([2, 2, 0, 0, 1, 1, 0, 0])


@pytest.fixture
def trained(tiny_model_dir: Path, tmp_path: Path) -> tuple[Adapter, dict[str, float], Path]:
    model, tokenizer = load_base(tiny_model_dir)
    rng = np.random.default_rng(0)
    head = Head(w2=rng.normal(size=(3, 32)).astype(np.float32), b2=np.zeros(3, np.float32))
    settings = FinetuneSettings(top_layers=1, rank=4, epochs=3, batch_size=4, max_length=16, lr=1e-2, head_lr=1e-2)
    adapter, scores = finetune(
        model,
        tokenizer,
        head,
        train=[("train.tsv", TEXTS * 4, np.tile(LABELS, 4))],
        val=[("val.tsv", TEXTS, LABELS)],
        cache_dir=tmp_path / "cache",
        encoder_tag="tiny",
        settings=settings,
    )
    return adapter, scores, tmp_path


def test_finetune__adapts_only_the_top_layers_and_reports_validation(
    trained: tuple[Adapter, dict[str, float], Path],
) -> None:
    adapter, scores, _ = trained
    assert set(scores) == {"val.tsv"} and 0.0 <= scores["val.tsv"] <= 1.0
    layers = {key.split(".", 1)[0] for key in adapter.arrays}
    assert layers == {"l1"}, "the bottom layer stays frozen"
    assert any(np.abs(v).sum() > 0 for k, v in adapter.arrays.items() if k.endswith(".B")), "B starts at 0 and moves"


def test_adapter__saved_file_loads_as_the_default_model_file_and_merges_into_a_fresh_encoder(
    trained: tuple[Adapter, dict[str, float], Path], tiny_model_dir: Path
) -> None:
    adapter, _, tmp_path = trained
    path = tmp_path / "adapter.npz"
    adapter.save(path)
    head, loaded = read_model_file(path)
    assert loaded is not None and loaded.digest == adapter.digest
    assert head.w2.shape == (3, 32)

    base_model, tokenizer = load_base(tiny_model_dir)
    base = Encoder(base_model, tokenizer, max_length=16).embed(TEXTS)
    merged_model, _ = load_base(tiny_model_dir)
    loaded.merge_into(merged_model)
    merged = Encoder(merged_model, tokenizer, max_length=16).embed(TEXTS)
    assert not np.allclose(base, merged), "merging changes the encoder"
    # the merged encoder + head reproduce what the training loop validated (float16 storage aside)
    pred = head.probabilities(merged).argmax(1)
    assert (pred == LABELS).mean() >= 0.5


def test_read_model_file__a_plain_head_has_no_adapter(tmp_path: Path) -> None:
    path = tmp_path / "head.npz"
    Head(w2=np.ones((3, 4), np.float32), b2=np.zeros(3, np.float32)).save(path)
    head, adapter = read_model_file(path)
    assert adapter is None and head.input_dim == 4
