"""kulak's ONNX Runtime int8 path: the encoder exported with ``torch.onnx.export`` and quantized.

The default backend on CPU (``model.backend = "auto"``). The exported model takes token ids and
an attention mask and returns L2-normalized mean-pooled embeddings, so it plugs into the same
head as the torch encoder.
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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kulak.errors import ModelError
from kulak.progress import progress, progress_bar
from sentiment.artifacts import building
from sentiment.batching import TokenBatch, token_batches
from sentiment.finetune import Adapter

log = logging.getLogger(__name__)

# Texts whose activations pick the layers kept in fp32: kulak's own synthetic demo posts (English,
# Turkish, Hungarian), so the export needs no data beyond the package.
CALIBRATION_TEXTS = Path(__file__).parent / "assets" / "calibration.txt"
# The linear layers kept in fp32: those whose input has the widest range for its spread (max/RMS)
# on the calibration texts. int8 activations get one scale per tensor, and in multilingual-e5-small
# single channels of some FFN down-projections reach 10-50x the others' range. Chosen on the
# validation files: keeping 5 layers in fp32 lost nothing there (mean macro-recall +0.25 points
# over TweetEval and the 8 XLM-T validation sets) where quantizing all lost 1.44, for about 5% of
# the speed (docs/benchmarks.md).
FP32_LAYERS = 5
EXPORT_SCHEME = f"onnx-int8-pc-rr-fp{FP32_LAYERS}"

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

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Pooled(model).eval()


def widest_inputs(model: Any, tokenizer: Any, texts: Sequence[str], *, count: int) -> dict[str, float]:
    """The ``count`` linear layers of ``model`` whose inputs have the largest max/RMS on ``texts``.

    Returns module name -> ratio, largest first.
    """
    import torch

    from sentiment.batching import token_batches

    peak: dict[str, float] = {}
    square: dict[str, list[float]] = {}

    def record(name: str) -> Any:
        def hook(module: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            peak[name] = max(peak.get(name, 0.0), float(x.abs().max()))
            square.setdefault(name, []).append(float(x.pow(2).mean()))

        return hook

    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    hooks = [m.register_forward_hook(record(n)) for n, m in linears]
    try:
        with torch.inference_mode():
            for batch in token_batches(tokenizer, texts, batch_size=32, max_length=128, prefix="query: "):
                ids, mask = (torch.from_numpy(a) for a in (batch.input_ids, batch.attention_mask))
                model(input_ids=ids, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    ratio = {n: peak[n] / float(np.sqrt(np.mean(square[n]))) for n in peak}
    return dict(sorted(ratio.items(), key=lambda kv: kv[1], reverse=True)[:count])


def _onnx_node(module_name: str) -> str:
    """The MatMul node ``torch.onnx.export`` names after a Linear inside ``_pooled_module``."""
    scope = module_name.split(".")
    parts: list[str] = []
    for part in scope:  # "layer", "4" -> "layer.4": indices stay with their container
        if part.isdigit() and parts:
            parts[-1] += f".{part}"
        else:
            parts.append(part)
    return "/inner/" + "/".join(parts) + "/MatMul"


def ensure_int8_model(checkpoint: Path, *, adapter: Adapter | None = None) -> Path:
    """Export and quantize ``checkpoint`` (with ``adapter`` merged in) once.

    Returns the directory beside the checkpoint holding ``model.onnx`` and ``export.json`` (the
    layers kept in fp32 and why); its name carries the adapter's digest, so a retrained adapter
    gets a fresh export.
    """
    suffix = f"-{adapter.digest}" if adapter is not None else ""
    target = checkpoint.parent / f"{checkpoint.name}{suffix}-{EXPORT_SCHEME}"
    if (target / "model.onnx").exists():
        return target
    # In a child process: the export peaks at about 3.2 GB, which a long-running `kulak run` should
    # not keep, and a child killed for lack of memory can be reported instead of killing kulak.
    with tempfile.TemporaryDirectory(prefix="kulak-int8-") as tmp:
        args = [sys.executable, "-m", "sentiment.onnx_backend", str(checkpoint), str(target)]
        if adapter is not None:
            adapter.save(Path(tmp) / "adapter.npz")
            args.append(str(Path(tmp) / "adapter.npz"))
        code = subprocess.run(args, check=False).returncode
    if code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        raise ModelError(
            "Exporting the int8 model was killed, most likely for lack of memory (it needs about 3.2 GB "
            "once). Free some memory and retry, or set model.backend = 'torch'."
        )
    if code != 0 or not (target / "model.onnx").exists():
        raise ModelError(
            f"Exporting the int8 model failed (exit code {code}; its message is above). "
            "Set model.backend = 'torch' to score without it."
        )
    return target


def build_int8_model(checkpoint: Path, target: Path, *, adapter: Adapter | None) -> None:
    """The export behind :func:`ensure_int8_model`: calibrate, export, quantize into ``target``."""
    try:
        import onnx
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise ModelError(f"{INSTALL_HINT} ({exc})") from None
    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    log.info("exporting %s to ONNX int8 (first use only)", checkpoint.name)
    with progress_bar(total=3, desc="preparing the int8 model (first use only)", unit="step") as bar:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
            encoder = AutoModel.from_pretrained(str(checkpoint), add_pooling_layer=False).eval()
        except (OSError, ValueError) as exc:
            raise ModelError(f"Cannot load the encoder checkpoint {checkpoint}: {exc}") from None
        if adapter is not None:
            adapter.merge_into(encoder)
        calibration = CALIBRATION_TEXTS.read_text(encoding="utf-8").splitlines()
        fp32 = widest_inputs(encoder, tokenizer, calibration, count=FP32_LAYERS)
        bar.update(1)
        with building(target) as tmp:
            _export(_pooled_module(encoder), tokenizer, tmp / "fp32.onnx")
            del encoder  # the quantizer holds its own copies of the weights: free the torch ones first
            gc.collect()
            bar.update(1)
            exclude = [_onnx_node(name) for name in fp32]
            _quantize(tmp / "fp32.onnx", tmp / "model.onnx", exclude=exclude)
            # The quantizer skips unknown names silently; check on its (smaller) output that the
            # chosen layers really stayed fp32, in case a torch or transformers upgrade renamed them.
            graph = onnx.load(str(tmp / "model.onnx"), load_external_data=False).graph
            kept = {n.name for n in graph.node if n.op_type == "MatMul"}
            missing = [n for n in exclude if n not in kept]
            if missing:
                raise ModelError(
                    f"ONNX export has no node {missing[0]!r}; set model.backend = 'torch' and report this."
                )
            bar.update(1)
            (tmp / "fp32.onnx").unlink()
            tokenizer.save_pretrained(tmp)
            meta = {"scheme": EXPORT_SCHEME, "fp32_layers": {n: round(r, 1) for n, r in fp32.items()}}
            (tmp / "export.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _export(model: Any, tokenizer: Any, path: Path) -> None:
    import torch

    sample = tokenizer(["query: a sample text", "query: another one"], padding=True, return_tensors="pt")
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    # The sample batch is padded, so the traced graph keeps the masked-attention branch; the
    # tracer's warnings about that (and about the legacy exporter) are expected noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (sample["input_ids"], sample["attention_mask"]),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={**axes, "embedding": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _quantize(source: Path, target: Path, *, exclude: list[str]) -> None:
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
            nodes_to_exclude=exclude,
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
        # One batch per core, each on one thread: tweet-sized matrix products split poorly across
        # cores, and whole batches in parallel ran 5-8% faster on 2 cores (docs/benchmarks.md).
        # onnxruntime sessions are safe to run from several threads and release the GIL.
        self.workers = workers or usable_cores()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(directory))
        self.prefix, self.max_length = prefix, max_length
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        export = directory / "export.json"
        self.fp32_layers = (
            list(json.loads(export.read_text(encoding="utf-8"))["fp32_layers"]) if export.exists() else []
        )

    @property
    def runtime(self) -> str:
        """How the encoder runs, for the model card."""
        kept = ", ".join(f"`{n}`" for n in self.fp32_layers) or "none"
        return (
            "ONNX Runtime on CPU, int8 weights (per output channel, 7 bits) and int8 activations (one scale per "
            f"tensor and batch); kept in fp32 for their activation outliers: {kept}"
        )

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """``(len(texts), dim)`` L2-normalized embeddings, token-length-sorted batches, dynamic padding."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        batches = token_batches(
            self.tokenizer, texts, batch_size=batch_size, max_length=self.max_length, prefix=self.prefix
        )

        def run(batch: TokenBatch) -> np.ndarray:
            feeds = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
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
