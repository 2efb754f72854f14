"""What a feed row may hold before it is written: sizes within the schema, text every database takes.

Feeds are untrusted. A row that would make the database refuse the whole batch (a NUL byte on
PostgreSQL, an id longer than its column, ``Infinity`` in JSON) or make Python itself fail
(nesting deeper than the recursion limit, a lone surrogate that cannot be encoded) is found here
and quarantined with its reason, so the rest of its batch lands and the next run is not blocked.
"""

from __future__ import annotations

from counterscan.records import Listing
from counterscan.store import schema as t
from counterscan.store.storable import MAX_FIELD_CHARS, safe_text, text_problem, value_problem

MAX_ATTRIBUTES_CHARS = 1024 * 1024
"""Largest attribute of one listing (its text, roughly as serialised)."""
MAX_ATTRIBUTES = 500
"""Most extra (unknown) columns one listing may carry."""
MAX_IMAGES = 100
"""Most image references one listing may name."""


def column_limit(column: str) -> int:
    """The longest text the ``listings`` column takes: its declared length, or MAX_FIELD_CHARS."""
    length = getattr(t.listings.c[column].type, "length", None)
    return int(length) if length else MAX_FIELD_CHARS


TEXT_FIELDS = (
    "listing_id",
    "title",
    "description",
    "currency",
    "seller_id",
    "seller_name",
    "url",
    "marketplace",
    "observed_at",
)
LIMITS = {name: column_limit(name) for name in TEXT_FIELDS}


def listing_problem(listing: Listing) -> str | None:
    """Why ``listing`` cannot be written as it is, naming the field; None when it can."""
    for name in TEXT_FIELDS:
        value = getattr(listing, name)
        if value is not None:
            problem = text_problem(value, LIMITS[name])
            if problem:
                return f"{name}: {problem}"
    if len(listing.image_refs) > MAX_IMAGES:
        return f"image references: {len(listing.image_refs)} (at most {MAX_IMAGES})"
    for ref in listing.image_refs:
        problem = text_problem(ref)
        if problem:
            return f"image reference: {problem}"
    if len(listing.attributes) > MAX_ATTRIBUTES:
        return f"{len(listing.attributes)} extra columns (at most {MAX_ATTRIBUTES})"
    for key, value in listing.attributes.items():
        problem = text_problem(key, 200) or value_problem(value, depth=1, max_chars=MAX_ATTRIBUTES_CHARS)
        if problem:
            return f"attribute {safe_text(key, 60)!r}: {problem}"
    return None
