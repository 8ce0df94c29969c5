from __future__ import annotations

from pathlib import Path

import pytest

from kulak.bench import BenchResult, render
from kulak.cli import main


def test_render__one_round_shows_the_rate_and_the_speedup_over_the_pipeline() -> None:
    rows = render([BenchResult("pipeline", 100, 4.0, 900.0), BenchResult("onnx-int8", 100, 0.5, 800.0)])
    assert "| texts/s |" in rows
    assert "| pipeline | 100 | 25.0 | 1.0× | 900 |" in rows
    assert "| onnx-int8 | 100 | 200.0 | 8.0× | 800 |" in rows


def test_render__several_rounds_show_the_median_with_the_slowest_and_fastest() -> None:
    pipeline = BenchResult("pipeline", 100, 4.0, 950.0, (5.0, 4.0, 3.2))
    int8 = BenchResult("onnx-int8", 100, 0.5, 810.0, (0.5, 0.4, 0.625))
    rows = render([pipeline, int8])
    assert "median of 3 (slowest–fastest)" in rows
    assert "| pipeline | 100 | 25.0 (20.0–31.2) | 1.0× | 950 |" in rows
    assert "| onnx-int8 | 100 | 200.0 (160.0–250.0) | 8.0× | 810 |" in rows


def test_bench_score__rounds_below_one_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data-dir", str(tmp_path), "bench", "score", "--rounds", "0"]) == 2
    assert "--rounds must be at least 1, got 0" in capsys.readouterr().err
