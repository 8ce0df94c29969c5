"""File imports: mentions from JSONL and CSV exports of other tools.

Rows are validated one by one; a bad row is skipped and reported with its line number, a file
that is not what its name says is rejected as a whole before anything is stored.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kulak.errors import InputFileError
from kulak.progress import progress
from listener.base import Batch, Mention

FIELDS = ("id", "text", "author", "url", "created_at", "platform", "followers", "engagement", "language")
DEFAULT_COLUMNS: Mapping[str, str] = {f: f for f in FIELDS}


class RowError(ValueError):
    """One row cannot become a mention."""


@dataclass(frozen=True)
class ParsedFile:
    """Mentions read from a file and the rows that were skipped (``"line N: reason"``)."""

    mentions: tuple[Mention, ...]
    skipped: tuple[str, ...]


def parse_time(value: str) -> datetime:
    """ISO 8601 (``Z`` or an offset; naive means UTC) or Unix seconds, as an aware UTC datetime."""
    value = value.strip()
    if not value:
        raise RowError("created_at is empty")
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), tz=UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise RowError(f"created_at {value[:40]!r} is not an ISO 8601 time or Unix seconds") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _optional_int(value: str, name: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise RowError(f"{name} {value[:20]!r} is not a number") from None


class FileImporter:
    """Reads one JSONL or CSV file. ``columns`` maps kulak's field names to the file's columns."""

    def __init__(self, path: Path, *, source: str = "import", columns: Mapping[str, str] = DEFAULT_COLUMNS) -> None:
        self.path = path
        self.name = source
        self.columns = {**DEFAULT_COLUMNS, **columns}

    def collect(self, cursors: Mapping[str, str]) -> Iterator[Batch]:
        """The whole file as one batch (imports have no cursor: dedup makes re-imports no-ops)."""
        parsed = self.parse()
        yield Batch(mentions=parsed.mentions, cursor=None, skipped=parsed.skipped)

    def parse(self) -> ParsedFile:
        """Read and validate every row; raises :class:`InputFileError` if the file is unusable."""
        if not self.path.is_file():
            raise InputFileError(f"{self.path} does not exist or is not a file.")
        suffix = self.path.suffix.lower()
        if suffix not in (".jsonl", ".ndjson", ".csv"):
            raise InputFileError(
                f"{self.path}: kulak imports .jsonl and .csv files, not {suffix or 'files without a suffix'!r}."
            )
        try:
            rows = list(self._jsonl_rows() if suffix != ".csv" else self._csv_rows())
        except UnicodeDecodeError:
            raise InputFileError(f"{self.path} is not UTF-8 text; is it really a {suffix} file?") from None
        mentions, skipped = [], []
        for line, row in progress(rows, total=len(rows), desc=f"reading {self.path.name}", unit="row"):
            try:
                if isinstance(row, str):  # the reader already knows what is wrong with this line
                    raise RowError(row)
                mentions.append(self._mention(row))
            except RowError as exc:
                skipped.append(f"line {line}: {exc}")
        return ParsedFile(tuple(mentions), tuple(skipped))

    def _jsonl_rows(self) -> Iterator[tuple[int, dict[str, str] | str]]:
        seen_valid = False
        with self.path.open(encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    if not seen_valid:
                        raise InputFileError(
                            f"{self.path} is not JSON Lines: line {line_no} is not JSON ({exc.msg}). "
                            "Each line must be one JSON object; for CSV use a .csv name."
                        ) from None
                    yield line_no, f"not valid JSON ({exc.msg})"
                    continue
                if not isinstance(obj, dict):
                    yield line_no, "expected a JSON object"
                    continue
                seen_valid = True
                yield line_no, {k: "" if v is None else str(v) for k, v in obj.items()}

    def _csv_rows(self) -> Iterator[tuple[int, dict[str, str] | str]]:
        with self.path.open(encoding="utf-8", newline="") as fh:
            sample = fh.read(4096)
            if "\0" in sample:
                raise InputFileError(f"{self.path} contains binary data; is it really a CSV file?")
            fh.seek(0)
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            text_col = self.columns["text"]
            if text_col not in header:
                raise InputFileError(
                    f"{self.path} has no {text_col!r} column (found: {', '.join(header) or 'no header'}). "
                    "Map your columns in [import.columns] of the config."
                )
            for row in reader:
                if None in row:
                    yield reader.line_num, "more fields than the header"
                    continue
                yield reader.line_num, {k: v or "" for k, v in row.items()}

    def _mention(self, row: Mapping[str, str]) -> Mention:
        col = self.columns

        def get(name: str) -> str:
            return row.get(col[name], "").strip()

        text = get("text")
        if not text:
            raise RowError("text is empty")
        created = parse_time(get("created_at"))
        author = get("author") or "unknown"
        external_id = get("id") or hashlib.sha256(f"{author}\0{created.isoformat()}\0{text}".encode()).hexdigest()[:32]
        return Mention(
            source=self.name,
            external_id=external_id,
            platform=get("platform") or "import",
            url=get("url"),
            author=author,
            text=text,
            created_at=created,
            followers=_optional_int(get("followers"), "followers"),
            engagement=_optional_int(get("engagement"), "engagement"),
            language=get("language") or None,
        )
