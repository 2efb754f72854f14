"""One batch scan: select listings, run every matcher, score, store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from counterscan.errors import ImageError
from counterscan.matchers import ImageMatcher, ListingMatcher
from counterscan.ranking import cold_start_score
from counterscan.records import Brand, Evidence, ListingToScan, ScanResult
from counterscan.store import BlobStore, Store

BATCH = 256


@dataclass(frozen=True)
class ScanSummary:
    scan_id: int
    scanned: int
    suspects: int
    images_unreadable: int

    def line(self) -> str:
        return f"scan {self.scan_id}: scanned {self.scanned} listings, {self.suspects} with evidence" + (
            f", {self.images_unreadable} images unreadable" if self.images_unreadable else ""
        )


@dataclass(frozen=True)
class _PreparedMatcher:
    matcher: ImageMatcher
    index: Any


def run_scan(
    store: Store,
    blobs: BlobStore,
    image_matchers: Sequence[ImageMatcher],
    listing_matchers: Sequence[ListingMatcher],
    *,
    rescan_all: bool = False,
) -> ScanSummary:
    brands = store.brands()
    prepared = [
        _PreparedMatcher(matcher, matcher.build_index(store.asset_signals(matcher.name))) for matcher in image_matchers
    ]
    todo = store.listings_to_scan(rescan_all=rescan_all)
    scan_id = store.start_scan()
    suspects = unreadable = 0
    try:
        for start in range(0, len(todo), BATCH):
            batch = todo[start : start + BATCH]
            image_evidence, failed = _image_evidence(store, blobs, prepared, batch)
            unreadable += failed
            results = [_score(item, image_evidence, listing_matchers, brands) for item in batch]
            store.write_results(scan_id, results)
            suspects += sum(1 for result in results if result.evidence)
    except BaseException:
        store.finish_scan(scan_id, status="failed", listings_scanned=0)
        raise
    store.finish_scan(scan_id, status="done", listings_scanned=len(todo))
    return ScanSummary(scan_id=scan_id, scanned=len(todo), suspects=suspects, images_unreadable=unreadable)


def _image_evidence(
    store: Store, blobs: BlobStore, prepared: Sequence[_PreparedMatcher], batch: Sequence[ListingToScan]
) -> tuple[dict[str, list[Evidence]], int]:
    """Evidence per image sha256 across all image matchers; signals are cached by content."""
    sha256s = sorted({sha256 for item in batch for sha256 in item.image_sha256s})
    found: dict[str, list[Evidence]] = {sha256: [] for sha256 in sha256s}
    failed: set[str] = set()
    for entry in prepared:
        matcher = entry.matcher
        signals = store.cached_signals(matcher.name, sha256s)
        fresh: dict[str, bytes] = {}
        for sha256 in sha256s:
            if sha256 in signals or sha256 in failed:
                continue
            try:
                fresh[sha256] = matcher.encode(blobs.get(sha256), source=sha256)
            except (ImageError, FileNotFoundError):
                failed.add(sha256)
        store.save_signals(matcher.name, fresh)
        signals.update(fresh)
        pairs = [(sha256, signals[sha256]) for sha256 in sha256s if sha256 in signals]
        for (sha256, _), evidence in zip(pairs, matcher.query(entry.index, pairs), strict=True):
            found[sha256].extend(evidence)
    return found, len(failed)


def _score(
    item: ListingToScan,
    image_evidence: dict[str, list[Evidence]],
    listing_matchers: Sequence[ListingMatcher],
    brands: Sequence[Brand],
) -> ScanResult:
    evidence: list[Evidence] = []
    for sha256 in dict.fromkeys(item.image_sha256s):
        evidence.extend(image_evidence.get(sha256, ()))
    for matcher in listing_matchers:
        evidence.extend(matcher.match(item.listing, brands))
    # A brand's own authorised sellers are never flagged for that brand.
    seller = item.listing.seller_id
    authorised = {brand.brand_id for brand in brands if seller is not None and seller in brand.authorised_sellers}
    evidence = [found for found in evidence if found.brand_id not in authorised]
    scored = cold_start_score(evidence)
    return ScanResult(
        listing_pk=item.listing_pk,
        score=scored.score,
        brand_id=scored.brand_id,
        evidence=tuple(evidence),
        best=scored.best,
    )
