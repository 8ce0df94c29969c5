"""``kulak eval``: score labelled files and report the TweetEval metrics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sentiment.datasets import read_table
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
