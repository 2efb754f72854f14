"""The analysts' queue, what they read about a listing, and their verdicts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from counterscan.errors import UserError
from counterscan.records import VERDICTS, Suspect, VerdictLabel
from counterscan.store import BlobStore, Store

STATUSES = ("new", *VERDICTS)
EXPLORE_EVERY = 3
"""With ``explore``, every third row of the queue is an uncertain listing rather than a top one."""


def queue(
    store: Store,
    *,
    limit: int | None = None,
    min_score: float = 0.0,
    brand: str | None = None,
    status: str | None = None,
    explore: int = 0,
) -> list[Suspect]:
    """Suspects best first; ``explore`` mixes in the listings the ranker is least sure of.

    Training only on the top of the queue would teach the ranker what it already believes; the
    uncertain ones (scores nearest 0.5, not yet reviewed) are where a verdict teaches most.
    """
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    if status is not None and status not in STATUSES:
        raise UserError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    if brand is not None:
        store.brand(brand)  # an unknown brand is an error, not an empty queue
    top = store.suspects(limit=limit, min_score=min_score, brand=brand, status=status)
    if explore <= 0:
        return top
    shown = {suspect.listing_pk for suspect in top}
    pool = [s for s in store.suspects(brand=brand, status="new") if s.listing_pk not in shown]
    uncertain = sorted(pool, key=lambda suspect: (abs(suspect.score - 0.5), suspect.listing_pk))[:explore]
    mixed: list[Suspect] = []
    queue_top = list(top)
    while queue_top or uncertain:
        if (uncertain and (len(mixed) + 1) % EXPLORE_EVERY == 0) or not queue_top:
            mixed.append(replace(uncertain.pop(0), status="explore"))
        else:
            mixed.append(queue_top.pop(0))
    if limit is not None:
        mixed = mixed[: limit + explore]
    return [replace(suspect, rank=position) for position, suspect in enumerate(mixed, start=1)]


def show(store: Store, reference: str, blobs: BlobStore) -> dict[str, Any]:
    detail = store.listing_detail(store.find_listing(reference))
    for image in detail["images"]:
        if image["sha256"]:
            image["cached_path"] = str(blobs.path(image["sha256"]))
    return detail


def decide(store: Store, reference: str, *, verdict: str, note: str | None, analyst: str) -> int:
    for label in VERDICTS:
        if verdict == label:
            listing_pk = store.find_listing(reference)
            chosen: VerdictLabel = label
            store.record_verdict(listing_pk, verdict=chosen, note=note, analyst=analyst)
            return listing_pk
    raise UserError(f"unknown verdict {verdict!r} (one of {', '.join(VERDICTS)})")
