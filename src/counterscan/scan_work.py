"""The work a scan sends to its workers: match a partition of listings against the indexes.

Workers only read (image blobs, the context they are sent) and return evidence and any image
signals they computed; the coordinator scores and writes. Each worker process builds the
matcher indexes once per context and keeps them while the context's key stays the same.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counterscan.config import Settings
from counterscan.errors import ImageError
from counterscan.imaging import Picture
from counterscan.matchers import ImageMatcher, ListingMatcher, decode_limits, image_matchers, listing_matchers
from counterscan.matchers.context import PriceMatcher, SellerHistory, SellerMatcher
from counterscan.matchers.ocr import OcrMatcher
from counterscan.matchers.title import ProductTitleMatcher
from counterscan.records import AssetSignal, Brand, Evidence, ListingToScan
from counterscan.store.blobs import BlobStore


@dataclass(frozen=True)
class MatchContext:
    """Everything a worker needs; its ``key`` names the asset and brand state it was built from."""

    key: str
    settings: Settings
    brands: tuple[Brand, ...]
    asset_signals: dict[str, tuple[AssetSignal, ...]]
    blob_root: Path
    sellers: SellerHistory = field(default_factory=SellerHistory)


@dataclass(frozen=True)
class PartitionResult:
    evidence: dict[int, tuple[Evidence, ...]]
    """Per listing key, its evidence in a stable order (images in listing order, then words)."""
    new_signals: dict[str, dict[str, bytes]] = field(default_factory=dict)
    unreadable: int = 0


@dataclass
class _Prepared:
    image: list[tuple[ImageMatcher, Any]]
    listing: list[ListingMatcher]
    blobs: BlobStore
    price: PriceMatcher
    seller: SellerMatcher


def _index(matcher: ImageMatcher, context: MatchContext) -> Any:
    # Words read in photos are matched against the brands themselves (names, aliases), not assets.
    if isinstance(matcher, OcrMatcher):
        return matcher.index_brands(context.brands)
    return matcher.build_index(context.asset_signals.get(matcher.name, ()))


class _PreparedCache:
    """Per-process cache of built indexes: one entry, replaced when the context key changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._value: _Prepared | None = None

    def get(self, context: MatchContext) -> _Prepared:
        with self._lock:
            if self._key != context.key or self._value is None:
                image = [(matcher, _index(matcher, context)) for matcher in image_matchers(context.settings)]
                listing = listing_matchers(context.settings)
                titles = next((m for m in listing if isinstance(m, ProductTitleMatcher)), None)
                self._value = _Prepared(
                    image,
                    listing,
                    BlobStore(context.blob_root),
                    PriceMatcher(context.settings.rates, titles),
                    SellerMatcher(context.sellers),
                )
                self._key = context.key
            return self._value


_PREPARED = _PreparedCache()
"""The one piece of process state: indexes are too costly to rebuild for every partition."""


def match_partition(
    context: MatchContext, items: Sequence[ListingToScan], cached: dict[str, dict[str, bytes]]
) -> PartitionResult:
    """Evidence for each listing of ``items``; ``cached`` holds known signals per matcher and image."""
    prepared = _PREPARED.get(context)
    sha256s = sorted({sha256 for item in items for sha256 in item.image_sha256s})
    per_image: dict[str, list[Evidence]] = {sha256: [] for sha256 in sha256s}
    known = {matcher.name: dict(cached.get(matcher.name, {})) for matcher, _index in prepared.image}
    new_signals: dict[str, dict[str, bytes]] = {matcher.name: {} for matcher, _index in prepared.image}
    failed: set[str] = set()
    limits = decode_limits(context.settings)
    for sha256 in sha256s:
        wanting = [matcher for matcher, _index in prepared.image if sha256 not in known[matcher.name]]
        if not wanting:
            continue
        # One decode per image, whatever the number of matchers: they share the picture's forms.
        try:
            picture = Picture.open(prepared.blobs.get(sha256), limits, source=sha256)
            for matcher in wanting:
                signal = matcher.encode(picture)
                known[matcher.name][sha256] = new_signals[matcher.name][sha256] = signal
        except (ImageError, FileNotFoundError):
            failed.add(sha256)
    scanned_brands = {brand.brand_id for brand in context.brands}
    for matcher, index in prepared.image:
        signals = known[matcher.name]
        pairs = [(sha256, signals[sha256]) for sha256 in sha256s if sha256 in signals]
        for (sha256, _signal), found in zip(pairs, matcher.query(index, pairs), strict=True):
            per_image[sha256].extend(item for item in found if item.brand_id in scanned_brands)
    evidence: dict[int, tuple[Evidence, ...]] = {}
    for item in items:
        found_here: list[Evidence] = []
        for sha256 in dict.fromkeys(item.image_sha256s):
            found_here.extend(per_image.get(sha256, ()))
        for listing_matcher in prepared.listing:
            found_here.extend(listing_matcher.match(item.listing, context.brands))
        # Price and seller history say nothing alone; they weigh in for brands already in evidence.
        involved = {found.brand_id for found in found_here}
        suspects_of = [brand for brand in context.brands if brand.brand_id in involved]
        found_here.extend(prepared.price.match(item.listing, suspects_of, context.brands))
        found_here.extend(prepared.seller.match(item.listing, suspects_of))
        evidence[item.listing_pk] = tuple(found_here)

    return PartitionResult(evidence=evidence, new_signals=new_signals, unreadable=len(failed))
