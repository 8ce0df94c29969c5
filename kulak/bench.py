"""``kulak bench score``: texts/s and peak memory of each scoring path, on a fixed corpus;
``kulak bench int8``: how far the int8 path drifts from fp32 on the same corpus.

Each path runs in its own process so its peak RSS is its own. Model loading is not timed;
the first batch is a warm-up and is not timed either. With ``--rounds N`` the paths run N times,
in turn, and the median speed is reported beside the slowest and fastest round: on a shared
2-core machine one round can be 10-20% off.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PATHS = ("pipeline", "torch", "onnx-int8")
PATH_HELP = {
    "pipeline": "transformers pipeline('feature-extraction'), default batch 1, same encoder + head",
    "torch": "kulak's torch path: batches of 32 sorted by token count, dynamic padding",
    "onnx-int8": "kulak's ONNX Runtime int8 path, the CPU default (torch.onnx.export + quantize_dynamic)",
}


@dataclass(frozen=True)
class BenchResult:
    """One path's figures; over several rounds, the median time and the largest peak RSS."""

    path: str
    texts: int
    seconds: float
    peak_rss_mb: float
    round_seconds: tuple[float, ...] = ()

    @property
    def texts_per_second(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    @property
    def rate_range(self) -> tuple[float, float] | None:
        """Slowest and fastest round in texts/s, when there was more than one round."""
        if len(self.round_seconds) < 2:
            return None
        return self.texts / max(self.round_seconds), self.texts / min(self.round_seconds)


def demo_corpus(limit: int) -> list[str]:
    """Distinct tweet-length texts from the demo source (deterministic)."""
    from listener.demo import DemoCollector

    texts: dict[str, None] = {}
    for hour in range(10_000):
        for m in DemoCollector().posts_in_hour(hour):
            texts.setdefault(f"{m.text} ({m.author})")
        if len(texts) >= limit:
            break
    return list(texts)[:limit]


def _run_path(path: str, texts: list[str], cache_dir: Path) -> float:
    """Score ``texts`` with one path and return the timed seconds."""
    from sentiment.e5 import ensure_e5_checkpoint
    from sentiment.scorer import load_default_scorer

    if path == "pipeline":
        from transformers import pipeline

        from sentiment.scorer import bundled_model_file, read_model_file

        head, adapter = read_model_file(bundled_model_file())
        extractor = pipeline("feature-extraction", model=str(ensure_e5_checkpoint(cache_dir)), framework="pt")
        if adapter is not None:  # the same model as kulak's paths: adapters merged
            adapter.merge_into(extractor.model)

        def score(batch: list[str]) -> None:
            for text in batch:  # the pipeline's default: one text at a time
                hidden = np.asarray(extractor("query: " + text, truncation=True, max_length=256))[0]
                pooled = hidden.mean(axis=0)
                head.probabilities((pooled / np.linalg.norm(pooled))[None, :])
    else:
        scorer = load_default_scorer(cache_dir, backend=path)

        def score(batch: list[str]) -> None:
            scorer.score(batch)

    score(texts[:32])  # warm-up
    start = time.perf_counter()
    score(texts)
    return time.perf_counter() - start


def worker(argv: Sequence[str]) -> None:
    """Entry point of the per-path child process: prints one JSON line."""
    path, corpus_file, cache_dir = argv
    texts = json.loads(Path(corpus_file).read_text(encoding="utf-8"))
    seconds = _run_path(path, texts, Path(cache_dir))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"path": path, "texts": len(texts), "seconds": seconds, "peak_rss_mb": peak}))


def run_bench(
    texts: list[str], *, paths: Sequence[str], cache_dir: Path, workdir: Path, rounds: int = 1
) -> list[BenchResult]:
    """Run each path in a fresh process on the same texts, ``rounds`` times in turn."""
    corpus = workdir / "bench-corpus.json"
    corpus.write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
    seconds: dict[str, list[float]] = {p: [] for p in paths}
    peaks: dict[str, list[float]] = {p: [] for p in paths}
    for _ in range(rounds):
        for path in paths:
            proc = subprocess.run(
                [sys.executable, "-m", "kulak.bench", path, str(corpus), str(cache_dir)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"bench path {path!r} failed: {tail[0]}")
            data = json.loads(proc.stdout.strip().splitlines()[-1])
            seconds[path].append(data["seconds"])
            peaks[path].append(data["peak_rss_mb"])
    return [BenchResult(p, len(texts), float(np.median(seconds[p])), max(peaks[p]), tuple(seconds[p])) for p in paths]


def render(results: Sequence[BenchResult]) -> str:
    """A Markdown table with the speed-up over the pipeline default."""
    base = next((r.texts_per_second for r in results if r.path == "pipeline"), None)
    rounds = max(len(r.round_seconds) for r in results) if results else 0
    speed = "texts/s" if rounds < 2 else f"texts/s, median of {rounds} (slowest–fastest)"
    lines = [f"| path | texts | {speed} | vs pipeline | peak RSS (MB) |", "|---|---|---|---|---|"]
    for r in results:
        ratio = f"{r.texts_per_second / base:.1f}×" if base else "–"
        rate = f"{r.texts_per_second:.1f}"
        if r.rate_range:
            rate += f" ({r.rate_range[0]:.1f}–{r.rate_range[1]:.1f})"
        lines.append(f"| {r.path} | {r.texts} | {rate} | {ratio} | {r.peak_rss_mb:.0f} |")
    return "\n".join(lines)


@dataclass(frozen=True)
class Int8Drift:
    """How far the int8 path's embeddings and labels sit from the torch (fp32) path's."""

    texts: int
    cosine_mean: float
    cosine_p1: float
    cosine_min: float
    label_agreement: float
    max_probability_change: float


def int8_drift(texts: list[str], cache_dir: Path) -> Int8Drift:
    """Embed ``texts`` with the default model as kulak loads it on both backends and compare."""
    from sentiment.scorer import load_default_scorer

    reference, quantized = (load_default_scorer(cache_dir, backend=b) for b in ("torch", "onnx-int8"))
    head = reference.head
    fp32, int8 = reference.encoder.embed(texts), quantized.encoder.embed(texts)
    cosine = (fp32 * int8).sum(axis=1)
    p_fp32, p_int8 = head.probabilities(fp32), head.probabilities(int8)
    return Int8Drift(
        texts=len(texts),
        cosine_mean=float(cosine.mean()),
        cosine_p1=float(np.percentile(cosine, 1)),
        cosine_min=float(cosine.min()),
        label_agreement=float((p_fp32.argmax(axis=1) == p_int8.argmax(axis=1)).mean()),
        max_probability_change=float(np.abs(p_fp32 - p_int8).max()),
    )


def render_drift(d: Int8Drift) -> str:
    """One Markdown table row per figure."""
    rows = [
        ("texts", f"{d.texts}"),
        ("embedding cosine, mean", f"{d.cosine_mean:.3f}"),
        ("embedding cosine, 1st percentile", f"{d.cosine_p1:.3f}"),
        ("embedding cosine, lowest", f"{d.cosine_min:.3f}"),
        ("same label as fp32", f"{d.label_agreement:.1%}"),
        ("largest class-probability change", f"{d.max_probability_change:.3f}"),
    ]
    return "\n".join(["| int8 vs fp32 | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


if __name__ == "__main__":
    from sentiment.encoder import quiet_transformers

    quiet_transformers()
    worker(sys.argv[1:])
