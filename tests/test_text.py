"""Issue 7: text matchers on real-looking listings, with negatives that must not fire."""

from __future__ import annotations

import re

import pytest

from counterscan.matchers.context import QUIET_SIGNALS
from counterscan.matchers.text import TextMatcher
from counterscan.records import Brand, Listing
from counterscan.textnorm import skeleton_tokens

NIKE = Brand(brand_id=1, name="Nike", member="m", keywords=("Air Max", "Air Jordan"), categories=("sneakers",))
ADIDAS = Brand(brand_id=2, name="Adidas", member="m", keywords=("Ultraboost",), lookalikes=("Abibas",))
APPLE = Brand(brand_id=3, name="Apple", member="m", keywords=("iPhone", "MacBook", "AirPods"), categories=("phones",))
ROLEX = Brand(brand_id=4, name="Rolex", member="m", aliases=("Rolex SA",), keywords=("Submariner", "Daytona"))
BRANDS = [NIKE, ADIDAS, APPLE, ROLEX]


def signals(title: str, description: str = "") -> set[tuple[str, str]]:
    listing = Listing(source="s", listing_id="1", title=title, description=description)
    return {(item.brand, str(item.details["signal"])) for item in TextMatcher().match(listing, BRANDS)}


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("NIKE Air Max 90 men's running shoes", {("Nike", "brand-mention")}),
        ("nike air max replica 1:1", {("Nike", "brand-mention"), ("Nike", "counterfeit-term")}),
        ("Ｎｉｋｅ shoes AAA quality", {("Nike", "brand-mention"), ("Nike", "counterfeit-term")}),
        ("N1ke sneakers size 43", {("Nike", "disguised-brand")}),
        ("Nіke trainers (Cyrillic i)", {("Nike", "disguised-brand")}),
        ("ΝΙΚΕ shoes in Greek capitals", {("Nike", "disguised-brand")}),
        ("Adidaas Ultraboost 22", {("Adidas", "brand-mention"), ("Adidas", "lookalike")}),
        ("Abibas tracksuit, the classic", {("Adidas", "lookalike")}),
        ("Apple iPhone 15 Pro 256GB", {("Apple", "brand-mention")}),
        ("Apple watch band, mirror quality", {("Apple", "brand-mention"), ("Apple", "counterfeit-term")}),
        ("Rolex Submariner réplica automatic", {("Rolex", "brand-mention"), ("Rolex", "counterfeit-term")}),
        ("ROLEX Daytona 高仿 watch", {("Rolex", "brand-mention"), ("Rolex", "counterfeit-term")}),
        (
            "Rolex homage, unbranded diver in Submariner style",
            {("Rolex", "brand-mention"), ("Rolex", "counterfeit-term")},
        ),
        ("Rolex Datejust Nachbildung", {("Rolex", "brand-mention"), ("Rolex", "counterfeit-term")}),
    ],
)
def test_fires_on_real_examples(title: str, expected: set[tuple[str, str]]) -> None:
    assert signals(title) == expected


@pytest.mark.parametrize(
    "title",
    [
        "Nikelodeon plush toy",
        "Apple pie recipe book",
        "Fresh apple juice, 1 litre",
        "Replica of a vintage clock",  # counterfeit vocabulary alone names no brand
        "Triple-AAA batteries for remote",
        "Nice shoes for running",  # one letter from Nike, but Nike is too short to fuzz
        "Guest room slippers",  # one edit from Guess-like names, but an everyday word
        "Adds a shoe horn",
    ],
)
def test_does_not_fire_on_negatives(title: str) -> None:
    # An everyday word alone is shown as a quiet mention, never as the brand's name.
    assert {found for found in signals(title) if found[1] not in QUIET_SIGNALS} == set()


def test_one_edit_from_a_long_name_is_a_lookalike() -> None:
    assert signals("Rolexx Submariner") >= {("Rolex", "lookalike")}
    assert ("Rolex", "lookalike") not in signals("Rolex Submariner")


def test_description_counts_too() -> None:
    assert signals("Sneakers", "Genuine? No: 1:1 Nike copy") == {
        ("Nike", "brand-mention"),
        ("Nike", "counterfeit-term"),
    }


def test_skeleton_folds_homoglyphs_leet_and_accents() -> None:
    assert skeleton_tokens("Ν1ΚΕ Àdídàs") == ["nike", "adidas"]
    assert skeleton_tokens("2024 model") == ["2024", "model"]  # digits alone stay digits


# -- price, seller and product titles -----------------------------------------------------------

from counterscan.matchers.context import PriceMatcher, SellerHistory, SellerMatcher, convert  # noqa: E402
from counterscan.matchers.title import ProductTitleMatcher, TitleSimilarity, model_codes  # noqa: E402
from counterscan.records import Product  # noqa: E402

SEIKO = Brand(
    brand_id=9,
    name="Seiko",
    member="m",
    msrp=300.0,
    currency="USD",
    products=(
        Product("Prospex SKX007K1 Automatic Diver", 450.0, "USD"),
        Product("Presage Cocktail Time", 425.0, "EUR"),
    ),
)
RATES = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27}


def listing(title: str, price: float | None, currency: str | None = "USD", seller: str | None = None) -> Listing:
    return Listing(source="s", listing_id="1", title=title, price=price, currency=currency, seller_id=seller)


def test_price_far_under_the_products_msrp() -> None:
    [found] = PriceMatcher(RATES).match(listing("Seiko SKX007K1 diver watch", 90.0), [SEIKO], [SEIKO])
    assert found.details["msrp"] == 450.0 and found.distance == 0.2
    assert "20% of the Seiko Prospex SKX007K1 Automatic Diver MSRP of 450 USD" in found.reason
    # Converted through the rates table: 100 GBP is 127 USD, 42% of the brand's default 300 USD.
    [converted] = PriceMatcher(RATES).match(listing("Seiko watch", 100.0, "GBP"), [SEIKO], [SEIKO])
    assert converted.details["ratio"] == pytest.approx(127 / 300, abs=1e-3)


@pytest.mark.parametrize(
    ("title", "price", "currency"),
    [
        ("Seiko SKX007K1", 420.0, "USD"),  # a fair price
        ("Seiko watch", 200.0, "USD"),  # 67% of MSRP: a discount, not a fake
        ("Seiko watch", 50.0, "JPY"),  # no rate for JPY: never guessed
        ("Seiko watch", None, None),
    ],
)
def test_price_does_not_fire(title: str, price: float | None, currency: str | None) -> None:
    assert PriceMatcher(RATES).match(listing(title, price, currency), [SEIKO], [SEIKO]) == []


def test_convert() -> None:
    assert convert(10.0, "EUR", "EUR", {}) == 10.0
    assert convert(10.0, "EUR", "USD", RATES) == pytest.approx(10.8)
    assert convert(10.0, "XYZ", "USD", RATES) is None


def test_seller_history_raises_the_score_for_brands_in_evidence() -> None:
    history = SellerHistory({"bad-seller": {SEIKO.brand_id: 2, 77: 1}})
    [found] = SellerMatcher(history).match(listing("x", 1.0, seller="bad-seller"), [SEIKO])
    assert found.score == pytest.approx(0.6) and "3 confirmed counterfeit" in found.reason
    assert SellerMatcher(history).match(listing("x", 1.0, seller="good-seller"), [SEIKO]) == []


def test_product_titles_and_model_codes() -> None:
    assert model_codes("Seiko SKX-007K1 and DSC-W120P, 2024 model") == {"skx007k1", "dscw120p"}
    matcher = ProductTitleMatcher()
    [found] = matcher.match(listing("NEW seiko prospex automatic divers watch", None), [SEIKO])
    assert found.details["product"] == "Prospex SKX007K1 Automatic Diver"
    assert matcher.match(listing("Casio digital alarm clock", None), [SEIKO]) == []
    similarity = TitleSimilarity(["Presage Cocktail Time", "Prospex SKX007K1 Automatic Diver"])
    scores = similarity.pairwise(["skx007k1 watch", "cocktail time presage"], ["Prospex SKX007K1 Automatic Diver"] * 2)
    assert scores[0] >= 0.9 > scores[1]


def test_reasons_name_each_word_once() -> None:
    listing = Listing(source="s", listing_id="1", title="Nike replica, NIKE air max replica", description="nike 1:1")
    reasons = [item.reason for item in TextMatcher().match(listing, BRANDS)]
    assert reasons
    for reason in reasons:
        quoted = re.findall(r"'([^']*)'", reason)
        assert len(quoted) == len(set(quoted)), reason
    assert any("'replica'" in reason for reason in reasons)
