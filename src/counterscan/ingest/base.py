"""The Source interface and the feed-row parser every tabular source shares."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from counterscan.records import Listing, Rejected

KNOWN_COLUMNS = (
    "listing_id",
    "title",
    "description",
    "price",
    "currency",
    "seller_id",
    "seller_name",
    "url",
    "marketplace",
    "observed_at",
    "image_urls",
    "image_paths",
)
CURRENCY = re.compile(r"^[A-Z]{3}$")
_KNOWN = frozenset(KNOWN_COLUMNS)


@dataclass(frozen=True)
class FeedListing:
    """A parsed listing plus where its images are to be found."""

    listing: Listing
    record: str
    base_dir: Path | None


@dataclass(frozen=True)
class Checkpoint:
    """Everything a source yielded before this marker is covered by ``state``: a later run resumes here."""

    state: Mapping[str, Any]


SourceItem = FeedListing | Rejected | Checkpoint


class Source(Protocol):
    name: str
    kind: str
    location: str

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[SourceItem]:
        """Records after ``checkpoint`` (all of them when None), with Checkpoint markers between."""
        ...


def raw_record(row: Mapping[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """What the quarantine keeps of a bad row, enough to parse it again later."""
    return {"row": dict(row), "base_dir": str(base_dir) if base_dir is not None else None}


def split_refs(value: Any) -> tuple[str, ...]:
    """A list, or a ';'-separated string, of image references."""
    if value is None:
        return ()
    if isinstance(value, float) and math.isnan(value):
        return ()
    items = value if isinstance(value, list | tuple) else str(value).split(";")
    return tuple(str(item).strip() for item in items if str(item).strip())


def _text(value: Any) -> str:
    if value.__class__ is str:  # the common case first: this runs ten times per feed row
        return str(value).strip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _optional(value: Any) -> str | None:
    return _text(value) or None


def _price(value: Any) -> float | None:
    text = _text(value)
    if not text:
        return None
    try:
        price = float(text.replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"price {text!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"price {text!r} is not a non-negative number")
    return price


def parse_row(
    source: str,
    record: str,
    row: Mapping[str, Any],
    base_dir: Path | None,
    *,
    original: Mapping[str, Any] | None = None,
) -> FeedListing | Rejected:
    """Turn one (column-mapped) feed row into a listing, or say precisely why not.

    ``original`` is the row as the feed had it, kept in the quarantine for a later retry.
    """

    def rejected(label: str, reason: str) -> Rejected:
        raw = raw_record(original if original is not None else row, base_dir)
        return Rejected(source=source, record=label, reason=reason, raw=raw)

    listing_id = _text(row.get("listing_id"))
    if not listing_id:
        return rejected(record, "missing listing_id")
    label = f"{record} (listing {listing_id})"
    try:
        price = _price(row.get("price"))
    except ValueError as exc:
        return rejected(label, str(exc))
    currency = _optional(row.get("currency"))
    if currency is not None:
        currency = currency.upper()
        if not CURRENCY.match(currency):
            return rejected(label, f"currency {currency!r} is not an ISO 4217 code")
    refs = split_refs(row.get("image_paths")) + split_refs(row.get("image_urls"))
    attributes = {
        str(key): value
        for key, value in row.items()
        if key not in _KNOWN and value is not None and not (isinstance(value, float) and math.isnan(value))
    }
    listing = Listing(
        source=source,
        listing_id=listing_id,
        title=_text(row.get("title")),
        description=_text(row.get("description")),
        price=price,
        currency=currency,
        seller_id=_optional(row.get("seller_id")),
        seller_name=_optional(row.get("seller_name")),
        url=_optional(row.get("url")),
        marketplace=_optional(row.get("marketplace")),
        observed_at=_optional(row.get("observed_at")),
        image_refs=refs,
        attributes=attributes,
    )
    return FeedListing(listing=listing, record=label, base_dir=base_dir)
