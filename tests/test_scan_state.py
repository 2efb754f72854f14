"""Issue 13: the matchers follow what brands registered; a change of matchers or of the active model
re-scans or re-scores exactly the listings it affects, on a real store."""

from __future__ import annotations

import csv
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.ranking.features import FEATURES, feature_row
from counterscan.ranking.ranker import Ranker
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.scan.batch import ScanStatus, run_scan
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from tests.conftest import png_bytes
from tests.test_keypoints import logo
from tests.test_scan import build_world

pytestmark = pytest.mark.slow


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> tuple[Settings, dict[str, str]]:
    settings = Settings.load(home=tmp_path / "home", db_url=db_url, environ={})
    expected = build_world(settings, tmp_path, listings=30)
    # Three listings without photos: no image matcher looks at them.
    feed = tmp_path / "words.csv"
    with feed.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["listing_id", "title"])
        writer.writeheader()
        writer.writerows({"listing_id": f"w{n}", "title": f"Alpha bag number {n}"} for n in range(3))
    store = Store.open(settings.database_url)
    try:
        ingest(store, BlobStore(settings.blob_dir), decode_limits(settings), open_source(str(feed), name="words"))
    finally:
        store.close()
    return settings, expected


def _evidence_by_matcher(store: Store, matcher: str) -> set[int]:
    with store.engine.connect() as conn:
        query = sa.select(t.evidence.c.listing_pk).where(t.evidence.c.matcher == matcher).distinct()
        return set(conn.execute(query).scalars())


def _scores(store: Store) -> dict[tuple[int, int], tuple[float, str]]:
    """Per (listing, brand), the score and the scorer that gave it."""
    with store.engine.connect() as conn:
        return {(row.listing_pk, row.brand_id): (row.score, row.scorer) for row in conn.execute(sa.select(t.scores))}


def test_matcher_changes_rescan_exactly_the_listings_they_affect(world: tuple[Settings, dict[str, str]]) -> None:
    settings, _expected = world
    store = Store.open(settings.database_url)
    try:
        first = run_scan(store, settings)
        assert (first.status, first.scanned, first.matchers) == (
            ScanStatus.DONE,
            33,
            ("phash", "dhash", "copies", "ocr"),
        )
        assert first.rescanned_for_matchers == 0 and "image matchers: phash, dhash, copies, ocr" in first.line()

        # A setting of one matcher: the 30 listings with photos go through again, the 3 without do not.
        tighter = replace(settings, phash_max_distance=4)
        second = run_scan(store, tighter)
        assert (second.scanned, second.rescanned, second.rescanned_for_matchers) == (0, 0, 30)
        assert second.matcher_change.changed == ("phash",)
        assert (
            "30 listings re-scanned for changed image matchers (phash settings changed), 0 new or changed"
            in second.line()
        )
        assert run_scan(store, tighter).status is ScanStatus.NOTHING_TO_DO

        # Matchers dropped by the explicit override: only the listings holding their evidence.
        holding = (
            _evidence_by_matcher(store, "dhash")
            | _evidence_by_matcher(store, "copies")
            | _evidence_by_matcher(store, "ocr")
        )
        assert holding and len(holding) < 30
        only_phash = replace(tighter, image_matchers="phash")
        third = run_scan(store, only_phash)
        assert third.matcher_change.removed == ("dhash", "copies", "ocr") and third.rescanned_for_matchers == len(
            holding
        )
        assert _evidence_by_matcher(store, "dhash") == _evidence_by_matcher(store, "copies") == set()
        assert _evidence_by_matcher(store, "ocr") == set()
        assert run_scan(store, only_phash).status is ScanStatus.NOTHING_TO_DO

        # A logo registered: with no configuration the logo matcher joins, the photos are matched
        # again, and the brand's change re-scans the listings without photos for that brand.
        owner = store.member("owner")
        logo_file = settings.home / "alpha-logo.png"
        logo_file.write_bytes(png_bytes(logo("adidas")))
        add_asset_files(
            store, BlobStore(settings.blob_dir), upload_limits(settings), image_matchers(settings), owner,
            brand="Alpha", kind="logo", paths=[logo_file],
        )  # fmt: skip
        fourth = run_scan(store, tighter)
        assert "keypoints" in fourth.matchers and "keypoints" in fourth.matcher_change.added
        assert (fourth.rescanned_for_matchers, fourth.rescanned, fourth.scanned) == (30, 3, 0)
        assert "keypoints" in fourth.line()
        assert run_scan(store, tighter).status is ScanStatus.NOTHING_TO_DO
    finally:
        store.close()


def test_a_new_active_model_rescores_stored_evidence_and_a_rollback_restores(
    world: tuple[Settings, dict[str, str]],
) -> None:
    settings, expected = world
    store = Store.open(settings.database_url)
    try:
        run_scan(store, settings)
        cold = _scores(store)
        with_evidence = {pk for pk, _brand in cold}
        assert len(with_evidence) >= 10
        # A real ranker, fitted on the listings' own features and expected labels.
        everything = [item.listing_pk for item in store.listings_to_scan(rescan_all=True)]
        listings = store.listings_by_pk(everything)
        evidence = store.evidence_of(everything, except_brands=())
        rows = np.stack([feature_row(listing, evidence.get(pk, [])) for pk, listing in listings.items()])
        labels = [1 if expected.get(listing.listing_id) else 0 for listing in listings.values()]
        model_id = store.save_model(
            pickle.dumps(Ranker().fit(rows, labels)), features=FEATURES, metrics={}, actor="test"
        )

        rescored = run_scan(store, settings)
        assert (rescored.scanned, rescored.rescanned, rescored.rescanned_for_matchers) == (0, 0, 0)
        assert rescored.rescored == len(with_evidence) and f"with the model:{model_id} scorer" in rescored.line()
        after = _scores(store)
        assert {pk for (pk, _b), (_s, scorer) in after.items() if scorer == f"model:{model_id}"} == with_evidence
        assert after.keys() == cold.keys() and any(after[key][0] != cold[key][0] for key in cold)
        assert run_scan(store, settings).status is ScanStatus.NOTHING_TO_DO

        with store.engine.begin() as conn:  # rolled back: no model is active
            conn.execute(sa.update(t.models).values(active=False))
        back = run_scan(store, settings)
        assert back.rescored == len(with_evidence) and back.scorer == "cold-start"
        assert _scores(store) == cold
    finally:
        store.close()
