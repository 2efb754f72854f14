"""Exports for takedown tools: CSV and JSON, one row per suspect listing, best first."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from counterscan.errors import UserError
from counterscan.records import Suspect

CSV_COLUMNS = (
    "rank",
    "listing_id",
    "score",
    "brand",
    "asset_id",
    "matcher",
    "reason",
    "title",
    "price",
    "url",
    "status",
)
FORMATS = ("csv", "json")


def suspect_row(suspect: Suspect) -> dict[str, Any]:
    return {
        "rank": suspect.rank,
        "listing_id": suspect.listing_id,
        "score": suspect.score,
        "brand": suspect.brand or "",
        "asset_id": suspect.asset_id if suspect.asset_id is not None else "",
        "matcher": suspect.matcher or "",
        "reason": suspect.reason or "",
        "title": suspect.title,
        "price": suspect.price if suspect.price is not None else "",
        "url": suspect.url or "",
        "status": suspect.status,
    }


def render_csv(suspects: Sequence[Suspect]) -> str:
    return render_csv_rows([suspect_row(suspect) for suspect in suspects], CSV_COLUMNS)


def render_json(suspects: Sequence[Suspect]) -> str:
    rows = [suspect_row(suspect) | {"source": suspect.source, "currency": suspect.currency} for suspect in suspects]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def export(suspects: Sequence[Suspect], *, fmt: str, out: Path) -> None:
    renderers = {"csv": render_csv, "json": render_json}
    if fmt not in renderers:
        raise UserError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)}, html)")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(renderers[fmt](suspects), encoding="utf-8")


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...), +cmd|...).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """Text a spreadsheet would read as a formula, prefixed with a quote so it stays text; numbers
    (a negative price) are left as they are. Carriage returns become line feeds."""
    if not isinstance(value, str):
        return value
    # A lone CR is not quoted by a writer whose line ends are LF, and would split the row.
    cleaned = value.replace("\r\n", "\n").replace("\r", "\n")
    return "'" + cleaned if value.startswith(FORMULA_STARTS) else cleaned


def render_csv_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """The one CSV writer: every export and listing goes through it, formula cells neutralised."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({key: neutralise(value) for key, value in row.items()} for row in rows)
    return buffer.getvalue()
