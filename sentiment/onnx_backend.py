"""kulak's ONNX Runtime int8 path: the encoder exported with ``torch.onnx.export`` and quantized.

Needs the ``onnx`` extra (``pip install -e '.[onnx]'``). The exported model takes token ids and
an attention mask and returns L2-normalized mean-pooled embeddings, so it plugs into the same
head as the torch encoder.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress
from sentiment.artifacts import building
from sentiment.batching import length_sorted_batches
from sentiment.finetune import Adapter

log = logging.getLogger(__name__)

INSTALL_HINT = "The ONNX backend needs the onnx extra: pip install -e '.[onnx]'."


def _pooled_module(model: Any) -> Any:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Pooled(model).eval()


def ensure_int8_model(checkpoint: Path, *, adapter: Adapter | None = None) -> Path:
    """Export and quantize ``checkpoint`` (with ``adapter`` merged in) once.

    Returns the directory beside the checkpoint holding ``model.onnx``; its name carries the
    adapter's digest, so a retrained adapter gets a fresh export.
    """
    suffix = f"-{adapter.digest}" if adapter is not None else ""
    target = checkpoint.parent / f"{checkpoint.name}{suffix}-onnx-int8-pc-rr"
    if (target / "model.onnx").exists():
        return target
    try:
        import torch
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ModelError(f"{INSTALL_HINT} ({exc})") from None
    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    log.info("exporting %s to ONNX int8 (first use only)", checkpoint.name)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    encoder = AutoModel.from_pretrained(str(checkpoint), add_pooling_layer=False).eval()
    if adapter is not None:
        adapter.merge_into(encoder)
    model = _pooled_module(encoder)
    sample = tokenizer(["query: a sample text", "query: another one"], padding=True, return_tensors="pt")
    with building(target) as tmp:
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
        # The sample batch is padded, so the traced graph keeps the masked-attention branch; the
        # tracer's warnings about that (and about the legacy exporter) are expected noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (sample["input_ids"], sample["attention_mask"]),
                str(tmp / "fp32.onnx"),
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's quantizer logs a generic pre-processing hint to root
        try:
            # Per-channel scales: with the fine-tuned adapters merged, one scale per tensor moved
            # some embeddings to cosine 0.95 of fp32; per output channel keeps them above 0.96.
            # 7-bit weights (reduce_range): on CPUs without VNNI the u8 x s8 kernels can saturate
            # their 16-bit sums; with 8-bit weights the top-8-layer adapter lost 1.2 points of
            # macro-recall on TweetEval test, with 7-bit 0.7 (docs/benchmarks.md).
            quantize_dynamic(
                str(tmp / "fp32.onnx"),
                str(tmp / "model.onnx"),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=True,
            )
        finally:
            root.setLevel(level)
        (tmp / "fp32.onnx").unlink()
        tokenizer.save_pretrained(tmp)
    return target


class OnnxEncoder:
    """Same interface as :class:`sentiment.encoder.Encoder`, running the int8 ONNX model."""

    def __init__(self, directory: Path, *, prefix: str = "query: ", max_length: int = 256) -> None:
        try:
            import onnxruntime as ort
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ModelError(f"{INSTALL_HINT} ({exc})") from None
        self.session = ort.InferenceSession(str(directory / "model.onnx"), providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.prefix, self.max_length = prefix, max_length
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """``(len(texts), dim)`` L2-normalized embeddings, length-sorted batches, dynamic padding."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = list(length_sorted_batches(texts, batch_size=batch_size))
        for idx in progress(batches, desc="embedding (onnx int8)", unit="batch"):
            enc = self.tokenizer(
                [self.prefix + texts[i] for i in idx],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="np",
            )
            feeds = {
                "input_ids": enc["input_ids"].astype(np.int64),
                "attention_mask": enc["attention_mask"].astype(np.int64),
            }
            out[idx] = self.session.run(None, feeds)[0]
        return out
