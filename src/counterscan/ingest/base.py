"""The Source interface and the feed-row parser every tabular source shares."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from counterscan.ingest.validate import LIMITS, listing_problem
from counterscan.records import Listing, Rejected
from counterscan.store.storable import safe_text, text_problem

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
    items = value if isinstance(value, list | tuple) else _text(value).split(";")
    return tuple(_text(item) for item in items if _text(item))


def _text(value: Any) -> str:
    if value.__class__ is str:  # the common case first: this runs ten times per feed row
        return str(value).strip()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool | float) or (isinstance(value, int) and abs(value) < 10**18):
        return str(value).strip()
    # Not str() of a list, a dict or a huge integer: that can recurse or run for seconds.
    if isinstance(value, int):
        raise ValueError("an integer too large")
    raise ValueError(f"a {type(value).__name__} where text was expected")


def _field(row: Mapping[str, Any], name: str) -> str:
    try:
        return _text(row.get(name))
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def _price(value: Any) -> float | None:
    if isinstance(value, float) and math.isnan(value):
        # A bare NaN (JSON Lines, Parquet) is not a missing price: an empty field or null is.
        raise ValueError("price NaN is not a number")
    try:
        text = _text(value)
    except ValueError as exc:
        raise ValueError(f"price: {exc}") from None
    if not text:
        return None
    shown = safe_text(text, 40)
    try:
        price = float(text.replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"price {shown!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"price {shown!r} is not a non-negative number")
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

    try:
        listing_id = _text(row.get("listing_id"))
    except ValueError as exc:
        return rejected(record, f"listing_id: {exc}")
    if not listing_id:
        return rejected(record, "missing listing_id")
    id_problem = text_problem(listing_id, LIMITS["listing_id"])
    if id_problem:
        return rejected(f"{record} (listing {safe_text(listing_id, 40)}...)", f"listing_id: {id_problem}")
    label = f"{record} (listing {listing_id})"
    try:
        price = _price(row.get("price"))
    except ValueError as exc:
        return rejected(label, str(exc))
    try:
        return _parsed(source, label, row, base_dir, listing_id, price, rejected)
    except ValueError as exc:
        return rejected(label, str(exc))


def _parsed(
    source: str,
    label: str,
    row: Mapping[str, Any],
    base_dir: Path | None,
    listing_id: str,
    price: float | None,
    rejected: Callable[[str, str], Rejected],
) -> FeedListing | Rejected:
    currency = _field(row, "currency") or None
    if currency is not None:
        currency = currency.upper()
        if not CURRENCY.match(currency):
            return rejected(label, f"currency {safe_text(currency, 40)!r} is not an ISO 4217 code")
    try:
        refs = split_refs(row.get("image_paths")) + split_refs(row.get("image_urls"))
    except ValueError as exc:
        raise ValueError(f"image references: {exc}") from None
    attributes = {
        str(key): value
        for key, value in row.items()
        if key not in _KNOWN and value is not None and not (isinstance(value, float) and math.isnan(value))
    }
    listing = Listing(
        source=source,
        listing_id=listing_id,
        title=_field(row, "title"),
        description=_field(row, "description"),
        price=price,
        currency=currency,
        seller_id=_field(row, "seller_id") or None,
        seller_name=_field(row, "seller_name") or None,
        url=_field(row, "url") or None,
        marketplace=_field(row, "marketplace") or None,
        observed_at=_field(row, "observed_at") or None,
        image_refs=refs,
        attributes=attributes,
    )
    problem = listing_problem(listing)
    if problem:
        return rejected(label, problem)
    return FeedListing(listing=listing, record=label, base_dir=base_dir)
