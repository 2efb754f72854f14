"""Issue 20: official product photos found in listing photos after the edits sellers make (learned
local features, checked geometrically), with the copied region; the network loads offline."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from counterscan.imaging.learned import FeatureOptions, LocalFeatureNetwork
from counterscan.matchers import default_matchers
from counterscan.matchers.copies import CopyIndex, CopyMatcher, calibrated_score, features_from_bytes
from counterscan.matchers.facts import MATCHER_FACTS
from counterscan.ranking.features import FEATURES, feature_row
from counterscan.ranking.ranker import cold_start_score
from counterscan.records import AssetSignal, Listing
from tests.conftest import as_picture, jpeg_bytes


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No socket can be opened: anything that tried to download would fail."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("the network is blocked in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.fixture(scope="module")
def network() -> LocalFeatureNetwork:
    return LocalFeatureNetwork()


@pytest.fixture(scope="module")
def matcher(network: LocalFeatureNetwork) -> CopyMatcher:
    return CopyMatcher(network)


@pytest.fixture(scope="module")
def index(matcher: CopyMatcher, photos: dict[str, Image.Image]) -> CopyIndex:
    signals = [
        AssetSignal(asset_id, asset_id, brand, signal, variant)
        for asset_id, (name, brand) in enumerate((("astronaut", "Nike"), ("rocket", "Puma")), start=1)
        for variant, signal in matcher.encode_asset(as_picture(jpeg_bytes(photos[name], 92)))
    ]
    return matcher.build_index(signals)


def test_the_network_loads_and_sees_offline(offline: None, photos: dict[str, Image.Image]) -> None:
    with pytest.raises(OSError):
        socket.socket()
    network = LocalFeatureNetwork()
    network.load()
    features = network.features(as_picture(jpeg_bytes(photos["coffee"])), FeatureOptions(side=320, top_k=256))
    assert 100 <= len(features) <= 256
    assert np.allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, atol=1e-3)
    width, height = photos["coffee"].size
    assert (features.keypoints >= 0).all() and (features.keypoints <= [width, height]).all()


def _cropped_and_turned(photo: Image.Image) -> tuple[Image.Image, tuple[int, int]]:
    """A third of the photo, off-centre, turned 12 degrees on a white ground; where the crop began."""
    width, height = photo.size
    left, top = width // 3, height // 5
    part = photo.crop((left, top, left + width // 2, top + height * 2 // 3))
    return part.rotate(12, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(250, 250, 250)), (left, top)


def test_a_cropped_turned_copy_is_found_with_its_region(
    matcher: CopyMatcher, index: CopyIndex, photos: dict[str, Image.Image]
) -> None:
    listing, _ = _cropped_and_turned(photos["astronaut"])
    [found] = index.query([("a" * 64, matcher.encode(as_picture(jpeg_bytes(listing, 80))))])
    assert [(hit.brand, hit.asset_id) for hit in found] == [("Nike", 1)]
    best = found[0]
    assert best.score > 0.9 and best.details["inliers"] >= 60
    assert "copies Nike product photo (asset #1)" in best.reason and "matching points" in best.reason
    # The whole product photo's outline carried into the listing: larger than the listing (a crop),
    # around its middle.
    region = np.array(best.details["region"])
    assert region.shape == (4, 2)
    centre = region.mean(axis=0)
    assert abs(centre[0] - listing.width / 2) < listing.width and abs(centre[1] - listing.height / 2) < listing.height
    spans = region.max(axis=0) - region.min(axis=0)
    assert spans[0] > listing.width and spans[1] > listing.height


def test_a_small_copy_in_a_collage_and_a_mirrored_one_are_found(
    matcher: CopyMatcher, index: CopyIndex, photos: dict[str, Image.Image]
) -> None:
    sheet = Image.new("RGB", (600, 600), "white")
    for number, name in enumerate(("coins", "rocket", "camera", "coffee")):
        sheet.paste(photos[name].resize((300, 300)), ((number % 2) * 300, (number // 2) * 300))
    mirrored = photos["astronaut"].transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((40, 60, 440, 460))
    collage, flipped = index.query(
        [
            ("b" * 64, matcher.encode(as_picture(jpeg_bytes(sheet)))),
            ("c" * 64, matcher.encode(as_picture(jpeg_bytes(mirrored)))),
        ]
    )
    assert [hit.brand for hit in collage] == ["Puma"]
    region = np.array(collage[0].details["region"])
    # The rocket's tile is the top right quarter: the region found sits there.
    assert region[:, 0].min() >= 300 - 20 and region[:, 0].max() <= 600 + 20 and region[:, 1].max() <= 300 + 20
    assert [hit.brand for hit in flipped] == ["Nike"] and flipped[0].details["variant"] == "mirrored"
    assert "(mirrored)" in flipped[0].reason


@pytest.mark.parametrize("name", ["coins", "coffee", "chelsea", "camera", "moon"])
def test_unrelated_photos_are_not_copies(
    matcher: CopyMatcher, index: CopyIndex, photos: dict[str, Image.Image], name: str
) -> None:
    [found] = index.query([("d" * 64, matcher.encode(as_picture(jpeg_bytes(photos[name]))))])
    assert all(hit.score <= 0.5 for hit in found)


def test_the_signal_is_compact_and_keeps_the_points(matcher: CopyMatcher, photos: dict[str, Image.Image]) -> None:
    picture = as_picture(jpeg_bytes(photos["astronaut"]))
    signal = matcher.encode(picture)
    features = matcher.network.features(picture)
    assert len(signal) == 16 + 68 * len(features) <= 16 + 68 * 1024
    decoded = features_from_bytes(signal)
    assert decoded.size == picture.size
    assert np.abs(decoded.keypoints - features.keypoints).max() < 0.5  # float16 at a 512 px photo
    # Quantised to a byte a component, each descriptor still points the same way.
    assert (np.sum(decoded.descriptors * features.descriptors, axis=1) > 0.999).all()
    with pytest.raises(ValueError, match="does not hold"):
        features_from_bytes(signal[:-1])


def test_the_score_is_calibrated_by_the_points_that_agree() -> None:
    assert calibrated_score(30, 30) == 0.5
    assert calibrated_score(12, 30) < 0.1 < calibrated_score(24, 30) < 0.5 < calibrated_score(40, 30)
    assert calibrated_score(60, 30) > 0.9 and calibrated_score(120, 30) < calibrated_score(400, 30) < 1.0


def test_a_verified_copy_ranks_above_half_and_runs_by_default(
    matcher: CopyMatcher, index: CopyIndex, photos: dict[str, Image.Image]
) -> None:
    listing, _ = _cropped_and_turned(photos["astronaut"])
    [found] = index.query([("e" * 64, matcher.encode(as_picture(jpeg_bytes(listing))))])
    score = cold_start_score(found)
    assert score.score > 0.9 and score.brand_id == 1
    row = dict(zip(FEATURES, feature_row(Listing(source="s", listing_id="1"), found), strict=True))
    assert row["photo_copy"] == found[0].score and row["copied_images"] == 1 and row["image_copy"] == 0
    assert "copies" in default_matchers(["product"]) and "copies" not in default_matchers(["logo"])
    assert MATCHER_FACTS["copies"].costly and MATCHER_FACTS["copies"].settles_picture
