"""LoRA fine-tuning of the encoder's top layers: trains, saves small, and merges back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kulak.errors import ModelError
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


def run_tiny_finetune(
    model_dir: Path, tmp_path: Path, *, epochs: int = 3, resume: bool = False, top_layers: int = 1
) -> tuple[Adapter, dict[str, float]]:
    model, tokenizer = load_base(model_dir)
    rng = np.random.default_rng(0)
    head = Head(w2=rng.normal(size=(3, 32)).astype(np.float32), b2=np.zeros(3, np.float32))
    settings = FinetuneSettings(
        top_layers=top_layers, rank=4, epochs=epochs, batch_size=4, max_length=16, lr=1e-2, head_lr=1e-2
    )
    return finetune(
        model,
        tokenizer,
        head,
        train=[("train.tsv", TEXTS * 4, np.tile(LABELS, 4))],
        val=[("val.tsv", TEXTS, LABELS)],
        cache_dir=tmp_path / "cache",
        encoder_tag="tiny",
        settings=settings,
        checkpoint_path=tmp_path / "checkpoint" / "adapter.npz",
        resume=resume,
    )


@pytest.fixture
def trained(tiny_model_dir: Path, tmp_path: Path) -> tuple[Adapter, dict[str, float], Path]:
    adapter, scores = run_tiny_finetune(tiny_model_dir, tmp_path)
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


def test_finetune__an_interrupted_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentiment.finetune as ft

    straight, straight_scores = run_tiny_finetune(tiny_model_dir, tmp_path / "straight")

    real_progress = ft.progress

    def interrupt_in_epoch_2(items: Any, **kwargs: Any) -> Any:
        if kwargs.get("desc", "").startswith("fine-tuning epoch 2/"):
            raise KeyboardInterrupt
        return real_progress(items, **kwargs)

    monkeypatch.setattr(ft, "progress", interrupt_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run_tiny_finetune(tiny_model_dir, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint" / "adapter.state.pt").exists(), "epoch 1's state was saved"
    epochs_run: list[str] = []

    def record(items: Any, **kwargs: Any) -> Any:
        epochs_run.append(kwargs.get("desc", ""))
        return real_progress(items, **kwargs)

    monkeypatch.setattr(ft, "progress", record)
    resumed, resumed_scores = run_tiny_finetune(tiny_model_dir, tmp_path / "resumed", resume=True)
    assert [d for d in epochs_run if d.startswith("fine-tuning")] == ["fine-tuning epoch 2/3", "fine-tuning epoch 3/3"]
    assert resumed_scores == straight_scores
    assert resumed.meta["epoch"] == straight.meta["epoch"]
    assert set(resumed.arrays) == set(straight.arrays)
    for key, value in straight.arrays.items():
        np.testing.assert_array_equal(resumed.arrays[key], value, err_msg=key)


def test_finetune__resume_refuses_other_settings_and_a_missing_state(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="No saved fine-tune to resume"):
        run_tiny_finetune(tiny_model_dir, tmp_path, epochs=1, resume=True)
    run_tiny_finetune(tiny_model_dir, tmp_path, epochs=1)
    with pytest.raises(ModelError, match="started with other settings or data"):
        run_tiny_finetune(tiny_model_dir, tmp_path, epochs=2, resume=True)
