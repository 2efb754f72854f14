from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from counterscan.config import Settings
from counterscan.imaging import DecodeLimits
from counterscan.matchers import IMAGE_MATCHERS, image_matchers
from counterscan.matchers.index import BinaryHashIndex
from counterscan.matchers.phash import PHashMatcher, crop_fraction
from counterscan.records import AssetSignal
from tests.conftest import PHOTO_NAMES, jpeg_bytes

ROBUST_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera", "coins", "brick")


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


@pytest.fixture
def matcher(limits: DecodeLimits) -> PHashMatcher:
    return PHashMatcher(limits, max_distance=Settings().phash_max_distance)


def nearest_variant(matcher: PHashMatcher, asset: Image.Image, listing: bytes) -> int:
    query = matcher.encode(listing)
    return min(hamming(query, signal) for _, signal in matcher.encode_asset(jpeg_bytes(asset, 95)))


def half(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2))


TRANSFORMS = {
    "resize 50%": lambda image: jpeg_bytes(half(image), 85),
    "jpeg quality 40": lambda image: jpeg_bytes(image, 40),
    "10% crop, centred": lambda image: jpeg_bytes(crop_fraction(image, (0.05, 0.05, 0.05, 0.05)), 85),
    "10% crop, one side": lambda image: jpeg_bytes(crop_fraction(image, (0.0, 0.0, 0.1, 0.0)), 85),
    "10% crop, corner": lambda image: jpeg_bytes(crop_fraction(image, (0.1, 0.1, 0.0, 0.0)), 85),
    "mirrored": lambda image: jpeg_bytes(ImageOps.mirror(image), 85),
    "10% crop + resize 50% + q40": lambda image: jpeg_bytes(half(crop_fraction(image, (0.05, 0.05, 0.05, 0.05))), 40),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", ROBUST_PHOTOS)
def test_phash_survives_common_edits(
    photos: dict[str, Image.Image], matcher: PHashMatcher, name: str, transform: str
) -> None:
    distance = nearest_variant(matcher, photos[name], TRANSFORMS[transform](photos[name]))
    assert distance <= matcher.max_distance, f"{name} after {transform}: distance {distance}"


def test_unrelated_photos_stay_outside_the_threshold(photos: dict[str, Image.Image], matcher: PHashMatcher) -> None:
    assets = {name: matcher.encode_asset(jpeg_bytes(photos[name], 95)) for name in PHOTO_NAMES}
    listings = {name: matcher.encode(jpeg_bytes(photos[name], 80)) for name in PHOTO_NAMES}
    for asset_name, listing_name in itertools.permutations(PHOTO_NAMES, 2):
        distance = min(hamming(listings[listing_name], signal) for _, signal in assets[asset_name])
        assert distance > matcher.max_distance, f"{listing_name} matched {asset_name} at {distance}"


def test_query_returns_best_variant_per_asset_with_reason(
    photos: dict[str, Image.Image], matcher: PHashMatcher
) -> None:
    signals = [
        AssetSignal(asset_id=asset_id, brand_id=7, brand="Acme", signal=signal, variant=variant)
        for asset_id, name in enumerate(("coffee", "rocket"), start=1)
        for variant, signal in matcher.encode_asset(jpeg_bytes(photos[name], 95))
    ]
    index = matcher.build_index(signals)
    listing = matcher.encode(jpeg_bytes(photos["coffee"].resize((300, 200)), 60))
    unrelated = matcher.encode(jpeg_bytes(photos["moon"]))
    found, nothing = matcher.query(index, [("a" * 64, listing), ("b" * 64, unrelated)])
    assert nothing == []
    assert [evidence.asset_id for evidence in found] == [1]
    assert found[0].image_sha256 == "a" * 64
    assert found[0].distance is not None and found[0].distance <= matcher.max_distance
    assert "Acme asset #1" in found[0].reason and "pHash distance" in found[0].reason
    assert 0.6 <= found[0].score <= 0.99


def test_confidence_falls_with_distance(matcher: PHashMatcher) -> None:
    scores = [matcher.confidence(distance) for distance in range(matcher.max_distance + 1)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(0.99) and scores[-1] == pytest.approx(0.6)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=60),
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=10),
    st.integers(min_value=0, max_value=64),
)
def test_binary_index_matches_brute_force(assets: list[bytes], queries: list[bytes], radius: int) -> None:
    signals = [AssetSignal(asset_id=i, brand_id=1, brand="B", signal=s) for i, s in enumerate(assets)]
    index = BinaryHashIndex(signals, bits=64)
    matrix = np.frombuffer(b"".join(queries), np.uint8).reshape(len(queries), 8)
    for query, hits in zip(queries, index.within(matrix, radius), strict=True):
        expected = sorted((i, hamming(query, s)) for i, s in enumerate(assets) if hamming(query, s) <= radius)
        assert sorted((hit.asset_id, distance) for hit, distance in hits) == expected


def test_empty_index_finds_nothing() -> None:
    index = BinaryHashIndex([], bits=64)
    assert index.within(np.zeros((2, 8), np.uint8), 10) == [[], []]


@pytest.mark.parametrize("name", sorted(IMAGE_MATCHERS))
def test_every_image_matcher_keeps_the_contract(name: str, photos: dict[str, Image.Image], settings: Settings) -> None:
    """Encode is deterministic and serialisable; an asset matches its own re-encode and not an unrelated photo."""
    everything = replace(settings, image_matchers=",".join(IMAGE_MATCHERS))
    matcher = next(m for m in image_matchers(everything) if m.name == name)

    asset = jpeg_bytes(photos["astronaut"], 95)
    variants = matcher.encode_asset(asset)
    assert variants[0][0] == "original" and all(isinstance(signal, bytes) for _, signal in variants)
    assert matcher.encode(asset) == matcher.encode(asset)
    index = matcher.build_index([AssetSignal(1, 1, "Brand", signal, variant) for variant, signal in variants])
    copy = matcher.encode(jpeg_bytes(photos["astronaut"], 60))
    other = matcher.encode(jpeg_bytes(photos["coins"], 60))
    hits_copy, hits_other = matcher.query(index, [("c" * 64, copy), ("d" * 64, other)])
    assert [hit.asset_id for hit in hits_copy] == [1]
    assert hits_other == []
    assert all(hit.matcher == name and hit.reason for hit in hits_copy)
