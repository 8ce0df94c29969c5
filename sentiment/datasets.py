"""Reading texts (and optional labels) from TSV, CSV and JSONL files."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from kulak.errors import InputFileError
from sentiment.types import LABELS, Label

csv.field_size_limit(10_000_000)


@dataclass(frozen=True)
class TextTable:
    """Rows of a text file: every column as strings, in file order."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]

    def texts(self) -> list[str]:
        """The ``text`` column."""
        return [row["text"] for row in self.rows]

    def labels(self) -> list[Label]:
        """The ``label`` column; raises :class:`InputFileError` naming the first bad row."""
        if "label" not in self.columns:
            raise InputFileError(f"{self.path} has no 'label' column; eval and training need one.")
        out: list[Label] = []
        for n, row in enumerate(self.rows, start=2):
            value = row["label"].strip().lower()
            if value not in LABELS:
                raise InputFileError(f"{self.path}, row {n}: label {row['label']!r} is not one of {', '.join(LABELS)}.")
            out.append(value)  # type: ignore[arg-type]
        return out


def file_format(path: Path) -> str:
    """``tsv``, ``csv`` or ``jsonl`` from the file name; anything else is an input error."""
    suffix = path.suffix.lower()
    formats = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
    if suffix not in formats:
        raise InputFileError(f"{path}: unsupported file type {suffix!r}; use .tsv, .csv or .jsonl.")
    return formats[suffix]


def read_table(path: Path) -> TextTable:
    """Read a TSV/CSV/JSONL file that has a ``text`` column."""
    if not path.is_file():
        raise InputFileError(f"{path} does not exist or is not a file.")
    fmt = file_format(path)
    try:
        if fmt == "jsonl":
            rows = _read_jsonl(path)
            columns = sorted({key for row in rows for key in row})
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                if fmt == "tsv":
                    reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
                else:
                    reader = csv.DictReader(fh)
                columns = list(reader.fieldnames or [])
                rows = [{k: v or "" for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{path} is not UTF-8 text ({exc.reason}); re-save it as UTF-8.") from exc
    if "text" not in columns:
        raise InputFileError(f"{path} has no 'text' column (columns: {', '.join(columns) or 'none'}).")
    return TextTable(path=path, columns=columns, rows=rows)


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path}, line {n}: not valid JSON ({exc.msg}).") from exc
            if not isinstance(obj, dict):
                raise InputFileError(f"{path}, line {n}: expected a JSON object per line.")
            rows.append({k: "" if v is None else str(v) for k, v in obj.items()})
    return rows
