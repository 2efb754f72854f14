"""Matchers and their registry.

Which image matchers a scan runs is decided by what the brands in scope registered, not by
configuration: every registered matcher declares a :class:`MatcherRule` (the asset kinds it
looks for, the settings it depends on); what it is and what it costs are its facts
(:mod:`counterscan.matchers.facts`). ``image_matchers`` in the settings stays an explicit override.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from counterscan.config import Settings
from counterscan.errors import UserError
from counterscan.matchers.base import AssetIndex, ImageMatcher, ListingMatcher
from counterscan.matchers.facts import MATCHER_FACTS
from counterscan.records import AssetKind

if TYPE_CHECKING:
    from counterscan.imaging.decode import DecodeLimits

# The matchers' modules (OpenCV, FAISS, ONNX behind them) load when a matcher is made, not when
# this registry is read.


def decode_limits(settings: Settings) -> DecodeLimits:
    from counterscan.imaging.decode import DecodeLimits

    return DecodeLimits.from_settings(settings)


def _embedding(settings: Settings) -> ImageMatcher[AssetIndex]:
    from counterscan.matchers.embedding import Embedder, EmbeddingMatcher, OnnxEmbedder, VladEmbedder

    embedder: Embedder = OnnxEmbedder(Path(settings.embedding_model)) if settings.embedding_model else VladEmbedder()
    return EmbeddingMatcher(
        embedder,
        min_similarity=settings.embedding_min_similarity,
        index_dir=settings.home / "index",
    )


def _hashes(name: str, max_distance: Callable[[Settings], int]) -> Callable[[Settings], ImageMatcher[AssetIndex]]:
    def make(settings: Settings) -> ImageMatcher[AssetIndex]:
        from counterscan.matchers.perceptual import HASH_ALGORITHMS, HashMatcher

        algorithm = HASH_ALGORITHMS[name]
        if algorithm.requires and importlib.util.find_spec(algorithm.requires) is None:
            raise UserError(
                f"the {algorithm.name} image matcher needs the {algorithm.requires} package: "
                f"pip install 'counterscan[{algorithm.name}]'"
            )
        return HashMatcher(algorithm, max_distance=max_distance(settings), index_dir=settings.home / "index")

    return make


def _copies(settings: Settings) -> ImageMatcher[AssetIndex]:
    from counterscan.imaging.learned import LocalFeatureNetwork
    from counterscan.matchers.copies import CopyMatcher

    return CopyMatcher(LocalFeatureNetwork(threads=settings.scan_worker_threads))


def _keypoints(settings: Settings) -> ImageMatcher[AssetIndex]:
    from counterscan.matchers.keypoints import KeypointMatcher, KeypointOptions

    return KeypointMatcher(
        KeypointOptions(min_inliers=settings.keypoint_min_inliers, min_inlier_ratio=settings.keypoint_min_inlier_ratio)
    )


def _marks(settings: Settings) -> ImageMatcher[AssetIndex]:
    from counterscan.imaging.learned import LocalFeatureNetwork
    from counterscan.matchers.marks import MarkMatcher, MarkOptions

    return MarkMatcher(
        LocalFeatureNetwork(threads=settings.scan_worker_threads),
        MarkOptions(min_similarity=settings.mark_min_similarity, min_inliers=settings.mark_min_inliers),
    )


def _ocr(settings: Settings) -> ImageMatcher[AssetIndex]:
    from counterscan.matchers.ocr import OcrMatcher
    from counterscan.matchers.ocr_engine import ReaderOptions, TextReader

    return OcrMatcher(
        TextReader(
            ReaderOptions(
                det_side=settings.ocr_det_side,
                max_lines=settings.ocr_max_lines,
                min_confidence=settings.ocr_min_confidence,
                threads=settings.scan_worker_threads,
            )
        )
    )


def _shapes(settings: Settings) -> ImageMatcher[AssetIndex]:
    from counterscan.matchers.shapes import ShapeMatcher, ShapeOptions

    return ShapeMatcher(ShapeOptions(min_overlap=settings.shape_min_overlap))


IMAGE_MATCHERS: dict[str, Callable[[Settings], ImageMatcher[AssetIndex]]] = {
    "phash": _hashes("phash", lambda settings: settings.phash_max_distance),
    "dhash": _hashes("dhash", lambda settings: settings.dhash_max_distance),
    "pdq": _hashes("pdq", lambda settings: settings.pdq_max_distance),
    "embedding": _embedding,
    "copies": _copies,
    "keypoints": _keypoints,
    "marks": _marks,
    "ocr": _ocr,
    "shapes": _shapes,
}


@dataclass(frozen=True)
class MatcherRule:
    """When a default scan runs an image matcher, and what its results depend on."""

    runs_for: tuple[AssetKind, ...] | None
    """On by default when the brands have live assets of one of these kinds; ``()`` for a matcher
    that looks for the brands themselves (their names), on whenever there are brands; None: only
    when named in ``image_matchers``."""
    settings: tuple[str, ...] = ()
    """Settings its signals or evidence depend on: a change re-scans the listings it looks at."""
    version: str = "1"
    """Bump when a code change alters its results, so stores re-scan with it."""


_HASH_KINDS: tuple[AssetKind, ...] = ("product", "logo")
"""Whole-image copies: of a product photo, or of a logo used as the listing's picture."""

MATCHER_RULES: dict[str, MatcherRule] = {
    "phash": MatcherRule(_HASH_KINDS, settings=("phash_max_distance",)),
    "dhash": MatcherRule(_HASH_KINDS, settings=("dhash_max_distance",)),
    "pdq": MatcherRule(None, settings=("pdq_max_distance",)),
    "embedding": MatcherRule(None, settings=("embedding_min_similarity", "embedding_model")),
    # Product photos copied into listing photos, whole or in part (XFeat points, checked geometrically).
    "copies": MatcherRule(("product",)),
    # Version 2: inliers counted as distinct points, degenerate homographies refused.
    "keypoints": MatcherRule(("logo",), settings=("keypoint_min_inliers", "keypoint_min_inlier_ratio"), version="2"),
    # Brand marks (flat ones included) by learned local features, beside the keypoints.
    "marks": MatcherRule(("logo",), settings=("mark_min_similarity", "mark_min_inliers")),
    # Reads brand names and counterfeit words printed in photos: needs no asset, only brands.
    # Version 2: glued words split beside ordinary words; everyday words and accessory references quiet.
    "ocr": MatcherRule((), settings=("ocr_det_side", "ocr_max_lines", "ocr_min_confidence"), version="2"),
    # Flat logos by their silhouette, beside the keypoints.
    "shapes": MatcherRule(("logo",), settings=("shape_min_overlap",)),
}
"""One rule per entry of IMAGE_MATCHERS (a test holds every registered matcher to it); what each
costs is a fact of the matcher (``facts.MATCHER_FACTS``)."""


def _text(settings: Settings) -> ListingMatcher:
    from counterscan.matchers.text import TextMatcher

    return TextMatcher()


def _title(settings: Settings) -> ListingMatcher:
    from counterscan.matchers.title import ProductTitleMatcher

    return ProductTitleMatcher()


LISTING_MATCHERS: dict[str, Callable[[Settings], ListingMatcher]] = {"text": _text, "title": _title}


def _rule(name: str) -> MatcherRule:
    return MATCHER_RULES.get(name, MatcherRule(None))


def explicit_matchers(settings: Settings) -> tuple[str, ...] | None:
    """The names ``image_matchers`` lists, in registry order; None when it is empty (automatic)."""
    wanted = [name.strip() for name in settings.image_matchers.split(",") if name.strip()]
    if not wanted:
        return None
    if wanted == [NO_MATCHERS]:
        return ()
    unknown = set(wanted) - set(IMAGE_MATCHERS)
    if unknown:
        raise UserError(f"unknown image matcher(s) {', '.join(sorted(unknown))} (known: {', '.join(IMAGE_MATCHERS)})")
    return tuple(name for name in IMAGE_MATCHERS if name in wanted)


def default_matchers(kinds: Collection[AssetKind] | None, *, brands: bool = True) -> tuple[str, ...]:
    """The matchers a default scan runs when the brands in scope have live assets of ``kinds``
    (None: of every kind), in registry order."""
    chosen = []
    for name in IMAGE_MATCHERS:
        runs_for = _rule(name).runs_for
        if runs_for is None:
            continue
        if (runs_for == () and brands) or kinds is None or set(runs_for) & set(kinds):
            chosen.append(name)
    return tuple(chosen)


def matcher_names(
    settings: Settings, kinds: Collection[AssetKind] | None = None, *, brands: bool = True
) -> tuple[str, ...]:
    """What a scan runs: ``image_matchers`` when set, otherwise :func:`default_matchers`."""
    explicit = explicit_matchers(settings)
    return explicit if explicit is not None else default_matchers(kinds, brands=brands)


def with_matchers(settings: Settings, names: Sequence[str]) -> Settings:
    """Settings that name exactly these matchers (what a scan hands its workers)."""
    return replace(settings, image_matchers=",".join(names) or NO_MATCHERS)


NO_MATCHERS = "none"
"""``image_matchers = "none"``: no image matcher at all (words and prices only)."""


def image_matchers(settings: Settings) -> list[ImageMatcher[AssetIndex]]:
    """The image matchers the settings turn on, in registry order: those ``image_matchers`` names,
    or when it is empty every matcher a default scan may run (asset uploads compute their signals)."""
    return [IMAGE_MATCHERS[name](settings) for name in matcher_names(settings)]


def is_costly(name: str) -> bool:
    facts = MATCHER_FACTS.get(name)
    return facts is not None and facts.costly


def is_stored(name: str) -> bool:
    """Whether a scan keeps this matcher's signal of each listing image (its facts say)."""
    facts = MATCHER_FACTS.get(name)
    return facts is None or facts.stored


def matcher_fingerprints(settings: Settings, names: Sequence[str]) -> dict[str, str]:
    """Per matcher, a digest of what its results depend on (its rule's version and settings)."""
    found = {}
    for name in names:
        rule = _rule(name)
        values = [rule.version, *[repr(getattr(settings, setting)) for setting in rule.settings]]
        found[name] = hashlib.sha256(json.dumps([name, values]).encode()).hexdigest()[:16]
    return found


def default_logo_matchers(settings: Settings) -> list[ImageMatcher[AssetIndex]]:
    """What a default scan runs for brands whose only assets are logos (the evaluation's case)."""
    logo: tuple[AssetKind, ...] = ("logo",)
    return [IMAGE_MATCHERS[name](settings) for name in default_matchers(logo)]


def listing_matchers(settings: Settings) -> list[ListingMatcher]:
    return [factory(settings) for factory in LISTING_MATCHERS.values()]


__all__ = [
    "IMAGE_MATCHERS",
    "LISTING_MATCHERS",
    "MATCHER_RULES",
    "AssetIndex",
    "ImageMatcher",
    "ListingMatcher",
    "MatcherRule",
    "decode_limits",
    "default_logo_matchers",
    "default_matchers",
    "image_matchers",
    "is_costly",
    "is_stored",
    "listing_matchers",
    "matcher_fingerprints",
    "matcher_names",
    "with_matchers",
]
