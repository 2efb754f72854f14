"""The analysts' queue, what they read about a listing, and their verdicts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from counterscan.errors import UserError
from counterscan.records import SUSPECT_STATUSES, VERDICTS, Evidence, Suspect, VerdictLabel
from counterscan.store import BlobStore
from counterscan.store.protocols import ReviewDesk

EXPLORE_EVERY = 3
"""With ``explore``, every third row of the queue is an uncertain listing rather than a top one."""


def queue(
    store: ReviewDesk,
    *,
    limit: int | None = None,
    min_score: float = 0.0,
    brand: str | None = None,
    status: str | None = None,
    explore: int = 0,
) -> list[Suspect]:
    """Suspects best first; ``explore`` mixes in the listings the ranker is least sure of.

    ``limit`` counts every row shown, explored ones included.

    Training only on the top of the queue would teach the ranker what it already believes; the
    uncertain ones (scores nearest 0.5, not yet reviewed) are where a verdict teaches most.
    """
    _check_filters(store, statuses=() if status is None else (status,), limit=limit, brand=brand)
    if limit is not None:
        explore = min(explore, limit)  # --limit is the total: explored rows take places of top ones
    top_limit = None if limit is None else limit - max(explore, 0)
    top = store.suspects(limit=top_limit, min_score=min_score, brand=brand, status=status)
    if explore <= 0:
        return top
    shown = {(suspect.listing_pk, suspect.brand_id) for suspect in top}
    pool = [s for s in store.suspects(brand=brand, status="new") if (s.listing_pk, s.brand_id) not in shown]
    uncertain = sorted(pool, key=lambda suspect: (abs(suspect.score - 0.5), suspect.listing_pk))[:explore]
    mixed: list[Suspect] = []
    queue_top = list(top)
    while queue_top or uncertain:
        if (uncertain and (len(mixed) + 1) % EXPLORE_EVERY == 0) or not queue_top:
            mixed.append(replace(uncertain.pop(0), status="explore"))
        else:
            mixed.append(queue_top.pop(0))
    if limit is not None:
        mixed = mixed[:limit]
    return [replace(suspect, rank=position) for position, suspect in enumerate(mixed, start=1)]


def _check_filters(store: ReviewDesk, *, statuses: Sequence[str], limit: int | None, brand: str | None) -> None:
    """The queue's and the export's filters: known statuses, a positive limit, a registered brand."""
    for status in statuses:
        if status not in SUSPECT_STATUSES:
            raise UserError(f"unknown status {status!r} (one of {', '.join(SUSPECT_STATUSES)})")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    if brand is not None:
        store.brand(brand)  # an unknown brand is an error, not an empty queue


def show(store: ReviewDesk, reference: str, blobs: BlobStore) -> dict[str, Any]:
    detail = store.listing_detail(store.find_listing(reference))
    for image in detail["images"]:
        if image["sha256"]:
            image["cached_path"] = str(blobs.path(image["sha256"]))
    return detail


def parse_verdict(verdict: str) -> VerdictLabel:
    for label in VERDICTS:
        if verdict == label:
            return label
    raise UserError(f"unknown verdict {verdict!r} (one of {', '.join(VERDICTS)})")


def decide(
    store: ReviewDesk,
    reference: str,
    *,
    verdict: str,
    note: str | None,
    analyst: str,
    brand: str | None = None,
) -> int:
    """Record a verdict on one listing (as a suspect of ``brand``, needed when it has several)."""
    decide_many(store, [reference], verdict=verdict, note=note, analyst=analyst, brand=brand)
    return store.find_listing(reference)


def decide_many(
    store: ReviewDesk,
    references: Sequence[str],
    *,
    verdict: str,
    note: str | None,
    analyst: str,
    brand: str | None = None,
) -> list[tuple[int, int]]:
    """One verdict on many listings, all or nothing: an unknown listing, or one that is a suspect of
    several brands while ``brand`` is not named, writes nothing. Returns the (listing, brand) pairs."""
    label = parse_verdict(verdict)
    if not references:
        raise UserError("name at least one listing")
    brand_id = store.brand(brand).brand_id if brand is not None else None
    targets = [(store.find_listing(reference), brand_id) for reference in references]
    return store.record_suspect_verdicts(targets, verdict=label, note=note, analyst=analyst)


EXPORTED_BY_DEFAULT = ("new", "counterfeit", "unsure")
"""Listings judged legit leave takedown exports unless a status filter asks for them."""


def export_suspects(
    store: ReviewDesk,
    *,
    statuses: Sequence[str] = (),
    brand: str | None = None,
    marketplace: str | None = None,
    since: str | None = None,
    min_score: float = 0.0,
    limit: int | None = None,
) -> list[Suspect]:
    """Suspects for an export, best first: by status (default: all but legit), brand, marketplace,
    first seen on or after ``since`` (an ISO date or time), and score."""
    _check_filters(store, statuses=statuses, limit=limit, brand=brand)
    return store.suspects(
        limit=limit,
        min_score=min_score,
        brand=brand,
        status=list(statuses) or list(EXPORTED_BY_DEFAULT),
        marketplace=marketplace,
        since=parse_since(since) if since else None,
    )


def parse_since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--since {value!r} is not an ISO date or time (2026-01-31 or 2026-01-31T08:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def reasons_of(store: ReviewDesk, suspects: Sequence[Suspect]) -> dict[tuple[int, int | None], list[Evidence]]:
    """Every piece of evidence of each suspect, for its own brand."""
    evidence = store.evidence_of(sorted({suspect.listing_pk for suspect in suspects}), except_brands=())
    return {
        (suspect.listing_pk, suspect.brand_id): [
            item for item in evidence.get(suspect.listing_pk, []) if item.brand_id == suspect.brand_id
        ]
        for suspect in suspects
    }
