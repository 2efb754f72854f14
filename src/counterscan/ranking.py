"""Scores from evidence. Until analysts' verdicts exist, a cold-start scorer ranks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from counterscan.records import Evidence


@dataclass(frozen=True)
class Score:
    score: float
    brand_id: int | None
    best: int | None
    """Index of the strongest evidence for the winning brand."""


def _signal(evidence: Evidence) -> str:
    return f"{evidence.matcher}:{evidence.details.get('signal', '')}"


def cold_start_score(evidence: Sequence[Evidence]) -> Score:
    """Noisy-OR of each matcher's best confidence, per brand; the most likely brand wins.

    Taking only the best finding per matcher and signal keeps a listing with ten copies of
    the same photo from outranking one with a single copy and a matching brand name.
    """
    best_per_brand: dict[int, dict[str, int]] = {}
    for position, item in enumerate(evidence):
        signals = best_per_brand.setdefault(item.brand_id, {})
        key = _signal(item)
        if key not in signals or item.score > evidence[signals[key]].score:
            signals[key] = position
    winner = Score(score=0.0, brand_id=None, best=None)
    for brand_id, signals in best_per_brand.items():
        miss = 1.0
        for position in signals.values():
            miss *= 1.0 - min(max(evidence[position].score, 0.0), 1.0)
        score = round(1.0 - miss, 6)
        if score > winner.score:
            strongest = max(signals.values(), key=lambda position: evidence[position].score)
            winner = Score(score=score, brand_id=brand_id, best=strongest)
    return winner
