"""Every CLI command through typer's CliRunner, then the store's state checked directly."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image

from counterscan.registry.members import hash_api_key
from counterscan.store import schema as t
from tests.conftest import REPO, Cli, jpeg_bytes, panel_text

DEMO = REPO / "data" / "demo"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def rows(cli: Cli, table: sa.Table) -> list[sa.Row[tuple[object, ...]]]:
    store = cli.store()
    try:
        with store.engine.connect() as conn:
            return list(conn.execute(sa.select(table)))
    finally:
        store.close()


@pytest.fixture
def brand_ready(cli: Cli) -> Cli:
    cli.add_member("acme-group")
    cli(
        "brands",
        "add",
        "Acme",
        "--member",
        "acme-group",
        "--keyword",
        "Roadrunner",
        "--msrp",
        "99",
        "--currency",
        "usd",
    )
    return cli


def test_init_creates_schema_and_home(cli: Cli) -> None:
    result = cli("init")
    assert "ready" in result.stdout
    versions = rows(cli, t.schema_version)
    assert [row.version for row in versions] == [t.LATEST_VERSION]
    cli("init")  # twice is harmless
    assert len(rows(cli, t.schema_version)) == 1


def test_members_add_prints_key_once_and_stores_only_its_hash(cli: Cli) -> None:
    result = cli("members", "add", "acme-group")
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("cs_") and len(key) > 40
    [member] = rows(cli, t.members)
    assert member.name == "acme-group"
    [stored] = rows(cli, t.member_keys)
    assert stored.key_hash == hash_api_key(key) and key not in stored.key_hash and key.startswith(stored.prefix)
    duplicate = cli("members", "add", "acme-group", expect=2)
    assert "already exists" in duplicate.stderr and "Traceback" not in duplicate.stderr
    assert "acme-group" in cli("members", "list").stdout


def test_brands_add_records_profile(brand_ready: Cli) -> None:
    [brand] = rows(brand_ready, t.brands)
    assert (brand.name, brand.msrp, brand.currency) == ("Acme", 99.0, "USD")
    [word] = [row for row in rows(brand_ready, t.assets) if row.kind == "text"]
    assert word.original_name == "Roadrunner" and word.created_by == "acme-group"
    assert "Roadrunner" in brand_ready("brands", "list").stdout


def test_brands_add_errors_are_one_line(cli: Cli) -> None:
    result = cli("brands", "add", "Acme", "--member", "nobody", "--key", "cs_x", expect=5)
    assert result.stderr.strip() == "error: unknown member 'nobody' or wrong API key"
    cli.add_member("m")
    cli("brands", "add", "Acme", "--member", "m")
    assert "already exists" in cli("brands", "add", "acme", "--member", "m", expect=2).stderr
    other = cli.add_member("other", use=False)  # a live key, of another member: said so, not "unknown member"
    wrong = cli("brands", "add", "Beta", "--member", "m", "--key", other, expect=5)
    assert wrong.stderr.strip() == "error: this API key does not belong to member 'm' (use that member's own key)"
    no_key = cli("brands", "add", "Other", "--member", "m", env={"COUNTERSCAN_API_KEY": ""}, expect=5)
    assert "needs its API key" in no_key.stderr
    assert "together" in cli("brands", "add", "Other", "--member", "m", "--msrp", "5", expect=2).stderr


def test_assets_add_files_folders_and_svg_dedup_by_content(
    brand_ready: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    photo = write(tmp_path / "up" / "product.jpg", jpeg_bytes(photos["coffee"]))
    write(tmp_path / "up" / "zz" / "same-again.jpg", photo.read_bytes())
    logo = DEMO / "assets" / "nike" / "logo.svg"
    result = brand_ready("assets", "add", "--brand", "Acme", "--kind", "product", str(tmp_path / "up"), str(logo))
    assert result.stdout.count("added asset") == 2
    assert "already present" in result.stdout
    stored = rows(brand_ready, t.assets)
    assert len(stored) == 3  # the two images and the brand's keyword
    stored = [row for row in stored if row.kind != "text"]
    svg_asset = next(row for row in stored if row.original_name == "logo.svg")
    assert svg_asset.width == 512
    # The blob store holds the rasterised PNG under its content hash.
    blob = brand_ready.home / "blobs" / svg_asset.sha256[:2] / svg_asset.sha256
    assert Image.open(blob).format == "PNG"
    signals = rows(brand_ready, t.asset_signals)
    per_matcher = {(row.asset_id, row.matcher) for row in signals}
    # Both default hashes, each under 14 crops and 7 flips/turns (plus a trimmed variant for a framed
    # picture), and the copies matcher's three views of each product photo.
    assert {matcher for _, matcher in per_matcher} == {"phash", "dhash", "copies"} and len(per_matcher) == 6
    trimmed = {row.asset_id for row in signals if row.variant == "trimmed"}
    assert trimmed <= {svg_asset.asset_id}
    hashes = [row for row in signals if row.matcher != "copies"]
    assert len(hashes) == 2 * 2 * 21 + 2 * len(trimmed)
    views = sorted(row.variant for row in signals if row.matcher == "copies")
    assert views == sorted(2 * ["mirrored", "original", "small"])
    again = brand_ready("assets", "add", "--brand", "Acme", str(photo))
    assert "already present" in again.stdout
    assert len(rows(brand_ready, t.assets)) == 3
    listed = json.loads(brand_ready("assets", "list", "--brand", "Acme", "--format", "json").stdout)
    assert sorted(item["original_name"] for item in listed) == ["Roadrunner", "logo.svg", "product.jpg"]


def test_assets_add_rejects_bad_files_but_keeps_good_ones(
    brand_ready: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    good = write(tmp_path / "good.jpg", jpeg_bytes(photos["rocket"]))
    bad = write(tmp_path / "notes.jpg", b"not an image at all")
    result = brand_ready("assets", "add", "--brand", "Acme", "--kind", "product", str(good), str(bad))
    assert "added asset" in result.stdout
    assert f"rejected {bad}: not a recognised image (accepted: JPEG, PNG, GIF, WEBP, BMP, TIFF, SVG)" in result.stderr
    assert len([row for row in rows(brand_ready, t.assets) if row.kind == "product"]) == 1
    only_bad = brand_ready("assets", "add", "--brand", "Acme", str(bad), expect=3)
    assert "rejected" in only_bad.stderr


def test_assets_add_unknown_brand_and_missing_file(brand_ready: Cli, tmp_path: Path) -> None:
    unknown = brand_ready("assets", "add", "--brand", "Nope", str(tmp_path), expect=2)
    assert unknown.stderr.strip().startswith("error: unknown brand 'Nope'")
    missing = brand_ready("assets", "add", "--brand", "Acme", str(tmp_path / "missing.png"), expect=2)
    assert "no such file" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def _feed(tmp_path: Path, photos: dict[str, Image.Image], rows_: list[dict[str, str]], name: str = "feed.csv") -> Path:
    folder = tmp_path / "feed"
    folder.mkdir(exist_ok=True)
    write(folder / "img" / "copy.jpg", jpeg_bytes(photos["coffee"].resize((300, 200)), 50))
    write(folder / "img" / "other.jpg", jpeg_bytes(photos["moon"]))
    write(folder / "img" / "broken.jpg", jpeg_bytes(photos["brick"])[:500])
    columns = ["listing_id", "title", "price", "currency", "seller_id", "url", "image_paths"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows_)
    path = folder / name
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


FEED_ROWS = [
    {"listing_id": "L1", "title": "Coffee cup", "price": "12", "currency": "USD", "image_paths": "img/copy.jpg"},
    {"listing_id": "L2", "title": "Moon poster", "price": "8.5", "currency": "USD", "image_paths": "img/other.jpg"},
    {"listing_id": "L3", "title": "Acme Roadrunner replica", "price": "5", "currency": "USD", "image_paths": ""},
    {"listing_id": "L4", "title": "Bad price", "price": "free", "currency": "USD", "image_paths": ""},
    {"listing_id": "L5", "title": "Broken photo", "price": "3", "currency": "USD", "image_paths": "img/broken.jpg"},
]


def test_ingest_lands_good_rows_and_quarantines_bad_ones(
    cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    feed = _feed(tmp_path, photos, FEED_ROWS)
    result = cli("ingest", str(feed))
    assert "read 5, new 4, updated 0, unchanged 0, quarantined 1, images fetched 2, images failed 1" in result.stdout
    assert "price 'free' is not a number" in result.stderr
    listings = {row.listing_id: row for row in rows(cli, t.listings)}
    assert sorted(listings) == ["L1", "L2", "L3", "L5"]
    images = {Path(row.ref).name: row for row in rows(cli, t.listing_images)}
    assert images["broken.jpg"].sha256 is None and "truncated" in images["broken.jpg"].error
    assert images["copy.jpg"].sha256 is not None
    quarantine = cli("quarantine", "list").stdout
    assert "line 5 (listing L4)" in quarantine and "broken.jpg" in quarantine
    # Incremental: the unchanged file is not even read again.
    again = cli("ingest", str(feed))
    assert "read 0, new 0, updated 0" in again.stdout
    assert len(rows(cli, t.listings)) == 4
    # A changed price is a new version, history kept.
    changed = [dict(row, price="9") if row["listing_id"] == "L2" else row for row in FEED_ROWS]
    cli("ingest", str(_feed(tmp_path, photos, changed)))
    versions = [
        (row.version, row.price) for row in rows(cli, t.listing_versions) if row.listing_pk == listings["L2"].listing_pk
    ]
    assert sorted(versions) == [(1, 8.5), (2, 9.0)]


def test_ingest_jsonl_with_malformed_lines(cli: Cli, tmp_path: Path) -> None:
    feed = tmp_path / "feed.jsonl"
    feed.write_text(
        '{"listing_id": "J1", "title": "ok", "price": 3, "extra": "kept"}\n'
        "{not json\n"
        '["an", "array"]\n'
        '{"listing_id": "J1", "title": "duplicate"}\n',
        encoding="utf-8",
    )
    result = cli("ingest", str(feed), "--name", "market-j")
    assert "read 4, new 1" in result.stdout and "quarantined 3" in result.stdout
    [listing] = rows(cli, t.listings)
    assert listing.source == "market-j" and listing.attributes == {"extra": "kept"}
    reasons = [row.reason for row in rows(cli, t.quarantine)]
    assert any("not valid JSON" in reason for reason in reasons)
    assert any("duplicate listing_id" in reason for reason in reasons)


def test_ingest_unknown_type_and_missing_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "feed.xml").write_text("<x/>")
    assert "unsupported feed type" in cli("ingest", str(tmp_path / "feed.xml"), expect=2).stderr
    assert "no such file" in cli("ingest", str(tmp_path / "nope.csv"), expect=2).stderr


@pytest.mark.slow
def test_scan_review_decide_and_export(brand_ready: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    cli = brand_ready
    write(tmp_path / "asset.jpg", jpeg_bytes(photos["coffee"], 95))
    cli("assets", "add", "--brand", "Acme", "--kind", "product", str(tmp_path / "asset.jpg"))
    cli("ingest", str(_feed(tmp_path, photos, FEED_ROWS)))
    result = cli("scan")
    assert "4 new or changed listings scanned, 2 with evidence" in result.stdout
    assert "nothing to do" in cli("scan", expect=10).stdout  # nothing new

    assert (
        "4 listings re-scanned (every listing, --all), 0 new or changed, 2 with evidence; "
        "image matchers: phash, dhash, copies, ocr\n" in cli("scan", "--all").stdout
    )

    scores = {row.listing_pk: row.score for row in rows(cli, t.scores)}
    by_id = {row.listing_id: row.listing_pk for row in rows(cli, t.listings)}
    assert scores[by_id["L1"]] > scores[by_id["L3"]] > 0.0
    assert by_id["L2"] not in scores  # no evidence: a suspect of no brand

    queue = json.loads(cli("review", "list", "--format", "json").stdout)
    assert [item["listing_id"] for item in queue] == ["L1", "L3"]
    assert queue[0]["matcher"] == "phash" and "pHash distance" in queue[0]["reason"]
    # Far under the brand's MSRP of 99 USD, in a listing that names the brand with "replica".
    assert queue[1]["matcher"] == "price" and "is 5% of the Acme MSRP of 99 USD" in queue[1]["reason"]

    table = cli("review", "list", "--limit", "1").stdout
    assert "L1" in table and "L3" not in table

    # A name from the environment is not an analyst: without an analyst's key nothing is written.
    refused = cli("review", "decide", "L1", "--verdict", "counterfeit", env={"COUNTERSCAN_ANALYST": "ana"}, expect=5)
    assert "Traceback" not in refused.stderr and rows(cli, t.verdicts) == []
    # A brand owner's key is a key, but not an analyst's: a brand owner cannot judge listings.
    owner = cli("review", "decide", "L2", "--verdict", "legit", "--as", "acme-group", expect=5)
    assert "not an analyst" in owner.stderr
    owner = cli("review", "decide", "L2", "--verdict", "legit", expect=5)
    assert "not an analyst" in owner.stderr and rows(cli, t.verdicts) == []
    analyst_key = cli.add_member("inspector", role="analyst", use=False)
    # COUNTERSCAN_ANALYST names the analyst, but the key must be that analyst's.
    wrong = cli(
        "review", "decide", "L1", "--verdict", "counterfeit", env={"COUNTERSCAN_ANALYST": "inspector"}, expect=5
    )
    assert "does not belong to member 'inspector'" in wrong.stderr and rows(cli, t.verdicts) == []
    cli("review", "decide", "L1", "--verdict", "counterfeit", "--note", "copied photo", "--key", analyst_key)
    [verdict] = rows(cli, t.verdicts)
    assert (verdict.verdict, verdict.note, verdict.analyst) == ("counterfeit", "copied photo", "inspector")
    # L2 is no brand's suspect: the verdict must say which brand it is about.
    assert "--brand" in cli("review", "decide", "L2", "--verdict", "legit", "--key", analyst_key, expect=2).stderr
    cli("review", "decide", "L2", "--verdict", "legit", "--brand", "Acme", "--as", "inspector", "--key", analyst_key)
    assert [row.analyst for row in rows(cli, t.verdicts)] == ["inspector", "inspector"]
    cli.env["COUNTERSCAN_API_KEY"] = analyst_key
    assert "unknown listing" in cli("review", "decide", "nope", "--verdict", "legit", expect=2).stderr
    refused_verdict = cli("review", "decide", "L1", "--verdict", "maybe", expect=2).stderr
    assert "'maybe' is not one of 'counterfeit', 'legit', 'unsure'" in panel_text(refused_verdict)

    out = tmp_path / "out" / "suspects.csv"
    cli("export", "--format", "csv", "--out", str(out))
    exported = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(exported[0]) == [
        "rank",
        "listing_id",
        "score",
        "brand",
        "asset_id",
        "matcher",
        "reason",
        "title",
        "price",
        "url",
        "status",
        "seller_id",
        "seller_name",
        "marketplace",
        "currency",
        "first_seen",
        "last_seen",
        "verdict",
        "analyst",
        "decided_at",
    ]
    assert [(row["rank"], row["listing_id"], row["status"]) for row in exported] == [
        ("1", "L1", "counterfeit"),
        ("2", "L3", "new"),
    ]
    csv_queue = cli("review", "list", "--format", "csv").stdout
    assert csv_queue.splitlines()[0].startswith("rank,listing_id,score")
    out_json = tmp_path / "suspects.json"
    cli("export", "--format", "json", "--out", str(out_json))
    assert json.loads(out_json.read_text())[0]["listing_id"] == "L1"
    refused_format = cli("export", "--format", "pdf", "--out", str(out), expect=2).stderr
    assert "'pdf' is not one of 'csv', 'json', 'html'" in panel_text(refused_format)


def test_authorised_seller_is_never_flagged(brand_ready: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    cli = brand_ready
    cli("brands", "add", "Beta", "--member", "acme-group", "--authorised-seller", "beta-official")
    write(tmp_path / "asset.jpg", jpeg_bytes(photos["coffee"], 95))
    cli("assets", "add", "--brand", "Beta", "--kind", "product", str(tmp_path / "asset.jpg"))
    official = [dict(row, seller_id="beta-official") for row in FEED_ROWS[:1]]
    cli("ingest", str(_feed(tmp_path, photos, official)))
    cli("scan")
    assert json.loads(cli("review", "list", "--format", "json").stdout) == []


@pytest.mark.slow
def test_demo_ranks_planted_reuses_above_clean_listings(sqlite_cli: Cli) -> None:
    result = sqlite_cli("demo")
    assert "check: all 6 planted re-uses rank above all 13 clean listings" in result.stdout
    assert "check: all 4 text- and price-only suspects rank above all 13 clean listings" in result.stdout
    assert "check: all 1 listings with the brand name printed on the photo rank above all 13 clean" in result.stdout
    assert "check: all 2 listings whose photo shows a registered logo rank above all 13 clean" in result.stdout
    assert "check: all 1 listings whose photo is a collage holding a cropped official photo rank above" in result.stdout
    assert "price 'cheap!' is not a number" in result.stdout

    # Running it again is harmless and gives the same queue.
    again = sqlite_cli("demo")
    assert "new 0" in again.stdout and "check: all 6 planted" in again.stdout


def test_errors_never_print_tracebacks(sqlite_cli: Cli, tmp_path: Path) -> None:
    bad_config = tmp_path / "home" / "config.toml"
    bad_config.parent.mkdir(parents=True)
    bad_config.write_text("phash_max_distance = 'many'\n")
    result = sqlite_cli("init", expect=2)
    assert "bad value" in result.stderr and "Traceback" not in result.stderr
