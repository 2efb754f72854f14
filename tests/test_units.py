"""Small pure parts: configuration, cold-start scoring, text matching, feed-row parsing, migrations."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from counterscan.config import Settings
from counterscan.errors import ExternalError, UserError
from counterscan.ingest.base import FeedListing, parse_row, split_refs
from counterscan.ranking.ranker import cold_start_score
from counterscan.records import Evidence, Rejected
from counterscan.store import Store
from counterscan.store import schema as t


def test_settings_precedence(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("phash_max_distance = 7\nmax_image_bytes = 1000\n")
    settings = Settings.load(home=tmp_path, environ={"COUNTERSCAN_PHASH_MAX_DISTANCE": "9"})
    assert settings.phash_max_distance == 9  # environment beats the file
    assert settings.max_image_bytes == 1000
    assert settings.database_url.startswith("sqlite:///") and settings.database_url.endswith("counterscan.db")
    assert Settings.load(home=tmp_path, db_url="sqlite://", environ={"COUNTERSCAN_DB": "x"}).db_url == "sqlite://"


def test_settings_reject_unknown_keys(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("nonsense = 1\n")
    with pytest.raises(UserError, match="unknown setting 'nonsense'"):
        Settings.load(home=tmp_path, environ={})


def _evidence(matcher: str, brand_id: int, score: float, signal: str = "") -> Evidence:
    return Evidence(
        matcher=matcher, brand_id=brand_id, brand=f"b{brand_id}", score=score, reason="r", details={"signal": signal}
    )


def test_cold_start_noisy_or_per_brand() -> None:
    assert cold_start_score([]).score == 0.0 and cold_start_score([]).brand_id is None
    combined = cold_start_score([_evidence("phash", 1, 0.6), _evidence("text", 1, 0.5, "counterfeit-term")])
    assert combined.score == pytest.approx(0.8) and combined.brand_id == 1 and combined.best == 0
    # Many copies of one finding count once; another brand's stronger single finding wins.
    repeated = [_evidence("phash", 1, 0.6)] * 5 + [_evidence("phash", 2, 0.7)]
    assert cold_start_score(repeated).brand_id == 2
    assert cold_start_score(repeated).score == pytest.approx(0.7)


def test_parse_row_fields_and_attributes(tmp_path: Path) -> None:
    row = {"listing_id": " 42 ", "price": "1,299.50", "currency": "eur", "image_paths": "a.jpg; b.jpg", "colour": "red"}
    parsed = parse_row("feed", "line 2", row, tmp_path)
    assert isinstance(parsed, FeedListing)
    listing = parsed.listing
    assert (listing.listing_id, listing.price, listing.currency) == ("42", 1299.5, "EUR")
    assert listing.image_refs == ("a.jpg", "b.jpg") and listing.attributes == {"colour": "red"}


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"title": "x"}, "missing listing_id"),
        ({"listing_id": "1", "price": "-3"}, "non-negative"),
        ({"listing_id": "1", "price": "nan"}, "non-negative"),
        ({"listing_id": "1", "currency": "dollars"}, "ISO 4217"),
    ],
)
def test_parse_row_rejections(row: dict[str, str], reason: str) -> None:
    parsed = parse_row("feed", "line 9", row, None)
    assert isinstance(parsed, Rejected) and reason in parsed.reason and "line 9" in parsed.record


def test_split_refs() -> None:
    assert split_refs(["a", " b "]) == ("a", "b")
    assert split_refs("a;;b;") == ("a", "b")
    assert split_refs(None) == () and split_refs(float("nan")) == ()


def test_store_refuses_a_newer_schema(db_url: str) -> None:
    Store.open(db_url).close()
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(sa.insert(t.schema_version).values(version=t.LATEST_VERSION + 1, applied_at=sa.func.now()))
    engine.dispose()
    with pytest.raises(ExternalError, match="newer than this counterscan"):
        Store.open(db_url)


def test_unreachable_database_is_an_external_error() -> None:
    with pytest.raises(ExternalError, match="cannot open database"):
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
