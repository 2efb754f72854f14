"""Per-source mapping files (TOML): which feed column is which, and how to page an HTTP API.

[source]
name = "acme-market"            # default: the feed file's stem, or the URL's host
encoding = "latin-1"            # of CSV/JSONL files (default UTF-8); bytes not in it quarantine their row
[columns]                       # our column = the feed's column (dotted paths reach into JSON)
listing_id = "item_id"
price = "offer.price.amount"
image_urls = "pictures"
[http]
items = "data.items"            # where the list of listings is in each page
pagination = "cursor"           # cursor, page or none
cursor_param = "cursor"
next_cursor = "meta.next_cursor"
page_param = "page"
page_size_param = "per_page"
page_size = 100
first_page = 1
token_env = "ACME_TOKEN"        # bearer token read from this environment variable
requests_per_second = 5
timeout_seconds = 10
max_retries = 5
[http.params]
country = "DE"
"""

from __future__ import annotations

import codecs
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from counterscan.errors import UserError
from counterscan.ingest.base import KNOWN_COLUMNS, FeedListing, parse_row, raw_record
from counterscan.records import Rejected


@dataclass(frozen=True)
class HttpOptions:
    items: str = "items"
    pagination: str = "none"
    cursor_param: str = "cursor"
    next_cursor: str = "next_cursor"
    page_param: str = "page"
    page_size_param: str | None = None
    page_size: int = 100
    first_page: int = 1
    token_env: str | None = None
    requests_per_second: float = 5.0
    timeout_seconds: float = 10.0
    max_retries: int = 5
    max_page_bytes: int = 50 * 1024 * 1024
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceMapping:
    name: str | None = None
    encoding: str | None = None
    """Text encoding of CSV and JSONL feed files (None: UTF-8, with or without a BOM)."""
    columns: Mapping[str, str] = field(default_factory=dict)
    """Our column name -> the feed's column (or dotted path)."""
    http: HttpOptions = field(default_factory=HttpOptions)

    def as_dict(self) -> dict[str, Any]:
        """The mapping in the shape of its TOML file, as stored with the source."""
        return {
            "source": ({"name": self.name} if self.name else {})
            | ({"encoding": self.encoding} if self.encoding else {}),
            "columns": dict(self.columns),
            "http": {f.name: getattr(self.http, f.name) for f in fields(HttpOptions)}
            | {"params": dict(self.http.params)},
        }


def get_path(row: Mapping[str, Any], path: str) -> Any:
    """``row["a"]["b"]`` for ``"a.b"``; a key that itself contains dots wins over the path."""
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def apply_columns(row: Mapping[str, Any], columns: Mapping[str, str]) -> Mapping[str, Any]:
    """Rename the feed's columns to ours; unmapped columns pass through (and become attributes)."""
    if not columns:
        return row

    used = {path.split(".")[0] for path in columns.values()}
    renamed = {key: value for key, value in row.items() if key not in used}
    renamed.update({ours: get_path(row, theirs) for ours, theirs in columns.items()})
    return renamed


def parse_mapped(
    source: str, record: str, row: Mapping[str, Any], columns: Mapping[str, str], base_dir: Path | None
) -> FeedListing | Rejected:
    """One feed row, its columns mapped, parsed into a listing or quarantined: the row boundary.

    Whatever one row raises, expected or not, ends here as its quarantine entry with the reason, so
    the rest of its batch lands and the next run of the source is not blocked by it.
    """
    try:
        return parse_row(source, record, apply_columns(row, columns), base_dir, original=row)
    except Exception as exc:  # the boundary: nothing a single row holds may stop the feed
        try:
            raw = raw_record(row, base_dir)
        except Exception:  # a row that cannot even be copied is kept as nothing but its place
            raw = {"row": {"line": ""}}
        return Rejected(source, record, f"unexpected {type(exc).__name__}: {str(exc)[:300]}", raw)


def load_mapping(path: Path | None) -> SourceMapping:
    if path is None:
        return SourceMapping()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such mapping file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from exc
    return parse_mapping(data, origin=str(path))


def parse_mapping(data: Mapping[str, Any], *, origin: str = "mapping") -> SourceMapping:
    unknown = set(data) - {"source", "columns", "http"}
    if unknown:
        raise UserError(f"{origin}: unknown section(s) {', '.join(sorted(unknown))}")
    columns = {str(k): str(v) for k, v in dict(data.get("columns", {})).items()}
    bad = set(columns) - set(KNOWN_COLUMNS)
    if bad:
        raise UserError(f"{origin}: [columns] names unknown column(s) {', '.join(sorted(bad))}")
    http_data = dict(data.get("http", {}))
    known = {f.name: f for f in fields(HttpOptions)}
    bad = set(http_data) - set(known)
    if bad:
        raise UserError(f"{origin}: [http] has unknown key(s) {', '.join(sorted(bad))}")
    if "params" in http_data:
        http_data["params"] = {str(k): str(v) for k, v in dict(http_data["params"]).items()}
    try:
        http = HttpOptions(**http_data)
    except TypeError as exc:
        raise UserError(f"{origin}: [http] {exc}") from exc
    if http.pagination not in ("cursor", "page", "none"):
        raise UserError(f"{origin}: [http] pagination must be cursor, page or none, not {http.pagination!r}")
    name = data.get("source", {}).get("name")
    encoding = data.get("source", {}).get("encoding")
    if encoding is not None:
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            raise UserError(f"{origin}: [source] encoding {encoding!r} is not a known text encoding") from None
    return SourceMapping(
        name=str(name) if name else None,
        encoding=str(encoding) if encoding else None,
        columns=columns,
        http=http,
    )
