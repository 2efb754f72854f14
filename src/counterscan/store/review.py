"""The review queue and verdicts."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from counterscan.errors import NotFoundError, UserError
from counterscan.records import Suspect, VerdictLabel
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, now


class ReviewStore(StoreBase):
    # -- review ----------------------------------------------------------------------------

    def suspects(
        self,
        *,
        limit: int | None = None,
        min_score: float = 0.0,
        include_clean: bool = False,
        brand_ids: Sequence[int] | None = None,
    ) -> list[Suspect]:
        """Scored listings, best first; ``brand_ids`` keeps only suspects of those brands."""
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

    def counterfeit_sellers(self) -> dict[str, dict[int, int]]:
        """Per seller id, listings whose latest verdict is counterfeit, by the brand they were scored for."""
        latest = (
            sa.select(t.verdicts.c.listing_pk, sa.func.max(t.verdicts.c.verdict_id).label("verdict_id"))
            .group_by(t.verdicts.c.listing_pk)
            .subquery()
        )
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

    def verdicts(self, listing_pk: int) -> list[tuple[str, str | None, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.verdicts.c.verdict, t.verdicts.c.note, t.verdicts.c.analyst)
                .where(t.verdicts.c.listing_pk == listing_pk)
                .order_by(t.verdicts.c.verdict_id)
            ).all()
        return [(row.verdict, row.note, row.analyst) for row in rows]
