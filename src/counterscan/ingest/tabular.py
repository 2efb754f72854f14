"""CSV and JSONL feed files, streamed row by row."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from counterscan.errors import DataError, UserError
from counterscan.ingest.base import FeedListing, parse_row
from counterscan.records import Rejected

_MISSING = "\x00missing"
"""Filled in for fields a short CSV row lacks; cannot occur in decoded CSV text."""


class CsvSource:
    """A CSV file with a header row (DESIGN.md feed columns)."""

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = path
        self.name = name
        self.location = str(path)

    def read(self, checkpoint: Mapping[str, Any] | None = None) -> Iterator[FeedListing | Rejected]:
        with _open_text(self.path) as handle:
            reader = csv.DictReader(handle, restval=_MISSING)
            if not reader.fieldnames or "listing_id" not in reader.fieldnames:
                raise DataError(f"{self.path}: CSV header has no listing_id column")
            width = len(reader.fieldnames)
            for row in reader:
                record = f"{self.path.name} line {reader.line_num}"
                if None in row:
                    yield Rejected(self.name, record, f"row has more fields than the header's {width}", _clean(row))
                elif any(value is _MISSING for value in row.values()):
                    yield Rejected(self.name, record, f"row has fewer fields than the header's {width}", _clean(row))
                else:
                    yield parse_row(self.name, record, row, self.path.parent)


class JsonlSource:
    """One JSON object per line."""

    def __init__(self, path: Path, *, name: str) -> None:
        self.path = path
        self.name = name
        self.location = str(path)

    def read(self, checkpoint: Mapping[str, Any] | None = None) -> Iterator[FeedListing | Rejected]:
        with _open_text(self.path) as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = f"{self.path.name} line {number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield Rejected(
                        self.name, record, f"not valid JSON ({exc.msg} at column {exc.colno})", {"line": line[:2000]}
                    )
                    continue
                if not isinstance(row, dict):
                    yield Rejected(self.name, record, "line is JSON but not an object", {"line": line[:2000]})
                    continue
                yield parse_row(self.name, record, row, self.path.parent)


def _open_text(path: Path) -> Any:
    try:
        return path.open("r", encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise UserError(f"{path}: no such feed file") from exc
    except IsADirectoryError as exc:
        raise UserError(f"{path}: is a folder") from exc


def _clean(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): (None if value is _MISSING else value) for key, value in row.items()}
