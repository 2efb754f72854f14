"""The analysts' queue and their verdicts."""

from __future__ import annotations

import getpass
import os

from counterscan.errors import UserError
from counterscan.records import VERDICTS, Suspect, VerdictLabel
from counterscan.store import Store


def queue(store: Store, *, limit: int | None = None, min_score: float = 0.0) -> list[Suspect]:
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, not {limit}")
    return store.suspects(limit=limit, min_score=min_score)


def current_analyst() -> str:
    return os.environ.get("COUNTERSCAN_ANALYST") or getpass.getuser()


def decide(store: Store, reference: str, *, verdict: str, note: str | None, analyst: str) -> int:
    if verdict not in VERDICTS:
        raise UserError(f"unknown verdict {verdict!r} (one of {', '.join(VERDICTS)})")
    listing_pk = store.find_listing(reference)
    label: VerdictLabel = verdict  # checked against VERDICTS above
    store.record_verdict(listing_pk, verdict=label, note=note, analyst=analyst)
    return listing_pk
