from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kulak.errors import ModelError
from sentiment.batching import TokenBatch
from sentiment.onnx_backend import EXPORT_SCHEME, ensure_int8_model, outlier_channels, split_outlier_channels


def test_ensure_int8_model__a_failed_export_is_reported_and_leaves_no_model(tmp_path: Path) -> None:
    checkpoint = tmp_path / "not-a-checkpoint"
    checkpoint.mkdir()
    with pytest.raises(ModelError, match=r"Exporting the int8 model failed \(exit code 2.*model.backend = 'torch'"):
        ensure_int8_model(checkpoint)
    assert not (tmp_path / f"not-a-checkpoint-{EXPORT_SCHEME}").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["not-a-checkpoint"], "no half-built directory is left"


@pytest.mark.parametrize("code", [-9, 137])
def test_ensure_int8_model__an_export_killed_for_memory_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def killed(args: list[str], check: bool) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(args, code)

    monkeypatch.setattr(subprocess, "run", killed)
    with pytest.raises(ModelError, match=r"lack of memory \(it needs about 1.4 GB once\).*model.backend = 'torch'"):
        ensure_int8_model(tmp_path / "checkpoint")


def tiny_bert_with_an_outlier(channel: int) -> Any:
    """A 2-layer random BertModel whose layer 1 FFN has one intermediate channel ~40x the others."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():
        model.encoder.layer[1].intermediate.dense.weight[channel] *= 40.0
        model.encoder.layer[1].intermediate.dense.bias[channel] = 5.0
    return model


def random_batches(count: int) -> list[TokenBatch]:
    rng = np.random.default_rng(1)
    batches = []
    for b in range(count):
        ids = rng.integers(2, 50, size=(4, 6 + b))
        mask = np.ones_like(ids)
        mask[0, -2:] = 0  # some padding, as real batches have
        batches.append(TokenBatch(list(range(4 * b, 4 * b + 4)), ids, mask))
    return batches


def test_outlier_channels__finds_the_one_wide_channel_and_the_split_keeps_the_output() -> None:
    import torch

    model = tiny_bert_with_an_outlier(channel=17)
    batches = random_batches(3)
    found = outlier_channels(model, batches)
    assert list(found) == [1] and list(found[1]) == [17], "only the amplified channel is an outlier"
    assert found[1][17] > 5

    def run() -> torch.Tensor:
        with torch.inference_mode():
            ids, mask = (torch.from_numpy(a) for a in (batches[1].input_ids, batches[1].attention_mask))
            out: torch.Tensor = model(input_ids=ids, attention_mask=mask).last_hidden_state
            return out

    before = run()
    split_outlier_channels(model, found)
    assert model.encoder.layer[1].output.dense.in_features == 63, "the channel left the int8-bound product"
    assert model.encoder.layer[0].output.dense.in_features == 64, "other layers are untouched"
    torch.testing.assert_close(run(), before, atol=1e-5, rtol=1e-4)


def test_build_int8_model__keeps_word_embeddings_outside_the_graph_and_matches_torch(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import onnx

    from sentiment.encoder import Encoder
    from sentiment.onnx_backend import WORD_EMBEDDINGS, OnnxEncoder, build_int8_model

    target = tmp_path / "int8"
    build_int8_model(tiny_model_dir, target, adapter=None)
    table = np.load(target / WORD_EMBEDDINGS)
    reference = Encoder.from_pretrained(tiny_model_dir)
    vocab = reference.model.config.vocab_size
    assert table.dtype == np.float16 and table.shape == (vocab, 32)
    graph = onnx.load(str(target / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["inputs_embeds", "attention_mask"]
    assert all(vocab not in i.dims for i in graph.initializer), "the word-embedding table is not in the graph"

    texts = ["great phone", "battery died again", "refund please", "thanks for the help"]
    int8 = OnnxEncoder(target).embed(texts, batch_size=2)
    fp32 = reference.embed(texts, batch_size=2)
    cosines = (int8 * fp32).sum(-1)
    assert cosines.min() > 0.97, f"the int8 export computes what the torch encoder does ({cosines})"

    (target / WORD_EMBEDDINGS).unlink()
    with pytest.raises(ModelError, match=r"int8 model in .*int8 is incomplete or damaged.*delete that directory"):
        OnnxEncoder(target)


def test_int8_validation__scores_through_the_adapters_int8_export_and_judges_binary_files_on_two_classes(
    tiny_model_dir: Path,
) -> None:
    from sentiment.finetune import Adapter
    from sentiment.head import Head
    from sentiment.onnx_backend import int8_validation

    # A head that ignores the text: neutral first, then positive, then negative. A three-class file
    # is then all "neutral" (macro-recall 1/3); a negative/positive file, judged on those two
    # classes only, is all "positive" (1/2), where a plain argmax would say neutral (0).
    head = Head(w2=np.zeros((3, 32), np.float32), b2=np.array([0.0, 1.0, 0.5], np.float32))
    adapter = Adapter(
        arrays={"l1.output.LayerNorm.weight": np.full(32, 0.9, np.float32)}, scale=1.0, head=head, meta={}
    )
    texts = ["great phone", "battery died again", "refund please", "thanks for the help"]
    scores, export = int8_validation(
        tiny_model_dir,
        adapter,
        [("three.tsv", texts[:3], np.array([0, 1, 2])), ("binary.tsv", texts, np.array([0, 2, 0, 2]))],
    )
    assert scores == pytest.approx({"three.tsv": 1 / 3, "binary.tsv": 0.5})
    assert export == tiny_model_dir.parent / f"{tiny_model_dir.name}-{adapter.digest}-{EXPORT_SCHEME}"
    assert (export / "model.onnx").is_file(), "the adapter's own int8 export was built and used"
