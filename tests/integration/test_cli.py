"""The kulak command line, called as a user would (in process, and as a real process for `run`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from kulak.cli import main
from tests.processes import first_round_then_ctrl_c, start_kulak_run

ROW = {
    "id": "e1",
    "text": "Paketto lost my parcel again",
    "author": "ann",
    "url": "https://x.com/ann/status/1",
    "created_at": "2026-11-01T10:00:00Z",
}


@pytest.fixture
def base_args(tmp_path: Path, tiny_model_dir: Path) -> list[str]:
    return ["--data-dir", str(tmp_path / "data"), "--model", str(tiny_model_dir)]


def _jsonl(path: Path, rows: list[dict[str, str] | str]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_import__twice_adds_nothing_the_second_time(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    rows: list[dict[str, str] | str] = [ROW, {**ROW, "id": "e2", "text": "Vantro is fine"}, {**ROW, "id": "e3"}]
    path = _jsonl(tmp_path / "export.jsonl", rows)
    assert main([*base_args, "import", str(path)]) == 0
    assert "3 rows read, 3 new mentions stored" in capsys.readouterr().out
    assert main([*base_args, "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0 new mentions stored, 3 already stored" in out


def test_import__bad_rows_are_reported_with_line_numbers_and_good_ones_kept(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _jsonl(tmp_path / "export.jsonl", [ROW, "{broken", {**ROW, "id": "x", "created_at": "soon"}])
    assert main([*base_args, "import", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1 new mentions stored" in captured.out and "2 bad rows skipped" in captured.out
    assert "line 2: not valid JSON" in captured.err
    assert "line 3: created_at 'soon'" in captured.err
    assert "%|" not in captured.err, "progress bars stay silent when stderr is not a terminal"


def test_import__a_file_that_is_not_jsonl_stores_nothing(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    good = _jsonl(tmp_path / "good.jsonl", [ROW])
    assert main([*base_args, "import", str(good)]) == 0
    bad = tmp_path / "fake.jsonl"
    bad.write_text("<html><body>Not an export</body></html>\n", encoding="utf-8")
    capsys.readouterr()
    assert main([*base_args, "import", str(bad)]) == 2
    assert "is not JSON Lines" in capsys.readouterr().err
    assert main([*base_args, "import", str(good)]) == 0
    assert "1 already stored" in capsys.readouterr().out, "what was stored before is still there"


def test_bad_config__exits_2_with_the_key_and_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[demo]\nseeed = 3\n", encoding="utf-8")
    assert main(["--config", str(cfg), "config"]) == 2
    err = capsys.readouterr().err
    assert "bad.toml: unknown key 'demo.seeed'" in err and "Traceback" not in err


def test_config__never_prints_secrets(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KULAK_DATABASE_PASSWORD", "pw-should-not-show")
    monkeypatch.setenv("KULAK_DATABASE_URL", "postgresql+psycopg://kulak:inline-pw-too@db.example/kulak")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "database.password = ********" in out and "pw-should-not-show" not in out
    assert "inline-pw-too" not in out and "db.example/kulak" in out


def test_score__writes_label_and_three_probabilities_per_row(tmp_path: Path, base_args: list[str]) -> None:
    src = tmp_path / "in.tsv"
    src.write_text("id\ttext\n1\tgreat parcel thanks\n2\tlost and broken\n3\tgreat parcel thanks\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main([*base_args, "score", str(src), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    for r in rows:
        probs = [float(r[k]) for k in ("negative", "neutral", "positive")]
        assert sum(probs) == pytest.approx(1, abs=1e-3)
        assert r["sentiment"] == ("negative", "neutral", "positive")[probs.index(max(probs))]
    assert rows[0]["sentiment"] == rows[2]["sentiment"]


def test_score__a_file_without_text_column_is_a_clear_error(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.csv"
    src.write_text("body\nhello\n", encoding="utf-8")
    assert main([*base_args, "score", str(src), "-o", str(tmp_path / "o.csv")]) == 2
    assert "has no 'text' column (columns: body)" in capsys.readouterr().err


def test_eval__prints_macro_recall_and_f1(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "gold.tsv"
    src.write_text("text\tlabel\ngreat\tpositive\nlost\tnegative\nthe parcel\tneutral\n", encoding="utf-8")
    assert main([*base_args, "eval", str(src), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["file"] == "gold.tsv" and result["n"] == 3 and not result["binary"]
    assert 0 <= result["macro_recall"] <= 1 and 0 <= result["macro_f1"] <= 1


def test_run__scheduled_run_collects_then_stops_cleanly_on_ctrl_c(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kulak run` runs its first round at once, keeps its job in the database, and exits 0 on SIGINT."""
    env = {**os.environ, "KULAK_DEMO_POSTS_PER_HOUR": "4", "KULAK_SCHEDULE_JITTER_SECONDS": "0"}
    data = tmp_path / "data"
    cmd = [sys.executable, "-m", "kulak", "--data-dir", str(data), "--model", str(tiny_model_dir), "run"]
    run = first_round_then_ctrl_c(start_kulak_run(cmd, env))
    assert any("new mentions stored" in line for line in run.first_round), run.first_round
    assert run.returncode == 0, run.err
    assert "kulak stopped cleanly." in run.out

    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(f"sqlite:///{data / 'kulak.db'}")
    with engine.connect() as conn:
        assert "apscheduler_jobs" in inspect(conn).get_table_names()
        assert conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all() == ["collect:demo"]
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()
    assert main(["--data-dir", str(data), "--model", str(tiny_model_dir), "sources"]) == 0
    demo_line = capsys.readouterr().out.splitlines()[1].split()
    assert demo_line[0] == "demo" and demo_line[7].startswith("20"), demo_line  # its next run is in the store


def test_rescore__after_a_model_change_is_resumable(
    tmp_path: Path,
    base_args: list[str],
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    import kulak.pipeline as pipeline

    path = _jsonl(tmp_path / "e.jsonl", [{**ROW, "id": f"r{i}", "text": f"Paketto parcel {i}"} for i in range(30)])
    assert main([*base_args, "import", str(path)]) == 0
    # a "retrained" model: same architecture, different weights
    new_model = tmp_path / "model-v2"
    shutil.copytree(tiny_model_dir, new_model)
    model = AutoModelForSequenceClassification.from_pretrained(new_model)
    with torch.no_grad():
        model.classifier.bias.add_(1.0)
    model.save_pretrained(new_model)
    args = ["--data-dir", str(tmp_path / "data"), "--model", str(new_model)]
    monkeypatch.setattr(pipeline, "SCORE_CHUNK", 10)
    calls = {"n": 0}
    real_save = pipeline.repo.save_scores

    def crash_on_second_chunk(*a: object, **k: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_save(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline.repo, "save_scores", crash_on_second_chunk)
    assert main([*args, "rescore"]) == 130
    monkeypatch.setattr(pipeline.repo, "save_scores", real_save)
    capsys.readouterr()
    assert main([*args, "rescore"]) == 0
    assert "scored 20 stored mentions" in capsys.readouterr().out, "the first chunk was kept"
    assert main([*args, "rescore"]) == 0
    assert "scored 0 stored mentions" in capsys.readouterr().out


def test_labels__a_correction_overrides_the_model_and_is_exported(
    tmp_path: Path, base_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from kulak.config import load_config
    from kulak.pipeline import load_configured_scorer, open_database
    from storage import repository as repo

    path = _jsonl(tmp_path / "e.jsonl", [{**ROW, "id": f"c{i}", "text": f"Paketto parcel {i}"} for i in range(4)])
    assert main([*base_args, "import", str(path)]) == 0
    cfg = load_config(None, environ={}, overrides={"data_dir": str(tmp_path / "data"), "model.name": base_args[-1]})
    scorer = load_configured_scorer(cfg)

    def summary() -> repo.BrandSummary:
        db = open_database(cfg)
        with db.transaction() as s:
            (paketto,) = repo.brand_summaries(s, model_id=scorer.model_id, model_version=scorer.model_version)
        db.dispose()
        return paketto

    before = summary()
    assert main([*base_args, "labels", "set", "1", "negative", "--by", "ayse"]) == 0
    assert main([*base_args, "labels", "set", "2", "positive", "--by", "ayse"]) == 0
    after = summary()
    assert after.mentions == before.mentions == 4
    assert 1 in [p.mention_id for p in after.most_negative]
    assert 2 not in [p.mention_id for p in after.most_negative]
    assert after.negative >= 1 and after.positive >= 1
    assert main([*base_args, "labels", "set", "99", "negative"]) == 2
    assert "no mention #99" in capsys.readouterr().err
    out = tmp_path / "labels.tsv"
    assert main([*base_args, "labels", "export", str(out)]) == 0
    assert out.read_text(encoding="utf-8").splitlines() == [
        "text\tlabel",
        "Paketto parcel 0\tnegative",
        "Paketto parcel 1\tpositive",
    ]
