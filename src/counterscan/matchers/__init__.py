"""Matchers and their registry."""

from __future__ import annotations

from collections.abc import Callable

from counterscan.config import Settings
from counterscan.imaging import DecodeLimits
from counterscan.matchers.base import ImageMatcher, ListingMatcher
from counterscan.matchers.phash import PHashMatcher
from counterscan.matchers.text import TextMatcher
from counterscan.matchers.title import ProductTitleMatcher


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)


IMAGE_MATCHERS: dict[str, Callable[[Settings], ImageMatcher]] = {
    "phash": lambda settings: PHashMatcher(decode_limits(settings), max_distance=settings.phash_max_distance),
}

LISTING_MATCHERS: dict[str, Callable[[Settings], ListingMatcher]] = {
    "text": lambda settings: TextMatcher(),
    "title": lambda settings: ProductTitleMatcher(),
}


def image_matchers(settings: Settings) -> list[ImageMatcher]:
    return [factory(settings) for factory in IMAGE_MATCHERS.values()]


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
