"""Scan bookkeeping, the per-image signal cache, and evidence and scores."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from counterscan.records import ListingToScan, ScanResult
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, chunks, new_id, now
from counterscan.store.listings import listing_from_row


class ScanStore(StoreBase):
    # -- scanning --------------------------------------------------------------------------

    def start_scan(self) -> int:
        with self.engine.begin() as conn:
            return new_id(
                conn.execute(sa.insert(t.scans).values(started_at=now(), status="running", listings_scanned=0))
            )

    def finish_scan(self, scan_id: int, *, status: str, listings_scanned: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.scans)
                .where(t.scans.c.scan_id == scan_id)
                .values(finished_at=now(), status=status, listings_scanned=listings_scanned)
            )

    def listings_to_scan(self, *, rescan_all: bool = False) -> list[ListingToScan]:
        query = sa.select(t.listings).order_by(t.listings.c.listing_pk)
        if not rescan_all:
            query = query.where(t.listings.c.scanned_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            images: dict[int, list[str]] = {}
            for chunk in chunks([row.listing_pk for row in rows]):
                for image in conn.execute(
                    sa.select(t.listing_images.c.listing_pk, t.listing_images.c.sha256)
                    .where(t.listing_images.c.listing_pk.in_(chunk), t.listing_images.c.sha256.is_not(None))
                    .order_by(t.listing_images.c.listing_pk, t.listing_images.c.position)
                ):
                    images.setdefault(image.listing_pk, []).append(image.sha256)
        return [
            ListingToScan(
                listing_pk=row.listing_pk,
                listing=listing_from_row(row),
                image_sha256s=tuple(images.get(row.listing_pk, ())),
            )
            for row in rows
        ]

    def cached_signals(self, matcher: str, sha256s: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self.engine.connect() as conn:
            for chunk in chunks(list(sha256s)):
                for row in conn.execute(
                    sa.select(t.image_signals.c.sha256, t.image_signals.c.signal).where(
                        t.image_signals.c.matcher == matcher, t.image_signals.c.sha256.in_(chunk)
                    )
                ):
                    found[row.sha256] = bytes(row.signal)
        return found

    def save_signals(self, matcher: str, signals: dict[str, bytes]) -> None:
        if not signals:
            return
        with self.engine.begin() as conn:
            known: set[str] = set()
            for chunk in chunks(list(signals)):
                known.update(
                    conn.execute(
                        sa.select(t.image_signals.c.sha256).where(
                            t.image_signals.c.matcher == matcher, t.image_signals.c.sha256.in_(chunk)
                        )
                    ).scalars()
                )
            rows = [
                {"sha256": sha256, "matcher": matcher, "signal": signal}
                for sha256, signal in signals.items()
                if sha256 not in known
            ]
            if rows:
                conn.execute(sa.insert(t.image_signals), rows)

    def write_results(self, scan_id: int, results: Sequence[ScanResult]) -> None:
        """Replace each listing's evidence and score, and mark it scanned; one transaction per batch."""
        for chunk in chunks(results):
            moment = now()
            with self.engine.begin() as conn:
                pks = [result.listing_pk for result in chunk]
                conn.execute(sa.delete(t.scores).where(t.scores.c.listing_pk.in_(pks)))
                conn.execute(sa.delete(t.evidence).where(t.evidence.c.listing_pk.in_(pks)))
                for result in chunk:
                    best_id = None
                    if result.evidence:
                        ids = (
                            conn.execute(
                                sa.insert(t.evidence).returning(t.evidence.c.evidence_id, sort_by_parameter_order=True),
                                [
                                    {
                                        "listing_pk": result.listing_pk,
                                        "scan_id": scan_id,
                                        "matcher": item.matcher,
                                        "brand_id": item.brand_id,
                                        "asset_id": item.asset_id,
                                        "image_sha256": item.image_sha256,
                                        "distance": item.distance,
                                        "score": item.score,
                                        "reason": item.reason,
                                        "details": dict(item.details),
                                    }
                                    for item in result.evidence
                                ],
                            )
                            .scalars()
                            .all()
                        )
                        if result.best is not None:
                            best_id = ids[result.best]
                    conn.execute(
                        sa.insert(t.scores).values(
                            listing_pk=result.listing_pk,
                            score=result.score,
                            brand_id=result.brand_id,
                            best_evidence_id=best_id,
                            scorer="cold-start",
                            scan_id=scan_id,
                            scored_at=moment,
                        )
                    )
                conn.execute(sa.update(t.listings).where(t.listings.c.listing_pk.in_(pks)).values(scanned_at=moment))
