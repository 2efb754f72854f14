"""What is known of each matcher by its name alone: the one place the ranker, the features, the
check API and the scan's scheduling read it from.

Import-light on purpose (no numpy, OpenCV or FAISS): the evidence a store holds names its matcher,
and reading what that matcher is must not load the matcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Family = Literal["hash", "copy", "logo", "embedding", "photo-text", "text", "context"]
"""hash: a whole-image copy; copy: an asset photo copied whole or in part into a photo (turned,
cropped, in a collage), checked geometrically; logo: a brand's logo inside a photo; embedding: a photo that looks
like an asset; photo-text: words read in a photo; text: a listing's words; context: price and
seller history, which only weigh beside other evidence."""


@dataclass(frozen=True)
class MatcherFacts:
    name: str
    family: Family
    hash_bits: int | None = None
    """The width of one hash (hash matchers only): a partner may send it as hex."""
    counts_points: bool = False
    """Its evidence is a logo found by local features, ``details["inliers"]`` the distinct points
    agreeing with one plausible homography: such counts from several matchers, in one photo and
    for one brand, add up (they see different points of the mark)."""
    costly: bool = False
    """Costs far more per image than a hash: a scan runs it after the cheap matchers, in the order
    of :attr:`yield_per_ms`, and skips it for a photo whose brands are all settled already."""
    cost_ms: float = 1.0
    """CPU milliseconds per photo on one core (median on real photos, signal and search together;
    ``scripts/bench_scan.py`` prints them)."""
    finds: float = 0.0
    """The share of logo photos in which it alone finds the brand (``scripts/eval_logos.py``):
    with the cost, what orders the costly stages."""
    settles_at: float | None = None
    """An evidence score at or above which its finding settles the (photo, brand) pair: a verified
    copy or logo, after which later costly stages have nothing to add for that brand. None: never."""
    stored: bool = True
    """Whether its signal of a listing image is kept in the store. False for signals too large to
    keep for every photo (keypoints: 55 KB a photo): recomputed from the image blob when needed."""

    @property
    def yield_per_ms(self) -> float:
        return self.finds / max(self.cost_ms, 1e-3)

    @property
    def settles_picture(self) -> bool:
        """Its evidence is the brand's picture in the listing's photo (a copy, a logo, a likeness):
        what a takedown notice leads with, before words or a price."""
        return self.family in ("hash", "copy", "logo", "embedding")


MATCHER_FACTS: dict[str, MatcherFacts] = {
    facts.name: facts
    for facts in (
        # Costs: scripts/bench_scan.py on FlickrLogos-27 photos, 25 brands' logos; finds: the share
        # of logo photos each finds alone (docs/matching.md).
        MatcherFacts("phash", "hash", hash_bits=64, cost_ms=1.5, settles_at=0.8),
        MatcherFacts("dhash", "hash", hash_bits=64, cost_ms=1.5, settles_at=0.8),
        MatcherFacts("pdq", "hash", hash_bits=256, cost_ms=16.0, settles_at=0.8),
        MatcherFacts("embedding", "embedding", costly=True, cost_ms=16.0, finds=0.05),
        MatcherFacts("copies", "copy", costly=True, cost_ms=100.0, finds=0.0, settles_at=0.8, stored=False),
        MatcherFacts(
            "keypoints",
            "logo",
            counts_points=True,
            costly=True,
            cost_ms=88.0,
            finds=0.49,
            settles_at=0.75,
            stored=False,
        ),
        MatcherFacts(
            "marks", "logo", counts_points=True, costly=True, cost_ms=70.0, finds=0.5, settles_at=0.75, stored=False
        ),
        MatcherFacts("ocr", "photo-text", costly=True, cost_ms=100.0, finds=0.42),
        MatcherFacts("shapes", "logo", costly=True, cost_ms=37.0, finds=0.25),
        MatcherFacts("text", "text"),
        MatcherFacts("title", "text"),
        MatcherFacts("price", "context"),
        MatcherFacts("seller", "context"),
    )
}
"""Every matcher by name, image matchers in registry order."""


def of_family(family: Family) -> frozenset[str]:
    """The names of the matchers of one family."""
    return frozenset(name for name, facts in MATCHER_FACTS.items() if facts.family == family)


def counting_points() -> frozenset[str]:
    """The matchers whose logo evidence counts agreeing points (``MatcherFacts.counts_points``)."""
    return frozenset(name for name, facts in MATCHER_FACTS.items() if facts.counts_points)


def hash_bits(name: str) -> int:
    """The width of a hash matcher's hash (KeyError for a matcher that is not a hash)."""
    bits = MATCHER_FACTS[name].hash_bits
    if bits is None:
        raise KeyError(f"{name} is not a hash matcher")
    return bits
