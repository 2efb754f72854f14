"""Feed files: CSV, JSONL and Parquet, plain or gzip-compressed, alone or in folders.

Checkpoints: a file's state is its size, modification time, a hash of its first 64 KiB and the
number of rows already committed. An unchanged file is skipped without being read; a file that
grew (same head) continues after the committed rows; a rewritten file is read again from the
start (listings that did not change cost nothing, see ``Store.listing_hashes``).
"""

from __future__ import annotations

import collections
import csv
import gzip
import hashlib
import io
import itertools
import json
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import pyarrow.parquet as pq

from counterscan.errors import DataError, UserError
from counterscan.ingest.base import Checkpoint, SourceItem, raw_record
from counterscan.ingest.mapping import SourceMapping, parse_mapped
from counterscan.records import Rejected

CHECKPOINT_EVERY_ROWS = 2000
HEAD_BYTES = 64 * 1024
FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet")
DELIMITERS = (",", ";", "\t", "|")
"""CSV delimiters told apart by the header line."""
_MISSING = "\x00missing"
"""Filled in for fields a short CSV row lacks; cannot occur in decoded CSV text."""

RowItem = tuple[str, Mapping[str, Any]] | Rejected


def feed_format(path: Path) -> str | None:
    """The feed format of ``path`` by its name (``.csv``, ``.jsonl.gz``...), or None."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in FORMATS:
        return None
    return ".jsonl" if suffixes[-1] == ".ndjson" else suffixes[-1]


def fingerprint(path: Path, head_bytes: int = HEAD_BYTES) -> dict[str, Any]:
    """Size, modification time, and a hash of the first ``head_bytes`` (or fewer, in a small file)."""
    stat = path.stat()
    with path.open("rb") as handle:
        head = handle.read(min(head_bytes, stat.st_size))
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "head": hashlib.sha256(head).hexdigest(),
        "head_bytes": len(head),
    }


class FileSource:
    """One feed file."""

    def __init__(self, path: Path, *, name: str, mapping: SourceMapping) -> None:
        found = feed_format(path)
        if found is None:
            raise UserError(
                f"{path}: unsupported feed type (supported: {', '.join(FORMATS)}, optionally gzip-compressed .gz)"
            )
        self.path = path
        self.name = name
        self.kind = found.lstrip(".")
        self.location = str(path)
        self.mapping = mapping

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[SourceItem]:
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such feed file")
        state = checkpoint or {}
        now = fingerprint(self.path)
        skip = _rows_to_skip(state, now, fingerprint(self.path, int(state.get("head_bytes", HEAD_BYTES))))
        if skip is None:
            return
        rows = 0
        folder = self.path.parent
        for rows, item in enumerate(self._rows(), start=1):
            if rows <= skip:
                continue
            if isinstance(item, Rejected):
                yield item
            else:
                record, row = item
                yield parse_mapped(self.name, record, row, self.mapping.columns, folder)

            if rows % CHECKPOINT_EVERY_ROWS == 0:
                yield Checkpoint(now | {"rows": rows, "complete": False})
        yield Checkpoint(now | {"rows": max(rows, skip), "complete": True})

    def _rows(self) -> Iterator[RowItem]:
        readers = {"csv": self._csv_rows, "jsonl": self._jsonl_rows, "parquet": self._parquet_rows}
        try:
            yield from readers[self.kind]()
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{self.path}: corrupt gzip data ({exc})") from exc

    def _text(self) -> TextIO:
        # Bytes that are not in the feed's encoding become lone surrogates (surrogateescape): the
        # row holding them is quarantined with the byte named, never the whole file.
        encoding = self.mapping.encoding or "utf-8-sig"
        if self.path.suffix.lower() == ".gz":
            return io.TextIOWrapper(gzip.open(self.path, "rb"), encoding=encoding, errors="surrogateescape", newline="")
        return self.path.open("r", encoding=encoding, errors="surrogateescape", newline="")

    def _csv_rows(self) -> Iterator[RowItem]:
        label = self.path.name
        with self._text() as handle:
            first = handle.readline()
            delimiter = self._delimiter(first)
            lines = _Lines(itertools.chain([first], handle) if first else iter(()))
            reader = csv.reader(lines, delimiter=delimiter)
            header = next(reader, None)
            if not header or "listing_id" not in self._our_names(header):
                shown = {",": "comma", ";": "semicolon", "\t": "tab", "|": "bar"}[delimiter]
                raise DataError(
                    f"{self.path}: CSV header has no listing_id column (read as {shown}-separated; "
                    "map one in the mapping file)"
                )
            width = len(header)
            while True:
                lines.start_record()
                try:
                    values = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield self._csv_error(label, lines, exc)
                    continue
                if lines.ran_off_the_end():
                    start = lines.read_again_after_first()
                    reason = f"CSV: a quote opened on line {start} is never closed (the file ends inside it)"
                    yield Rejected(self.name, f"{label} line {start}", reason, {"row": {"line": ""}})
                    continue
                if not values:
                    continue  # a blank line, as csv.DictReader skips it
                row: dict[str | None, Any] = dict(zip(header, values, strict=False))
                record = f"{label} line {lines.number}"
                if len(values) > width:
                    row[None] = values[width:]
                    yield Rejected(self.name, record, f"row has more fields than the header's {width}", _raw(row))
                elif len(values) < width:
                    row.update(dict.fromkeys(header[len(values) :], _MISSING))
                    yield Rejected(self.name, record, f"row has fewer fields than the header's {width}", _raw(row))
                else:
                    yield record, row  # type: ignore[misc]  # no None key: as many values as the header

    def _csv_error(self, label: str, lines: _Lines, exc: csv.Error) -> Rejected:
        """The row a CSV error costs. A record that ran over several lines before failing (a field
        past the limit) ran away in a quote that never closed: the lines after its first are read again."""
        if len(lines.record) > 1:
            start = lines.read_again_after_first()
            reason = f"CSV: a quote opened on line {start} is never closed ({exc}); the lines after it are read again"
            return Rejected(self.name, f"{label} line {start}", reason, {"row": {"line": ""}})
        # The reader goes on at the next line: one bad field costs its row only.
        return Rejected(self.name, f"{label} line {lines.number}", f"CSV: {exc}", {"row": {"line": ""}})

    def _delimiter(self, header_line: str) -> str:
        """The header's delimiter: the one that yields a listing_id column, else the most frequent."""
        counts = {candidate: header_line.count(candidate) for candidate in DELIMITERS}
        for candidate in sorted(DELIMITERS, key=lambda found: -counts[found]):
            names = next(csv.reader([header_line], delimiter=candidate), [])
            if counts[candidate] and "listing_id" in self._our_names(names):
                return candidate
        best = max(DELIMITERS, key=lambda found: counts[found])
        return best if counts[best] else ","

    def _our_names(self, header: Sequence[str]) -> set[str]:
        mapped = {ours for ours, theirs in self.mapping.columns.items() if theirs.split(".")[0] in header}
        return set(header) | mapped

    def _jsonl_rows(self) -> Iterator[RowItem]:
        label = self.path.name
        with self._text() as handle:
            for number, line in enumerate(handle, start=1):
                record = f"{label} line {number}"
                if not line.strip():
                    yield Rejected(self.name, record, "empty line", {"row": {"line": ""}})
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    reason = f"not valid JSON ({exc.msg} at column {exc.colno})"
                    yield Rejected(self.name, record, reason, {"row": {"line": line[:2000]}})
                    continue
                except RecursionError:
                    yield Rejected(self.name, record, "JSON nested too deep", {"row": {"line": line[:2000]}})
                    continue
                except ValueError as exc:  # e.g. an integer of more digits than Python converts
                    yield Rejected(self.name, record, f"not usable JSON ({exc})", {"row": {"line": line[:2000]}})
                    continue
                if not isinstance(row, dict):
                    yield Rejected(self.name, record, "line is JSON but not an object", {"row": {"line": line[:2000]}})
                    continue
                yield record, row

    def _parquet_rows(self) -> Iterator[RowItem]:
        label = self.path.name
        try:
            parquet = pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError... for a bad file
            raise DataError(f"{self.path}: not a readable Parquet file ({exc})") from exc
        number = 0
        for batch in parquet.iter_batches(batch_size=CHECKPOINT_EVERY_ROWS):
            for row in batch.to_pylist():
                number += 1
                yield f"{label} row {number}", row


class _Lines:
    """A CSV file's lines, numbered, keeping those of the record being read: a record that ran
    away in an unterminated quote is read again from its second line."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._again: collections.deque[str] = collections.deque()
        self.number = 0
        self.record: list[str] = []
        self.at_end = False

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._again:
            line = self._again.popleft()
        else:
            try:
                line = next(self._lines)
            except StopIteration:
                self.at_end = True
                raise
        self.number += 1
        self.record.append(line)
        return line

    def start_record(self) -> None:
        self.record = []

    def ran_off_the_end(self) -> bool:
        """Whether the record just read reached the end of the file inside an open quote."""
        return self.at_end and not self._again and len(self.record) > 1 and "".join(self.record).count('"') % 2 == 1

    def read_again_after_first(self) -> int:
        """Put back the record's lines after its first; the first's line number."""
        start = self.number - len(self.record) + 1
        self._again.extendleft(reversed(self.record[1:]))
        self.number = start
        self.record = []
        return start


def _raw(row: Mapping[Any, Any]) -> dict[str, Any]:
    cleaned = {str(key): (None if value == _MISSING else value) for key, value in row.items()}
    return raw_record(cleaned, None)


def _rows_to_skip(state: Mapping[str, Any], now: Mapping[str, Any], same_span: Mapping[str, Any]) -> int | None:
    """Rows already committed from this file, or None when the file has not changed since.

    ``same_span`` is the file's fingerprint over as many head bytes as the checkpoint hashed.
    """
    if state.get("head") != same_span["head"] or int(state.get("size", 0)) > int(now["size"]):
        return 0  # a different or shorter file: read it all again
    unchanged = state.get("size") == now["size"] and state.get("mtime_ns") == now["mtime_ns"]
    if unchanged and state.get("complete"):
        return None
    return int(state.get("rows", 0))


class FolderSource:
    """Every feed file under a folder, in name order; each file keeps its own checkpoint."""

    def __init__(self, folder: Path, *, name: str, mapping: SourceMapping) -> None:
        self.folder = folder
        self.name = name
        self.kind = "folder"
        self.location = str(folder)
        self.mapping = mapping

    def files(self) -> list[Path]:
        return sorted(
            path
            for path in self.folder.rglob("*")
            if path.is_file() and not path.name.startswith(".") and feed_format(path) is not None
        )

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[SourceItem]:
        states: dict[str, Any] = dict((checkpoint or {}).get("files", {}))
        for path in self.files():
            key = str(path.relative_to(self.folder))
            source = FileSource(path, name=self.name, mapping=self.mapping)
            for item in source.read(states.get(key)):
                if isinstance(item, Checkpoint):
                    states[key] = dict(item.state)
                    yield Checkpoint({"files": dict(states)})
                else:
                    yield item
