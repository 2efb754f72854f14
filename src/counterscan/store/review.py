"""The review queue and verdicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from counterscan.errors import NotFoundError, UserError
from counterscan.records import Listing, Suspect, VerdictLabel
from counterscan.store import schema as t
from counterscan.store import webhooks
from counterscan.store.base import StoreBase, iso, new_id, now
from counterscan.store.listings import listing_from_row


class ReviewStore(StoreBase):
    # -- review ----------------------------------------------------------------------------

    def suspects(
        self,
        *,
        limit: int | None = None,
        min_score: float = 0.0,
        include_clean: bool = False,
        brand_ids: Sequence[int] | None = None,
        brand: str | None = None,
        status: str | None = None,
    ) -> list[Suspect]:
        """Scored listings, best first; ``brand_ids`` keeps only suspects of those brands."""
        latest = _latest_verdicts()
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
            .outerjoin(
                t.evidence,
                sa.and_(
                    t.evidence.c.listing_pk == t.scores.c.listing_pk,
                    t.evidence.c.position == t.scores.c.best_position,
                ),
            )
            .outerjoin(latest, latest.c.listing_pk == t.listings.c.listing_pk)
            .outerjoin(t.verdicts, t.verdicts.c.verdict_id == latest.c.verdict_id)
            .order_by(t.scores.c.score.desc(), t.listings.c.source, t.listings.c.listing_id)
        )
        query = (
            query.where(t.scores.c.score >= min_score)
            if include_clean
            else query.where(t.scores.c.score > 0, t.scores.c.score >= min_score)
        )
        if brand_ids is not None:
            query = query.where(t.scores.c.brand_id.in_(list(brand_ids)))
        if brand is not None:
            query = query.where(t.brands.c.name_key == " ".join(brand.split()).casefold())
        if status == "new":
            query = query.where(t.verdicts.c.verdict.is_(None))
        elif status is not None:
            query = query.where(t.verdicts.c.verdict == status)

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

    def labelled(self) -> list[tuple[int, Listing, int]]:
        """(listing key, listing, 1 for counterfeit / 0 for legit) by each listing's latest verdict."""
        latest = _latest_verdicts()
        query = (
            sa.select(t.listings, t.verdicts.c.verdict)
            .join(latest, latest.c.listing_pk == t.listings.c.listing_pk)
            .join(t.verdicts, t.verdicts.c.verdict_id == latest.c.verdict_id)
            .where(t.verdicts.c.verdict.in_(["counterfeit", "legit"]))
            .order_by(t.listings.c.listing_pk)
        )
        with self.engine.connect() as conn:
            return [
                (row.listing_pk, listing_from_row(row), 1 if row.verdict == "counterfeit" else 0)
                for row in conn.execute(query)
            ]

    def save_model(self, data: bytes, *, features: Sequence[str], metrics: Mapping[str, Any], actor: str) -> int:
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

    def active_model(self) -> tuple[int, bytes, dict[str, Any], list[str]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.models).where(t.models.c.active.is_(True))).first()
        if row is None:
            return None
        return int(row.model_id), bytes(row.data), dict(row.metrics), list(row.features)

    def counterfeit_sellers(self) -> dict[str, dict[int, int]]:
        """Per seller id, listings whose latest verdict is counterfeit, by the brand they were scored for."""
        latest = _latest_verdicts()
        query = (
            sa.select(t.listings.c.seller_id, t.scores.c.brand_id, sa.func.count().label("confirmed"))
            .join(latest, latest.c.listing_pk == t.listings.c.listing_pk)
            .join(t.verdicts, t.verdicts.c.verdict_id == latest.c.verdict_id)
            .outerjoin(t.scores, t.scores.c.listing_pk == t.listings.c.listing_pk)
            .where(t.verdicts.c.verdict == "counterfeit", t.listings.c.seller_id.is_not(None))
            .group_by(t.listings.c.seller_id, t.scores.c.brand_id)
        )
        found: dict[str, dict[int, int]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                found.setdefault(row.seller_id, {})[row.brand_id or 0] = int(row.confirmed)
        return found

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
            score = conn.execute(sa.select(t.scores).where(t.scores.c.listing_pk == listing_pk)).first()
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
            "url": listing.url,
            "version": row.version,
            "score": None if score is None else score.score,
            "scorer": None if score is None else score.scorer,
            "images": images,
            "evidence": evidence,
            "price_history": history
            or [{"version": 1, "title": listing.title, "price": listing.price, "currency": listing.currency}],
            "verdicts": [
                {"verdict": verdict, "note": note, "analyst": analyst}
                for verdict, note, analyst in self.verdicts(listing_pk)
            ],
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

    def record_verdict(self, listing_pk: int, *, verdict: VerdictLabel, note: str | None, analyst: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(t.verdicts).values(
                    listing_pk=listing_pk, verdict=verdict, note=note, analyst=analyst, decided_at=now()
                )
            )
            self._audit(conn, analyst, "verdict", f"listing {listing_pk}", {"verdict": verdict, "note": note})
            webhooks.enqueue_event(
                conn,
                "verdict.recorded",
                listing_pk=listing_pk,
                brand_ids=webhooks.listing_brands(conn, listing_pk),
                details={"verdict": verdict, "analyst": analyst},
            )

    def verdicts(self, listing_pk: int) -> list[tuple[str, str | None, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.verdicts.c.verdict, t.verdicts.c.note, t.verdicts.c.analyst)
                .where(t.verdicts.c.listing_pk == listing_pk)
                .order_by(t.verdicts.c.verdict_id)
            ).all()
        return [(row.verdict, row.note, row.analyst) for row in rows]


def _latest_verdicts() -> sa.Subquery:
    """Each listing's newest verdict id: analysts may change their minds; the last word counts."""
    return (
        sa.select(t.verdicts.c.listing_pk, sa.func.max(t.verdicts.c.verdict_id).label("verdict_id"))
        .group_by(t.verdicts.c.listing_pk)
        .subquery()
    )
