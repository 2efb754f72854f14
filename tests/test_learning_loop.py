"""Issue 22: a new user's learning loop starts: `review list --to-label` proposes verdicts until `train` succeeds."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from counterscan.config import Settings, demo_data_dir
from counterscan.errors import TrainingRefusedError, UserError
from counterscan.ranking.labelled import build
from counterscan.records import BrandScore, IngestedListing, Listing, ScanResult
from counterscan.review.to_label import to_label
from counterscan.store import Store
from tests.conftest import Cli

ROUND = 6
"""Verdicts per round of the loop: what an analyst judges before trying `train` again."""


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A marketplace feed (CSV and photos) of 90 listings whose truth the test knows, as a new user brings one."""
    root = tmp_path_factory.mktemp("feed")
    labelled = build(Settings.load(home=root / "scratch", environ={}), root / "feed", listings=90, seed=3)
    return root / "feed" / "labelled.csv", labelled.labels


@pytest.mark.slow
def test_a_new_user_trains_a_first_model_from_an_empty_store(feed: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    csv_path, truth = feed
    cli = Cli(tmp_path / "home")
    cli("init")
    cli.add_member("alliance")
    manifest = tomllib.loads((demo_data_dir() / "brands.toml").read_text(encoding="utf-8"))
    for entry in manifest["brand"]:
        keywords = [arg for word in entry["keywords"] for arg in ("--keyword", word)]
        cli("brands", "add", entry["name"], "--member", "alliance", *keywords, "--msrp", str(entry["msrp"]),
            "--currency", "USD")  # fmt: skip
        photos = [str(demo_data_dir() / path) for path in entry["products"]]
        cli("assets", "add", "--brand", entry["name"], "--kind", "product", *photos)
    cli("ingest", str(csv_path), "--name", "market")
    cli("scan", "--workers", "1")
    cli.add_member("ana", role="analyst")

    refused = cli("train", expect=TrainingRefusedError.exit_code)
    assert "have 0 counterfeit and 0 legit: record 5 more counterfeit and 5 more legit" in refused.stderr
    assert TrainingRefusedError.exit_code not in (0, 2)

    judged: set[tuple[str, str]] = set()
    rounds = 0
    while True:
        rounds += 1
        assert rounds <= len(truth) // ROUND, "the loop never trained"
        proposed = json.loads(cli("review", "list", "--to-label", str(ROUND), "--format", "json").stdout)
        assert proposed, "nothing left to propose"
        pairs = {(row["listing_id"], row["brand"]) for row in proposed}
        assert len(pairs) == len(proposed) and not pairs & judged, "a proposal repeats a judged listing"
        if rounds == 1:  # the first round brings both kinds, clean listings among them
            assert {truth[row["listing_id"]] for row in proposed} == {0, 1}
            assert any(row["why"].startswith("likely legit") for row in proposed)
            assert any(row["why"].startswith("likely counterfeit") for row in proposed)
        for row in proposed:
            verdict = "counterfeit" if truth[row["listing_id"]] else "legit"
            cli("review", "decide", row["listing_id"], "--brand", row["brand"], "--verdict", verdict)
        judged |= pairs
        trained = cli("train", expect=(0, TrainingRefusedError.exit_code))
        if trained.exit_code == 0:
            break
        gate = trained.stdout + trained.stderr
        assert "more counterfeit" in gate or "more legit" in gate or "above the cold-start scorer's" in gate
    assert "model 1 is now active" in trained.stdout
    models = json.loads(cli("models", "list", "--format", "json").stdout)
    assert [(row["model_id"], row["active"]) for row in models] == [(1, True)]
    print(f"trained after {rounds} rounds, {len(judged)} verdicts: {trained.stdout.strip()}")
    cli("scan", "--all", "--workers", "1")
    top = json.loads(cli("review", "list", "--limit", "1", "--format", "json").stdout)[0]
    assert json.loads(cli("review", "show", top["listing_id"]).stdout)["scorer"] == "model:1"


def _scored_store(db_url: str) -> tuple[Store, dict[str, int]]:
    """Brands A and B; 12 listings scored for one brand each from 0.05 to 0.95; 4 clean listings."""
    store = Store.open(db_url)
    owner = store.add_member("owner", role="member", key_hash="h" * 64, actor="test")
    brands = [store.add_brand(name, member_id=owner.member_id, actor="test") for name in ("A", "B")]
    listings = [Listing(source="feed", listing_id=f"S{n:02d}") for n in range(12)]
    listings += [Listing(source="feed", listing_id=f"C{n}") for n in range(4)]
    store.commit_ingest_batch("feed", [IngestedListing(listing) for listing in listings], [], None)
    pks = {listing.listing_id: store.find_listing(listing.listing_id) for listing in listings}
    scan_id = store.start_scan()
    results = [ScanResult(listing_pk=pks[f"C{n}"], score=0.0, brand_id=None, evidence=(), best=None) for n in range(4)]
    for n in range(12):
        brand, score = brands[n % 2], round(0.05 + n * 0.9 / 11, 3)
        results.append(
            ScanResult(
                listing_pk=pks[f"S{n:02d}"],
                score=score,
                brand_id=brand,
                evidence=(),
                best=None,
                brand_scores=(BrandScore(brand_id=brand, score=score, best=None),),
            )
        )
    store.write_results(scan_id, results)
    store.finish_scan(scan_id, status="done", listings_scanned=len(results))
    return store, pks


def test_to_label_brings_both_kinds_first_then_the_uncertain_over_brands(db_url: str) -> None:
    store, pks = _scored_store(db_url)
    try:
        first = to_label(store, 6)
        assert len(first) == 6 and [request.suspect.rank for request in first] == list(range(1, 7))
        kinds = [request.why.split(" (")[0] for request in first]
        assert kinds.count("likely counterfeit") == 3 and kinds.count("likely legit") == 3
        assert "training needs 5 more counterfeit" in first[0].why
        # Both brands take turns on each side; the clean listings are offered for a brand, A then B.
        assert {request.suspect.brand for request in first[:3]} == {"A", "B"}
        clean = [request.suspect for request in first if request.suspect.listing_id.startswith("C")]
        assert clean and {suspect.brand for suspect in clean} == {"A", "B"} and all(s.score == 0 for s in clean)
        assert first[0].suspect.score == max(request.suspect.score for request in first)

        # Judged pairs never come back; once both kinds suffice, most proposals sit at the boundary.
        for request in first:
            store.record_verdict(
                request.suspect.listing_pk,
                verdict="counterfeit" if request.suspect.score >= 0.5 else "legit",
                note=None,
                analyst="ana",
                brand_id=request.suspect.brand_id,
            )
        for n in (0, 2, 7, 8):  # the top three and three clean ones were judged: now five of each kind
            store.record_verdict(
                pks[f"S{n:02d}"], verdict="legit" if n < 6 else "counterfeit", note=None, analyst="ana"
            )
        judged = {(request.suspect.listing_pk, request.suspect.brand_id) for request in first}
        later = to_label(store, 5)
        assert not judged & {(request.suspect.listing_pk, request.suspect.brand_id) for request in later}
        uncertain = [request for request in later if request.why.startswith("uncertain")]
        assert len(uncertain) == 3 and all(abs(request.suspect.score - 0.5) < 0.25 for request in uncertain)
        assert "training needs" not in " ".join(request.why for request in later)
        assert [request.suspect.brand for request in to_label(store, 3, brand="B")] == ["B", "B", "B"]
        with pytest.raises(UserError, match="at least 1"):
            to_label(store, 0)
    finally:
        store.close()
