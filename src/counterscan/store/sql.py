"""Store: narrow methods over SQLAlchemy Core; SQLite by default, PostgreSQL for teams."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from counterscan.errors import ExternalError, NotFoundError, UnknownBrandError, UserError
from counterscan.imaging import ImageInfo
from counterscan.records import (
    Asset,
    AssetKind,
    AssetSignal,
    Brand,
    IngestedListing,
    Listing,
    ListingToScan,
    Member,
    QuarantineEntry,
    Rejected,
    ScanResult,
    Suspect,
    UpsertCounts,
    VerdictLabel,
)
from counterscan.store import schema as t
from counterscan.store.migrations import migrate

BATCH = 500
T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def listing_content_hash(listing: Listing) -> str:
    payload = json.dumps(asdict(listing), sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _name_key(name: str) -> str:
    return " ".join(name.split()).casefold()


class Store:
    """All persistent state. Open with :meth:`open`; close when done."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(url, future=True)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            migrate(engine)
        except sa.exc.OperationalError as exc:
            raise ExternalError(
                f"cannot open database {parsed.render_as_string(hide_password=True)}: {exc.orig}"
            ) from exc
        except sa.exc.ArgumentError as exc:
            raise UserError(f"bad database URL {url!r}: {exc}") from exc
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- members ---------------------------------------------------------------------------

    def add_member(self, name: str, *, role: str, key_hash: str) -> Member:
        with self.engine.begin() as conn:
            if conn.execute(sa.select(t.members.c.member_id).where(t.members.c.name == name)).first():
                raise UserError(f"member {name!r} already exists")
            member_id = _new_id(
                conn.execute(sa.insert(t.members).values(name=name, role=role, key_hash=key_hash, created_at=_now()))
            )
        return Member(member_id=member_id, name=name, role=role)

    def member(self, name: str) -> Member:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.members).where(t.members.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"unknown member {name!r} (add it with `counterscan members add`)")
        return Member(member_id=row.member_id, name=row.name, role=row.role)

    def members(self) -> list[Member]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.members).order_by(t.members.c.name)).all()
        return [Member(member_id=row.member_id, name=row.name, role=row.role) for row in rows]

    # -- brands ----------------------------------------------------------------------------

    def add_brand(
        self,
        name: str,
        *,
        member_id: int,
        keywords: Sequence[str] = (),
        msrp: float | None = None,
        currency: str | None = None,
        authorised_sellers: Sequence[str] = (),
    ) -> Brand:
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(t.brands.c.brand_id).where(t.brands.c.name_key == _name_key(name))).first()
            if exists:
                raise UserError(f"brand {name!r} already exists")
            now = _now()
            conn.execute(
                sa.insert(t.brands).values(
                    name=name,
                    name_key=_name_key(name),
                    member_id=member_id,
                    keywords=list(keywords),
                    msrp=msrp,
                    currency=currency,
                    authorised_sellers=list(authorised_sellers),
                    created_at=now,
                    updated_at=now,
                )
            )
        return self.brand(name)

    def _brand_query(self) -> sa.Select[Any]:
        return sa.select(t.brands, t.members.c.name.label("member_name")).join(
            t.members, t.members.c.member_id == t.brands.c.member_id
        )

    def brand(self, name: str) -> Brand:
        with self.engine.connect() as conn:
            row = conn.execute(self._brand_query().where(t.brands.c.name_key == _name_key(name))).first()
        if row is None:
            raise UnknownBrandError(name)
        return _brand(row)

    def brands(self) -> list[Brand]:
        with self.engine.connect() as conn:
            rows = conn.execute(self._brand_query().order_by(t.brands.c.name_key)).all()
        return [_brand(row) for row in rows]

    # -- assets ----------------------------------------------------------------------------

    def add_asset(
        self,
        *,
        brand_id: int,
        kind: AssetKind,
        info: ImageInfo,
        original_name: str,
        signals: dict[str, list[tuple[str, bytes]]],
    ) -> tuple[Asset, bool]:
        """Register an asset; identical content already on the brand is returned unchanged."""
        with self.engine.begin() as conn:
            existing = conn.execute(
                sa.select(t.assets.c.asset_id).where(t.assets.c.brand_id == brand_id, t.assets.c.sha256 == info.sha256)
            ).first()
            if existing is not None:
                return self._asset(conn, existing.asset_id), False
            asset_id = _new_id(
                conn.execute(
                    sa.insert(t.assets).values(
                        brand_id=brand_id,
                        kind=kind,
                        sha256=info.sha256,
                        original_name=original_name,
                        width=info.width,
                        height=info.height,
                        created_at=_now(),
                    )
                )
            )
            rows = [
                {"asset_id": asset_id, "matcher": matcher, "variant": variant, "signal": signal}
                for matcher, variants in signals.items()
                for variant, signal in variants
            ]
            if rows:
                conn.execute(sa.insert(t.asset_signals), rows)
            return self._asset(conn, asset_id), True

    def _asset(self, conn: sa.Connection, asset_id: int) -> Asset:
        row = conn.execute(self._asset_query().where(t.assets.c.asset_id == asset_id)).one()
        return _asset(row)

    def _asset_query(self) -> sa.Select[Any]:
        return sa.select(t.assets, t.brands.c.name.label("brand_name")).join(
            t.brands, t.brands.c.brand_id == t.assets.c.brand_id
        )

    def assets(self, brand: str | None = None) -> list[Asset]:
        query = self._asset_query().where(t.assets.c.removed_at.is_(None)).order_by(t.assets.c.asset_id)
        if brand is not None:
            query = query.where(t.brands.c.brand_id == self.brand(brand).brand_id)
        with self.engine.connect() as conn:
            return [_asset(row) for row in conn.execute(query)]

    def asset_signals(self, matcher: str) -> list[AssetSignal]:
        query = (
            sa.select(
                t.asset_signals.c.asset_id,
                t.asset_signals.c.variant,
                t.asset_signals.c.signal,
                t.brands.c.brand_id,
                t.brands.c.name,
            )
            .join(t.assets, t.assets.c.asset_id == t.asset_signals.c.asset_id)
            .join(t.brands, t.brands.c.brand_id == t.assets.c.brand_id)
            .where(t.asset_signals.c.matcher == matcher, t.assets.c.removed_at.is_(None))
            .order_by(t.asset_signals.c.asset_id, t.asset_signals.c.variant)
        )
        with self.engine.connect() as conn:
            return [
                AssetSignal(
                    asset_id=row.asset_id,
                    brand_id=row.brand_id,
                    brand=row.name,
                    signal=bytes(row.signal),
                    variant=row.variant,
                )
                for row in conn.execute(query)
            ]

    # -- ingestion -------------------------------------------------------------------------

    def upsert_listings(self, items: Sequence[IngestedListing]) -> UpsertCounts:
        """Insert new listings, version changed ones, skip identical ones; one transaction per batch."""
        new = updated = unchanged = 0
        for chunk in _chunks(items):
            with self.engine.begin() as conn:
                counts = self._upsert_chunk(conn, chunk)
            new, updated, unchanged = new + counts.new, updated + counts.updated, unchanged + counts.unchanged
        return UpsertCounts(new=new, updated=updated, unchanged=unchanged)

    def _upsert_chunk(self, conn: sa.Connection, chunk: Sequence[IngestedListing]) -> UpsertCounts:
        now = _now()
        by_source: dict[str, list[str]] = {}
        for item in chunk:
            by_source.setdefault(item.listing.source, []).append(item.listing.listing_id)
        existing: dict[tuple[str, str], Any] = {}
        for source, ids in by_source.items():
            rows = conn.execute(
                sa.select(
                    t.listings.c.listing_pk, t.listings.c.listing_id, t.listings.c.content_hash, t.listings.c.version
                ).where(t.listings.c.source == source, t.listings.c.listing_id.in_(ids))
            )
            existing.update({(source, row.listing_id): row for row in rows})

        inserts: list[tuple[IngestedListing, str]] = []
        updates: list[tuple[IngestedListing, str, Any]] = []
        unchanged = 0
        seen: set[tuple[str, str]] = set()
        for item in chunk:
            key = (item.listing.source, item.listing.listing_id)
            if key in seen:  # a later row of the same batch wins; the earlier was already counted
                continue
            seen.add(key)
            content_hash = listing_content_hash(item.listing)
            row = existing.get(key)
            if row is None:
                inserts.append((item, content_hash))
            elif row.content_hash != content_hash:
                updates.append((item, content_hash, row))
            else:
                unchanged += 1

        version_rows: list[dict[str, Any]] = []
        image_rows: list[dict[str, Any]] = []
        if inserts:
            result = conn.execute(
                sa.insert(t.listings).returning(t.listings.c.listing_pk, sort_by_parameter_order=True),
                [
                    _listing_row(item.listing, content_hash, 1, now) | {"ingested_at": now}
                    for item, content_hash in inserts
                ],
            )
            for (item, content_hash), pk in zip(inserts, result.scalars().all(), strict=True):
                version_rows.append(_version_row(pk, 1, item.listing, content_hash, now))
                image_rows.extend(_image_rows(pk, item))
        for item, content_hash, row in updates:
            version = row.version + 1
            conn.execute(
                sa.update(t.listings)
                .where(t.listings.c.listing_pk == row.listing_pk)
                .values(_listing_row(item.listing, content_hash, version, now) | {"scanned_at": None})
            )
            conn.execute(sa.delete(t.listing_images).where(t.listing_images.c.listing_pk == row.listing_pk))
            version_rows.append(_version_row(row.listing_pk, version, item.listing, content_hash, now))
            image_rows.extend(_image_rows(row.listing_pk, item))
        if version_rows:
            conn.execute(sa.insert(t.listing_versions), version_rows)
        if image_rows:
            conn.execute(sa.insert(t.listing_images), image_rows)
        return UpsertCounts(new=len(inserts), updated=len(updates), unchanged=unchanged)

    def listing_hashes(self, source: str, listing_ids: Sequence[str]) -> dict[str, str]:
        """Content hashes of the listings of ``source`` already stored, by listing id."""
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(listing_ids)):
                rows = conn.execute(
                    sa.select(t.listings.c.listing_id, t.listings.c.content_hash).where(
                        t.listings.c.source == source, t.listings.c.listing_id.in_(chunk)
                    )
                )
                found.update({row.listing_id: row.content_hash for row in rows})
        return found

    def quarantine(self, rejected: Iterable[Rejected]) -> int:
        now = _now()
        rows = [
            {
                "source": entry.source,
                "record": entry.record,
                "reason": entry.reason,
                "raw": json.loads(json.dumps(dict(entry.raw), default=str)),
                "created_at": now,
            }
            for entry in rejected
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(t.quarantine), rows)
        return len(rows)

    def quarantined(self, source: str | None = None) -> list[QuarantineEntry]:
        query = sa.select(t.quarantine).where(t.quarantine.c.resolved_at.is_(None)).order_by(t.quarantine.c.entry_id)
        if source is not None:
            query = query.where(t.quarantine.c.source == source)
        with self.engine.connect() as conn:
            return [
                QuarantineEntry(
                    entry_id=row.entry_id,
                    source=row.source,
                    record=row.record,
                    reason=row.reason,
                    created_at=row.created_at.isoformat() if row.created_at else "",
                )
                for row in conn.execute(query)
            ]

    def record_source(self, name: str, location: str) -> None:
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(t.sources.c.name).where(t.sources.c.name == name)).first()
            if found is None:
                conn.execute(sa.insert(t.sources).values(name=name, location=location, updated_at=_now()))
            else:
                conn.execute(
                    sa.update(t.sources).where(t.sources.c.name == name).values(location=location, updated_at=_now())
                )

    def listing_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.listings)).scalar_one())

    # -- scanning --------------------------------------------------------------------------

    def start_scan(self) -> int:
        with self.engine.begin() as conn:
            return _new_id(
                conn.execute(sa.insert(t.scans).values(started_at=_now(), status="running", listings_scanned=0))
            )

    def finish_scan(self, scan_id: int, *, status: str, listings_scanned: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t.scans)
                .where(t.scans.c.scan_id == scan_id)
                .values(finished_at=_now(), status=status, listings_scanned=listings_scanned)
            )

    def listings_to_scan(self, *, rescan_all: bool = False) -> list[ListingToScan]:
        query = sa.select(t.listings).order_by(t.listings.c.listing_pk)
        if not rescan_all:
            query = query.where(t.listings.c.scanned_at.is_(None))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            images: dict[int, list[str]] = {}
            for chunk in _chunks([row.listing_pk for row in rows]):
                for image in conn.execute(
                    sa.select(t.listing_images.c.listing_pk, t.listing_images.c.sha256)
                    .where(t.listing_images.c.listing_pk.in_(chunk), t.listing_images.c.sha256.is_not(None))
                    .order_by(t.listing_images.c.listing_pk, t.listing_images.c.position)
                ):
                    images.setdefault(image.listing_pk, []).append(image.sha256)
        return [
            ListingToScan(
                listing_pk=row.listing_pk, listing=_listing(row), image_sha256s=tuple(images.get(row.listing_pk, ()))
            )
            for row in rows
        ]

    def cached_signals(self, matcher: str, sha256s: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(list(sha256s)):
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
            for chunk in _chunks(list(signals)):
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
        for chunk in _chunks(results):
            now = _now()
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
                            scored_at=now,
                        )
                    )
                conn.execute(sa.update(t.listings).where(t.listings.c.listing_pk.in_(pks)).values(scanned_at=now))

    # -- review ----------------------------------------------------------------------------

    def suspects(
        self, *, limit: int | None = None, min_score: float = 0.0, include_clean: bool = False
    ) -> list[Suspect]:
        latest = (
            sa.select(t.verdicts.c.listing_pk, sa.func.max(t.verdicts.c.verdict_id).label("verdict_id"))
            .group_by(t.verdicts.c.listing_pk)
            .subquery()
        )
        query = (
            sa.select(
                t.listings.c.listing_pk,
                t.listings.c.source,
                t.listings.c.listing_id,
                t.listings.c.title,
                t.listings.c.price,
                t.listings.c.currency,
                t.listings.c.url,
                t.scores.c.score,
                t.brands.c.name.label("brand"),
                t.evidence.c.asset_id,
                t.evidence.c.matcher,
                t.evidence.c.reason,
                t.verdicts.c.verdict,
            )
            .join(t.listings, t.listings.c.listing_pk == t.scores.c.listing_pk)
            .outerjoin(t.brands, t.brands.c.brand_id == t.scores.c.brand_id)
            .outerjoin(t.evidence, t.evidence.c.evidence_id == t.scores.c.best_evidence_id)
            .outerjoin(latest, latest.c.listing_pk == t.listings.c.listing_pk)
            .outerjoin(t.verdicts, t.verdicts.c.verdict_id == latest.c.verdict_id)
            .order_by(t.scores.c.score.desc(), t.listings.c.source, t.listings.c.listing_id)
        )
        query = (
            query.where(t.scores.c.score >= min_score)
            if include_clean
            else query.where(t.scores.c.score > 0, t.scores.c.score >= min_score)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Suspect(
                rank=rank,
                listing_pk=row.listing_pk,
                source=row.source,
                listing_id=row.listing_id,
                score=round(float(row.score), 4),
                brand=row.brand,
                asset_id=row.asset_id,
                matcher=row.matcher,
                reason=row.reason,
                title=row.title,
                price=row.price,
                currency=row.currency,
                url=row.url,
                status=row.verdict or "new",
            )
            for rank, row in enumerate(rows, start=1)
        ]

    def find_listing(self, reference: str) -> int:
        """Resolve ``LISTING_ID`` or ``SOURCE/LISTING_ID`` to the listing's key."""
        query = sa.select(t.listings.c.listing_pk, t.listings.c.source)
        with self.engine.connect() as conn:
            rows = conn.execute(query.where(t.listings.c.listing_id == reference)).all()
            if not rows and "/" in reference:
                source, _, listing_id = reference.partition("/")
                rows = conn.execute(
                    query.where(t.listings.c.source == source, t.listings.c.listing_id == listing_id)
                ).all()
        if not rows:
            raise NotFoundError(f"unknown listing {reference!r}")
        if len(rows) > 1:
            choices = ", ".join(f"{row.source}/{reference}" for row in rows)
            raise UserError(f"listing id {reference!r} exists in several sources; name one of: {choices}")
        return int(rows[0].listing_pk)

    def record_verdict(self, listing_pk: int, *, verdict: VerdictLabel, note: str | None, analyst: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(t.verdicts).values(
                    listing_pk=listing_pk, verdict=verdict, note=note, analyst=analyst, decided_at=_now()
                )
            )

    def verdicts(self, listing_pk: int) -> list[tuple[str, str | None, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.verdicts.c.verdict, t.verdicts.c.note, t.verdicts.c.analyst)
                .where(t.verdicts.c.listing_pk == listing_pk)
                .order_by(t.verdicts.c.verdict_id)
            ).all()
        return [(row.verdict, row.note, row.analyst) for row in rows]


def _new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None, "INSERT returned no primary key"
    return int(key[0])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _listing_row(listing: Listing, content_hash: str, version: int, now: datetime) -> dict[str, Any]:
    return {
        "source": listing.source,
        "listing_id": listing.listing_id,
        "title": listing.title,
        "description": listing.description,
        "price": listing.price,
        "currency": listing.currency,
        "seller_id": listing.seller_id,
        "seller_name": listing.seller_name,
        "url": listing.url,
        "marketplace": listing.marketplace,
        "observed_at": listing.observed_at,
        "attributes": dict(listing.attributes),
        "content_hash": content_hash,
        "version": version,
        "updated_at": now,
    }


def _version_row(pk: int, version: int, listing: Listing, content_hash: str, now: datetime) -> dict[str, Any]:
    return {
        "listing_pk": pk,
        "version": version,
        "title": listing.title,
        "price": listing.price,
        "currency": listing.currency,
        "observed_at": listing.observed_at,
        "content_hash": content_hash,
        "recorded_at": now,
    }


def _image_rows(pk: int, item: IngestedListing) -> list[dict[str, Any]]:
    return [
        {"listing_pk": pk, "position": position, "ref": image.ref, "sha256": image.sha256, "error": image.error}
        for position, image in enumerate(item.images)
    ]


def _listing(row: Any) -> Listing:
    return Listing(
        source=row.source,
        listing_id=row.listing_id,
        title=row.title,
        description=row.description,
        price=row.price,
        currency=row.currency,
        seller_id=row.seller_id,
        seller_name=row.seller_name,
        url=row.url,
        marketplace=row.marketplace,
        observed_at=row.observed_at,
        attributes=row.attributes or {},
    )


def _brand(row: Any) -> Brand:
    return Brand(
        brand_id=row.brand_id,
        name=row.name,
        member=row.member_name,
        keywords=tuple(row.keywords or ()),
        msrp=row.msrp,
        currency=row.currency,
        authorised_sellers=tuple(row.authorised_sellers or ()),
    )


def _asset(row: Any) -> Asset:
    return Asset(
        asset_id=row.asset_id,
        brand=row.brand_name,
        kind=row.kind,
        sha256=row.sha256,
        original_name=row.original_name,
        width=row.width,
        height=row.height,
    )
