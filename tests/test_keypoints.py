"""Issue 6: logos inside photos with local features and geometric verification."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cairosvg
import numpy as np
import pytest
from PIL import Image

from counterscan.imaging.decode import DecodeLimits
from counterscan.matchers.keypoints import KeypointMatcher, LogoIndex
from counterscan.records import AssetSignal
from tests.conftest import REPO, Cli, as_picture, jpeg_bytes, png_bytes

LOGOS = REPO / "data" / "demo" / "assets"


def logo(slug: str, width: int = 400) -> Image.Image:
    png = cairosvg.svg2png(url=str(LOGOS / slug / "logo.svg"), output_width=width)
    rgba = Image.open(io.BytesIO(png)).convert("RGBA")
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba)
    return flat


def stamped(photo: Image.Image, mark: Image.Image, at: tuple[int, int], width: int, angle: float = 0.0) -> Image.Image:
    """The logo printed on a product in a photo: scaled, turned a little, on a light patch."""
    scaled = mark.resize((width, round(mark.height * width / mark.width)))
    turned = scaled.convert("RGBA").rotate(angle, expand=True, fillcolor=(255, 255, 255, 0))
    canvas = photo.convert("RGBA")
    canvas.alpha_composite(turned, at)
    return canvas.convert("RGB")


@pytest.fixture
def matcher(limits: DecodeLimits) -> KeypointMatcher:
    return KeypointMatcher()


@pytest.fixture
def index(matcher: KeypointMatcher) -> LogoIndex:
    signals = [
        AssetSignal(asset_id, asset_id, brand, matcher.encode_asset(as_picture(png_bytes(logo(slug))))[0][1])
        for asset_id, (slug, brand) in enumerate((("adidas", "Adidas"), ("puma", "Puma")), start=1)
    ]
    return matcher.build_index(signals)


@pytest.mark.parametrize(
    ("photo", "width", "angle"), [("coffee", 160, 0.0), ("chelsea", 150, 10.0), ("rocket", 200, -8.0)]
)
def test_finds_a_logo_printed_in_a_photo_with_its_region(
    matcher: KeypointMatcher,
    index: LogoIndex,
    photos: dict[str, Image.Image],
    photo: str,
    width: int,
    angle: float,
) -> None:
    picture = stamped(photos[photo], logo("puma"), (40, 30), width, angle)
    [found] = index.query([("x" * 64, matcher.encode(as_picture(jpeg_bytes(picture, 80))))])
    assert found and found[0].brand == "Puma" and found[0].asset_id == 2
    region = np.array(found[0].details["region"])
    centre = region.mean(axis=0)
    # The outline lands on the printed logo (within a few pixels of where it was put).
    assert 40 < centre[0] < 40 + width + 30 and 30 < centre[1] < 30 + width + 30
    assert found[0].details["inliers"] >= 12 and "distinct points agree" in found[0].reason


@pytest.mark.slow
def test_photos_without_the_logos_find_nothing(
    matcher: KeypointMatcher, index: LogoIndex, photos: dict[str, Image.Image]
) -> None:
    queries = [(name, matcher.encode(as_picture(jpeg_bytes(image)))) for name, image in photos.items()]
    assert all(found == [] for found in index.query(queries))


def test_logo_matcher_in_a_scan_draws_the_region_in_the_report(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('image_matchers = "phash,keypoints"\n')
    cli = Cli(home)
    cli.add_member("owner")
    cli("brands", "add", "Puma", "--member", "owner")
    cli("assets", "add", "--brand", "Puma", "--kind", "logo", str(LOGOS / "puma" / "logo.svg"))
    (tmp_path / "shoe.jpg").write_bytes(jpeg_bytes(stamped(photos["coffee"], logo("puma"), (60, 40), 150), 80))
    (tmp_path / "feed.csv").write_text(f"listing_id,title,image_paths\nK1,shoe,{tmp_path / 'shoe.jpg'}\n")
    cli("ingest", str(tmp_path / "feed.csv"))
    cli("scan", "--workers", "1")
    [row] = json.loads(cli("review", "list", "--format", "json").stdout)
    assert (row["listing_id"], row["matcher"]) == ("K1", "keypoints")
    cli("export", "--format", "html", "--out", str(tmp_path / "report"))
    thumb = np.asarray(
        Image.open(next((tmp_path / "report" / "thumbs").glob("listing-*.jpg"))).convert("RGB"), dtype=int
    )
    red = (thumb[:, :, 0] > 200) & (thumb[:, :, 1] < 60) & (thumb[:, :, 2] < 60)
    assert red.sum() > 50  # the matched region is drawn
