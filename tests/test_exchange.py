"""Hash exchange: a brand's signals exported, imported by another member as a hash-only bank, matched."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import Cli, jpeg_bytes


def _member_with_brand(cli: Cli, member: str, brand: str) -> str:
    key = cli.add_member(member)
    cli("brands", "add", brand, "--member", member)
    return key


def _feed(tmp_path: Path, pictures: dict[str, Image.Image]) -> Path:
    folder = tmp_path / "feed"
    folder.mkdir(exist_ok=True)
    with (folder / "market.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "title", "image_paths"])
        for listing_id, picture in pictures.items():
            (folder / f"{listing_id}.jpg").write_bytes(jpeg_bytes(picture, quality=70))
            writer.writerow([listing_id, "sports shoe", f"{listing_id}.jpg"])
    return folder / "market.csv"


def _lines(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["acme.jsonl", "acme.jsonl.gz"])
def test_exported_hashes_imported_as_a_bank_match_the_same_pictures(
    cli: Cli, tmp_path: Path, photos: dict[str, Image.Image], name: str
) -> None:
    acme_key = _member_with_brand(cli, "acme-group", "Acme")
    official = tmp_path / "official.png"
    photos["coffee"].save(official)
    cli("assets", "add", "--brand", "Acme", "--kind", "product", str(official))
    exported = tmp_path / name
    out = cli("signals", "export", "--brand", "Acme", "--out", str(exported)).stdout
    lines = _lines(exported)
    assert lines[0]["format"] == "counterscan-signals" and lines[0]["version"] == 1
    assert lines[0]["exporter"] == "acme-group"
    hashes = lines[1:]
    assert {line["matcher"] for line in hashes} == {"phash", "dhash"}
    assert all(len(str(line["hash"])) == 16 for line in hashes)
    assert f"exported {len(hashes)} hashes of 1 assets" in out

    _member_with_brand(cli, "bravo-group", "Bravo")
    imported = cli("signals", "import", str(exported), "--brand", "Bravo", "--bank", "acme-share").stdout
    assert f"bank acme-share: 1 assets added ({len(hashes)} hashes), 0 already present" in imported
    again = cli("signals", "import", str(exported), "--brand", "Bravo", "--bank", "acme-share").stdout
    assert "0 assets added (0 hashes), 1 already present" in again
    banks = json.loads(cli("signals", "banks", "--format", "json").stdout)
    assert [(bank["bank"], bank["brand"], bank["assets"]) for bank in banks] == [("acme-share", "Bravo", 1)]

    # A cropped, re-encoded copy of the official photo, and an unrelated photo.
    coffee = photos["coffee"]
    cropped = coffee.crop((20, 15, coffee.width - 10, coffee.height - 20))
    cli("ingest", str(_feed(tmp_path, {"copy": cropped, "other": photos["astronaut"]})))
    cli("scan")
    shown = json.loads(cli("review", "show", "copy", env={"COUNTERSCAN_API_KEY": acme_key}).stdout)
    by_brand: dict[str, list[str]] = {}
    for evidence in shown["evidence"]:
        by_brand.setdefault(evidence["brand"], []).append(evidence["reason"])
    assert "Acme" in by_brand and "Bravo" in by_brand
    assert all("hash-only from bank acme-share" in reason for reason in by_brand["Bravo"])
    assert not any("hash-only" in reason for reason in by_brand["Acme"])
    other = json.loads(cli("review", "show", "other", env={"COUNTERSCAN_API_KEY": acme_key}).stdout)
    assert not [evidence for evidence in other["evidence"] if evidence["matcher"] in ("phash", "dhash")]


def test_bad_lines_are_reported_good_ones_land_and_foreign_files_are_refused(
    cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    _member_with_brand(cli, "acme-group", "Acme")
    good = {
        "brand": "Partner",
        "asset": "p-1",
        "kind": "logo",
        "sha256": "ab" * 32,
        "width": 100,
        "height": 50,
        "name": "mark.png",
        "matcher": "phash",
        "variant": "original",
        "hash": "f0f0f0f0f0f0f0f0",
    }
    lines = [
        {"format": "counterscan-signals", "version": 1, "exporter": "partner"},
        good,
        good | {"hash": "f0f0"},
        good | {"matcher": "md5"},
        good | {"kind": "text"},
        good | {"asset": "p-2", "sha256": "xyz"},
    ]
    path = tmp_path / "partner.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    result = cli("signals", "import", str(path), "--brand", "Acme")
    assert "bank partner:partner.jsonl: 1 assets added (1 hashes), 0 already present, 5 lines rejected" in result.stdout
    errors = result.stderr.splitlines()
    assert len(errors) == 5
    assert errors[0].startswith(f"rejected {path} line 3: a phash hash has 16 hex digits, not 4")
    assert "line 4: unknown hash 'md5'" in errors[1]
    assert "line 7: not JSON" in errors[4]

    newer = tmp_path / "newer.jsonl"
    newer.write_text(json.dumps({"format": "counterscan-signals", "version": 99}) + "\n")
    assert "format version 99" in cli("signals", "import", str(newer), "--brand", "Acme", expect=3).stderr
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps(good) + "\n")
    assert (
        "not a counterscan signals file" in cli("signals", "import", str(foreign), "--brand", "Acme", expect=3).stderr
    )

    # A hash-only asset has no picture: turning on a matcher that needs one must not break scans.
    cli("scan", env={"COUNTERSCAN_IMAGE_MATCHERS": "phash,keypoints"}, expect=10)


def test_members_exchange_only_what_they_may(cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    _member_with_brand(cli, "acme-group", "Acme")
    official = tmp_path / "official.png"
    photos["coffee"].save(official)
    cli("assets", "add", "--brand", "Acme", "--kind", "product", str(official))
    bravo_key = _member_with_brand(cli, "bravo-group", "Bravo")
    out = tmp_path / "x.jsonl"
    denied = cli("signals", "export", "--brand", "Acme", "--out", str(out), "--as", "bravo-group", expect=5)
    assert "may not read brand 'Acme'" in denied.stderr
    assert not out.exists()
    cli("signals", "export", "--brand", "Bravo", "--out", str(out), env={"COUNTERSCAN_API_KEY": bravo_key})
    refused = cli("signals", "import", str(out), "--brand", "Acme", "--as", "bravo-group", expect=5)
    assert "may not change brand 'Acme'" in refused.stderr
