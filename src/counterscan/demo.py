"""The bundled demo: register demo brands and assets, ingest the demo feed, scan, rank."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from counterscan.config import Settings
from counterscan.errors import NotFoundError
from counterscan.ingest import IngestSummary, ingest, open_source
from counterscan.ingest.base import FeedListing
from counterscan.matchers import image_matchers
from counterscan.records import Suspect
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import ScanSummary, run_scan
from counterscan.store import BlobStore, Store

DEMO_MEMBER = "demo-alliance"


@dataclass(frozen=True)
class DemoResult:
    ingest: IngestSummary
    scan: ScanSummary
    ranking: tuple[Suspect, ...]
    """Every scanned listing of the demo feed, best first (clean ones included)."""
    truth: dict[str, str]
    """demo_truth per listing id: reuse, text, printed, logo, collage or clean."""

    def above_clean(self, kind: str) -> bool:
        """Whether every listing planted as ``kind`` (reuse, text) outranks every clean listing."""
        ranks = {suspect.listing_id: suspect.rank for suspect in self.ranking}
        planted = [ranks.get(i) for i, truth in self.truth.items() if truth == kind]
        clean = [ranks[i] for i, truth in self.truth.items() if truth == "clean" and i in ranks]
        if not planted or any(rank is None for rank in planted):
            return False
        return not clean or max(rank for rank in planted if rank is not None) < min(clean)

    def count(self, kind: str) -> int:
        return sum(1 for truth in self.truth.values() if truth == kind)


def run_demo(
    store: Store,
    blobs: BlobStore,
    settings: Settings,
    data_dir: Path,
) -> DemoResult:
    limits = upload_limits(settings)
    matchers = image_matchers(settings)
    manifest = tomllib.loads((data_dir / "brands.toml").read_text(encoding="utf-8"))
    try:
        actor = store.member(DEMO_MEMBER)
    except NotFoundError:
        actor = add_member(store, DEMO_MEMBER).member
    for entry in manifest["brand"]:
        known = {brand.name for brand in store.brands()}
        if entry["name"] not in known:
            add_brand(
                store,
                actor,
                entry["name"],
                keywords=entry.get("keywords", []),
                msrp=entry.get("msrp"),
                currency=entry.get("currency"),
                authorised_sellers=entry.get("authorised_sellers", []),
            )
        for kind in ("logo", "product"):
            paths = [data_dir / path for path in entry.get(f"{kind}s", [])]
            if paths:
                add_asset_files(store, blobs, limits, matchers, actor, brand=entry["name"], kind=kind, paths=paths)

    source = open_source(str(data_dir / "listings" / "listings.csv"), name="demo-market")
    ingested = ingest(store, blobs, limits.image, source)
    scanned = run_scan(store, settings)
    truth = {
        item.listing.listing_id: str(item.listing.attributes.get("demo_truth", ""))
        for item in source.read(None)
        if isinstance(item, FeedListing)
    }
    ranking = tuple(suspect for suspect in store.suspects(include_clean=True) if suspect.source == source.name)
    return DemoResult(ingest=ingested, scan=scanned, ranking=ranking, truth=truth)
