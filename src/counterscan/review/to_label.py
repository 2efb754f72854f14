"""Which listings to judge next so that the ranker learns most: active learning for a cold start.

The queue shows suspects best first, so a new store's analysts judge counterfeits only and
`train` (which needs verdicts of both kinds) never starts; later, judging only the top teaches the
ranker what it already believes. :func:`to_label` proposes a mix instead:

- **both classes while one is short**: the likeliest counterfeits (highest scores) and the likeliest
  legit listings (clean listings the queue never shows, then the lowest scores), as many as training
  still lacks, and a fifth of the proposals each once both suffice, so that both kinds keep coming;
- **the rest nearest the decision boundary** (scores closest to 0.5), where a verdict changes the
  model most;
- **across brands**: each group takes its picks brand by brand in turn, and a clean listing is
  proposed as a non-suspect of the brand with the fewest legit verdicts so far.

Nothing already judged (any verdict on that listing and brand) is proposed again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from counterscan.errors import UserError
from counterscan.ranking.training import MIN_PER_CLASS
from counterscan.records import Brand, Suspect
from counterscan.store.protocols import ReviewDesk

BOUNDARY = 0.5
"""The score where the scorers' counterfeit and legit meet: the least certain point."""

MAX_BRANDS_IN_TURN = 50
"""How many brands' candidates each group reads at most (a store with thousands of brands reads a
window of ``count`` times this, and the brands whose candidates fall in it take turns)."""

SIDE_SHARE = 5
"""Once training can start, one proposal in this many is a likely counterfeit, and one a likely legit."""


@dataclass(frozen=True)
class LabelRequest:
    """One proposed verdict: a listing as a suspect (or a non-suspect) of a brand, and why it was chosen."""

    suspect: Suspect
    why: str


def to_label(store: ReviewDesk, count: int, *, brand: str | None = None) -> list[LabelRequest]:
    """The ``count`` unjudged (listing, brand) pairs whose verdicts would teach the ranker most."""
    if count < 1:
        raise UserError(f"--to-label must be at least 1, not {count}")
    brands = [store.brand(brand)] if brand is not None else sorted(store.brands(), key=lambda b: b.name)
    if not brands:
        raise UserError("no brands registered yet: add one with `counterscan brands add`")
    wanted = {found.brand_id for found in brands}
    tally = {key: value for key, value in store.verdict_tally().items() if key[0] in wanted}
    have = {
        label: sum(n for (_b, verdict), n in tally.items() if verdict == label) for label in ("counterfeit", "legit")
    }
    need = {label: max(0, MIN_PER_CLASS - have[label]) for label in have}
    counterfeit_quota, legit_quota = _side_quotas(count, need["counterfeit"], need["legit"])

    # Bounded reads: enough of each kind for every brand to take its turn, however long the queue.
    window = count * min(len(brands), MAX_BRANDS_IN_TURN)

    def nearest(score: float) -> list[Suspect]:
        return [s for s in store.unjudged_nearest(score, limit=window, brand=brand) if s.brand_id in wanted]

    clean = _as_non_suspects(store.unjudged_clean(limit=count), brands, tally)
    taken: set[tuple[int, int | None]] = set()
    chosen: list[LabelRequest] = []

    def take(pool: Iterable[Suspect], quota: int, why: str) -> int:
        """Up to ``quota`` of ``pool`` not yet proposed; how many were taken."""
        before = len(chosen)
        for suspect in _by_brand_in_turn(pool):
            if len(chosen) - before >= quota or len(chosen) >= count:
                break
            key = (suspect.listing_pk, suspect.brand_id)
            if key not in taken:
                taken.add(key)
                chosen.append(LabelRequest(suspect, why.format(score=suspect.score)))
        return len(chosen) - before

    shortfall = "; training needs {} more {}"
    likely_counterfeit = [suspect for suspect in nearest(1.0) if suspect.score >= BOUNDARY]
    take(
        likely_counterfeit,
        counterfeit_quota,
        "likely counterfeit (score {score:.2f})"
        + (shortfall.format(need["counterfeit"], "counterfeit") if need["counterfeit"] else ""),
    )
    legit_hint = shortfall.format(need["legit"], "legit") if need["legit"] else ""
    clean_taken = take(clean, legit_quota, "likely legit (no evidence for any brand)" + legit_hint)
    likely_legit = [suspect for suspect in nearest(0.0) if suspect.score < BOUNDARY]
    take(likely_legit, legit_quota - clean_taken, "likely legit (score {score:.2f})" + legit_hint)
    uncertain = nearest(BOUNDARY)
    take(uncertain, count, "uncertain (score {score:.2f}): the scorer is least sure here")
    # Too few suspects left near the boundary: the rest of the clean listings still teach.
    take(clean, count, "likely legit (no evidence for any brand)")
    return [replace(request, suspect=replace(request.suspect, rank=rank)) for rank, request in enumerate(chosen, 1)]


def _side_quotas(count: int, need_counterfeit: int, need_legit: int) -> tuple[int, int]:
    """How many likely counterfeits and likely legit listings to propose among ``count``."""
    share = count // SIDE_SHARE
    counterfeit, legit = max(need_counterfeit, share), max(need_legit, share)
    if counterfeit + legit > count:  # more missing than asked for: split in proportion, each side at least one
        counterfeit = max(1, round(count * counterfeit / (counterfeit + legit))) if counterfeit else 0
        counterfeit = min(counterfeit, count - (1 if legit and count > 1 else 0))
        legit = count - counterfeit
    return counterfeit, legit


def _as_non_suspects(
    clean: Sequence[Suspect], brands: Sequence[Brand], tally: dict[tuple[int, str], int]
) -> list[Suspect]:
    """Clean listings, each offered as a non-suspect of the brand with the fewest legit verdicts so far."""
    legit = {found.brand_id: tally.get((found.brand_id, "legit"), 0) for found in brands}
    offered = []
    for suspect in clean:
        target = min(brands, key=lambda found: (legit[found.brand_id], found.name))
        legit[target.brand_id] += 1
        offered.append(replace(suspect, brand=target.name, brand_id=target.brand_id))
    return offered


def _by_brand_in_turn(pool: Iterable[Suspect]) -> list[Suspect]:
    """``pool`` reordered brand by brand in turn, each brand's own order kept: picks spread over brands."""
    queues: dict[int | None, list[Suspect]] = {}
    for suspect in pool:
        queues.setdefault(suspect.brand_id, []).append(suspect)
    ordered: list[Suspect] = []
    while any(queues.values()):
        for waiting in queues.values():
            if waiting:
                ordered.append(waiting.pop(0))
    return ordered
