"""kulak's ONNX Runtime int8 path: the encoder exported with ``torch.onnx.export`` and quantized.

The default backend on CPU (``model.backend = "auto"``). The exported model takes word
embeddings and an attention mask and returns L2-normalized mean-pooled embeddings, so it plugs
into the same head as the torch encoder. The word-embedding matrix (250,037 x 384, four fifths of
multilingual-e5-small's weights) stays outside the graph as a float16 ``.npy`` file that
:class:`OnnxEncoder` memory-maps and looks tokens up in: the export then handles a graph a fifth
the size (its peak memory fell from 3.2 to 1.4 GB), and scoring keeps in memory only the rows of
tokens it meets.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress, progress_bar
from sentiment.artifacts import building
from sentiment.batching import TokenBatch, token_batches
from sentiment.finetune import Adapter, validation_recall

log = logging.getLogger(__name__)

# Calibration texts: kulak's own synthetic demo posts (English, Turkish, Hungarian), so the export
# needs no data beyond the package.
CALIBRATION_TEXTS = Path(__file__).parent / "assets" / "calibration.txt"
# int8 activations get one scale per tensor, and in multilingual-e5-small one input channel of
# several FFN down-projections reaches 10-70x the range of the other 1535 (layer 4: 68.5 against
# at most 5.2), so quantizing them as they are crushes the rest (mean macro-recall -1.65 points
# over the 11 validation sets). The export computes those channels in fp32 beside the int8
# product: a channel is an outlier when its largest value on the calibration texts is over
# OUTLIER_FACTOR times its layer's 99th percentile; at most MAX_OUTLIERS per layer. On validation
# that stays within half a point of fp32 (-0.37) at the speed of quantizing everything
# (docs/benchmarks.md).
OUTLIER_FACTOR = 2.0
MAX_OUTLIERS = 4
EXPORT_SCHEME = "onnx-int8-pc-rr-oc-eager-we16"
WORD_EMBEDDINGS = "word-embeddings.npy"  # float16, beside model.onnx

MAX_WORKERS = 8  # batches scored at once by the int8 path

INSTALL_HINT = (
    "The ONNX backend needs onnx and onnxruntime (kulak's dependencies; reinstall with pip install -e .), "
    "or set model.backend = 'torch'."
)


def _pooled_module(model: Any) -> Any:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Pooled(model).eval()


def outlier_channels(model: Any, batches: Iterable[TokenBatch]) -> dict[int, dict[int, float]]:
    """The FFN down-projection input channels of ``model`` (a BertModel) with outlier ranges on ``batches``.

    Returns encoder layer index -> {channel: largest absolute value}, largest first.
    """
    import torch

    peak: dict[int, torch.Tensor] = {}

    def record(index: int) -> Any:
        def hook(module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            values = inputs[0].reshape(-1, inputs[0].shape[-1]).abs().amax(0)
            peak[index] = torch.maximum(peak[index], values) if index in peak else values

        return hook

    layers = model.encoder.layer
    hooks = [layer.output.dense.register_forward_hook(record(i)) for i, layer in enumerate(layers)]
    try:
        with torch.inference_mode():
            for batch in batches:
                ids, mask = (torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask))
                model(input_ids=ids, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    found: dict[int, dict[int, float]] = {}
    for index, values in sorted(peak.items()):
        threshold = OUTLIER_FACTOR * float(torch.quantile(values, 0.99))
        channels = torch.nonzero(values > threshold).flatten().tolist()
        channels = sorted(channels, key=lambda c: -float(values[c]))[:MAX_OUTLIERS]
        if channels:
            found[index] = {c: round(float(values[c]), 1) for c in channels}
    return found


def split_outlier_channels(model: Any, found: dict[int, dict[int, float]]) -> None:
    """Take each channel in ``found`` out of its FFN's two linear layers into an fp32 side path.

    In place; the model computes the same function. The side path is element-wise products and
    sums, which the quantizer leaves in fp32, while the down-projection's int8 input no longer
    holds the outliers.
    """
    import torch

    class OutlierOutput(torch.nn.Module):
        """A BertOutput whose ``dense`` lacks some input channels, added back from ``w_in``/``w_out``."""

        w_in: torch.Tensor
        b_in: torch.Tensor
        w_out: torch.Tensor

        def __init__(self, output: Any, act: Any, w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor):
            super().__init__()
            self.dense, self.LayerNorm, self.dropout, self.act = output.dense, output.LayerNorm, output.dropout, act
            self.register_buffer("w_in", w_in)  # (channels, hidden): the rows taken from the up-projection
            self.register_buffer("b_in", b_in)
            self.register_buffer("w_out", w_out)  # (channels, hidden): the columns taken from dense

        def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
            y = self.dense(hidden_states)
            for c in range(self.w_in.shape[0]):
                z = self.act((input_tensor * self.w_in[c]).sum(-1, keepdim=True) + self.b_in[c])
                y = y + z * self.w_out[c]
            return self.LayerNorm(self.dropout(y) + input_tensor)  # type: ignore[no-any-return]

    def linear(weight: torch.Tensor, bias: torch.Tensor) -> torch.nn.Linear:
        layer = torch.nn.Linear(weight.shape[1], weight.shape[0])
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
        return layer

    with torch.no_grad():
        for index, channels in found.items():
            layer = model.encoder.layer[index]
            up, down = layer.intermediate.dense, layer.output.dense
            out = torch.tensor(sorted(channels))
            keep = torch.ones(up.out_features, dtype=torch.bool)
            keep[out] = False
            side = up.weight[out].clone(), up.bias[out].clone(), down.weight[:, out].T.clone()
            layer.intermediate.dense = linear(up.weight[keep], up.bias[keep])
            layer.output.dense = linear(down.weight[:, keep], down.bias)
            layer.output = OutlierOutput(layer.output, layer.intermediate.intermediate_act_fn, *side)


def ensure_int8_model(checkpoint: Path, *, adapter: Adapter | None = None) -> Path:
    """Export and quantize ``checkpoint`` (with ``adapter`` merged in) once.

    Returns the directory beside the checkpoint holding ``model.onnx``, the float16 word
    embeddings and ``export.json`` (the channels kept in fp32); its name carries the adapter's
    digest, so a retrained adapter gets a fresh export.
    """
    suffix = f"-{adapter.digest}" if adapter is not None else ""
    target = checkpoint.parent / f"{checkpoint.name}{suffix}-{EXPORT_SCHEME}"
    if (target / "model.onnx").exists():
        return target
    # In a child process: the export peaks at about 1.4 GB, which a long-running `kulak run` should
    # not keep, and a child killed for lack of memory can be reported instead of killing kulak.
    with tempfile.TemporaryDirectory(prefix="kulak-int8-") as tmp:
        args = [sys.executable, "-m", "sentiment.onnx_backend", str(checkpoint), str(target)]
        if adapter is not None:
            adapter.save(Path(tmp) / "adapter.npz")
            args.append(str(Path(tmp) / "adapter.npz"))
        code = subprocess.run(args, check=False).returncode
    if code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        raise ModelError(
            "Exporting the int8 model was killed, most likely for lack of memory (it needs about 1.4 GB "
            "once). Free some memory and retry, or set model.backend = 'torch'."
        )
    if code != 0 or not (target / "model.onnx").exists():
        raise ModelError(
            f"Exporting the int8 model failed (exit code {code}; its message is above). "
            "Set model.backend = 'torch' to score without it."
        )
    return target


def int8_validation(
    checkpoint: Path, adapter: Adapter, val: Sequence[tuple[str, Sequence[str], np.ndarray]]
) -> tuple[dict[str, float], Path]:
    """Validation macro-recall of ``adapter`` on the int8 path, the CPU default, and its export.

    How much int8 costs depends on the adapter (docs/benchmarks.md): a fine-tune's fp32 figures
    alone do not say how the bundled model will score. The export is built once per adapter.
    """
    directory = ensure_int8_model(checkpoint, adapter=adapter)
    encoder = OnnxEncoder(directory)
    scores = {
        name: validation_recall(adapter.head.probabilities(encoder.embed(texts)), np.asarray(labels))
        for name, texts, labels in val
    }
    return scores, directory


def build_int8_model(checkpoint: Path, target: Path, *, adapter: Adapter | None) -> None:
    """The export behind :func:`ensure_int8_model`: calibrate, export, quantize into ``target``."""
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import transformers  # noqa: F401
    except ImportError as exc:
        raise ModelError(f"{INSTALL_HINT} ({exc})") from None
    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    log.info("exporting %s to ONNX int8 (first use only)", checkpoint.name)
    with progress_bar(total=3, desc="preparing the int8 model (first use only)", unit="step") as bar:
        tokenizer, encoder, found = _split_encoder(checkpoint, adapter)
        bar.update(1)
        with building(target) as tmp:
            table = encoder.embeddings.word_embeddings.weight.detach()
            np.save(tmp / WORD_EMBEDDINGS, table.numpy().astype(np.float16))
            sample = tokenizer(["query: a sample text", "query: another one"], padding=True, return_tensors="pt")
            sample_inputs = (table[sample["input_ids"]], sample["attention_mask"])
            # The graph gets word embeddings as input, so the table is not part of the export.
            del table
            encoder.embeddings.word_embeddings.weight = None
            _export(_pooled_module(encoder), sample_inputs, tmp / "fp32.onnx")
            del encoder  # the quantizer holds its own copies of the weights: free the torch ones first
            gc.collect()
            bar.update(1)
            _quantize(tmp / "fp32.onnx", tmp / "model.onnx")
            bar.update(1)
            (tmp / "fp32.onnx").unlink()
            tokenizer.save_pretrained(tmp)
            channels = {
                f"encoder.layer.{i}.output.dense": {str(c): v for c, v in chans.items()} for i, chans in found.items()
            }
            meta = {"scheme": EXPORT_SCHEME, "word_embeddings": WORD_EMBEDDINGS, "outlier_channels": channels}
            (tmp / "export.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _split_encoder(checkpoint: Path, adapter: Adapter | None) -> tuple[Any, Any, dict[int, dict[int, float]]]:
    """``checkpoint``'s tokenizer and encoder, ``adapter`` merged and outlier channels split off.

    Returns the channels found too. The split is checked in fp32 to compute what the merged
    encoder did; a mismatch is a :class:`ModelError`.
    """
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        # Eager attention exports as plain MatMul/Add/Softmax; the default (SDPA) adds mask
        # handling (Where, IsNaN) that cost about 3% of the int8 speed and computes the same.
        encoder = AutoModel.from_pretrained(
            str(checkpoint), add_pooling_layer=False, attn_implementation="eager"
        ).eval()
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load the encoder checkpoint {checkpoint}: {exc}") from None
    if adapter is not None:
        adapter.merge_into(encoder)
    calibration = CALIBRATION_TEXTS.read_text(encoding="utf-8").splitlines()
    batches = token_batches(tokenizer, calibration, batch_size=32, max_length=128, prefix="query: ")
    found = outlier_channels(encoder, batches)
    pooled = _pooled_module(encoder)
    table = encoder.embeddings.word_embeddings.weight.detach()
    before = _embed(pooled, table, batches[-1])
    split_outlier_channels(encoder, found)
    # The split must not change what the model computes (a transformers upgrade could change
    # how its layers are wired); checked in fp32, before anything is quantized.
    cosine = float((before * _embed(pooled, table, batches[-1])).sum(-1).min())
    if cosine < 0.9999:
        raise ModelError(
            f"Preparing the int8 export changed the encoder's output (cosine {cosine:.4f}); "
            "set model.backend = 'torch' and report this."
        )
    return tokenizer, encoder, found


def _embed(pooled: Any, table: Any, batch: TokenBatch) -> Any:
    import torch

    with torch.inference_mode():
        return pooled(table[torch.from_numpy(batch.input_ids)], torch.from_numpy(batch.attention_mask))


def _export(model: Any, sample: tuple[Any, Any], path: Path) -> None:
    import torch

    axes = {"inputs_embeds": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    # The sample batch is padded, so the traced graph keeps the masked-attention branch; the
    # tracer's warnings about that (and about the legacy exporter) are expected noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            sample,
            str(path),
            input_names=["inputs_embeds", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    finally:
        root.setLevel(level)


class OnnxEncoder:
    """Same interface as :class:`sentiment.encoder.Encoder`, running the int8 ONNX model."""

    def __init__(
        self, directory: Path, *, prefix: str = "query: ", max_length: int = 256, workers: int | None = None
    ) -> None:
        try:
            import onnxruntime as ort
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise ModelError(f"{INSTALL_HINT} ({exc})") from None
        # Whole batches in parallel, one core each: tweet-sized matrix products split poorly across
        # cores, and this ran 5-8% faster on 2 cores (docs/benchmarks.md). onnxruntime sessions are
        # safe to run from several threads and release the GIL. At most MAX_WORKERS batches are in
        # flight (each holds its activations); on bigger machines each gets several cores.
        cores = usable_cores()
        self.workers = workers or min(cores, MAX_WORKERS)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, cores // self.workers)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.prefix, self.max_length = prefix, max_length
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        try:
            meta = json.loads((directory / "export.json").read_text(encoding="utf-8"))
            # Memory-mapped: only the pages of tokens that texts use are read in, and they are
            # shared between processes scoring with the same export.
            self.word_embeddings = np.load(directory / meta["word_embeddings"], mmap_mode="r")
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(
                f"The int8 model in {directory} is incomplete or damaged ({exc!r}); delete that directory "
                "and kulak exports it again on next use."
            ) from None
        self.outlier_channels: dict[str, dict[str, float]] = meta.get("outlier_channels", {})

    @property
    def runtime(self) -> str:
        """How the encoder runs, for the model card."""
        count = sum(len(c) for c in self.outlier_channels.values())
        layers = ", ".join(n.split(".")[2] for n in self.outlier_channels) or "none"
        return (
            "ONNX Runtime on CPU, int8 weights (per output channel, 7 bits) and int8 activations (one scale per "
            f"tensor and batch); {count} activation channels with outlier ranges computed in fp32 beside the "
            f"int8 products (FFN down-projections of layers {layers}); word embeddings float16, looked up "
            "outside the graph"
        )

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """``(len(texts), dim)`` L2-normalized embeddings, token-length-sorted batches, dynamic padding."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = token_batches(
            self.tokenizer, texts, batch_size=batch_size, max_length=self.max_length, prefix=self.prefix
        )

        def run(batch: TokenBatch) -> np.ndarray:
            embeds = self.word_embeddings[batch.input_ids].astype(np.float32)
            feeds = {"inputs_embeds": embeds, "attention_mask": batch.attention_mask}
            result: np.ndarray = self.session.run(None, feeds)[0]
            return result

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="kulak-onnx") as pool:
            runs = pool.map(run, batches)  # results come back in batch order
            for batch, embeddings in progress(
                zip(batches, runs, strict=True), total=len(batches), desc="embedding (onnx int8)", unit="batch"
            ):
                out[batch.indices] = embeddings
        return out


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def main(argv: Sequence[str]) -> int:
    """``python -m sentiment.onnx_backend CHECKPOINT TARGET [ADAPTER]``: the export's child process."""
    checkpoint, target, *rest = argv
    try:
        adapter = Adapter.load(Path(rest[0])) if rest else None
        build_int8_model(Path(checkpoint), Path(target), adapter=adapter)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
