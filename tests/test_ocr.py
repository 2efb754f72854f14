"""Issue 13: words read in listing photos (OCR), matched with the title logic, stored per image."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from counterscan.matchers.ocr import OcrMatcher, ReadText, read_picture
from counterscan.matchers.ocr_engine import ReaderOptions, TextReader
from counterscan.ranking.features import FEATURES, feature_row
from counterscan.ranking.ranker import cold_start_score
from counterscan.records import Brand, Evidence, Listing
from counterscan.store import schema as t
from tests.conftest import Cli, as_picture, jpeg_bytes, load_photo, png_bytes
from tests.test_cli import rows

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


@pytest.fixture(scope="module")
def matcher() -> OcrMatcher:
    return OcrMatcher(TextReader(ReaderOptions()))


@needs_fonts
def test_words_in_a_rendered_photo_go_through_the_title_logic(matcher: OcrMatcher) -> None:
    image, drawn = rendered()
    signal = matcher.encode(as_picture(png_bytes(image)))
    read = ReadText.from_bytes(signal)
    assert read.size == (640, 400)
    index = matcher.build_index((), [ROLEX, ADIDAS, NIKE])
    [found] = index.query([("sha", signal)])
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
        signal = matcher.encode(as_picture(jpeg_bytes(load_photo(name))))
        [found] = matcher.build_index((), [ROLEX, ADIDAS, NIKE]).query([(name, signal)])
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
    import counterscan.ranking.features as features

    documented = [line.split("|")[1].strip() for line in (features.__doc__ or "").splitlines() if line.startswith("| ")]
    assert documented[1:] == list(FEATURES)  # the first row is the table's header


@needs_fonts
def test_scan_reads_each_picture_once_and_matches_later_brands_from_stored_text(cli: Cli, tmp_path: Path) -> None:
    """Through the CLI on a real store: the text is read at the first scan and kept per image; a
    brand registered later is found in it with the photos gone (so without reading them again);
    a corrupt image is quarantined at ingest as before."""
    image, _drawn = rendered()
    folder = tmp_path / "feed"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "label.jpg").write_bytes(jpeg_bytes(image, 92))
    (folder / "img" / "cat.jpg").write_bytes(jpeg_bytes(load_photo("chelsea")))
    (folder / "img" / "broken.jpg").write_bytes(jpeg_bytes(load_photo("coffee"))[:700])
    stamped = load_photo("coffee")
    ImageDraw.Draw(stamped).text((30, 30), "AAA REPLICA", font=ImageFont.truetype(str(LATIN_FONT), 56), fill="white")
    (folder / "img" / "stamped.jpg").write_bytes(jpeg_bytes(stamped, 92))
    feed_rows = [
        {"listing_id": "L1", "title": "Watch", "image_paths": "img/label.jpg"},
        {"listing_id": "L2", "title": "Same label, other seller", "image_paths": "img/label.jpg"},
        {"listing_id": "L3", "title": "Cat poster", "image_paths": "img/cat.jpg"},
        {"listing_id": "L4", "title": "Broken photo", "image_paths": "img/broken.jpg"},
        # The brand in the title, counterfeit words only on the photo: one listing's text.
        {"listing_id": "L5", "title": "Rolex Submariner watch", "image_paths": "img/stamped.jpg"},
    ]
    with (folder / "feed.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["listing_id", "title", "image_paths"])
        writer.writeheader()
        writer.writerows(feed_rows)
    env = {"COUNTERSCAN_IMAGE_MATCHERS": "phash,dhash,ocr"}
    cli.add_member("m")
    cli("brands", "add", "Rolex", "--member", "m")
    ingested = cli("ingest", str(folder / "feed.csv"))
    assert "images failed 1" in ingested.stdout
    assert "broken.jpg" in cli("quarantine", "list").stdout
    assert "5 new or changed listings scanned, 3 with evidence" in cli("scan", env=env).stdout

    texts = {row.sha256: row for row in rows(cli, t.image_text)}
    assert len(texts) == 3  # three distinct pictures read, one of them shared by two listings
    label = next(row for row in texts.values() if "ROLEX" in row.text.upper())
    assert "高仿" in label.text and all("box" in line for line in label.lines)
    suspects = json.loads(cli("review", "list", "--format", "json").stdout)
    assert {item["listing_id"] for item in suspects} == {"L1", "L2", "L5"}
    by_id = {row.listing_id: row.listing_pk for row in rows(cli, t.listings)}
    on_photo = [row for row in rows(cli, t.evidence) if row.listing_pk == by_id["L5"] and row.matcher == "ocr"]
    assert [row.details["signal"] for row in on_photo] == ["counterfeit-term"]
    assert {"aaa", "replica"} <= set(on_photo[0].details["terms"])
    # The HTML report draws the boxes of the words read.
    report = cli("export", "--format", "html", "--out", str(tmp_path / "report")).stdout
    assert (tmp_path / "report" / "index.html").exists(), report

    # A brand registered after the scan, and the pictures gone from the blob store.
    for blob in (cli.home / "blobs").rglob("*"):
        if blob.is_file():
            blob.unlink()
    cli("brands", "add", "Adidas", "--member", "m")
    rescan = cli("scan", env=env).stdout
    assert "5 listings re-scanned" in rescan and "unreadable" not in rescan
    evidence = [row for row in rows(cli, t.evidence) if row.matcher == "ocr"]
    adidas = [row for row in evidence if row.brand_id == 2]
    assert {row.details["signal"] for row in adidas} == {"lookalike", "counterfeit-term"}
    assert len({row.listing_pk for row in adidas}) == 2


def test_words_the_reader_ran_together_are_split_only_when_wholly_known() -> None:
    from counterscan.matchers.ocr import spaced, split_run_together

    vocabulary = frozenset({"aaa", "replica", "coca", "cola", "red", "bull", "ford"})
    assert split_run_together("aaareplica", vocabulary) == ["aaa", "replica"]
    assert split_run_together("cocacola", vocabulary) == ["coca", "cola"]
    assert split_run_together("oxford", vocabulary) is None  # "ox" is not a word looked for
    assert split_run_together("ford", vocabulary) is None  # one word is not run together
    assert spaced("REDBULL energy, AAAREPLICA!", vocabulary) == "red bull energy, aaa replica!"


def test_a_one_letter_misspelling_is_a_lookalike_only_when_read_surely(matcher: OcrMatcher) -> None:
    from counterscan.matchers.ocr_engine import TextLine

    heineken = Brand(brand_id=9, name="Heineken", member="m", lookalikes=("Heinekem",))
    box = ((0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0))
    index = matcher.build_index((), [heineken])

    def signals(text: str, confidence: float) -> set[str]:
        read = ReadText("r", (100, 20), (TextLine(text, confidence, box),))
        return {str(item.details["signal"]) for item in matcher.match_text(index, "s", read)}

    assert signals("HEINEKCN", 0.97) == {"lookalike"}  # printed so, read surely
    # More likely the reader's slip on the real mark: the brand's name read, not a look-alike.
    assert signals("HEINEKCN", 0.7) == {"brand-mention"}
    assert signals("HEINEKEM", 0.7) == {"lookalike"}  # registered by the owner: any confidence
    assert signals("HEINEKEN", 0.7) == {"brand-mention"}
