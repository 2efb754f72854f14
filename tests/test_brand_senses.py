"""Issue 22: brand words in context (ordinary senses, honest accessories), disguises before every
match, glued words read in photos, and per-product MSRPs only for the brand a listing is about."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterscan.config import Settings
from counterscan.matchers.context import QUIET_SIGNALS
from counterscan.matchers.ocr import OcrMatcher, ReadText, split_run_together
from counterscan.matchers.ocr_engine import ReaderOptions, TextLine, TextReader
from counterscan.matchers.senses import is_common
from counterscan.matchers.text import TextMatcher
from counterscan.records import Brand, Evidence, Listing, Product
from counterscan.scan.partition import MatchContext, assess_many, listing_evidence, prepare

APPLE = Brand(
    brand_id=1,
    name="Apple",
    member="m",
    keywords=("iPhone", "AirPods"),
    categories=("smartphones",),
    msrp=799.0,
    currency="USD",
    products=(Product("AirPods Pro 2", 249.0, "USD"), Product("iPhone 15 Pro", 999.0, "USD")),
)
SAMSUNG = Brand(
    brand_id=2,
    name="Samsung",
    member="m",
    keywords=("Galaxy",),
    categories=("earbuds",),
    msrp=799.0,
    currency="USD",
    products=(Product("Galaxy Buds 2 Pro", 229.0, "USD"), Product("Galaxy S24 Ultra", 1299.0, "USD")),
)
PUMA = Brand(brand_id=3, name="Puma", member="m", keywords=("Suede Classic",), categories=("sneakers",))
BEATS = Brand(brand_id=4, name="Beats", member="m", categories=("headphones",), msrp=199.0, currency="USD")
BRANDS = [APPLE, SAMSUNG, PUMA, BEATS]


def signals(title: str) -> set[tuple[str, str]]:
    listing = Listing(source="s", listing_id="1", title=title)
    return {(item.brand, str(item.details["signal"])) for item in TextMatcher().match(listing, BRANDS)}


def test_how_common_a_brand_word_is() -> None:
    assert all(is_common((word,)) for word in ("apple", "galaxy", "beats", "puma", "shell", "jaguar", "dove"))
    # Rare words and names of several words are distinctive; so is a name frequent in its home market only.
    assert not any(is_common((word,)) for word in ("airpods", "heineken", "rolex"))
    assert not is_common(("suede", "classic"))


@pytest.mark.parametrize(
    ("title", "brand"),
    [
        ("Galaxy star projector night light for kids bedroom", "Samsung"),
        ("Heart beats monitor, finger pulse oximeter", "Beats"),
        ("Dwarf apple tree sapling, 1.2 m", "Apple"),
        ("Puma plush toy, stuffed mountain lion", "Puma"),
        ("Fake apple decoration, artificial fruit", "Apple"),  # "fake" has honest uses: no corroboration
    ],
)
def test_an_everyday_word_alone_is_quiet(title: str, brand: str) -> None:
    assert signals(title) == {(brand, "ambiguous-mention")}


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Samsung Galaxy S24 Ultra 256GB", {("Samsung", "brand-mention")}),  # two of its words
        ("Puma sneaker, size 42", {("Puma", "brand-mention")}),  # a category of the brand (singular)
        ("Puma Suede Classic low", {("Puma", "brand-mention")}),  # a trademark phrase
        ("AirPods Pro 2 with charging case", {("Apple", "brand-mention")}),  # a rare word
        ("Galaxy lamp replica 1:1", {("Samsung", "brand-mention"), ("Samsung", "counterfeit-term")}),
    ],
)
def test_an_everyday_word_counts_with_corroboration(title: str, expected: set[tuple[str, str]]) -> None:
    assert signals(title) == expected


@pytest.mark.parametrize(
    ("title", "brand"),
    [
        ("Clear case compatible with Galaxy S23, shockproof", "Samsung"),
        ("Screen protector for iPhone 15 Pro, 2 pack", "Apple"),
        ("USB-C charger for Samsung phones, 25W", "Samsung"),
        ("Silicone band fits iPhone MagSafe wallets", "Apple"),
        ("Replacement ear tips for AirPods Pro", "Apple"),
        ("Lightning cable works with iPhone 14", "Apple"),
        ("iPhone 15 Pro case, magnetic", "Apple"),  # the brand word before an accessory noun
        ("Hülle kompatibel mit Samsung Galaxy S24, transparent", "Samsung"),
        ("Ladekabel für iPhone 15, 2 m", "Apple"),
        ("Funda compatible con iPhone 15 Pro Max", "Apple"),
        ("Cargador rápido para Samsung Galaxy", "Samsung"),
        ("Coque compatible avec iPhone 14, antichoc", "Apple"),
        ("Chargeur pour Samsung Galaxy A54", "Samsung"),
    ],
)
def test_honest_reference_use_is_an_accessory(title: str, brand: str) -> None:
    assert signals(title) == {(brand, "accessory-mention")}


def test_a_reference_reaches_only_its_clause_and_counterfeit_words_override_it() -> None:
    # After the comma the title names the brand's own goods again.
    assert signals("Gift for mum, Samsung Galaxy S24 Ultra") == {("Samsung", "brand-mention")}
    assert signals("Case for iPhone 15, replica 1:1") == {("Apple", "brand-mention"), ("Apple", "counterfeit-term")}
    # A disguise is no honest reference.
    assert ("Samsung", "disguised-brand") in signals("Charger for Sаmsung Galaxy")


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        # Cyrillic а in Samsung while the keyword Galaxy is also there.
        ("Sаmsung Galaxy S24 Ultra", {("Samsung", "disguised-brand"), ("Samsung", "brand-mention")}),
        # Cyrillic А in an everyday word, no other word of the brand.
        ("Аpple charger 20W", {("Apple", "disguised-brand")}),
        ("G4laxy Buds 2 Pro", {("Samsung", "disguised-brand")}),
    ],
)
def test_confusable_letters_are_folded_before_every_match(title: str, expected: set[tuple[str, str]]) -> None:
    assert signals(title) == expected


def test_glued_words_read_in_a_photo_are_split() -> None:
    vocabulary = TextMatcher().vocabulary([APPLE])
    assert split_run_together("appleoriginal", vocabulary) == ["apple", "original"]
    assert split_run_together("oxford", vocabulary) is None  # a word itself
    assert split_run_together("greenleather", vocabulary) is None  # no looked-for word in it
    matcher = OcrMatcher(TextReader(ReaderOptions()))
    index = matcher.build_index((), [APPLE, SAMSUNG])
    box = ((0.0, 0.0), (100.0, 0.0), (100.0, 20.0), (0.0, 20.0))
    read = ReadText("r", (100, 20), (TextLine("APPLEORIGINAL", 0.95, box), TextLine("IPHONE", 0.95, box)))
    found = matcher.match_text(index, "photo", read)
    assert {(item.brand, item.details["signal"]) for item in found} == {("Apple", "brand-mention")}


def _context(tmp_path: Path) -> MatchContext:
    settings = Settings.load(home=tmp_path, environ={"COUNTERSCAN_IMAGE_MATCHERS": "none"})
    return MatchContext(key="t", settings=settings, brands=tuple(BRANDS), asset_signals={}, blob_root=tmp_path)


def _assess(
    context: MatchContext, title: str, price: float, pictured: Brand | None = None
) -> dict[str, tuple[float, set[str]]]:
    """Per suspected brand, its score and its evidence's signals, through the scan's scoring path."""
    listing = Listing(source="s", listing_id="1", title=title, price=price, currency="USD")
    per_image: dict[str, list[Evidence]] = {}
    if pictured is not None:
        per_image["photo"] = [
            Evidence(matcher="phash", brand_id=pictured.brand_id, brand=pictured.name, score=0.6, reason="copy")
        ]
    evidence = listing_evidence(prepare(context), context, listing, list(per_image), per_image)
    (assessed,) = assess_many([(listing, evidence)], context.brands, None)
    return {
        brand.brand: (brand.score, {str(item.details.get("signal", item.matcher)) for item in brand.evidence})
        for brand in assessed.brands
    }


def test_a_per_product_msrp_applies_only_to_the_brand_the_listing_is_about(tmp_path: Path) -> None:
    context = _context(tmp_path)
    # Apple's product, cheap: Apple's MSRP applies; Samsung's "Galaxy Buds 2 Pro" is not pulled in.
    scored = _assess(context, "Apple AirPods Pro 2nd gen", 29.0)
    assert set(scored) == {"Apple"} and "price" in scored["Apple"][1] and scored["Apple"][0] > 0.5
    # The product named alone, strongly enough, is about its brand.
    assert _assess(context, "Galaxy Buds 2 Pro, bora purple", 19.0)["Samsung"][0] > 0.5


@pytest.mark.parametrize(
    "title",
    [
        "Galaxy star projector night light",
        "Case compatible with Galaxy S23",
        "Screen protector for iPhone 15 Pro",
        "Replacement ear pads for Beats headphones",
    ],
)
def test_no_price_evidence_without_the_brand(tmp_path: Path, title: str) -> None:
    scored = _assess(_context(tmp_path), title, 9.99)
    assert all(score < 0.5 and signals <= QUIET_SIGNALS for score, signals in scored.values())


def test_a_picture_of_the_brand_confirms_an_everyday_word_and_an_accessory(tmp_path: Path) -> None:
    context = _context(tmp_path)
    for title in ("Galaxy star projector night light", "Case compatible with Galaxy S23"):
        score, found = _assess(context, title, 9.99, pictured=SAMSUNG)["Samsung"]
        assert "brand-mention" in found and "price" in found and score > 0.5
