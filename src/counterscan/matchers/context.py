"""Evidence that only means something beside other evidence: price far under MSRP, seller history,
and an everyday brand word that a picture, a product or the photo's words confirm."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from counterscan.matchers.facts import MATCHER_FACTS
from counterscan.matchers.ocr import PHOTO_SCORES
from counterscan.matchers.text import BRAND_MENTION_SCORE
from counterscan.matchers.title import ProductTitleMatcher
from counterscan.records import Brand, Confirmed, Evidence, Listing

FAR_UNDER_MSRP = 0.5
"""A price at or under this share of MSRP is evidence."""
QUIET_SIGNALS = frozenset({"ambiguous-mention", "accessory-mention"})
"""Words that do not make a listing about the brand: an everyday word alone, an accessory's reference."""
PICTURE_MATCHERS = frozenset(name for name, facts in MATCHER_FACTS.items() if facts.settles_picture)


def _upgraded(item: Evidence, confirmed_by: str) -> Evidence:
    """The everyday word as the brand's name; a photo's score keeps its reading confidence."""
    score = BRAND_MENTION_SCORE
    if item.matcher == "ocr":
        score = round(item.score / PHOTO_SCORES[str(item.details.get("signal"))] * PHOTO_SCORES["brand-mention"], 4)
    return replace(
        item,
        score=score,
        reason=f"{item.reason}; confirmed by {confirmed_by}",
        details={**item.details, "signal": "brand-mention", "confirmed_by": confirmed_by},
    )


def corroborate(evidence: Sequence[Evidence]) -> list[Evidence]:
    """An everyday brand word counts as the brand's name where other evidence of the same listing
    says so: the brand's picture (a copied photo, its logo), one of its products in the title, or
    the word both in the title and in a photo. A reference an accessory makes ("for iPhone")
    becomes the brand's name only beside the brand's picture."""
    pictured = {
        item.brand_id for item in evidence if (facts := MATCHER_FACTS.get(item.matcher)) and facts.settles_picture
    }
    products = {item.brand_id for item in evidence if item.matcher == "title"}
    words_in = {
        (item.matcher, item.brand_id)
        for item in evidence
        if item.matcher in ("text", "ocr") and item.details.get("signal") != "accessory-mention"
    }
    kept = []
    for item in evidence:
        signal = item.details.get("signal")
        other = "ocr" if item.matcher == "text" else "text"
        if signal == "ambiguous-mention" and item.brand_id in pictured:
            item = _upgraded(item, "the brand's picture")
        elif signal == "ambiguous-mention" and item.brand_id in products:
            item = _upgraded(item, "a product of the brand")
        elif signal == "ambiguous-mention" and (other, item.brand_id) in words_in:
            item = _upgraded(item, "the same word in the title and a photo")
        elif signal == "accessory-mention" and item.brand_id in pictured:
            item = _upgraded(item, "the brand's picture")
        kept.append(item)
    return kept


def about(evidence: Sequence[Evidence]) -> set[int]:
    """The brands a listing is about: those with evidence beyond quiet words."""
    return {item.brand_id for item in evidence if item.details.get("signal") not in QUIET_SIGNALS}


def convert(amount: float, source: str, target: str, rates: Mapping[str, float]) -> float | None:
    """``amount`` in ``source`` currency expressed in ``target``; rates give each currency's value in one base."""
    if source == target:
        return amount
    if source not in rates or target not in rates:
        return None
    return amount * rates[source] / rates[target]


@dataclass(frozen=True)
class SellerHistory:
    """Confirmed counterfeits per seller and brand, from analysts' verdicts."""

    confirmed: Mapping[str, Mapping[int, int]] = field(default_factory=dict)
    listings: Mapping[str, tuple[tuple[str, str, int], ...]] = field(default_factory=dict)
    """Per seller, the (source, listing id, brand id) confirmations counted in ``confirmed``: a
    listing's own verdict is not evidence about it (that would feed its label into its features)."""

    def for_listing(self, listing: Listing) -> dict[int, int]:
        """Confirmed counterfeits of the listing's seller per brand, not counting the listing itself."""
        record = dict(self.confirmed.get(listing.seller_id or "", {}))
        for source, listing_id, brand_id in self.listings.get(listing.seller_id or "", ()):
            if (source, listing_id) == (listing.source, listing.listing_id) and record.get(brand_id, 0) > 0:
                record[brand_id] -= 1
        return {brand_id: count for brand_id, count in record.items() if count > 0}


def seller_history(confirmed: Sequence[Confirmed], *, before: datetime | None = None) -> SellerHistory:
    """The sellers' history from confirmed counterfeits (those decided before ``before``, if given)."""
    counts: dict[str, dict[int, int]] = {}
    listings: dict[str, list[tuple[str, str, int]]] = {}
    for item in confirmed:
        if before is not None and item.decided_at >= before:
            continue
        per_brand = counts.setdefault(item.seller_id, {})
        per_brand[item.brand_id] = per_brand.get(item.brand_id, 0) + 1
        listings.setdefault(item.seller_id, []).append((item.source, item.listing_id, item.brand_id))
    return SellerHistory(counts, {seller: tuple(found) for seller, found in listings.items()})


class PriceMatcher:
    name = "price"

    def __init__(self, rates: Mapping[str, float], titles: ProductTitleMatcher | None = None) -> None:
        self.rates = rates
        self.titles = titles or ProductTitleMatcher()

    def match(self, listing: Listing, brands: Sequence[Brand], all_brands: Sequence[Brand]) -> list[Evidence]:
        if listing.price is None or listing.currency is None or listing.price <= 0:
            return []
        found = []
        for brand in brands:
            reference = self._reference(listing, brand, all_brands)
            if reference is None:
                continue
            msrp, currency, label = reference
            price = convert(listing.price, listing.currency, currency, self.rates)
            if price is None:
                continue
            ratio = price / msrp
            if ratio > FAR_UNDER_MSRP:
                continue
            shown = f"{listing.price:g} {listing.currency}" + (
                f" (= {price:.2f} {currency})" if listing.currency != currency else ""
            )
            found.append(
                Evidence(
                    matcher=self.name,
                    brand_id=brand.brand_id,
                    brand=brand.name,
                    score=round(0.3 + 0.4 * (FAR_UNDER_MSRP - ratio) / FAR_UNDER_MSRP, 4),
                    distance=round(ratio, 4),
                    reason=f"price {shown} is {ratio:.0%} of the {label} MSRP of {msrp:g} {currency}",
                    details={"signal": "price", "ratio": round(ratio, 4), "msrp": msrp, "currency": currency},
                )
            )
        return found

    def _reference(self, listing: Listing, brand: Brand, all_brands: Sequence[Brand]) -> tuple[float, str, str] | None:
        best = self.titles.best_product(listing, brand, all_brands)
        if best is not None:
            product = best[0]
            return product.msrp, product.currency, f"{brand.name} {product.name}"
        if brand.msrp is not None and brand.currency is not None:
            return brand.msrp, brand.currency, brand.name
        return None


class SellerMatcher:
    name = "seller"

    def __init__(self, history: SellerHistory) -> None:
        self.history = history

    def match(self, listing: Listing, brands: Sequence[Brand]) -> list[Evidence]:
        record = self.history.for_listing(listing)
        if not record:
            return []
        total = sum(record.values())
        found = []
        for brand in brands:
            same = record.get(brand.brand_id, 0)
            score = min(0.6, 0.25 + 0.05 * total + 0.1 * same)
            found.append(
                Evidence(
                    matcher=self.name,
                    brand_id=brand.brand_id,
                    brand=brand.name,
                    score=round(score, 4),
                    reason=(
                        f"seller {listing.seller_id} has {total} confirmed counterfeit listing(s)"
                        + (f", {same} of {brand.name}" if same else "")
                    ),
                    details={"signal": "seller-history", "confirmed": total, "same_brand": same},
                )
            )
        return found
