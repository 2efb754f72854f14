"""Issue 13: words read in listing photos (OCR), matched with the title logic, stored per image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from counterscan.features import FEATURES, feature_row
from counterscan.matchers.ocr import OcrMatcher, ReadText, read_picture
from counterscan.matchers.ocr_engine import ReaderOptions, TextReader
from counterscan.ranking import cold_start_score
from counterscan.records import Brand, Evidence, Listing
from tests.conftest import load_photo

LATIN_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
# Debian's fonts-wqy-zenhei (the Makefile's `fonts` target installs it for `make test`).
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
needs_fonts = pytest.mark.skipif(
    not (LATIN_FONT.exists() and CJK_FONT.exists()),
    reason="needs DejaVu Sans and WenQuanYi Zen Hei (apt-get install fonts-dejavu-core fonts-wqy-zenhei)",
)

ROLEX = Brand(brand_id=1, name="Rolex", member="m")
ADIDAS = Brand(brand_id=2, name="Adidas", member="m")
NIKE = Brand(brand_id=3, name="Nike", member="m")

# (text, font, top-left) drawn on the test picture.
LINES = (("ROLEX", LATIN_FONT, (40, 30)), ("Adidaas", LATIN_FONT, (40, 150)), ("高仿", CJK_FONT, (40, 270)))


def rendered() -> tuple[Image.Image, dict[str, tuple[float, float, float, float]]]:
    """A product-label picture with three words, and where each was drawn."""
    image = Image.new("RGB", (640, 400), (245, 240, 230))
    draw = ImageDraw.Draw(image)
    drawn = {}
    for text, font_path, origin in LINES:
        font = ImageFont.truetype(str(font_path), 72)
        draw.text(origin, text, font=font, fill=(20, 20, 30))
        drawn[text] = draw.textbbox(origin, text, font=font)
    return image, drawn


class _Decoded:
    """A decoded picture as the scan hands it to matchers (its reduced form is the image itself)."""

    def __init__(self, image: Image.Image) -> None:
        self.image = image
        self.size = image.size

    def reduced(self, side: int) -> Image.Image:
        return self.image


@pytest.fixture(scope="module")
def matcher() -> OcrMatcher:
    return OcrMatcher(TextReader(ReaderOptions()))


@needs_fonts
def test_words_in_a_rendered_photo_go_through_the_title_logic(matcher: OcrMatcher) -> None:
    image, drawn = rendered()
    signal = matcher.encode(_Decoded(image))
    read = ReadText.from_bytes(signal)
    assert read.size == (640, 400)
    [index] = [matcher.index_brands([ROLEX, ADIDAS, NIKE])]
    [found] = matcher.query(index, [("sha", signal)])
    signals = {(item.brand, str(item.details["signal"])) for item in found}
    # The brand word, the look-alike spelling, and the Chinese counterfeit word beside them.
    assert ("Rolex", "brand-mention") in signals
    assert ("Adidas", "lookalike") in signals
    assert ("Rolex", "counterfeit-term") in signals and ("Adidas", "counterfeit-term") in signals
    assert not any(item.brand == "Nike" for item in found)
    for item in found:
        assert item.matcher == "ocr" and item.image_sha256 == "sha" and 0 < item.score < 1
        for word in item.details["read"]:
            assert 0.5 <= word["confidence"] <= 1.0
    # Each word's box lies on the word as drawn.
    boxes = {
        str(word["text"]): np.array(word["box"])
        for item in found
        for word in item.details["read"]
        if item.details["signal"] != "counterfeit-term"
    }
    terms = [word for item in found if item.details["signal"] == "counterfeit-term" for word in item.details["read"]]
    assert {word["text"] for word in terms} == {"高仿"}
    boxes["高仿"] = np.array(terms[0]["box"])
    for text, key in (("ROLEX", "rolex"), ("Adidaas", "adidaas"), ("高仿", "高仿")):
        left, top, right, bottom = drawn[text]
        centre = boxes[key].mean(axis=0)
        assert left <= centre[0] <= right and top <= centre[1] <= bottom, (text, boxes[key], drawn[text])
    # The same words in a listing title give the text matcher's same signals: one logic.
    from counterscan.matchers.text import TextMatcher

    title = Listing(source="s", listing_id="1", title=read.text.replace("\n", " "))
    in_title = {(item.brand, str(item.details["signal"])) for item in TextMatcher().match(title, [ROLEX, ADIDAS, NIKE])}
    assert in_title == signals


def test_a_photo_with_no_text_gives_no_evidence(matcher: OcrMatcher) -> None:
    for name in ("chelsea", "coffee"):
        signal = matcher.encode(_Decoded(load_photo(name)))
        [found] = matcher.query(matcher.index_brands([ROLEX, ADIDAS, NIKE]), [(name, signal)])
        assert found == []
        assert len(signal) < 8192  # the stored signal stays small


def test_reading_keeps_boxes_in_the_original_pixels(matcher: OcrMatcher) -> None:
    """Text read from a reduced decode is placed in the full-size picture's coordinates."""
    if not LATIN_FONT.exists():
        pytest.skip("needs DejaVu Sans")
    image = Image.new("RGB", (800, 300), "white")
    ImageDraw.Draw(image).text((100, 100), "ROLEX", font=ImageFont.truetype(str(LATIN_FONT), 90), fill="black")
    small = read_picture(matcher.reader, image.resize((400, 150)), image.size)
    [line] = small.lines
    assert line.text.upper() == "ROLEX"
    xs = [x for x, _y in line.box]
    assert min(xs) > 60 and max(xs) < 500  # the word spans about 100..430 px at full size


def _ocr_evidence(brand_id: int, sha: str, score: float) -> Evidence:
    return Evidence("ocr", brand_id, "B", score, "photo reads", image_sha256=sha, details={"signal": "brand-mention"})


def _logo_evidence(brand_id: int, sha: str, score: float) -> Evidence:
    return Evidence("keypoints", brand_id, "B", score, "logo", image_sha256=sha, details={"region": []})


def test_a_logo_seen_and_its_name_read_in_one_photo_is_stronger_than_either() -> None:
    logo, words = _logo_evidence(1, "a", 0.6), _ocr_evidence(1, "a", 0.4)
    apart = [_logo_evidence(1, "a", 0.6), _ocr_evidence(1, "b", 0.4)]
    alone = {cold_start_score([logo]).score, cold_start_score([words]).score}
    together = cold_start_score([logo, words]).score
    assert together > max(alone)
    assert together > cold_start_score(apart).score  # the same photo corroborates more than two photos
    listing = Listing(source="s", listing_id="1", title="x")
    both = dict(zip(FEATURES, feature_row(listing, [logo, words]), strict=True))
    separate = dict(zip(FEATURES, feature_row(listing, apart), strict=True))
    assert both["logo_and_words"] > max(both["logo"], 0.4) and separate["logo_and_words"] == 0.0
    assert both["photo_words"] > 0 and separate["photo_words"] == both["photo_words"]


def test_feature_table_documents_every_feature() -> None:
    import counterscan.features as features

    documented = [line.split("|")[1].strip() for line in (features.__doc__ or "").splitlines() if line.startswith("| ")]
    assert documented[1:] == list(FEATURES)  # the first row is the table's header
