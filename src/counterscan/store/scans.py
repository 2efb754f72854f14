"""Scan bookkeeping, the per-image signal cache, and evidence and scores."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from counterscan.errors import LockHeldError
from counterscan.records import Evidence, Listing, ListingToScan, ScanResult
from counterscan.store import schema as t
from counterscan.store import webhooks
from counterscan.store.base import BATCH, StoreBase, bulk_insert, chunks, iso, new_id, now, rows_in
from counterscan.store.listings import listing_from_row

IMAGE_TEXT_MATCHER = "ocr"
"""The image matcher whose signal is text read in the image: kept in ``image_text``, readable."""


class ScanStore(StoreBase):
    # -- scanning --------------------------------------------------------------------------

    def start_scan(self, *, scope: str = "all", plan: Mapping[str, object] | None = None, holder: str = "") -> int:
        with self.engine.begin() as conn:
            return new_id(
                conn.execute(
                    sa.insert(t.scans).values(
                        started_at=now(),
                        status="running",
                        listings_scanned=0,
                        scope=scope,
                        plan=dict(plan or {}),
                        cursor=0,
                        holder=holder,
                    )
                )
            )

    def finish_scan(self, scan_id: int, *, status: str, listings_scanned: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.scans)
                .where(t.scans.c.scan_id == scan_id)
                .values(finished_at=now(), status=status, listings_scanned=listings_scanned)
            )

    def unfinished_scan(self, scope: str, plan: Mapping[str, object]) -> tuple[int, int] | None:
        """(scan id, cursor) of the newest unfinished scan of ``scope`` that had the same plan."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.scans.c.scan_id, t.scans.c.cursor, t.scans.c.plan, t.scans.c.status)
                .where(t.scans.c.scope == scope)
                .order_by(t.scans.c.scan_id.desc())
                .limit(1)
            ).first()
        if row is None or row.status == "done" or dict(row.plan or {}) != dict(plan):
            return None
        return int(row.scan_id), int(row.cursor)

    def resume_scan(self, scan_id: int, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.scans).where(t.scans.c.scan_id == scan_id).values(status="running", holder=holder))

    def next_listings(
        self, *, after: int, limit: int, unscanned: bool, source: str | None = None
    ) -> list[ListingToScan]:
        """The next ``limit`` listings with a key above ``after``, in key order, with their images."""
        query = sa.select(t.listings).where(t.listings.c.listing_pk > after).order_by(t.listings.c.listing_pk)
        query = query.where(t.listings.c.scanned_at.is_(None) if unscanned else t.listings.c.scanned_at.is_not(None))
        if source is not None:
            query = query.where(t.listings.c.source == source)
        with self.engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).all()
            images: dict[int, list[str]] = {}
            if rows:
                for image in conn.execute(
                    sa.select(t.listing_images.c.listing_pk, t.listing_images.c.sha256)
                    .where(
                        t.listing_images.c.listing_pk.in_([row.listing_pk for row in rows]),
                        t.listing_images.c.sha256.is_not(None),
                    )
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

    def listings_to_scan(self, *, rescan_all: bool = False) -> list[ListingToScan]:
        """Every listing still to scan (or all of them); for small stores and tests."""
        found: list[ListingToScan] = []
        for unscanned in (True, False) if rescan_all else (True,):
            after = 0
            while batch := self.next_listings(after=after, limit=BATCH, unscanned=unscanned):
                found.extend(batch)
                after = batch[-1].listing_pk
        return sorted(found, key=lambda item: item.listing_pk)

    def listings_by_pk(self, pks: Sequence[int]) -> dict[int, Listing]:
        with self.engine.connect() as conn:
            rows = rows_in(conn, sa.select(t.listings), t.listings.c.listing_pk, pks)
            return {row.listing_pk: listing_from_row(row) for row in rows}

    def count_listings(self, *, unscanned: bool, source: str | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(t.listings)
        query = query.where(t.listings.c.scanned_at.is_(None) if unscanned else t.listings.c.scanned_at.is_not(None))
        if source is not None:
            query = query.where(t.listings.c.source == source)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def brand_fingerprints(self) -> dict[int, str]:
        """A digest per brand of everything a scan matches against: live assets and profile."""
        with self.engine.connect() as conn:
            brands = conn.execute(sa.select(t.brands.c.brand_id, t.brands.c.updated_at)).all()
            assets: dict[int, list[int]] = {}
            for row in conn.execute(
                sa.select(t.assets.c.brand_id, t.assets.c.asset_id)
                .where(t.assets.c.removed_at.is_(None))
                .order_by(t.assets.c.asset_id)
            ):
                assets.setdefault(row.brand_id, []).append(row.asset_id)
            products: dict[int, list[str]] = {}
            for row in conn.execute(sa.select(t.brand_products).order_by(t.brand_products.c.name_key)):
                products.setdefault(row.brand_id, []).append(f"{row.name_key}={row.msrp}{row.currency}")
        return {
            row.brand_id: hashlib.sha256(
                json.dumps([str(row.updated_at), assets.get(row.brand_id, []), products.get(row.brand_id, [])]).encode()
            ).hexdigest()
            for row in brands
        }

    def scanned_fingerprints(self, source: str | None) -> dict[int, str]:
        """Brand fingerprints the listings in scope were last scanned against.

        A source's own record wins; where it has none, the last scan of every source speaks for it.
        """
        scopes = ["*", source or "*"]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.brand_scan_state).where(t.brand_scan_state.c.scope.in_(scopes))).all()
        found: dict[int, str] = {}
        for row in sorted(rows, key=lambda row: row.scope != "*"):
            found[row.brand_id] = row.fingerprint
        return found

    def save_fingerprints(self, scan_id: int, fingerprints: Mapping[int, str], source: str | None) -> None:
        scope = source or "*"
        brands = list(fingerprints)
        with self.engine.begin() as conn:
            if source is None:
                # Every source's listings were scanned against these brands: their records agree now.
                conn.execute(sa.delete(t.brand_scan_state).where(t.brand_scan_state.c.brand_id.in_(brands)))
            else:
                conn.execute(
                    sa.delete(t.brand_scan_state).where(
                        t.brand_scan_state.c.scope == scope, t.brand_scan_state.c.brand_id.in_(brands)
                    )
                )
            bulk_insert(
                conn,
                t.brand_scan_state,
                [
                    {"scope": scope, "brand_id": brand_id, "fingerprint": fp, "scan_id": scan_id}
                    for brand_id, fp in fingerprints.items()
                ],
            )

    def evidence_of(self, listing_pks: Sequence[int], *, except_brands: Collection[int]) -> dict[int, list[Evidence]]:
        """Stored evidence of these listings for brands other than ``except_brands``."""
        query = (
            sa.select(t.evidence, t.brands.c.name.label("brand_name"))
            .join(t.brands, t.brands.c.brand_id == t.evidence.c.brand_id)
            .where(t.evidence.c.listing_pk.in_(list(listing_pks)))
            .order_by(t.evidence.c.evidence_id)
        )
        if except_brands:
            query = query.where(t.evidence.c.brand_id.not_in(list(except_brands)))
        found: dict[int, list[Evidence]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault(row.listing_pk, []).append(
                    Evidence(
                        matcher=row.matcher,
                        brand_id=row.brand_id,
                        brand=row.brand_name,
                        score=row.score,
                        reason=row.reason,
                        asset_id=row.asset_id,
                        image_sha256=row.image_sha256,
                        distance=row.distance,
                        details=row.details or {},
                    )
                )
        return found

    def live_asset_kinds(self) -> set[str]:
        """The kinds of asset that brands have registered and not removed."""
        query = sa.select(t.assets.c.kind).where(t.assets.c.removed_at.is_(None)).distinct()
        with self.engine.connect() as conn:
            return {str(kind) for kind in conn.execute(query).scalars()}

    def scan_state(self, source: str | None) -> dict[str, Any]:
        """What the listings in scope were last scanned with (see ``schema.scan_state``); a source's
        own record wins, where it has none the last scan of every source speaks for it."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.scan_state).where(t.scan_state.c.scope.in_(["*", source or "*"]))).all()
        return {row.name: row.value for row in sorted(rows, key=lambda row: row.scope != "*")}

    def save_scan_state(self, scan_id: int, values: Mapping[str, object], source: str | None) -> None:
        """Record ``values``; None removes a name. A scan of every source speaks for all sources."""
        names = list(values)
        with self.engine.begin() as conn:
            stale: sa.ColumnElement[bool] = t.scan_state.c.name.in_(names)
            if source is not None:
                stale = stale & (t.scan_state.c.scope == source)
            conn.execute(sa.delete(t.scan_state).where(stale))
            bulk_insert(
                conn,
                t.scan_state,
                [
                    {"scope": source or "*", "name": name, "value": value, "scan_id": scan_id}
                    for name, value in values.items()
                    if value is not None
                ],
            )

    def listings_scored_otherwise(self, scorer: str, *, after: int, limit: int, source: str | None = None) -> list[int]:
        """Keys above ``after`` of scanned listings with evidence whose score another scorer gave."""
        query = (
            sa.select(t.scores.c.listing_pk)
            .join(t.listings, t.listings.c.listing_pk == t.scores.c.listing_pk)
            .where(
                t.scores.c.listing_pk > after,
                t.scores.c.scorer != scorer,
                t.listings.c.scanned_at.is_not(None),
                sa.exists().where(t.evidence.c.listing_pk == t.scores.c.listing_pk),
            )
            .distinct()
            .order_by(t.scores.c.listing_pk)
            .limit(limit)
        )
        if source is not None:
            query = query.where(t.listings.c.source == source)
        with self.engine.connect() as conn:
            return [int(pk) for pk in conn.execute(query).scalars()]

    def listings_with_evidence(
        self, *, after: int, limit: int, matchers: Collection[str] | None = None, source: str | None = None
    ) -> list[int]:
        """Keys above ``after`` of scanned listings holding evidence (from one of ``matchers``), in order."""
        query = (
            sa.select(t.evidence.c.listing_pk)
            .join(t.listings, t.listings.c.listing_pk == t.evidence.c.listing_pk)
            .where(t.evidence.c.listing_pk > after, t.listings.c.scanned_at.is_not(None))
            .distinct()
            .order_by(t.evidence.c.listing_pk)
            .limit(limit)
        )
        if matchers is not None:
            query = query.where(t.evidence.c.matcher.in_(list(matchers)))
        if source is not None:
            query = query.where(t.listings.c.source == source)
        with self.engine.connect() as conn:
            return [int(pk) for pk in conn.execute(query).scalars()]

    # -- the scan lock ---------------------------------------------------------------------

    def acquire_lock(
        self,
        name: str,
        holder: str,
        *,
        conflicts: Sequence[str],
        stale_after: timedelta,
        dead: Callable[[str], bool] | None = None,
        what: str = "scan",
    ) -> None:
        """Take lock ``name`` unless it, or a lock whose name starts with one of ``conflicts``, is held.

        A lock whose holder has not sent a heartbeat within ``stale_after``, or whose holder
        ``dead`` says is gone (a process on this host that no longer runs), is taken over.
        """
        moment = now()
        with self.engine.begin() as conn:
            # Every lock change first updates the one guard row: concurrent acquirers take turns.
            conn.execute(sa.update(t.lock_guard).where(t.lock_guard.c.guard_id == 1).values(touched_at=moment))
            conn.execute(sa.delete(t.locks).where(t.locks.c.heartbeat_at < moment - stale_after))
            held = conn.execute(sa.select(t.locks).order_by(t.locks.c.acquired_at)).all()
            for row in held:
                if row.name == name or any(row.name.startswith(prefix) for prefix in conflicts):
                    if dead is not None and dead(row.holder):
                        conn.execute(sa.delete(t.locks).where(t.locks.c.name == row.name))
                        continue
                    raise LockHeldError(
                        f"another {what} holds the lock {row.name!r} (holder {row.holder}, since "
                        f"{iso(row.acquired_at)}); it is taken over once silent for {stale_after}"
                    )
            conn.execute(sa.insert(t.locks).values(name=name, holder=holder, acquired_at=moment, heartbeat_at=moment))

    def heartbeat(self, name: str, holder: str) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(t.locks).where(t.locks.c.name == name, t.locks.c.holder == holder).values(heartbeat_at=now())
            ).rowcount
        if not updated:
            raise LockHeldError(f"lost the lock {name!r} (taken over as stale); stopping")

    def release_lock(self, name: str, holder: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(t.locks).where(t.locks.c.name == name, t.locks.c.holder == holder))

    def cached_signals(self, matcher: str, sha256s: Sequence[str]) -> dict[str, bytes]:
        if matcher == IMAGE_TEXT_MATCHER:
            return self._cached_text(sha256s)
        query = sa.select(t.image_signals.c.sha256, t.image_signals.c.signal).where(
            t.image_signals.c.matcher == matcher
        )
        with self.engine.connect() as conn:
            return {row.sha256: bytes(row.signal) for row in rows_in(conn, query, t.image_signals.c.sha256, sha256s)}

    def save_signals(self, matcher: str, signals: dict[str, bytes]) -> None:
        if not signals:
            return
        if matcher == IMAGE_TEXT_MATCHER:
            self._save_text(signals)
            return
        with self.engine.begin() as conn:
            query = sa.select(t.image_signals.c.sha256).where(t.image_signals.c.matcher == matcher)
            known = {row.sha256 for row in rows_in(conn, query, t.image_signals.c.sha256, signals)}

            rows = [
                {"sha256": sha256, "matcher": matcher, "signal": signal}
                for sha256, signal in signals.items()
                if sha256 not in known
            ]
            if rows:
                conn.execute(sa.insert(t.image_signals), rows)

    def _cached_text(self, sha256s: Sequence[str]) -> dict[str, bytes]:
        table = t.image_text
        query = sa.select(table.c.sha256, table.c.reader, table.c.lines, table.c.width, table.c.height)
        with self.engine.connect() as conn:
            return {
                row.sha256: json.dumps(
                    {"reader": row.reader, "size": [row.width, row.height], "lines": row.lines},
                    ensure_ascii=False,
                    separators=(",", ":"),
                ).encode()
                for row in rows_in(conn, query, table.c.sha256, sha256s)
            }

    def _save_text(self, signals: dict[str, bytes]) -> None:
        with self.engine.begin() as conn:
            query = sa.select(t.image_text.c.sha256)
            known = {row.sha256 for row in rows_in(conn, query, t.image_text.c.sha256, signals)}
            rows = []
            for sha256, signal in signals.items():
                if sha256 in known:
                    continue
                read = json.loads(signal)
                rows.append(
                    {
                        "sha256": sha256,
                        "reader": read["reader"],
                        "text": "\n".join(str(line["text"]) for line in read["lines"]),
                        "lines": read["lines"],
                        "width": int(read["size"][0]),
                        "height": int(read["size"][1]),
                        "read_at": now(),
                    }
                )
            if rows:
                conn.execute(sa.insert(t.image_text), rows)

    def image_text(self, sha256: str) -> str | None:
        """The text read in an image, one line per line of text (None when it was never read)."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(t.image_text.c.text).where(t.image_text.c.sha256 == sha256)).scalar()
        return None if value is None else str(value)

    def write_results(
        self,
        scan_id: int,
        results: Sequence[ScanResult],
        *,
        scorer: str = "cold-start",
        cursor: int | None = None,
        mark_scanned: bool = True,
    ) -> None:
        """Replace each listing's evidence and its score per brand in one transaction (and the scan's cursor)."""
        moment = now()
        with self.engine.begin() as conn:
            for chunk in chunks(list(results)):
                pks = [result.listing_pk for result in chunk]
                before = webhooks.suspect_state(conn, pks)
                conn.execute(sa.delete(t.scores).where(t.scores.c.listing_pk.in_(pks)))
                conn.execute(sa.delete(t.evidence).where(t.evidence.c.listing_pk.in_(pks)))
                bulk_insert(
                    conn,
                    t.evidence,
                    [
                        {
                            "listing_pk": result.listing_pk,
                            "position": position,
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
                        for result in chunk
                        for position, item in enumerate(result.evidence)
                    ],
                )
                bulk_insert(
                    conn,
                    t.scores,
                    [
                        {
                            "listing_pk": result.listing_pk,
                            "brand_id": found.brand_id,
                            "score": found.score,
                            "best_position": found.best,
                            "scorer": scorer,
                            "scan_id": scan_id,
                            "scored_at": moment,
                        }
                        for result in chunk
                        for found in result.per_brand()
                    ],
                )
                # New suspects go to the webhook outbox in this same transaction: never lost, never early.
                webhooks.enqueue_new_suspects(
                    conn,
                    before,
                    [(r.listing_pk, found.brand_id, found.score) for r in chunk for found in r.per_brand()],
                    scan_id=scan_id,
                )
                if mark_scanned:
                    conn.execute(
                        sa.update(t.listings).where(t.listings.c.listing_pk.in_(pks)).values(scanned_at=moment)
                    )
            if cursor is not None:
                conn.execute(sa.update(t.scans).where(t.scans.c.scan_id == scan_id).values(cursor=cursor))
