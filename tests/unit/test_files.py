from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kulak.errors import InputFileError
from listener.files import FileImporter

GOOD = {
    "id": "1",
    "text": "Paketto was fast",
    "author": "ann",
    "url": "https://x.com/ann/status/1",
    "created_at": "2026-11-01T10:00:00Z",
    "platform": "x",
    "followers": "120",
    "engagement": "4",
    "language": "en",
}


def _jsonl(tmp_path: Path, rows: list[object], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_import_jsonl__good_rows_become_mentions(tmp_path: Path) -> None:
    parsed = FileImporter(_jsonl(tmp_path, [GOOD, {**GOOD, "id": "2", "created_at": "1762000000"}])).parse()
    assert [m.external_id for m in parsed.mentions] == ["1", "2"]
    first = parsed.mentions[0]
    assert first.created_at == datetime(2026, 11, 1, 10, tzinfo=UTC)
    assert (first.followers, first.engagement, first.language, first.platform) == (120, 4, "en", "x")
    assert parsed.mentions[1].created_at.tzinfo is not None
    assert parsed.skipped == ()


def test_import_jsonl__bad_rows_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    rows = [
        GOOD,
        {**GOOD, "id": "2", "text": ""},
        "{not json",
        {**GOOD, "id": "4", "created_at": "yesterday"},
        {**GOOD, "id": "5", "followers": "many"},
        [1, 2],
        {**GOOD, "id": "7"},
    ]
    parsed = FileImporter(_jsonl(tmp_path, rows)).parse()
    assert [m.external_id for m in parsed.mentions] == ["1", "7"]
    assert [s.split(":")[0] for s in parsed.skipped] == ["line 2", "line 3", "line 4", "line 5", "line 6"]
    assert "text is empty" in parsed.skipped[0]
    assert "not an ISO 8601 time" in parsed.skipped[2]


def test_import__a_file_that_is_not_jsonl_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text("id,text\n1,hello\n", encoding="utf-8")
    with pytest.raises(InputFileError, match="is not JSON Lines: line 1"):
        FileImporter(path).parse()


def test_import__binary_data_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(InputFileError, match=r"not UTF-8|binary"):
        FileImporter(path).parse()


def test_import_csv__uses_the_configured_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "brandwatch.csv"
    path.write_text(
        "Mention Id,Full Text,Date\nA1,Paketto rocks,2026-11-01 09:30:00\nA2,,2026-11-01\n", encoding="utf-8"
    )
    parsed = FileImporter(path, columns={"id": "Mention Id", "text": "Full Text", "created_at": "Date"}).parse()
    assert [m.external_id for m in parsed.mentions] == ["A1"]
    assert parsed.skipped == ("line 3: text is empty",)


def test_import_csv__missing_text_column_names_the_columns_found(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"no 'text' column \(found: a, b\)"):
        FileImporter(path).parse()


def test_import__unsupported_suffix_says_what_is_supported(tmp_path: Path) -> None:
    path = tmp_path / "x.xlsx"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(InputFileError, match=r"\.jsonl and \.csv"):
        FileImporter(path).parse()


def test_import__rows_without_id_get_a_stable_content_id(tmp_path: Path) -> None:
    row = {k: v for k, v in GOOD.items() if k != "id"}
    a = FileImporter(_jsonl(tmp_path, [row], "a.jsonl")).parse().mentions[0]
    b = FileImporter(_jsonl(tmp_path, [row], "b.jsonl")).parse().mentions[0]
    assert a.external_id == b.external_id
