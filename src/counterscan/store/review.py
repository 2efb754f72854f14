"""The review queue and verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from counterscan.errors import NotFoundError, UserError
from counterscan.records import Confirmed, Listing, Suspect, VerdictLabel
from counterscan.store import cases, webhooks
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, iso, new_id, now, rows_in
from counterscan.store.listings import listing_from_row
from counterscan.store.queue import QueueFilter, queue_query, ranked


class ReviewStore(StoreBase):
    # -- review ----------------------------------------------------------------------------

    def suspects(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        min_score: float = 0.0,
        include_clean: bool = False,
        brand_ids: Sequence[int] | None = None,
        brand: str | None = None,
        status: str | Sequence[str] | None = None,
        marketplace: str | None = None,
        seller_id: str | None = None,
        since: datetime | None = None,
        listing_pks: Sequence[int] | None = None,
    ) -> list[Suspect]:
        """Suspects, one per (listing, brand) with evidence, best first.

        ``brand_ids``/``brand`` keep only suspects of those brands; ``status`` is ``new`` (no
        verdict yet) or a verdict, or several of them; ``since`` keeps listings first seen then or
        later. ``include_clean`` adds scanned listings without evidence (score 0, no brand).
        The web UI pages the same queue (:func:`~counterscan.store.queue.queue_query`) by keyset.
        """
        spec = QueueFilter(
            brand_ids=None if brand_ids is None else tuple(brand_ids),
            brand_name=brand,
            marketplace=marketplace,
            seller_id=seller_id,
            statuses=(status,) if isinstance(status, str) else tuple(status or ()),
            min_score=min_score,
            since=since,
            listing_pks=None if listing_pks is None else tuple(listing_pks),
            include_clean=include_clean,
        )
        query = ranked(queue_query(spec), spec).offset(offset or None).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_suspect(row, rank) for rank, row in enumerate(rows, start=offset + 1)]

    def unjudged_nearest(self, score: float, *, limit: int, brand: str | None = None) -> list[Suspect]:
        """Suspects without a verdict, those scored nearest ``score`` first (ties by listing and brand):
        the likeliest counterfeits (1), the likeliest legit ones (0) or the least certain (0.5),
        read a bounded slice at a time however long the queue."""
        spec = QueueFilter(brand_name=brand, statuses=("new",))
        query = (
            queue_query(spec)
            .order_by(sa.func.abs(t.scores.c.score - score), t.listings.c.listing_pk, t.scores.c.brand_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [_suspect(row, rank) for rank, row in enumerate(rows, start=1)]

    def labelled(self) -> list[tuple[int, int, Listing, int]]:
        """(listing key, brand id, listing, 1 counterfeit / 0 legit) by the latest verdict per (listing, brand)."""
        latest = _latest_verdicts()
        query = (
            sa.select(t.listings, latest.c.brand_id.label("verdict_brand_id"), t.verdicts.c.verdict)
            .join(latest, latest.c.listing_pk == t.listings.c.listing_pk)
            .join(t.verdicts, t.verdicts.c.verdict_id == latest.c.verdict_id)
            .where(t.verdicts.c.verdict.in_(["counterfeit", "legit"]), latest.c.brand_id.is_not(None))
            .order_by(t.listings.c.listing_pk, latest.c.brand_id)
        )
        with self.engine.connect() as conn:
            return [
                (
                    row.listing_pk,
                    row.verdict_brand_id,
                    listing_from_row(row),
                    1 if row.verdict == "counterfeit" else 0,
                )
                for row in conn.execute(query)
            ]

    def verdict_tally(self) -> dict[tuple[int, str], int]:
        """How many (listing, brand) suspects have each latest verdict, per (brand id, verdict)."""
        latest = _latest_verdicts()
        query = (
            sa.select(latest.c.brand_id, t.verdicts.c.verdict, sa.func.count().label("judged"))
            .join(t.verdicts, t.verdicts.c.verdict_id == latest.c.verdict_id)
            .where(latest.c.brand_id.is_not(None))
            .group_by(latest.c.brand_id, t.verdicts.c.verdict)
        )
        with self.engine.connect() as conn:
            return {(int(row.brand_id), str(row.verdict)): int(row.judged) for row in conn.execute(query)}

    def unjudged_clean(self, *, limit: int) -> list[Suspect]:
        """Scanned listings with no evidence (no brand scored above 0) and no verdict, newest first.

        The queue never shows them, yet a first model needs legit examples: these are the likely-legit
        listings whose verdicts let training start. Brand and score are None and 0.
        """
        scored = sa.exists().where(t.scores.c.listing_pk == t.listings.c.listing_pk, t.scores.c.score > 0)
        judged = sa.exists().where(t.verdicts.c.listing_pk == t.listings.c.listing_pk)
        query = (
            sa.select(t.listings)
            .where(t.listings.c.scanned_at.is_not(None), ~scored, ~judged)
            .order_by(t.listings.c.ingested_at.desc(), t.listings.c.listing_pk.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            Suspect(
                rank=0,
                listing_pk=row.listing_pk,
                source=row.source,
                listing_id=row.listing_id,
                score=0.0,
                brand=None,
                asset_id=None,
                matcher=None,
                reason=None,
                title=row.title or "",
                price=row.price,
                currency=row.currency,
                url=row.url,
                status="new",
                seller_id=row.seller_id,
                seller_name=row.seller_name,
                marketplace=row.marketplace,
                first_seen=iso(row.ingested_at),
                last_seen=iso(row.last_seen_at or row.updated_at),
            )
            for row in rows
        ]

    def save_model(self, data: bytes, *, features: Sequence[str], metrics: Mapping[str, object], actor: str) -> int:
        with self.engine.begin() as conn:
            conn.execute(sa.update(t.models).values(active=False))
            model_id = new_id(
                conn.execute(
                    sa.insert(t.models).values(
                        created_at=now(), features=list(features), metrics=dict(metrics), data=data, active=True
                    )
                )
            )
            self._audit(conn, actor, "model.train", f"model {model_id}", dict(metrics))
        return model_id

    def models(self) -> list[tuple[int, str, bool, dict[str, Any]]]:
        """(model id, created at, active, metrics) of every trained model, oldest first."""
        query = sa.select(t.models.c.model_id, t.models.c.created_at, t.models.c.active, t.models.c.metrics)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(t.models.c.model_id)).all()
        return [(int(row.model_id), iso(row.created_at), bool(row.active), dict(row.metrics)) for row in rows]

    def activate_model(self, model_id: int | None, *, actor: str) -> None:
        """Make ``model_id`` the active model (None: none, scans use the cold-start scorer); audited."""
        with self.engine.begin() as conn:
            if model_id is not None:
                found = conn.execute(sa.select(t.models.c.model_id).where(t.models.c.model_id == model_id)).first()
                if found is None:
                    raise NotFoundError(f"unknown model {model_id}")
            conn.execute(sa.update(t.models).values(active=False))
            if model_id is not None:
                conn.execute(sa.update(t.models).where(t.models.c.model_id == model_id).values(active=True))
            target = "cold-start scorer" if model_id is None else f"model {model_id}"
            self._audit(conn, actor, "model.activate", target, {"model_id": model_id})

    def active_model(self) -> tuple[int, bytes, dict[str, Any], list[str]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.models).where(t.models.c.active.is_(True))).first()
        if row is None:
            return None
        return int(row.model_id), bytes(row.data), dict(row.metrics), list(row.features)

    def counterfeit_sellers(self) -> dict[str, dict[int, int]]:
        """Per seller id, listings whose latest verdict for a brand is counterfeit, counted per brand."""
        found: dict[str, dict[int, int]] = {}
        for confirmed in self.confirmed_counterfeits():
            per_brand = found.setdefault(confirmed.seller_id, {})
            per_brand[confirmed.brand_id] = per_brand.get(confirmed.brand_id, 0) + 1
        return found

    def confirmed_counterfeits(self) -> list[Confirmed]:
        """Each (listing, brand) whose latest verdict is counterfeit, with its seller and the verdict's time."""
        latest = _latest_verdicts()
        query = (
            sa.select(
                t.listings.c.seller_id,
                t.listings.c.source,
                t.listings.c.listing_id,
                t.verdicts.c.listing_pk,
                t.verdicts.c.brand_id,
                t.verdicts.c.decided_at,
            )
            .join(latest, latest.c.verdict_id == t.verdicts.c.verdict_id)
            .join(t.listings, t.listings.c.listing_pk == t.verdicts.c.listing_pk)
            .where(t.verdicts.c.verdict == "counterfeit", t.listings.c.seller_id.is_not(None))
            .order_by(t.verdicts.c.verdict_id)
        )
        with self.engine.connect() as conn:
            return [
                Confirmed(
                    seller_id=row.seller_id,
                    listing_pk=int(row.listing_pk),
                    source=row.source,
                    listing_id=row.listing_id,
                    brand_id=int(row.brand_id or 0),
                    decided_at=_aware(row.decided_at),
                )
                for row in conn.execute(query)
            ]

    def first_seen(self, listing_pks: Sequence[int]) -> dict[int, datetime]:
        """When each listing was first ingested: the time its features are built as of, for training."""
        query = sa.select(t.listings.c.listing_pk, t.listings.c.ingested_at)
        with self.engine.connect() as conn:
            return {
                row.listing_pk: _aware(row.ingested_at)
                for row in rows_in(conn, query, t.listings.c.listing_pk, listing_pks)
            }

    def suspect_brands(self, listing_pk: int) -> list[tuple[int, str]]:
        """(brand id, name) of the brands a listing is a suspect of, best score first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.scores.c.brand_id, t.brands.c.name)
                .join(t.brands, t.brands.c.brand_id == t.scores.c.brand_id)
                .where(t.scores.c.listing_pk == listing_pk, t.scores.c.score > 0)
                .order_by(t.scores.c.score.desc(), t.brands.c.name)
            ).all()
        return [(int(row.brand_id), row.name) for row in rows]

    def listing_detail(self, listing_pk: int) -> dict[str, Any]:
        """Everything an analyst reads about one listing: fields, images, evidence, price history, verdicts."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.listings).where(t.listings.c.listing_pk == listing_pk)).one()
            images = [
                {"position": image.position, "ref": image.ref, "sha256": image.sha256, "error": image.error}
                for image in conn.execute(
                    sa.select(t.listing_images)
                    .where(t.listing_images.c.listing_pk == listing_pk)
                    .order_by(t.listing_images.c.position)
                )
            ]
            evidence = [
                {
                    "matcher": item.matcher,
                    "brand": item.brand_name,
                    "asset_id": item.asset_id,
                    "asset_sha256": item.asset_sha256,
                    "image_sha256": item.image_sha256,
                    "distance": item.distance,
                    "score": item.score,
                    "reason": item.reason,
                    "details": item.details,
                }
                for item in conn.execute(
                    sa.select(
                        t.evidence,
                        t.brands.c.name.label("brand_name"),
                        t.assets.c.sha256.label("asset_sha256"),
                    )
                    .join(t.brands, t.brands.c.brand_id == t.evidence.c.brand_id)
                    .outerjoin(t.assets, t.assets.c.asset_id == t.evidence.c.asset_id)
                    .where(t.evidence.c.listing_pk == listing_pk)
                    .order_by(t.evidence.c.score.desc(), t.evidence.c.position)
                )
            ]
            history = [
                {
                    "version": v.version,
                    "title": v.title,
                    "price": v.price,
                    "currency": v.currency,
                    "at": iso(v.recorded_at),
                }
                for v in conn.execute(
                    sa.select(t.listing_versions)
                    .where(t.listing_versions.c.listing_pk == listing_pk)
                    .order_by(t.listing_versions.c.version)
                )
            ]
            scored = conn.execute(
                sa.select(t.scores, t.brands.c.name.label("brand_name"))
                .join(t.brands, t.brands.c.brand_id == t.scores.c.brand_id)
                .where(t.scores.c.listing_pk == listing_pk)
                .order_by(t.scores.c.score.desc(), t.brands.c.name)
            ).all()
        score = scored[0] if scored else None
        listing = listing_from_row(row)
        return {
            "listing_pk": listing_pk,
            "source": listing.source,
            "listing_id": listing.listing_id,
            "title": listing.title,
            "description": listing.description,
            "price": listing.price,
            "currency": listing.currency,
            "seller_id": listing.seller_id,
            "seller_name": listing.seller_name,
            "marketplace": listing.marketplace,
            "url": listing.url,
            "version": row.version,
            "first_seen": iso(row.ingested_at),
            "last_seen": iso(row.last_seen_at or row.updated_at),
            "score": None if score is None else score.score,
            "scorer": None if score is None else score.scorer,
            "brands": [
                {"brand": item.brand_name, "brand_id": item.brand_id, "score": item.score, "scorer": item.scorer}
                for item in scored
            ],
            "images": images,
            "evidence": evidence,
            "price_history": history
            or [{"version": 1, "title": listing.title, "price": listing.price, "currency": listing.currency}],
            "verdicts": self.listing_verdicts(listing_pk),
        }

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

    def record_verdict(
        self,
        listing_pk: int,
        *,
        verdict: VerdictLabel,
        note: str | None,
        analyst: str,
        brand_id: int | None = None,
    ) -> None:
        """Record a verdict on a listing as a suspect of ``brand_id``.

        Without ``brand_id`` the listing must be a suspect of exactly one brand, which is then meant.
        """
        self.record_suspect_verdicts([(listing_pk, brand_id)], verdict=verdict, note=note, analyst=analyst)

    def record_suspect_verdicts(
        self,
        targets: Sequence[tuple[int, int | None]],
        *,
        verdict: VerdictLabel,
        note: str | None,
        analyst: str,
        via: str | None = None,
    ) -> list[tuple[int, int]]:
        """Record one verdict on many (listing, brand) suspects in one transaction; all or nothing.

        A target's brand may be None when its listing is a suspect of exactly one brand.
        ``via`` says how the verdict was given (a web UI bulk choice), for the audit.
        Returns the (listing, brand) pairs written.
        """
        moment = now()
        written: list[tuple[int, int]] = []
        with self.engine.begin() as conn:
            for listing_pk, brand_id in targets:
                chosen = brand_id if brand_id is not None else _only_brand(conn, listing_pk)
                verdict_id = new_id(
                    conn.execute(
                        sa.insert(t.verdicts).values(
                            listing_pk=listing_pk,
                            brand_id=chosen,
                            verdict=verdict,
                            note=note,
                            analyst=analyst,
                            decided_at=moment,
                        )
                    )
                )
                self._audit(
                    conn,
                    analyst,
                    "verdict",
                    f"listing {_listing_name(conn, listing_pk)}",
                    {"verdict": verdict, "note": note, "brand_id": chosen} | ({"via": via} if via else {}),
                )
                # The owner of the brand the verdict is about hears of it, not other brands' owners.
                webhooks.enqueue_event(
                    conn,
                    "verdict.recorded",
                    listing_pk=listing_pk,
                    brand_ids=[chosen],
                    details={"verdict": verdict, "analyst": analyst},
                )
                # A confirmed counterfeit lands in its takedown case now, or never half-way.
                case_id = cases.file_verdict(
                    conn,
                    listing_pk=listing_pk,
                    brand_id=chosen,
                    verdict=verdict,
                    verdict_id=verdict_id,
                    analyst=analyst,
                    moment=moment,
                )
                if case_id is not None:
                    self._audit(
                        conn,
                        analyst,
                        "case.listing",
                        f"case {case_id}",
                        {"listing": _listing_name(conn, listing_pk), "brand_id": chosen, "verdict": verdict},
                    )
                written.append((listing_pk, chosen))
        return written

    def verdicts(self, listing_pk: int) -> list[tuple[str, str | None, str]]:
        return [(item["verdict"], item["note"], item["analyst"]) for item in self.listing_verdicts(listing_pk)]

    def listing_verdicts(self, listing_pk: int) -> list[dict[str, Any]]:
        """Every verdict on a listing, oldest first, with the brand it was about."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.verdicts, t.brands.c.name.label("brand_name"))
                .outerjoin(t.brands, t.brands.c.brand_id == t.verdicts.c.brand_id)
                .where(t.verdicts.c.listing_pk == listing_pk)
                .order_by(t.verdicts.c.verdict_id)
            ).all()
        return [
            {
                "verdict": row.verdict,
                "note": row.note,
                "analyst": row.analyst,
                "brand": row.brand_name,
                "brand_id": row.brand_id,
                "decided_at": iso(row.decided_at),
            }
            for row in rows
        ]


def _listing_name(conn: sa.Connection, listing_pk: int) -> str:
    row = conn.execute(
        sa.select(t.listings.c.source, t.listings.c.listing_id).where(t.listings.c.listing_pk == listing_pk)
    ).one()
    return f"{row.source}/{row.listing_id}"


def _suspect(row: Any, rank: int) -> Suspect:
    return Suspect(
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
        status=row.status or "new",
        brand_id=row.brand_id,
        seller_id=row.seller_id,
        seller_name=row.seller_name,
        marketplace=row.marketplace,
        first_seen=iso(row.ingested_at),
        last_seen=iso(row.last_seen_at or row.updated_at),
        analyst=row.analyst,
        decided_at=iso(row.decided_at) if row.decided_at is not None else None,
        scorer=row.scorer,
    )


def _only_brand(conn: sa.Connection, listing_pk: int) -> int:
    rows = conn.execute(
        sa.select(t.scores.c.brand_id, t.brands.c.name)
        .join(t.brands, t.brands.c.brand_id == t.scores.c.brand_id)
        .where(t.scores.c.listing_pk == listing_pk, t.scores.c.score > 0)
        .order_by(t.brands.c.name)
    ).all()
    if len(rows) == 1:
        return int(rows[0].brand_id)
    listing = conn.execute(
        sa.select(t.listings.c.source, t.listings.c.listing_id).where(t.listings.c.listing_pk == listing_pk)
    ).one()
    name = f"{listing.source}/{listing.listing_id}"
    if not rows:
        raise UserError(f"listing {name} is no brand's suspect; name the brand the verdict is about with --brand")
    choices = ", ".join(row.name for row in rows)
    raise UserError(f"listing {name} is a suspect of several brands ({choices}); name one with --brand")


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes for what was stored as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _latest_verdicts() -> sa.Subquery:
    """Each (listing, brand)'s newest verdict id: analysts may change their minds; the last word counts."""
    return (
        sa.select(
            t.verdicts.c.listing_pk,
            t.verdicts.c.brand_id,
            sa.func.max(t.verdicts.c.verdict_id).label("verdict_id"),
        )
        .group_by(t.verdicts.c.listing_pk, t.verdicts.c.brand_id)
        .subquery()
    )
