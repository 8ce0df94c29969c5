"""Sentence embeddings from a transformers encoder: mean pooling, L2-normalized, batch-first."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kulak.progress import progress
from sentiment.batching import token_batches

log = logging.getLogger(__name__)


# The device the GPU code path uses. Tests point it at "cpu" (with CUDA reported available) to run
# that path, fp16 weights and large batches included, on a machine without a GPU.
GPU_DEVICE = "cuda"


def for_inference(model: Any) -> Any:
    """Put a model where it runs: fp16 on the GPU when CUDA is available, else fp32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return model.to(GPU_DEVICE).half()
    return model


def on_gpu(model: Any) -> bool:
    """True when ``model`` was put on the GPU by :func:`for_inference`."""
    return bool(next(model.parameters()).device.type == GPU_DEVICE)


def quiet_transformers() -> None:
    """Keep transformers' own load reports and progress bars out of kulak's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


class Encoder:
    """Turns texts into fixed-size vectors with an e5-style encoder.

    ``prefix`` is prepended to every text (multilingual-e5 expects ``"query: "`` for
    classification). Texts are batched longest-first with dynamic padding and truncated to
    ``max_length`` tokens.
    """

    def __init__(self, model: Any, tokenizer: Any, *, prefix: str = "query: ", max_length: int = 256) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.max_length = max_length

    @classmethod
    def from_pretrained(cls, path: Path | str, *, prefix: str = "query: ", max_length: int = 256) -> Encoder:
        """Load an encoder checkpoint (a local directory or a hub id) without a pooler."""
        from transformers import AutoModel, AutoTokenizer

        quiet_transformers()
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        try:
            model = AutoModel.from_pretrained(str(path), add_pooling_layer=False)
        except TypeError:  # encoders without a pooler option
            model = AutoModel.from_pretrained(str(path))
        return cls(for_inference(model.eval()), tokenizer, prefix=prefix, max_length=max_length)

    @property
    def on_gpu(self) -> bool:
        """True when the model runs on CUDA (fp16), where large batches pay off."""
        return on_gpu(self.model)

    @property
    def runtime(self) -> str:
        """How the encoder runs, for the model card."""
        return "torch, fp16 on CUDA" if self.on_gpu else "torch, fp32 on CPU"

    @property
    def dim(self) -> int:
        """Size of the vectors :meth:`embed` returns."""
        return int(self.model.config.hidden_size)

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Return an ``(len(texts), dim)`` float32 array of L2-normalized mean-pooled vectors."""
        import torch

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = token_batches(
            self.tokenizer, texts, batch_size=batch_size, max_length=self.max_length, prefix=self.prefix
        )
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            for batch in progress(batches, desc="embedding", unit="batch"):
                mask_t = torch.from_numpy(batch.attention_mask).to(device)
                ids_t = torch.from_numpy(batch.input_ids).to(device)
                hidden = self.model(input_ids=ids_t, attention_mask=mask_t).last_hidden_state.float()
                mask = mask_t.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[batch.indices] = pooled.cpu().numpy()
        return out
