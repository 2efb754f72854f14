"""Issue 13: flat logos with few corners found by their silhouette, with geometric checks."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from counterscan.imaging.decode import DecodeLimits, Picture
from counterscan.matchers.shapes import GRID_ANGLES, GRID_RINGS, Regions, ShapeIndex, ShapeMatcher, describe
from counterscan.records import AssetSignal
from tests.conftest import jpeg_bytes, png_bytes
from tests.test_keypoints import logo


def printed(photo: Image.Image, mark: Image.Image, at: tuple[int, int], width: int, angle: float) -> Image.Image:
    """The logo's dark parts printed in one colour straight onto the photo (no light patch around
    it), scaled and turned."""
    scaled = mark.convert("L").resize((width, round(mark.height * width / mark.width)))
    ink = Image.eval(scaled, lambda value: 255 if value < 128 else 0).rotate(angle, expand=True)
    canvas = photo.convert("RGB").copy()
    canvas.paste(Image.new("RGB", ink.size, (250, 220, 40)), at, mask=ink)
    return canvas


def picture(data: bytes) -> Picture:
    return Picture.open(data, DecodeLimits(max_bytes=25 * 1024 * 1024, max_pixels=60_000_000))


@pytest.fixture
def matcher() -> ShapeMatcher:
    return ShapeMatcher()


@pytest.fixture
def index(matcher: ShapeMatcher) -> ShapeIndex:
    signals = [
        AssetSignal(asset_id, asset_id, brand, signal, variant)
        for asset_id, (slug, brand) in enumerate((("adidas", "Adidas"), ("nike", "Nike")), start=1)
        for variant, signal in matcher.encode_asset(picture(png_bytes(logo(slug))))
    ]
    return matcher.build_index(signals)


@pytest.mark.parametrize(
    ("photo", "at", "width", "angle"),
    [("rocket", (360, 20), 110, 70.0), ("rocket", (200, 40), 120, -20.0), ("chelsea", (250, 170), 110, 160.0)],
)
def test_finds_a_flat_logo_printed_in_a_photo_with_its_region(
    matcher: ShapeMatcher,
    index: ShapeIndex,
    photos: dict[str, Image.Image],
    photo: str,
    at: tuple[int, int],
    width: int,
    angle: float,
) -> None:
    printed_photo = printed(photos[photo], logo("nike"), at, width, angle)
    [found] = index.query([("x" * 64, matcher.encode(picture(jpeg_bytes(printed_photo, 85))))])
    assert found and found[0].brand == "Nike" and found[0].matcher == "shapes"
    region = np.array(found[0].details["region"])
    # The projected outline sits on the printed logo: its centre within the pasted box, its size
    # within a factor of two of the logo's.
    centre = region.mean(axis=0)
    assert at[0] - 10 < centre[0] < at[0] + 1.5 * width + 10 and at[1] - 10 < centre[1] < at[1] + 1.5 * width + 10
    side = np.linalg.norm(region[1] - region[0])
    assert width / 2 < side < 2 * width
    assert "by its shape" in found[0].reason and found[0].details["overlap"] >= matcher.options.min_overlap


def test_photos_without_the_logos_find_nothing(
    matcher: ShapeMatcher, index: ShapeIndex, photos: dict[str, Image.Image]
) -> None:
    queries = [(name, matcher.encode(picture(jpeg_bytes(image)))) for name, image in photos.items()]
    assert all(found == [] for found in index.query(queries))


def test_plain_shapes_are_not_used_as_logos(matcher: ShapeMatcher) -> None:
    """A disk or a square is in every photo: a logo that is only that gives the matcher nothing."""
    drawing = Image.new("L", (300, 300), 255)
    pen = ImageDraw.Draw(drawing)
    pen.ellipse((40, 60, 260, 240), fill=0)
    assert len(Regions.from_bytes(matcher.encode_asset(picture(png_bytes(drawing)))[0][1])) == 0
    square = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(square).rectangle((50, 50, 250, 250), fill=0)
    assert len(Regions.from_bytes(matcher.encode_asset(picture(png_bytes(square)))[0][1])) == 0


def test_a_shape_two_brands_share_identifies_neither(matcher: ShapeMatcher) -> None:
    swoosh = matcher.encode_asset(picture(png_bytes(logo("nike"))))[0][1]
    alone = matcher.build_index([AssetSignal(1, 1, "Nike", swoosh)])
    shared = matcher.build_index([AssetSignal(1, 1, "Nike", swoosh), AssetSignal(2, 2, "Copycat", swoosh)])
    assert len(alone) >= 1 and len(shared) == 0


def test_signals_are_small_and_round_trip(matcher: ShapeMatcher, photos: dict[str, Image.Image]) -> None:
    for image in photos.values():
        signal = matcher.encode(picture(jpeg_bytes(image)))
        regions = Regions.from_bytes(signal)
        assert len(signal) <= 4096
        assert regions.bits.shape == (len(regions), GRID_RINGS * GRID_ANGLES)
        assert Regions.from_bytes(regions.to_bytes()).to_bytes() == signal


def test_describe_is_invariant_to_a_turn_and_a_stretch() -> None:
    """The same mark drawn turned and squeezed gives the same grid, up to a turn of its columns."""
    mark = np.asarray(logo("nike", 300).convert("L"))
    turned = np.asarray(Image.fromarray(mark).rotate(50, expand=True, fillcolor=255).resize((300, 180)))
    first = describe(mark, min_area=200, max_regions=4, drawn=True)
    second = describe(turned, min_area=200, max_regions=4, drawn=True)
    assert len(first) == len(second) == 1
    from counterscan.matchers.shapes import overlaps

    fit, _turn = overlaps(first.bits, second.bits)
    assert fit[0, 0] > 0.85
