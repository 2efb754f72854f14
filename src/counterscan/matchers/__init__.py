"""Matchers and their registry."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from counterscan.config import Settings
from counterscan.errors import UserError
from counterscan.imaging import DecodeLimits
from counterscan.matchers.base import ImageMatcher, ListingMatcher
from counterscan.matchers.embedding import Embedder, EmbeddingMatcher, OnnxEmbedder, VladEmbedder
from counterscan.matchers.keypoints import KeypointMatcher, KeypointOptions
from counterscan.matchers.ocr import OcrMatcher
from counterscan.matchers.ocr_engine import ReaderOptions, TextReader
from counterscan.matchers.perceptual import DHASH, PDQ, PHASH, HashAlgorithm, HashMatcher
from counterscan.matchers.text import TextMatcher
from counterscan.matchers.title import ProductTitleMatcher


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(
        max_bytes=settings.max_image_bytes,
        max_pixels=settings.max_image_pixels,
        max_side=settings.max_image_side,
        max_aspect=settings.max_image_aspect,
    )


def _embedding(settings: Settings) -> ImageMatcher:
    embedder: Embedder = OnnxEmbedder(Path(settings.embedding_model)) if settings.embedding_model else VladEmbedder()
    return EmbeddingMatcher(
        embedder,
        min_similarity=settings.embedding_min_similarity,
        index_dir=settings.home / "index",
    )


def _hashes(algorithm: HashAlgorithm, max_distance: Callable[[Settings], int]) -> Callable[[Settings], ImageMatcher]:
    def make(settings: Settings) -> ImageMatcher:
        if algorithm.requires and importlib.util.find_spec(algorithm.requires) is None:
            raise UserError(
                f"the {algorithm.name} image matcher needs the {algorithm.requires} package: "
                f"pip install 'counterscan[{algorithm.name}]'"
            )
        return HashMatcher(algorithm, max_distance=max_distance(settings), index_dir=settings.home / "index")

    return make


IMAGE_MATCHERS: dict[str, Callable[[Settings], ImageMatcher]] = {
    "phash": _hashes(PHASH, lambda settings: settings.phash_max_distance),
    "dhash": _hashes(DHASH, lambda settings: settings.dhash_max_distance),
    "pdq": _hashes(PDQ, lambda settings: settings.pdq_max_distance),
    "embedding": _embedding,
    "keypoints": lambda settings: KeypointMatcher(
        KeypointOptions(min_inliers=settings.keypoint_min_inliers, min_inlier_ratio=settings.keypoint_min_inlier_ratio),
    ),
    "ocr": lambda settings: OcrMatcher(
        TextReader(
            ReaderOptions(
                det_side=settings.ocr_det_side,
                max_lines=settings.ocr_max_lines,
                min_confidence=settings.ocr_min_confidence,
                threads=settings.scan_worker_threads,
            )
        )
    ),
}

LISTING_MATCHERS: dict[str, Callable[[Settings], ListingMatcher]] = {
    "text": lambda settings: TextMatcher(),
    "title": lambda settings: ProductTitleMatcher(),
}


def image_matchers(settings: Settings) -> list[ImageMatcher]:
    """The image matchers the settings turn on (``image_matchers``), in registry order."""
    wanted = [name.strip() for name in settings.image_matchers.split(",") if name.strip()]
    unknown = set(wanted) - set(IMAGE_MATCHERS)
    if unknown:
        raise UserError(f"unknown image matcher(s) {', '.join(sorted(unknown))} (known: {', '.join(IMAGE_MATCHERS)})")
    return [factory(settings) for name, factory in IMAGE_MATCHERS.items() if name in wanted]


def listing_matchers(settings: Settings) -> list[ListingMatcher]:
    return [factory(settings) for factory in LISTING_MATCHERS.values()]


__all__ = [
    "IMAGE_MATCHERS",
    "LISTING_MATCHERS",
    "ImageMatcher",
    "ListingMatcher",
    "decode_limits",
    "image_matchers",
    "listing_matchers",
]
