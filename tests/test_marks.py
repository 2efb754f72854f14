"""Issue 20: brand marks (flat silhouettes included) found in real photos by learned local features."""

from __future__ import annotations

import io

import cairosvg
import numpy as np
import pytest
from PIL import Image

from counterscan.imaging.learned import LocalFeatureNetwork
from counterscan.matchers.marks import MarkFeatures, MarkIndex, MarkMatcher
from counterscan.records import AssetSignal
from tests.conftest import REPO, as_picture, jpeg_bytes, png_bytes

LOGOS = REPO / "data" / "demo" / "assets"


def mark(slug: str, width: int = 300) -> Image.Image:
    """A single-colour simple-icons mark, flattened on white as an uploaded logo is."""
    png = cairosvg.svg2png(url=str(LOGOS / slug / "logo.svg"), output_width=width)
    rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba)
    return flat


def printed(photo: Image.Image, logo: Image.Image, at: tuple[int, int], width: int, angle: float) -> Image.Image:
    """The mark printed on a light label in a photo, scaled and turned."""
    label = logo.resize((width, round(logo.height * width / logo.width))).convert("RGBA")
    turned = label.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255, 0))
    canvas = photo.convert("RGBA")
    canvas.alpha_composite(turned, at)
    return canvas.convert("RGB")


@pytest.fixture(scope="module")
def matcher() -> MarkMatcher:
    return MarkMatcher(LocalFeatureNetwork())


@pytest.fixture(scope="module")
def index(matcher: MarkMatcher) -> MarkIndex:
    signals = [
        AssetSignal(number, number, brand, signal, variant)
        for number, (slug, brand) in enumerate((("nike", "Nike"), ("puma", "Puma"), ("adidas", "Adidas")), start=1)
        for variant, signal in matcher.encode_asset(as_picture(png_bytes(mark(slug))))
    ]
    return matcher.build_index(signals)


@pytest.mark.parametrize(
    ("photo", "slug", "width", "angle"), [("coffee", "puma", 170, 12.0), ("chelsea", "adidas", 150, -8.0)]
)
def test_a_flat_mark_printed_in_a_photo_is_found_with_its_box(
    matcher: MarkMatcher,
    index: MarkIndex,
    photos: dict[str, Image.Image],
    photo: str,
    slug: str,
    width: int,
    angle: float,
) -> None:
    at = (60, 50)
    picture = printed(photos[photo], mark(slug), at, width, angle)
    [found] = index.query([("x" * 64, matcher.encode(as_picture(jpeg_bytes(picture, 85))))])
    assert found, "the mark was not found"
    assert found[0].brand == slug.title() and found[0].matcher == "marks"
    assert found[0].details["inliers"] >= 8 and "distinct points agree" in found[0].reason
    box = np.array(found[0].details["region"])
    # The box lands on the printed mark: its centre within the label's turned footprint.
    centre = box.mean(axis=0)
    assert at[0] < centre[0] < at[0] + width * 1.3 and at[1] < centre[1] < at[1] + width * 1.3
    assert 0.3 * width**2 / 4 < abs(_area(box)) < 3 * width**2


def test_photos_without_a_mark_find_nothing(
    matcher: MarkMatcher, index: MarkIndex, photos: dict[str, Image.Image]
) -> None:
    queries = [(name, matcher.encode(as_picture(jpeg_bytes(image)))) for name, image in photos.items()]
    assert [name for (name, _q), found in zip(queries, index.query(queries), strict=True) if found] == []


def test_a_homography_that_squashes_the_mark_onto_a_few_points_is_refused(
    matcher: MarkMatcher, index: MarkIndex
) -> None:
    """The same descriptors, once where a real view puts them and once squashed by a homography
    that fits every one of them (what RANSAC makes of chance matches on a logo-free photo: the
    mark flattened into a sliver, or shrunk onto a few pixels): only the first is a mark."""
    _signal, features = next((s, f) for s, f in index.assets if s.brand == "Puma" and s.variant == "original")

    def seen_through(linear: np.ndarray) -> MarkFeatures:
        points = features.points @ np.asarray(linear).T + [120.0, 80.0]
        return MarkFeatures(points.astype(np.float32), features.descriptors, 640, 480)

    turn = np.deg2rad(10)
    found = matcher.match(
        index, "seen", seen_through(0.5 * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]))
    )
    assert found and found[0].brand == "Puma"
    assert matcher.match(index, "sliver", seen_through(np.diag([0.6, 0.02]))) == []
    assert matcher.match(index, "speck", seen_through(np.diag([0.03, 0.03]))) == []


def test_signals_round_trip_compactly(matcher: MarkMatcher, photos: dict[str, Image.Image]) -> None:
    data = matcher.encode(as_picture(jpeg_bytes(photos["astronaut"])))
    features = MarkFeatures.from_bytes(data)
    assert 100 < len(features.points) <= 1024 and len(data) == 16 + 72 * len(features.points)
    assert np.allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, atol=1e-3)


def _area(quad: np.ndarray) -> float:
    x, y = quad[:, 0], quad[:, 1]
    return float(0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))
