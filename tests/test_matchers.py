from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps

from counterscan.config import Settings
from counterscan.errors import UserError
from counterscan.imaging.decode import DecodeLimits
from counterscan.matchers import (
    IMAGE_MATCHERS,
    MATCHER_RULES,
    default_matchers,
    image_matchers,
    matcher_fingerprints,
    matcher_names,
)
from counterscan.matchers.index import BinaryHashIndex, SyncReport
from counterscan.matchers.perceptual import (
    DHASH,
    PDQ,
    PHASH,
    HashMatcher,
    crop_fraction,
    dhash_bytes,
    phash_bytes,
    trim_border,
)
from counterscan.records import ASSET_KINDS, AssetSignal
from tests.conftest import PHOTO_NAMES, as_picture, jpeg_bytes

ROBUST_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "camera", "coins", "brick")


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def hash_matchers(limits: DecodeLimits) -> dict[str, HashMatcher]:
    defaults = Settings()
    return {
        "phash": HashMatcher(PHASH, max_distance=defaults.phash_max_distance),
        "dhash": HashMatcher(DHASH, max_distance=defaults.dhash_max_distance),
        "pdq": HashMatcher(PDQ, max_distance=defaults.pdq_max_distance),
    }


@pytest.fixture
def matcher(limits: DecodeLimits) -> HashMatcher:
    return hash_matchers(limits)["phash"]


def nearest_variant(matcher: HashMatcher, asset: Image.Image, listing: bytes) -> int:
    """The distance from any of the listing's hashes (two when it had a frame) to the nearest asset variant."""
    return nearest(
        matcher, matcher.encode(as_picture(listing)), matcher.encode_asset(as_picture(jpeg_bytes(asset, 95)))
    )


def nearest(matcher: HashMatcher, query: bytes, variants: list[tuple[str, bytes]]) -> int:
    width = matcher.algorithm.bits // 8
    hashes = [query[start : start + width] for start in range(0, len(query), width)]
    return min(hamming(one, signal) for one in hashes for _, signal in variants)


def framed(image: Image.Image) -> Image.Image:
    return ImageOps.expand(image, border=max(4, image.width // 16), fill="white")


def bannered(image: Image.Image) -> Image.Image:
    edited = image.copy()
    height = image.height // 8
    ImageDraw.Draw(edited).rectangle((0, image.height - height, image.width, image.height), fill="white")
    ImageDraw.Draw(edited).text((8, image.height - height + 4), "SALE 70% OFF", fill="black")
    return edited


def half(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2))


TRANSFORMS = {
    "resize 50%": lambda image: jpeg_bytes(half(image), 85),
    "jpeg quality 40": lambda image: jpeg_bytes(image, 40),
    "10% crop, centred": lambda image: jpeg_bytes(crop_fraction(image, (0.05, 0.05, 0.05, 0.05)), 85),
    "10% crop, one side": lambda image: jpeg_bytes(crop_fraction(image, (0.0, 0.0, 0.1, 0.0)), 85),
    "10% crop, corner": lambda image: jpeg_bytes(crop_fraction(image, (0.1, 0.1, 0.0, 0.0)), 85),
    "mirrored": lambda image: jpeg_bytes(ImageOps.mirror(image), 85),
    "turned a quarter": lambda image: jpeg_bytes(image.transpose(Image.Transpose.ROTATE_90), 85),
    "upside down": lambda image: jpeg_bytes(image.transpose(Image.Transpose.ROTATE_180), 85),
    "white frame": lambda image: jpeg_bytes(framed(image), 85),
    "10% crop + resize 50% + q40": lambda image: jpeg_bytes(half(crop_fraction(image, (0.05, 0.05, 0.05, 0.05))), 40),
}


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize("name", ROBUST_PHOTOS)
def test_phash_survives_common_edits(
    photos: dict[str, Image.Image], matcher: HashMatcher, name: str, transform: str
) -> None:
    distance = nearest_variant(matcher, photos[name], TRANSFORMS[transform](photos[name]))
    assert distance <= matcher.max_distance, f"{name} after {transform}: distance {distance}"


def test_dhash_catches_banners_that_phash_misses(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    """Why dHash runs beside pHash by default (docs/matching.md: banners 0.46 by pHash, 0.997 by the pair)."""
    phash, dhash = hash_matchers(limits)["phash"], hash_matchers(limits)["dhash"]
    by_phash = by_pair = 0
    for name in ROBUST_PHOTOS:
        listing = jpeg_bytes(bannered(photos[name]), 85)
        found_by_phash = nearest_variant(phash, photos[name], listing) <= phash.max_distance
        by_phash += found_by_phash
        by_pair += found_by_phash or nearest_variant(dhash, photos[name], listing) <= dhash.max_distance
    assert by_pair >= len(ROBUST_PHOTOS) - 1 and by_pair > by_phash


@pytest.mark.parametrize("name", ["coffee", "rocket", "chelsea"])
def test_pdq_at_full_resolution_matches_resized_and_turned_copies(
    photos: dict[str, Image.Image], limits: DecodeLimits, name: str
) -> None:
    matcher = hash_matchers(limits)["pdq"]
    for edited in (half(photos[name]), photos[name].transpose(Image.Transpose.ROTATE_270)):
        distance = nearest_variant(matcher, photos[name], jpeg_bytes(edited, 80))
        assert distance <= matcher.max_distance, f"{name}: PDQ distance {distance}"


@pytest.mark.parametrize("algorithm", ["phash", "dhash", "pdq"])
def test_unrelated_photos_stay_outside_the_threshold(
    photos: dict[str, Image.Image], limits: DecodeLimits, algorithm: str
) -> None:
    matcher = hash_matchers(limits)[algorithm]
    assets = {name: matcher.encode_asset(as_picture(jpeg_bytes(photos[name], 95))) for name in PHOTO_NAMES}
    listings = {name: matcher.encode(as_picture(jpeg_bytes(framed(photos[name]), 80))) for name in PHOTO_NAMES}
    for listing_name in PHOTO_NAMES:
        for asset_name in PHOTO_NAMES:
            if asset_name == listing_name:
                continue
            distance = nearest(matcher, listings[listing_name], assets[asset_name])
            assert distance > matcher.max_distance, f"{listing_name} matched {asset_name} at {distance}"


def test_trim_border_removes_a_plain_frame_and_leaves_photos_alone(photos: dict[str, Image.Image]) -> None:
    photo = photos["coffee"]
    assert trim_border(framed(photo)).size == photo.size
    assert trim_border(photo) is photo  # corners of different colours: nothing is a frame
    blank = Image.new("RGB", (100, 80), "white")
    assert trim_border(blank) is blank


def test_query_returns_best_variant_per_asset_with_reason(photos: dict[str, Image.Image], matcher: HashMatcher) -> None:
    signals = [
        AssetSignal(asset_id=asset_id, brand_id=7, brand="Acme", signal=signal, variant=variant)
        for asset_id, name in enumerate(("coffee", "rocket"), start=1)
        for variant, signal in matcher.encode_asset(as_picture(jpeg_bytes(photos[name], 95)))
    ]
    index = matcher.build_index(signals)
    listing = matcher.encode(as_picture(jpeg_bytes(photos["coffee"].resize((300, 200)), 60)))
    unrelated = matcher.encode(as_picture(jpeg_bytes(photos["moon"])))
    found, nothing = index.query([("a" * 64, listing), ("b" * 64, unrelated)])
    assert nothing == []
    assert [evidence.asset_id for evidence in found] == [1]
    assert found[0].image_sha256 == "a" * 64
    assert found[0].distance is not None and found[0].distance <= matcher.max_distance
    assert "Acme asset #1" in found[0].reason and "pHash distance" in found[0].reason
    assert 0.6 <= found[0].score <= 0.99


def test_confidence_falls_with_distance(matcher: HashMatcher) -> None:
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
    index = BinaryHashIndex(64)
    index.sync(signals)
    matrix = np.frombuffer(b"".join(queries), np.uint8).reshape(len(queries), 8)
    for query, hits in zip(queries, index.within(matrix, radius), strict=True):
        expected = sorted((i, hamming(query, s)) for i, s in enumerate(assets) if hamming(query, s) <= radius)
        assert sorted((hit.asset_id, distance) for hit, distance in hits) == expected


def test_empty_index_finds_nothing() -> None:
    index = BinaryHashIndex(64)
    index.sync([])
    assert index.within(np.zeros((2, 8), np.uint8), 10) == [[], []]


def _hash_signals(count: int, *, seed: int = 3) -> list[AssetSignal]:
    rng = np.random.default_rng(seed)
    return [
        AssetSignal(asset_id=number // 3, brand_id=1, brand="B", signal=rng.bytes(8), variant=f"v{number % 3}")
        for number in range(count)
    ]


def test_binary_index_is_persisted_and_updated_in_place(tmp_path: Path) -> None:
    signals = _hash_signals(30)
    first = BinaryHashIndex(64, tmp_path / "phash.npz")
    assert first.sync(signals[:18]) == SyncReport(added=18, removed=0, rebuilt=True)
    assert (tmp_path / "phash.npz").exists()

    grown = BinaryHashIndex(64, tmp_path / "phash.npz")
    assert grown.sync(signals) == SyncReport(added=12, removed=0, rebuilt=False)
    unchanged_at = (tmp_path / "phash.npz").stat().st_mtime_ns
    assert BinaryHashIndex(64, tmp_path / "phash.npz").sync(signals) == SyncReport(added=0, removed=0, rebuilt=False)
    assert (tmp_path / "phash.npz").stat().st_mtime_ns == unchanged_at  # nothing changed, nothing written

    kept = [signal for signal in signals if signal.asset_id != 2]  # asset 2 removed: its 3 variants go
    shrunk = BinaryHashIndex(64, tmp_path / "phash.npz")
    assert shrunk.sync(kept) == SyncReport(added=0, removed=3, rebuilt=False)
    reloaded = BinaryHashIndex(64, tmp_path / "phash.npz")
    assert reloaded.sync(kept).added == 0 and len(reloaded) == len(kept)
    queries = np.frombuffer(b"".join(signal.signal for signal in signals), np.uint8).reshape(-1, 8)
    for signal, hits in zip(signals, reloaded.within(queries, 0), strict=True):
        found = {(hit.asset_id, hit.variant) for hit, _distance in hits}
        assert ((signal.asset_id, signal.variant) in found) == (signal.asset_id != 2)


def test_damaged_index_file_is_rebuilt(tmp_path: Path) -> None:
    signals = _hash_signals(9)
    BinaryHashIndex(64, tmp_path / "phash.npz").sync(signals)
    (tmp_path / "phash.npz").write_bytes(b"not an index")
    index = BinaryHashIndex(64, tmp_path / "phash.npz")
    assert index.sync(signals) == SyncReport(added=9, removed=0, rebuilt=True)
    assert BinaryHashIndex(64, tmp_path / "phash.npz").sync(signals).rebuilt is False


def test_scans_sync_the_saved_hash_index(settings: Settings, photos: dict[str, Image.Image]) -> None:
    """The matcher keeps its index under HOME/index, one file per hash."""
    matcher = next(m for m in image_matchers(settings) if m.name == "phash")
    variants = matcher.encode_asset(as_picture(jpeg_bytes(photos["coffee"], 95)))
    matcher.build_index([AssetSignal(1, 1, "B", signal, variant) for variant, signal in variants])
    assert (settings.home / "index" / "phash.npz").exists()


@pytest.mark.parametrize(("ours", "reference"), [(phash_bytes, imagehash.phash), (dhash_bytes, imagehash.dhash)])
def test_hashes_agree_with_imagehash(
    photos: dict[str, Image.Image], ours: Callable[[Image.Image], bytes], reference: Callable[[Image.Image], Any]
) -> None:
    """Same definitions as imagehash; only the faster resize of pHash moves a bit here and there."""
    apart = [
        hamming(ours(photo), np.packbits(reference(photo.convert("L")).hash.reshape(-1)).tobytes())
        for photo in photos.values()
    ]
    assert np.mean(apart) <= 1.5 and max(apart) <= 6, apart


def test_every_registered_image_matcher_declares_its_rule() -> None:
    """A matcher joins default scans by its rule: the asset kinds it runs for and the settings it
    depends on (a change of those re-scans the listings it looks at)."""
    known = {f.name for f in fields(Settings)}
    assert set(MATCHER_RULES) == set(IMAGE_MATCHERS)
    for name, rule in MATCHER_RULES.items():
        assert set(rule.settings) <= known, name
        assert rule.runs_for is None or set(rule.runs_for) <= set(ASSET_KINDS), name


def test_default_matchers_follow_the_registered_asset_kinds(settings: Settings) -> None:
    assert default_matchers(set()) == tuple(n for n, r in MATCHER_RULES.items() if r.runs_for == ())
    with_photos = default_matchers({"product"})
    assert {"phash", "dhash"} <= set(with_photos) and "keypoints" not in with_photos
    assert "keypoints" in default_matchers({"product", "logo"})
    assert matcher_names(replace(settings, image_matchers="pdq, phash"), {"logo"}) == ("phash", "pdq")
    assert matcher_names(replace(settings, image_matchers="none"), {"logo"}) == ()
    with pytest.raises(UserError, match="unknown image matcher"):
        matcher_names(replace(settings, image_matchers="phash,nope"), {"logo"})
    tighter = replace(settings, phash_max_distance=settings.phash_max_distance - 1)
    before, after = (
        matcher_fingerprints(settings, ["phash", "dhash"]),
        matcher_fingerprints(tighter, ["phash", "dhash"]),
    )
    assert before["phash"] != after["phash"] and before["dhash"] == after["dhash"]
