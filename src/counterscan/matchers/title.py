"""Product-title similarity: does a listing title name one of a brand's registered products?

Character n-gram TF-IDF (3-5 letters inside words) is robust to the noise of marketplace titles
("Air-Max90", "airmax 90 mens"); a shared model code ("SKX007K1", "DSC-W120P") is the strongest
single signal a title gives, so it lifts the similarity to at least ``CODE_MATCH``.

A product counts for its brand only where the listing is about that brand: the brand named in it
(a title that only shares an everyday word with the product, "Galaxy print leggings", needs
``STRONG_PRODUCT_TITLE``), or, with no word of the brand at all, a similarity of at least
``STRONG_PRODUCT_TITLE`` and no other brand named ("Apple AirPods Pro" is not Samsung's "Galaxy
Buds 2 Pro"). A product named only as what an accessory fits ("case for Galaxy S24") does not count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from counterscan.matchers.text import BrandUsage, TextMatcher
from counterscan.records import Brand, Evidence, Listing, Product
from counterscan.textnorm import skeleton

CODE = re.compile(r"\b(?=[a-z0-9-]*\d)(?=[a-z0-9-]*[a-z])[a-z0-9][a-z0-9-]{3,}\b")
CODE_MATCH = 0.9
PRODUCT_TITLE_THRESHOLD = 0.5
PRODUCT_TITLE_SCORE = 0.25
STRONG_PRODUCT_TITLE = 0.75


def model_codes(text: str) -> set[str]:
    """Alphanumeric model codes, hyphens dropped: 'DSC-W120P' -> 'dscw120p'."""
    return {code.replace("-", "") for code in CODE.findall(skeleton(text))}


class TitleSimilarity:
    """Cosine similarity of character n-gram TF-IDF vectors, fitted on a corpus of titles."""

    def __init__(self, corpus: Sequence[str]) -> None:
        # scikit-learn costs about 2 s to import: only when titles are compared, not for every command.
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=1)
        self.vectorizer.fit([skeleton(text) for text in corpus] or ["-"])

    def vectors(self, texts: Sequence[str]) -> object:
        return self.vectorizer.transform([skeleton(text) for text in texts])

    def pairwise(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        """Similarity of ``left[i]`` with ``right[i]`` for every i."""
        a, b = self.vectors(left), self.vectors(right)
        cosine = np.asarray(a.multiply(b).sum(axis=1)).ravel()  # type: ignore[attr-defined]
        codes = np.array([bool(model_codes(x) & model_codes(y)) for x, y in zip(left, right, strict=True)])
        return np.where(codes, np.maximum(cosine, CODE_MATCH), cosine)

    def best(self, title: str, candidates: Sequence[str]) -> tuple[int, float] | None:
        if not candidates:
            return None
        scores = self.pairwise([title] * len(candidates), list(candidates))
        index = int(np.argmax(scores))
        return index, float(scores[index])


class ProductTitleMatcher:
    """Evidence when a title names a brand's registered product (by n-grams or model code)."""

    name = "title"

    def __init__(self, threshold: float = PRODUCT_TITLE_THRESHOLD, words: TextMatcher | None = None) -> None:
        self.threshold = threshold
        self.words = words or TextMatcher()
        self._fitted: tuple[tuple[str, ...], TitleSimilarity] | None = None
        self._usage: tuple[str, tuple[Brand, ...], dict[int, BrandUsage]] | None = None

    def similarity(self, brands: Sequence[Brand]) -> TitleSimilarity:
        names = tuple(product.name for brand in brands for product in brand.products)
        if self._fitted is None or self._fitted[0] != names:
            self._fitted = (names, TitleSimilarity(names))
        return self._fitted[1]

    def usage(self, listing: Listing, brands: Sequence[Brand]) -> dict[int, BrandUsage]:
        """How the listing uses the brands' words; the last listing's is kept: the price logic asks
        again for each brand the listing is about."""
        text, key = f"{listing.title}\n{listing.description}", tuple(brands)
        if self._usage is None or self._usage[:2] != (text, key):
            self._usage = (text, key, self.words.usage(text, brands))
        return self._usage[2]

    def best_product(self, listing: Listing, brand: Brand, brands: Sequence[Brand]) -> tuple[Product, float] | None:
        if not brand.products:
            return None
        return self._best(listing, brand, self.similarity(brands), self.usage(listing, brands))

    def _best(
        self, listing: Listing, brand: Brand, similarity: TitleSimilarity, usage: dict[int, BrandUsage]
    ) -> tuple[Product, float] | None:
        found = similarity.best(listing.title, [product.name for product in brand.products])
        if found is None or found[1] < self.threshold:
            return None
        own = usage.get(brand.brand_id)
        others_named = any(other.mentioned for brand_id, other in usage.items() if brand_id != brand.brand_id)
        if own is not None and own.named:
            return brand.products[found[0]], found[1]
        if own is not None and not own.mentioned:  # named only as what an accessory fits
            return None
        if found[1] < STRONG_PRODUCT_TITLE or others_named:
            return None
        return brand.products[found[0]], found[1]

    def match(self, listing: Listing, brands: Sequence[Brand]) -> list[Evidence]:
        found: list[Evidence] = []
        # Fitted once per call, not per brand: with 1,000 brands the per-brand check of the fitted
        # names cost more than everything else a real-time check does.
        fitted = self.similarity(brands)
        usage = self.usage(listing, brands) if any(brand.products for brand in brands) else {}
        for brand in brands:
            best = self._best(listing, brand, fitted, usage) if brand.products else None
            if best is None:
                continue
            product, similarity = best
            found.append(
                Evidence(
                    matcher=self.name,
                    brand_id=brand.brand_id,
                    brand=brand.name,
                    score=PRODUCT_TITLE_SCORE,
                    distance=round(1.0 - similarity, 4),
                    reason=f"title names {brand.name} product {product.name!r} (similarity {similarity:.2f})",
                    details={"signal": "product-title", "product": product.name, "similarity": round(similarity, 4)},
                )
            )
        return found
