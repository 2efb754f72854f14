"""Exports for takedown tools: CSV and JSON, one row per (listing, brand) suspect, best first."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from counterscan.errors import UserError
from counterscan.records import VERDICTS, Evidence, Suspect

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
    "seller_id",
    "seller_name",
    "marketplace",
    "currency",
    "first_seen",
    "last_seen",
    "verdict",
    "analyst",
    "decided_at",
)
"""One row per (listing, brand) suspect: a listing with evidence for two brands is two rows."""
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
        "seller_id": suspect.seller_id or "",
        "seller_name": suspect.seller_name or "",
        "marketplace": suspect.marketplace or "",
        "currency": suspect.currency or "",
        "first_seen": suspect.first_seen or "",
        "last_seen": suspect.last_seen or "",
        "verdict": suspect.status if suspect.status in VERDICTS else "",
        "analyst": suspect.analyst or "",
        "decided_at": suspect.decided_at or "",
    }


def render_csv(suspects: Sequence[Suspect]) -> str:
    return render_csv_rows([suspect_row(suspect) for suspect in suspects], CSV_COLUMNS)


def render_json(suspects: Sequence[Suspect], reasons: Mapping[tuple[int, int | None], Sequence[Evidence]]) -> str:
    """Every column of the CSV, the source, and every reason the suspect's brand has (strongest first)."""
    rows = [
        suspect_row(suspect)
        | {
            "source": suspect.source,
            "reasons": [
                {
                    "matcher": item.matcher,
                    "reason": item.reason,
                    "score": item.score,
                    "asset_id": item.asset_id,
                    "distance": item.distance,
                    "image_sha256": item.image_sha256,
                }
                for item in sorted(reasons.get((suspect.listing_pk, suspect.brand_id), ()), key=lambda e: -e.score)
            ],
        }
        for suspect in suspects
    ]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


def export(
    suspects: Sequence[Suspect],
    *,
    fmt: str,
    out: Path,
    reasons: Mapping[tuple[int, int | None], Sequence[Evidence]] | None = None,
) -> None:
    """Write ``suspects`` as CSV or JSON; ``reasons`` (per (listing, brand)) fill the JSON's reasons."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r} (one of {', '.join(FORMATS)}, html)")
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give a file path")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_csv(suspects) if fmt == "csv" else render_json(suspects, reasons or {})
    out.write_text(text, encoding="utf-8")


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
