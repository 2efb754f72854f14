"""Words in a listing: brand names and trademark words, and counterfeit vocabulary."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from counterscan.records import Brand, Evidence, Listing

# Phrases sellers of fakes use to say so without saying so. Matched as whole words.
COUNTERFEIT_TERMS: tuple[str, ...] = (
    "replica",
    "1:1",
    "aaa",
    "aaa+",
    "mirror quality",
    "mirror copy",
    "super clone",
    "superclone",
    "knockoff",
    "knock off",
    "fake",
    "inspired by",
    "unbranded",
    "oem quality",
    "same as original",
    "réplica",
    "replik",
    "réplique",
)

BRAND_MENTION_SCORE = 0.2
COUNTERFEIT_TERM_SCORE = 0.6


def normalise_text(text: str) -> str:
    """Case-folded NFKC text, so full-width letters and ligatures compare equal."""
    return unicodedata.normalize("NFKC", text).casefold()


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    # Word edges by hand: \b fails next to punctuation inside terms such as "1:1" or "aaa+".
    return re.compile(r"(?<![\w])" + re.escape(normalise_text(phrase)) + r"(?![\w+])")


class TextMatcher:
    """Brand words (name and registered keywords) and counterfeit vocabulary."""

    name = "text"

    def __init__(self, counterfeit_terms: Sequence[str] = COUNTERFEIT_TERMS) -> None:
        self._terms = [(term, _phrase_pattern(term)) for term in counterfeit_terms]

    def match(self, listing: Listing, brands: Sequence[Brand]) -> list[Evidence]:
        text = normalise_text(f"{listing.title}\n{listing.description}")
        counterfeit_terms = [term for term, pattern in self._terms if pattern.search(text)]
        found: list[Evidence] = []
        for brand in brands:
            words = [word for word in (brand.name, *brand.keywords) if _phrase_pattern(word).search(text)]
            if not words:
                continue
            found.append(
                Evidence(
                    matcher=self.name,
                    brand_id=brand.brand_id,
                    brand=brand.name,
                    score=BRAND_MENTION_SCORE,
                    reason="mentions " + ", ".join(repr(word) for word in words),
                    details={"signal": "brand-mention", "words": words},
                )
            )
            if counterfeit_terms:
                found.append(
                    Evidence(
                        matcher=self.name,
                        brand_id=brand.brand_id,
                        brand=brand.name,
                        score=COUNTERFEIT_TERM_SCORE,
                        reason=f"{brand.name} listing uses counterfeit vocabulary: "
                        + ", ".join(repr(term) for term in counterfeit_terms),
                        details={"signal": "counterfeit-term", "terms": counterfeit_terms},
                    )
                )
        return found
