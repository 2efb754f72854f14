"""Every registered image matcher held to one contract, through the typed index it builds:
encode is deterministic bytes; the index finds an exact copy of an asset with a reason and nothing
in an unrelated photo; saved and loaded again it answers the same; a shared picture is left as
found; a corrupt image fails as ImageError."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from PIL import Image

from counterscan.config import Settings
from counterscan.errors import ImageError
from counterscan.matchers import IMAGE_MATCHERS, AssetIndex, ImageMatcher, image_matchers
from counterscan.records import AssetSignal, Brand
from tests.conftest import REPO, as_picture, jpeg_bytes

ADIDAS = Brand(brand_id=2, name="Adidas", member="m", keywords=("Ultraboost",))
PRINTED = REPO / "data" / "demo" / "listings" / "images" / "m-2101.jpg"
"""The demo's photo with "adidas ULTRABOOST" printed on it (what the OCR matcher reads)."""


def _every_matcher(settings: Settings) -> dict[str, ImageMatcher[AssetIndex]]:
    return {m.name: m for m in image_matchers(replace(settings, image_matchers=",".join(IMAGE_MATCHERS)))}


@dataclass(frozen=True)
class Case:
    """What one matcher indexes, a listing photo it must find, and one it must not."""

    signals: list[AssetSignal]
    brands: list[Brand]
    found: bytes
    unrelated: bytes


def _case(
    matcher: ImageMatcher[AssetIndex], photos: dict[str, Image.Image], photo: str = "astronaut", owner: int = 1
) -> Case:
    """The matcher's case for a brand (numbered ``owner``) whose asset is ``photo``."""
    unrelated = jpeg_bytes(photos["coins"], 60)
    if not matcher.asset_kinds:  # it looks for the brands' words, not for assets (OCR)
        return Case([], [replace(ADIDAS, brand_id=owner)], PRINTED.read_bytes(), unrelated)
    variants = matcher.encode_asset(as_picture(jpeg_bytes(photos[photo], 95)))
    assert variants[0][0] == "original" and all(isinstance(signal, bytes) for _, signal in variants)
    signals = [AssetSignal(owner, owner, f"Brand {owner}", signal, variant) for variant, signal in variants]
    return Case(signals, [], jpeg_bytes(photos[photo], 60), unrelated)


@pytest.mark.parametrize("name", sorted(IMAGE_MATCHERS))
def test_every_image_matcher_keeps_the_contract(
    name: str, photos: dict[str, Image.Image], settings: Settings, tmp_path: Path
) -> None:
    everything = _every_matcher(settings)
    matcher = everything[name]
    case = _case(matcher, photos)

    signal = matcher.encode(as_picture(case.found))
    assert isinstance(signal, bytes) and signal == matcher.encode(as_picture(case.found))
    queries = [("c" * 64, signal), ("d" * 64, matcher.encode(as_picture(case.unrelated)))]

    index = matcher.build_index(case.signals, case.brands)
    found, nothing = index.query(queries)
    owner = case.brands[0].brand_id if case.brands else 1
    assert found and {hit.brand_id for hit in found} == {owner}
    assert all(hit.matcher == name and hit.reason and hit.image_sha256 == "c" * 64 for hit in found)
    assert nothing == []  # any evidence a matcher returns is over its own threshold
    assert index.query([]) == []

    saved = tmp_path / "saved" / f"{name}.npz"
    index.save(saved)
    assert matcher.load_index(saved, case.signals, case.brands).query(queries) == [found, nothing]
    saved.write_bytes(b"damaged")
    assert matcher.load_index(saved, case.signals, case.brands).query(queries) == [found, nothing]

    # Shared: every other matcher encodes the same picture first, as a scan does; the signal is the
    # one this matcher computes alone, and the forms the others left are unchanged by it.
    listing = jpeg_bytes(photos["coffee"].resize((700, 460)), 85)
    shared = as_picture(listing)
    for other_name, other_matcher in everything.items():
        if other_name != name:
            other_matcher.encode(shared)
    before = {key: _form_bytes(form) for key, form in shared._forms.items()}
    assert matcher.encode(shared) == matcher.encode(as_picture(listing))
    assert all(_form_bytes(shared._forms[key]) == value for key, value in before.items())

    corrupt = as_picture(listing[: len(listing) // 3])  # the header is whole, the pixels are not
    with pytest.raises(ImageError):
        matcher.encode(corrupt)


@pytest.mark.parametrize("name", sorted(IMAGE_MATCHERS))
def test_a_saved_index_is_not_taken_for_other_signals(
    name: str, photos: dict[str, Image.Image], settings: Settings, tmp_path: Path
) -> None:
    """Loading brings the saved index up to date: what it held before and no longer should is gone,
    what it did not hold is found."""
    matcher = _every_matcher(settings)[name]
    before, after = _case(matcher, photos), _case(matcher, photos, "camera", owner=7)
    saved = tmp_path / f"{name}.npz"
    matcher.build_index(before.signals, before.brands).save(saved)
    loaded = matcher.load_index(saved, after.signals, after.brands)
    [found] = loaded.query([("c" * 64, matcher.encode(as_picture(after.found)))])
    assert found and {hit.brand_id for hit in found} == {7}
    if matcher.asset_kinds:
        [gone] = loaded.query([("d" * 64, matcher.encode(as_picture(before.found)))])
        assert gone == []


def _form_bytes(form: object) -> object:
    return form.tobytes() if isinstance(form, Image.Image) else form
