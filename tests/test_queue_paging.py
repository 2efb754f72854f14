"""Keyset paging of the review queue visits every suspect once, in every sort order.

A listing is the suspect of each brand it points at, often with one score for several brands (the
same counterfeit words, the same capped evidence): the page boundary may fall between two such
suspects, and neither may be skipped or shown twice, going forward (pages) or step by step (j / k).
"""

from __future__ import annotations

import pytest

from counterscan.records import BrandScore, IngestedListing, Listing, ScanResult
from counterscan.store import Store
from counterscan.store.queue import QUEUE_SORTS, QueueFilter, QueueSort, SuspectKey


def _store_with_tied_suspects(db_url: str) -> tuple[Store, list[SuspectKey]]:
    store = Store.open(db_url)
    owner = store.add_member("owner", role="member", key_hash="h" * 64, actor="test")
    brands = [store.add_brand(name, member_id=owner.member_id, actor="test") for name in ("A", "B", "C")]
    listings = [Listing(source="feed", listing_id=f"L{number}", title=f"listing {number}") for number in range(5)]
    store.commit_ingest_batch("feed", [IngestedListing(listing) for listing in listings], [], None)
    pks = [store.find_listing(listing.listing_id) for listing in listings]
    # L0 and L1: three brands each at one score; L2: two brands at 0.5 like L0's; L3, L4: one brand.
    scores = {
        pks[0]: [(brand, 0.5) for brand in brands],
        pks[1]: [(brand, 0.9) for brand in brands],
        pks[2]: [(brands[1], 0.5), (brands[2], 0.5)],
        pks[3]: [(brands[0], 0.7)],
        pks[4]: [(brands[2], 0.3)],
    }
    scan_id = store.start_scan()
    store.write_results(
        scan_id,
        [
            ScanResult(
                listing_pk=pk,
                score=found[0][1],
                brand_id=found[0][0],
                evidence=(),
                best=None,
                brand_scores=tuple(BrandScore(brand_id=brand, score=score, best=None) for brand, score in found),
            )
            for pk, found in scores.items()
        ],
    )
    store.finish_scan(scan_id, status="done", listings_scanned=len(pks))
    return store, [(pk, brand) for pk, found in scores.items() for brand, _score in found]


@pytest.mark.parametrize("sort", QUEUE_SORTS)
def test_pages_of_one_visit_every_suspect_once_and_j_k_walk_the_same_order(db_url: str, sort: QueueSort) -> None:
    store, suspects = _store_with_tied_suspects(db_url)
    try:
        spec = QueueFilter(sort=sort)
        whole = [row.key for row in store.queue_page(spec, limit=100).rows]
        assert sorted(whole) == sorted(suspects)

        paged: list[SuspectKey] = []
        cursor: str | None = None
        while True:
            page = store.queue_page(spec, after=cursor, limit=1)
            paged.extend(row.key for row in page.rows)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert paged == whole

        for position, key in enumerate(whole):
            before, after = store.queue_neighbours(spec, key)
            assert before == (whole[position - 1] if position > 0 else None)
            assert after == (whole[position + 1] if position + 1 < len(whole) else None)
    finally:
        store.close()
