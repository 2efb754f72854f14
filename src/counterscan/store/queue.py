"""The review queue's one query: the CLI's list and exports, the API's results and the web UI's pages.

A suspect is a (listing, brand) with evidence; :func:`queue_query` selects those a
:class:`QueueFilter` asks for, unordered, and each reader orders it its own way: the CLI by rank
(:func:`ranked`), the web UI by a keyset it pages with. Latest verdicts are looked up per row (an
indexed, correlated lookup) rather than grouped over the whole verdicts table, so a page costs the
same with 100 or 100,000 suspects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from counterscan.store import schema as t
from counterscan.store.base import name_key

SuspectKey = tuple[int, int]
"""(listing key, brand id): one suspect, a listing reviewed under one brand."""

QueueSort = Literal["score", "score_asc", "newest", "oldest"]
QUEUE_SORTS: tuple[QueueSort, ...] = ("score", "score_asc", "newest", "oldest")

# A verdict row looked up by id, apart from the verdicts table the lookup itself reads.
_latest = t.verdicts.alias("latest_verdict")


@dataclass(frozen=True)
class QueueFilter:
    """Which suspects the queue holds. ``brand_ids`` is what the reader may see (None: everything).

    ``brand_name`` compares case- and space-insensitively; ``statuses`` are ``new`` (no verdict yet)
    or verdicts, any of them (none: every status); ``since``/``until`` bound when a listing was first
    seen. ``include_clean`` adds scanned listings without evidence (score 0, no brand).
    ``sort`` is the order the web UI pages in.
    """

    brand_ids: tuple[int, ...] | None = None
    brand_id: int | None = None
    brand_name: str | None = None
    marketplace: str | None = None
    seller_id: str | None = None
    statuses: tuple[str, ...] = ()
    min_score: float | None = None
    max_score: float | None = None
    since: datetime | None = None
    until: datetime | None = None
    image_sha256: str | None = None
    listing_pks: tuple[int, ...] | None = None
    include_clean: bool = False
    sort: QueueSort = "score"


def latest_verdict(
    listing: sa.ColumnElement[Any], brand: sa.ColumnElement[Any], value: sa.Column[Any] = t.verdicts.c.verdict
) -> sa.ScalarSelect[Any]:
    """A ``value`` of the newest verdict on a listing as a suspect of a brand: analysts may change
    their minds, the last word counts. By default its label."""
    return (
        sa.select(value)
        .where(t.verdicts.c.listing_pk == listing, t.verdicts.c.brand_id == brand)
        .order_by(t.verdicts.c.verdict_id.desc())
        .limit(1)
        .scalar_subquery()
    )


def first_picture(listing: sa.ColumnElement[int]) -> sa.ScalarSelect[Any]:
    return (
        sa.select(t.listing_images.c.sha256)
        .where(t.listing_images.c.listing_pk == listing, t.listing_images.c.sha256.is_not(None))
        .order_by(t.listing_images.c.position)
        .limit(1)
        .scalar_subquery()
    )


def queue_score(spec: QueueFilter) -> sa.ColumnElement[float]:
    """The score the queue ranks by: a clean listing, with no score row, counts as 0."""
    return sa.func.coalesce(t.scores.c.score, 0.0) if spec.include_clean else t.scores.c.score


def queue_query(spec: QueueFilter) -> sa.Select[Any]:
    """Every suspect ``spec`` selects, with its listing, best evidence and latest verdict; unordered."""
    score = queue_score(spec)
    if spec.include_clean:
        base = t.listings.outerjoin(t.scores, t.scores.c.listing_pk == t.listings.c.listing_pk).outerjoin(
            t.brands, t.brands.c.brand_id == t.scores.c.brand_id
        )
    else:
        base = t.scores.join(t.listings, t.listings.c.listing_pk == t.scores.c.listing_pk).join(
            t.brands, t.brands.c.brand_id == t.scores.c.brand_id
        )
    query = (
        sa.select(
            t.listings.c.listing_pk,
            t.scores.c.brand_id,
            t.brands.c.name.label("brand"),
            t.listings.c.source,
            t.listings.c.listing_id,
            t.listings.c.title,
            t.listings.c.price,
            t.listings.c.currency,
            t.listings.c.url,
            t.listings.c.seller_id,
            t.listings.c.seller_name,
            t.listings.c.marketplace,
            t.listings.c.ingested_at,
            t.listings.c.updated_at,
            t.listings.c.last_seen_at,
            score.label("score"),
            t.scores.c.scorer,
            t.evidence.c.asset_id,
            t.evidence.c.matcher,
            t.evidence.c.reason,
            t.evidence.c.image_sha256,
            _latest.c.verdict.label("status"),
            _latest.c.analyst,
            _latest.c.decided_at,
        )
        .select_from(base)
        .outerjoin(
            t.evidence,
            sa.and_(
                t.evidence.c.listing_pk == t.scores.c.listing_pk,
                t.evidence.c.position == t.scores.c.best_position,
            ),
        )
        .outerjoin(
            _latest,
            _latest.c.verdict_id == latest_verdict(t.scores.c.listing_pk, t.scores.c.brand_id, t.verdicts.c.verdict_id),
        )
    )
    if spec.include_clean:
        query = query.where(t.listings.c.scanned_at.is_not(None))
    else:
        query = query.where(t.scores.c.score > 0)
    if spec.brand_ids is not None:
        query = query.where(t.scores.c.brand_id.in_(list(spec.brand_ids)))
    if spec.brand_id is not None:
        query = query.where(t.scores.c.brand_id == spec.brand_id)
    if spec.brand_name is not None:
        query = query.where(t.brands.c.name_key == name_key(spec.brand_name))
    if spec.marketplace is not None:
        query = query.where(t.listings.c.marketplace == spec.marketplace)
    if spec.seller_id is not None:
        query = query.where(t.listings.c.seller_id == spec.seller_id)
    if spec.min_score is not None:
        query = query.where(score >= spec.min_score)
    if spec.max_score is not None:
        query = query.where(score <= spec.max_score)
    if spec.since is not None:
        query = query.where(t.listings.c.ingested_at >= spec.since)
    if spec.until is not None:
        query = query.where(t.listings.c.ingested_at < spec.until)
    if spec.image_sha256 is not None:
        query = query.where(
            t.listings.c.listing_pk.in_(
                sa.select(t.listing_images.c.listing_pk).where(t.listing_images.c.sha256 == spec.image_sha256)
            )
        )
    if spec.listing_pks is not None:
        query = query.where(t.listings.c.listing_pk.in_(list(spec.listing_pks)))
    if spec.statuses:
        query = query.where(_status_is(spec.statuses))
    return query


def ranked(query: sa.Select[Any], spec: QueueFilter) -> sa.Select[Any]:
    """The CLI's and the exports' order: best score first, then by source, listing id and brand."""
    return query.order_by(queue_score(spec).desc(), t.listings.c.source, t.listings.c.listing_id, t.brands.c.name)


def _status_is(statuses: Sequence[str]) -> sa.ColumnElement[bool]:
    named = [label for label in statuses if label != "new"]
    conditions = [_latest.c.verdict.in_(named)] if named else []
    if "new" in statuses:
        conditions.append(_latest.c.verdict.is_(None))
    return sa.or_(*conditions)
