"""Evidence and listing -> one numeric feature row for the ranker. Pure functions.

| feature | meaning |
|---|---|
| image_copy | best whole-image hash confidence: pHash, dHash or PDQ (0 when no copy found) |
| copied_images | number of listing images that are near-copies of an asset (a hash or a verified copy) |
| logo | best confidence of a logo found inside a photo by local features (keypoints + marks points per photo) |
| embedding | best embedding confidence |
| brand_mention | the brand is named (honestly) |
| disguised | the brand name is disguised (homoglyphs, leetspeak) |
| lookalike | a look-alike spelling of the brand |
| counterfeit_terms | counterfeit vocabulary beside a brand name |
| product_title | similarity of the title to a registered product (0 when none) |
| price_ratio | price / MSRP when far under it, else 1 |
| seller_confirmed | earlier confirmed counterfeits of the seller (capped at 10) |
| evidence_brands | number of brands with evidence (several at once is a spam pattern) |
| has_price | the listing states a price |
| listing_age_days | days since the listing was observed (capped at 365; 0 when unknown) |
| photo_words | best confidence of the brand name (honest, disguised, look-alike) read in a photo (OCR) |
| photo_counterfeit_terms | counterfeit vocabulary read in a photo that also names the brand (OCR) |
| logo_and_words | logo seen (keypoints, shapes) and name read (OCR) in one photo: noisy-OR of both; else 0 |
| photo_copy | best confidence of a product photo copied whole or in part into a listing photo (copies) |
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from counterscan.matchers.context import QUIET_SIGNALS as _QUIET_SIGNALS
from counterscan.matchers.facts import counting_points, of_family
from counterscan.matchers.ocr import PHOTO_SCORES
from counterscan.matchers.outline import inlier_confidence
from counterscan.records import Evidence, Listing

FEATURES = (
    "image_copy",
    "copied_images",
    "logo",
    "embedding",
    "brand_mention",
    "disguised",
    "lookalike",
    "counterfeit_terms",
    "product_title",
    "price_ratio",
    "seller_confirmed",
    "evidence_brands",
    "has_price",
    "listing_age_days",
    "photo_words",
    "photo_counterfeit_terms",
    "logo_and_words",
    "photo_copy",
)
HASH_MATCHERS = of_family("hash")
COPY_MATCHERS = of_family("copy")
"""Matchers that find an asset photo copied into part of a listing photo, checked geometrically."""
LOGO_MATCHERS = of_family("logo")
"""Matchers that see a brand's logo inside a photo."""
POINT_MATCHERS = counting_points()
"""Logo matchers whose evidence counts agreeing points (RootSIFT keypoints, XFeat marks)."""
_SIGNAL_FEATURES = {
    "brand-mention": "brand_mention",
    "disguised-brand": "disguised",
    "lookalike": "lookalike",
    "counterfeit-term": "counterfeit_terms",
}


def _age_days(listing: Listing, now: datetime) -> float:
    if not listing.observed_at:
        return 0.0
    try:
        observed = datetime.fromisoformat(listing.observed_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if observed.tzinfo is None:
        observed = observed.replace(tzinfo=UTC)
    return float(min(365.0, max(0.0, (now - observed).total_seconds() / 86400)))


def points_per_photo(evidence: Sequence[Evidence]) -> dict[tuple[int, str], float]:
    """Per (brand, photo) where local features found the brand's logo: the confidence of the
    agreeing points of every such matcher added up (each matcher's best in that photo). RootSIFT
    sees lettering and texture, XFeat flat marks: the sum separates logos from chance better than
    either count alone, so a mark both see is surer than one either sees."""
    best: dict[tuple[int, str, str], int] = {}
    for item in evidence:
        if item.matcher in POINT_MATCHERS and item.image_sha256 is not None:
            inliers = item.details.get("inliers")
            if isinstance(inliers, int | float):
                key = (item.brand_id, item.image_sha256, item.matcher)
                best[key] = max(best.get(key, 0), int(inliers))
    summed: dict[tuple[int, str], int] = {}
    for (brand_id, photo, _matcher), inliers in best.items():
        summed[brand_id, photo] = summed.get((brand_id, photo), 0) + inliers
    return {key: inlier_confidence(total) for key, total in summed.items()}


def same_photo(evidence: Sequence[Evidence]) -> dict[tuple[int, str], float]:
    """Per (brand, photo) where the brand's logo is seen and its name read in that same photo:
    the noisy-OR of the best logo and the best word confidence, which exceeds either alone."""
    logos: dict[tuple[int, str], float] = {}
    words: dict[tuple[int, str], float] = {}
    for item in evidence:
        if item.image_sha256 is None:
            continue
        key = (item.brand_id, item.image_sha256)
        if item.matcher in LOGO_MATCHERS:
            logos[key] = max(logos.get(key, 0.0), item.score)
        elif item.matcher == "ocr" and item.details.get("signal") != "counterfeit-term":
            words[key] = max(words.get(key, 0.0), item.score)
    return {key: 1.0 - (1.0 - logos[key]) * (1.0 - words[key]) for key in logos.keys() & words.keys()}


def feature_row(
    listing: Listing, evidence: Sequence[Evidence], *, now: datetime | None = None, brand_id: int | None = None
) -> np.ndarray:
    """The features of one listing, in ``FEATURES`` order.

    With ``brand_id``, the features of the listing as a suspect of that brand: only that brand's
    evidence counts, except ``evidence_brands``, which counts every brand with evidence.
    """
    values = dict.fromkeys(FEATURES, 0.0)
    values["price_ratio"] = 1.0
    copied_images: set[str] = set()
    for item in evidence:
        if brand_id is not None and item.brand_id != brand_id:
            continue
        signal = str(item.details.get("signal", ""))
        if item.matcher in HASH_MATCHERS:
            values["image_copy"] = max(values["image_copy"], item.score)
            if item.image_sha256:
                copied_images.add(item.image_sha256)
        elif item.matcher in COPY_MATCHERS:
            values["photo_copy"] = max(values["photo_copy"], item.score)
            if item.image_sha256:
                copied_images.add(item.image_sha256)
        elif item.matcher in POINT_MATCHERS:
            values["logo"] = max(values["logo"], item.score)
        elif item.matcher == "embedding":
            values["embedding"] = max(values["embedding"], item.score)
        elif item.matcher == "text" and signal in _SIGNAL_FEATURES:
            values[_SIGNAL_FEATURES[signal]] = 1.0
        elif item.matcher == "title":
            values["product_title"] = max(values["product_title"], float(item.details.get("similarity", 0.0)))
        elif item.matcher == "price" and item.distance is not None:
            values["price_ratio"] = min(values["price_ratio"], float(item.distance))
        elif item.matcher == "ocr" and signal == "counterfeit-term":
            values["photo_counterfeit_terms"] = 1.0
        elif item.matcher == "ocr" and signal in _QUIET_SIGNALS:
            continue
        elif item.matcher == "ocr":
            values["photo_words"] = max(values["photo_words"], item.score / PHOTO_SCORES.get(signal, 1.0))
        elif item.matcher == "seller":
            values["seller_confirmed"] = min(10.0, float(item.details.get("confirmed", 0)))
    values["logo"] = max(
        values["logo"],
        max(
            (sure for (owner, _photo), sure in points_per_photo(evidence).items() if brand_id in (None, owner)),
            default=0.0,
        ),
    )
    values["logo_and_words"] = max(
        (both for (owner, _photo), both in same_photo(evidence).items() if brand_id is None or owner == brand_id),
        default=0.0,
    )
    values["copied_images"] = float(len(copied_images))
    values["evidence_brands"] = float(len({item.brand_id for item in evidence}))
    values["has_price"] = 1.0 if listing.price is not None else 0.0
    values["listing_age_days"] = _age_days(listing, now or datetime.now(UTC))
    return np.array([values[name] for name in FEATURES], dtype=np.float64)


def feature_matrix(rows: Sequence[tuple[Listing, Sequence[Evidence]]], *, now: datetime | None = None) -> np.ndarray:
    if not rows:
        return np.zeros((0, len(FEATURES)))
    return np.stack([feature_row(listing, evidence, now=now) for listing, evidence in rows])
