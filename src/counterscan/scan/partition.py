"""The work a scan sends to its workers: match a partition of listings against the indexes.

Workers only read (image blobs, the context they are sent) and return evidence and any image
signals they computed; the coordinator scores and writes. Each worker process loads the matcher
indexes saved under ``HOME/index`` once per context (building and saving only those whose inputs
changed, see :mod:`counterscan.matchers.warm`) and keeps them while the context's key stays the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from counterscan.config import Settings
from counterscan.errors import ImageError
from counterscan.imaging.decode import Picture
from counterscan.matchers import (
    AssetIndex,
    ImageMatcher,
    ListingMatcher,
    decode_limits,
    image_matchers,
    is_costly,
    listing_matchers,
    matcher_fingerprints,
)
from counterscan.matchers.context import PriceMatcher, SellerHistory, SellerMatcher, about, corroborate
from counterscan.matchers.facts import MATCHER_FACTS, MatcherFacts
from counterscan.matchers.ocr import OcrMatcher, ReadText
from counterscan.matchers.title import ProductTitleMatcher
from counterscan.matchers.warm import WarmIndex, warm_index
from counterscan.ranking.features import FEATURES, feature_row
from counterscan.ranking.ranker import cold_start_scores
from counterscan.ranking.training import ModelScorer
from counterscan.records import Brand, Evidence, Listing, ListingToScan
from counterscan.signals import SignalTable
from counterscan.store.blobs import BlobStore


@dataclass(frozen=True)
class MatchContext:
    """Everything a worker needs; its ``key`` names the asset and brand state it was built from."""

    key: str
    settings: Settings
    brands: tuple[Brand, ...]
    asset_signals: dict[str, SignalTable]
    blob_root: Path
    sellers: SellerHistory = field(default_factory=SellerHistory)


@dataclass(frozen=True)
class PartitionResult:
    evidence: dict[int, tuple[Evidence, ...]]
    """Per listing key, its evidence in a stable order (images in listing order, then words)."""
    new_signals: dict[str, dict[str, bytes]] = field(default_factory=dict)
    unreadable: int = 0
    indexes_built: tuple[str, ...] = ()
    """The matchers whose index the worker built (not loaded) to match this partition."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Per costly matcher, the images it was spared because every brand was settled before it."""
    encoded: dict[str, int] = field(default_factory=dict)
    """Per image matcher, the images it encoded (those whose signal was not cached)."""
    cpu_ms: tuple[float, ...] = ()
    """Per distinct image, the worker's CPU milliseconds to decode, encode and search it."""


@dataclass
class Prepared:
    """A context's matchers with their built indexes: what matching one listing needs."""

    image: list[tuple[ImageMatcher[AssetIndex], AssetIndex]]
    listing: list[ListingMatcher]
    blobs: BlobStore
    price: PriceMatcher
    seller: SellerMatcher
    built: tuple[str, ...] = ()
    """The matchers whose saved index did not hold the context's inputs (built and saved)."""


def _index(matcher: ImageMatcher[AssetIndex], context: MatchContext) -> WarmIndex:
    signals = context.asset_signals.get(matcher.name) or SignalTable.from_signals(())
    (fingerprint,) = matcher_fingerprints(context.settings, [matcher.name]).values()
    return warm_index(matcher, signals, context.brands, folder=context.settings.home / "index", fingerprint=fingerprint)


def prepare(context: MatchContext) -> Prepared:
    """Every matcher's index for ``context``, loaded where saved from the same inputs, otherwise
    built and saved (callers keep the result while the key holds)."""
    warmed = [(matcher, _index(matcher, context)) for matcher in image_matchers(context.settings)]
    listing = listing_matchers(context.settings)
    titles = next((m for m in listing if isinstance(m, ProductTitleMatcher)), None)
    return Prepared(
        [(matcher, warm.index) for matcher, warm in warmed],
        listing,
        BlobStore(context.blob_root),
        PriceMatcher(context.settings.rates, titles),
        SellerMatcher(context.sellers),
        built=tuple(matcher.name for matcher, warm in warmed if warm.built),
    )


class _PreparedCache:
    """Per-process cache of built indexes: one entry, replaced when the context key changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: str | None = None
        self._value: Prepared | None = None

    def get(self, context: MatchContext) -> tuple[Prepared, bool]:
        """The prepared context, and whether this call prepared it."""
        with self._lock:
            if self._key != context.key or self._value is None:
                self._value, self._key = prepare(context), context.key
                return self._value, True
            return self._value, False


_PREPARED = _PreparedCache()
"""The one piece of process state: indexes are too costly to rebuild for every partition."""


def match_partition(
    context: MatchContext, items: Sequence[ListingToScan], cached: dict[str, dict[str, bytes]]
) -> PartitionResult:
    """Evidence for each listing of ``items``; ``cached`` holds known signals per matcher and image."""
    prepared, fresh = _PREPARED.get(context)
    sha256s = sorted({sha256 for item in items for sha256 in item.image_sha256s})
    known = {matcher.name: dict(cached.get(matcher.name, {})) for matcher, _index in prepared.image}
    limits = decode_limits(context.settings)

    def open_picture(sha256: str) -> Picture:
        return Picture.open(prepared.blobs.get(sha256), limits, source=sha256)

    cascade = Cascade(prepared, context, known)
    per_image = cascade.run(sha256s, open_picture)
    evidence = {
        item.listing_pk: listing_evidence(prepared, context, item.listing, item.image_sha256s, per_image, signals=known)
        for item in items
    }
    return PartitionResult(
        evidence=evidence,
        new_signals={name: found for name, found in cascade.new_signals.items() if MATCHER_FACTS[name].stored},
        unreadable=len(cascade.failed),
        indexes_built=prepared.built if fresh else (),
        skipped=cascade.skipped,
        encoded={name: len(found) for name, found in cascade.new_signals.items()},
        cpu_ms=tuple(cascade.cpu_ms),
    )


Observe = Callable[[str, float], None]
"""Called with a matcher's name and the seconds it took (the service's per-matcher latency)."""


def stage_order(prepared: Prepared) -> list[tuple[ImageMatcher[AssetIndex], AssetIndex]]:
    """The image matchers as a cascade: the cheap ones in registry order, then the costly ones by
    what they find per millisecond (their facts), best first."""

    def facts(name: str) -> MatcherFacts:
        return MATCHER_FACTS.get(name, MatcherFacts(name, "logo", costly=True))

    cheap = [stage for stage in prepared.image if not facts(stage[0].name).costly]
    costly = [stage for stage in prepared.image if facts(stage[0].name).costly]
    return cheap + sorted(costly, key=lambda stage: -facts(stage[0].name).yield_per_ms)


class Cascade:
    """Every image through the matchers in :func:`stage_order`, one decode per image (and only when
    a signal is missing), a costly stage skipped for an image once every brand in scope is settled
    by a strong finding (a verified copy or logo: ``MatcherFacts.settles_at``)."""

    def __init__(
        self,
        prepared: Prepared,
        context: MatchContext,
        known: dict[str, dict[str, bytes]],
        *,
        observe: Observe | None = None,
        costly: bool = True,
    ) -> None:
        self.prepared = prepared
        self.known = known
        """Signals per matcher and image: those given, and those this cascade computes."""
        self.observe = observe
        self.costly = costly
        """False: the cheap stages only (a check's synchronous answer)."""
        self.scanned = {brand.brand_id for brand in context.brands}
        self.new_signals: dict[str, dict[str, bytes]] = {matcher.name: {} for matcher, _index in prepared.image}
        self.failed: set[str] = set()
        self.skipped: dict[str, int] = {}
        """Per costly matcher, the images it was spared because their brands were all settled."""
        self.cpu_ms: list[float] = []
        """Per image run, the CPU milliseconds of this process it took (decode, encode, search)."""

    def run(self, sha256s: Sequence[str], open_picture: Callable[[str], Picture] | None) -> dict[str, list[Evidence]]:
        """Per image, the evidence of every stage, in registry order of the matchers (so evidence
        reads the same whatever the stages' order). Without ``open_picture``, a stage whose signal
        of an image is not known skips that image."""
        order = {matcher.name: number for number, (matcher, _index) in enumerate(self.prepared.image)}
        per_image: dict[str, list[Evidence]] = {}
        for sha256 in sha256s:
            started = time.process_time()
            found = self._image(sha256, open_picture)
            per_image[sha256] = sorted(found, key=lambda item: order.get(item.matcher, len(order)))
            self.cpu_ms.append(1000 * (time.process_time() - started))
        return per_image

    def _image(self, sha256: str, open_picture: Callable[[str], Picture] | None) -> list[Evidence]:
        found: list[Evidence] = []
        settled: set[int] = set()
        picture: Picture | None = None
        for matcher, index in stage_order(self.prepared):
            facts = MATCHER_FACTS.get(matcher.name)
            is_costly = facts is None or facts.costly
            if is_costly and (not self.costly or (self.scanned and self.scanned <= settled)):
                if self.costly:
                    self.skipped[matcher.name] = self.skipped.get(matcher.name, 0) + 1
                continue
            started = time.perf_counter()
            signal = self.known.get(matcher.name, {}).get(sha256)
            if signal is None:
                if open_picture is None or sha256 in self.failed:
                    continue
                try:
                    # One decode per image, whatever the number of matchers: they share the picture's forms.
                    picture = picture if picture is not None else open_picture(sha256)
                    signal = matcher.encode(picture)
                except (ImageError, FileNotFoundError):
                    self.failed.add(sha256)
                    continue
                self.known.setdefault(matcher.name, {})[sha256] = signal
                self.new_signals.setdefault(matcher.name, {})[sha256] = signal
            (hits,) = index.query([(sha256, signal)])
            kept = [item for item in hits if item.brand_id in self.scanned]
            found.extend(kept)
            if facts is not None and facts.settles_at is not None:
                settled.update(item.brand_id for item in kept if item.score >= facts.settles_at)
            if self.observe is not None:
                self.observe(matcher.name, time.perf_counter() - started)
        return found


def image_evidence(
    prepared: Prepared,
    context: MatchContext,
    signals: Mapping[str, Mapping[str, bytes]],
    sha256s: Sequence[str],
    *,
    observe: Observe | None = None,
) -> dict[str, list[Evidence]]:
    """Per image, what the image matchers find of the context's brands, given the images' signals."""
    known = {name: dict(found) for name, found in signals.items()}
    return Cascade(prepared, context, known, observe=observe).run(sha256s, None)


def listing_evidence(
    prepared: Prepared,
    context: MatchContext,
    listing: Listing,
    image_sha256s: Sequence[str],
    per_image: Mapping[str, Sequence[Evidence]],
    *,
    observe: Observe | None = None,
    signals: Mapping[str, Mapping[str, bytes]] | None = None,
) -> tuple[Evidence, ...]:
    """One listing's evidence in a stable order: its images' in listing order, then its words',
    then price and seller history for the brands already in evidence. ``signals`` (per matcher and
    image) lets counterfeit words read on the photos count for those brands too."""
    found_here: list[Evidence] = []
    for sha256 in dict.fromkeys(image_sha256s):
        found_here.extend(per_image.get(sha256, ()))
    for listing_matcher in prepared.listing:
        started = time.perf_counter()
        found_here.extend(listing_matcher.match(listing, context.brands))
        if observe is not None:
            observe(getattr(listing_matcher, "name", type(listing_matcher).__name__), time.perf_counter() - started)
    found_here = corroborate(found_here)
    # Price and seller history say nothing alone; they weigh in for brands the listing is about
    # (not for an everyday word alone, nor a brand an accessory names as what it fits).
    involved = about(found_here)
    suspects_of = [brand for brand in context.brands if brand.brand_id in involved]
    if signals is not None:
        found_here.extend(_photo_vocabulary(prepared, signals, image_sha256s, found_here, suspects_of))
    found_here.extend(prepared.price.match(listing, suspects_of, context.brands))
    found_here.extend(prepared.seller.match(listing, suspects_of))
    return tuple(found_here)


@dataclass(frozen=True)
class BrandAssessment:
    """How strongly one listing points at one brand, and why."""

    brand_id: int
    brand: str
    score: float
    evidence: tuple[Evidence, ...]
    features: Mapping[str, float]
    best: int | None = None
    """Index into the listing's whole evidence of this brand's strongest finding."""


@dataclass(frozen=True)
class Assessment:
    """A listing's evidence and scores: the headline a scan stores, and each brand's own."""

    evidence: tuple[Evidence, ...]
    score: float
    brand_id: int | None
    best: int | None
    """Index into ``evidence`` of the strongest finding of the headline brand."""
    brands: tuple[BrandAssessment, ...] = ()
    """Per suspected brand, best first; the headline repeats the first (``features`` only when asked for)."""


def assess_many(
    rows: Sequence[tuple[Listing, Sequence[Evidence]]],
    brands: Sequence[Brand],
    model: ModelScorer | None,
    *,
    per_brand: bool = False,
) -> list[Assessment]:
    """Evidence -> scores, for a scan's batch or one check: the ONE scoring path.

    A brand's own authorised sellers are never flagged for that brand. The cold-start scorer picks
    the brand and the best evidence; a trained ranker, when active, replaces the score of listings
    with evidence. ``per_brand`` also scores each brand on its own evidence (with its features).
    """
    kept_rows: list[tuple[Listing, tuple[Evidence, ...]]] = []
    for listing, evidence in rows:
        seller = listing.seller_id
        authorised = {brand.brand_id for brand in brands if seller is not None and seller in brand.authorised_sellers}
        kept_rows.append((listing, tuple(found for found in evidence if found.brand_id not in authorised)))
    # Each (listing, brand) is a suspect of its own, scored on that brand's evidence.
    cold = [
        [found for found in cold_start_scores(kept) if found.brand_id is not None and found.score > 0]
        for _listing, kept in kept_rows
    ]
    scores = [[found.score for found in per_listing] for per_listing in cold]
    if model is not None:
        wanted = [
            (listing, kept, found.brand_id)
            for (listing, kept), per_listing in zip(kept_rows, cold, strict=True)
            for found in per_listing
            if found.brand_id is not None
        ]
        rescored = iter(model.scores_for_brands(wanted))
        scores = [[next(rescored) for _found in per_listing] for per_listing in cold]
    assessed: list[Assessment] = []
    for (listing, kept), per_listing, brand_scores in zip(kept_rows, cold, scores, strict=True):
        found_brands = sorted(
            (
                _brand_assessment(listing, kept, found.brand_id, found.best, score, features=per_brand)
                for found, score in zip(per_listing, brand_scores, strict=True)
                if found.brand_id is not None
            ),
            key=lambda brand: (-brand.score, brand.brand),
        )
        top = found_brands[0] if found_brands else None
        assessed.append(
            Assessment(
                evidence=kept,
                score=0.0 if top is None else top.score,
                brand_id=None if top is None else top.brand_id,
                best=None if top is None else top.best,
                brands=tuple(found_brands),
            )
        )
    return assessed


def _brand_assessment(
    listing: Listing,
    evidence: tuple[Evidence, ...],
    brand_id: int,
    best: int | None,
    score: float,
    *,
    features: bool,
) -> BrandAssessment:
    own = tuple(item for item in evidence if item.brand_id == brand_id)
    values = feature_row(listing, evidence, brand_id=brand_id) if features else ()
    return BrandAssessment(
        brand_id=brand_id,
        brand=own[0].brand if own else "",
        score=score,
        evidence=own,
        features=dict(zip(FEATURES, (round(float(v), 6) for v in values), strict=True)) if features else {},
        best=best,
    )


def assess_listing(
    prepared: Prepared,
    context: MatchContext,
    listing: Listing,
    signals: Sequence[tuple[str, Mapping[str, bytes]]],
    *,
    model: ModelScorer | None,
    observe: Observe | None = None,
    costly: bool = True,
) -> Assessment:
    """One listing and its images' signals ((sha256, signal per matcher), in listing order) ->
    evidence and scores, through the same matching and scoring functions as a batch scan
    (``costly``: False for the cheap stages alone)."""
    sha256s = [sha256 for sha256, _found in signals]
    by_matcher: dict[str, dict[str, bytes]] = {}
    for sha256, found in signals:
        for name, signal in found.items():
            by_matcher.setdefault(name, {})[sha256] = signal
    per_image = Cascade(prepared, context, by_matcher, observe=observe, costly=costly).run(sorted(set(sha256s)), None)
    evidence = listing_evidence(prepared, context, listing, sha256s, per_image, observe=observe, signals=by_matcher)
    (assessed,) = assess_many([(listing, evidence)], context.brands, model, per_brand=True)
    return assessed


def encode_images(
    prepared: Prepared,
    context: MatchContext,
    images: Sequence[tuple[str, bytes]],
    *,
    observe: Observe | None = None,
    costly: bool = True,
) -> list[tuple[str, dict[str, bytes]]]:
    """Every image matcher's signal of each image (``costly`` False: the cheap ones'), decoded once
    as a scan does (raises ImageError)."""
    limits = decode_limits(context.settings)
    encoded: list[tuple[str, dict[str, bytes]]] = []
    for sha256, data in images:
        picture = Picture.open(data, limits, source=sha256)
        signals: dict[str, bytes] = {}
        for matcher, _index in prepared.image:
            if not costly and is_costly(matcher.name):
                continue
            started = time.perf_counter()
            signals[matcher.name] = matcher.encode(picture)
            if observe is not None:
                observe(matcher.name, time.perf_counter() - started)
        encoded.append((sha256, signals))
    return encoded


def _photo_vocabulary(
    prepared: Prepared,
    known: Mapping[str, Mapping[str, bytes]],
    image_sha256s: Sequence[str],
    found: Sequence[Evidence],
    suspects_of: Sequence[Brand],
) -> list[Evidence]:
    """Counterfeit words read in a listing's photos ("AAA replica") count for the brands its other
    evidence names, as they would in its title, unless the photo's own reading already said so."""
    reader = next((matcher for matcher, _index in prepared.image if isinstance(matcher, OcrMatcher)), None)
    if reader is None or not suspects_of:
        return []
    said = {
        (e.brand_id, e.image_sha256)
        for e in found
        if e.matcher == reader.name and e.details.get("signal") == "counterfeit-term"
    }
    extra: list[Evidence] = []
    for sha256 in dict.fromkeys(image_sha256s):
        signal = known.get(reader.name, {}).get(sha256)
        if signal is None:
            continue
        brands = [brand for brand in suspects_of if (brand.brand_id, sha256) not in said]
        extra.extend(reader.vocabulary_beside(brands, sha256, ReadText.from_bytes(signal)))
    return extra
