"""Ingestion: feeds to listings, images to the content-addressed cache, bad records to quarantine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from counterscan.errors import UserError
from counterscan.imaging import DecodeLimits
from counterscan.ingest.base import FeedListing, Source
from counterscan.ingest.images import ImageCollector
from counterscan.ingest.tabular import CsvSource, JsonlSource
from counterscan.records import IngestedListing, Rejected
from counterscan.store import BlobStore, Store
from counterscan.store.listings import listing_content_hash

BATCH = 500

SOURCE_KINDS: dict[str, Callable[[Path, str], Source]] = {
    ".csv": lambda path, name: CsvSource(path, name=name),
    ".jsonl": lambda path, name: JsonlSource(path, name=name),
    ".ndjson": lambda path, name: JsonlSource(path, name=name),
}


@dataclass(frozen=True)
class IngestSummary:
    source: str
    read: int
    new: int
    updated: int
    unchanged: int
    quarantined: int
    images_ok: int
    images_failed: int

    def line(self) -> str:
        return (
            f"{self.source}: read {self.read}, new {self.new}, updated {self.updated}, "
            f"unchanged {self.unchanged}, quarantined {self.quarantined}, "
            f"images ok {self.images_ok}, images failed {self.images_failed}"
        )


def open_source(location: str, *, name: str | None = None) -> Source:
    path = Path(location)
    if not path.exists():
        raise UserError(f"{location}: no such file")
    factory = SOURCE_KINDS.get(path.suffix.lower())
    if factory is None:
        kinds = ", ".join(sorted(SOURCE_KINDS))
        raise UserError(f"{location}: unsupported feed type {path.suffix or '(none)'!r} (supported: {kinds})")
    return factory(path, name or path.stem)


def ingest(store: Store, blobs: BlobStore, limits: DecodeLimits, source: Source) -> IngestSummary:
    """Read every record of ``source``; land the good ones and quarantine the rest."""
    store.record_source(source.name, source.location)
    collector = ImageCollector(blobs, limits)
    seen: dict[str, str] = {}
    rejected: list[Rejected] = []
    totals = {"read": 0, "new": 0, "updated": 0, "unchanged": 0, "quarantined": 0, "images_ok": 0, "images_failed": 0}

    batch: list[FeedListing] = []

    def flush() -> None:
        known = store.listing_hashes(source.name, [item.listing.listing_id for item in batch])
        # Images are fetched only for new or changed listings: re-running a feed costs no downloads.
        changed = [item for item in batch if known.get(item.listing.listing_id) != listing_content_hash(item.listing)]
        counts = store.upsert_listings([_with_images(item, collector, rejected, totals) for item in changed])
        totals["new"] += counts.new
        totals["updated"] += counts.updated
        totals["unchanged"] += counts.unchanged + len(batch) - len(changed)
        store.quarantine(rejected)
        batch.clear()
        rejected.clear()

    for item in source.read(None):
        totals["read"] += 1
        if isinstance(item, Rejected):
            totals["quarantined"] += 1
            rejected.append(item)
        elif item.listing.listing_id in seen:
            totals["quarantined"] += 1
            rejected.append(
                Rejected(
                    source.name,
                    item.record,
                    f"duplicate listing_id (first seen at {seen[item.listing.listing_id]})",
                    {"listing_id": item.listing.listing_id},
                )
            )
        else:
            seen[item.listing.listing_id] = item.record
            batch.append(item)
        if len(batch) >= BATCH:
            flush()
    flush()
    return IngestSummary(source=source.name, **totals)


def _with_images(
    item: FeedListing, collector: ImageCollector, rejected: list[Rejected], totals: dict[str, int]
) -> IngestedListing:
    outcomes = tuple(collector.collect(ref, item.base_dir) for ref in item.listing.image_refs)
    for position, outcome in enumerate(outcomes, start=1):
        if outcome.error is None:
            totals["images_ok"] += 1
            continue
        totals["images_failed"] += 1
        rejected.append(
            Rejected(
                item.listing.source,
                f"{item.record} image {position}",
                f"{outcome.ref}: {outcome.error}",
                {"listing_id": item.listing.listing_id, "image": outcome.ref},
            )
        )
    return IngestedListing(listing=item.listing, images=outcomes)


__all__ = ["IngestSummary", "Source", "ingest", "open_source"]
