"""Issue 14, item 1: suspects, scores and verdicts keyed by (listing, brand); the version 1 -> 2 migration."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from counterscan import __version__
from counterscan.config import Settings
from counterscan.errors import ExternalError, NotFoundError
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits
from counterscan.ranking.features import FEATURES
from counterscan.ranking.ranker import cold_start_scores
from counterscan.ranking.training import activate, cross_validated_ap, models, rollback, train, training_set
from counterscan.records import Evidence, VerdictLabel
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from counterscan.store.migrations import current_version
from tests.conftest import Cli, jpeg_bytes
from tests.old_schemas import schema_v1 as v1


def _two_brands_one_listing(cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    """Acme owns a product photo; Ferrari owns its name. One listing copies the photo and names Ferrari."""
    cli.add_member("acme-group")
    cli("brands", "add", "Acme", "--member", "acme-group")
    asset = tmp_path / "asset.jpg"
    asset.write_bytes(jpeg_bytes(photos["coffee"], 95))
    cli("assets", "add", "--brand", "Acme", "--kind", "product", str(asset))
    cli.add_member("ferrari-spa")
    cli("brands", "add", "Ferrari", "--member", "ferrari-spa", "--keyword", "Testarossa")
    feed = tmp_path / "feed"
    (feed / "img").mkdir(parents=True)
    (feed / "img" / "copy.jpg").write_bytes(jpeg_bytes(photos["coffee"].resize((300, 200)), 60))
    (feed / "img" / "moon.jpg").write_bytes(jpeg_bytes(photos["moon"]))
    (feed / "feed.csv").write_text(
        "listing_id,title,price,currency,seller_id,image_paths\n"
        "M1,F3rrari Testarossa 1:1 replica,20,USD,s1,img/copy.jpg\n"
        "M2,Moon poster,8,USD,s2,img/moon.jpg\n"
        "M3,Ferrari Testarossa replica AAA quality,30,USD,s3,\n",
        encoding="utf-8",
    )
    cli("ingest", str(feed / "feed.csv"))
    cli("scan")


def _listed(cli: Cli, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(cli("review", "list", "--format", "json", *args).stdout)
    return rows


def test_a_listing_with_evidence_for_two_brands_is_a_suspect_of_each(
    cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    _two_brands_one_listing(cli, tmp_path, photos)
    acme = _listed(cli, "--brand", "Acme")
    ferrari = _listed(cli, "--brand", "Ferrari")
    assert [row["listing_id"] for row in acme] == ["M1"]
    assert sorted(row["listing_id"] for row in ferrari) == ["M1", "M3"]
    [acme_m1] = acme
    [ferrari_m1] = [row for row in ferrari if row["listing_id"] == "M1"]
    # Each brand's suspect shows that brand's own strongest evidence.
    assert acme_m1["brand"] == "Acme" and acme_m1["matcher"] in {"phash", "dhash", "pdq", "copies"}
    assert ferrari_m1["brand"] == "Ferrari" and ferrari_m1["matcher"] == "text"
    everything = _listed(cli)
    assert sorted((row["listing_id"], row["brand"]) for row in everything) == [
        ("M1", "Acme"),
        ("M1", "Ferrari"),
        ("M3", "Ferrari"),
    ]

    cli.add_member("inspector", role="analyst")
    # A verdict is about one brand: without --brand a two-brand listing is refused and nothing is written.
    refused = cli("review", "decide", "M1", "M3", "--verdict", "counterfeit", expect=2)
    assert "several brands (Acme, Ferrari)" in refused.stderr and "--brand" in refused.stderr
    store = cli.store()
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.verdicts)).scalar_one() == 0
    finally:
        store.close()
    decided = cli("review", "decide", "M1", "M3", "--verdict", "counterfeit", "--brand", "Ferrari")
    assert "M1 (Ferrari): counterfeit" in decided.stdout and "M3 (Ferrari): counterfeit" in decided.stdout
    assert {row["listing_id"]: row["status"] for row in _listed(cli, "--brand", "Ferrari")} == {
        "M1": "counterfeit",
        "M3": "counterfeit",
    }
    assert [row["status"] for row in _listed(cli, "--brand", "Acme")] == ["new"]
    assert [row["listing_id"] for row in _listed(cli, "--brand", "Acme", "--status", "new")] == ["M1"]
    # Exports: one row per (listing, brand), filtered; every reason of the suspect's brand in the JSON.
    cli("review", "decide", "M1", "--verdict", "legit", "--brand", "Acme")
    out = tmp_path / "out.csv"
    cli("export", "--format", "csv", "--status", "counterfeit", "--out", str(out))
    exported = list(csv.DictReader(out.open(encoding="utf-8")))
    assert sorted((row["listing_id"], row["brand"], row["verdict"]) for row in exported) == [
        ("M1", "Ferrari", "counterfeit"),
        ("M3", "Ferrari", "counterfeit"),
    ]
    first = exported[0]
    assert first["seller_id"] in {"s1", "s3"} and first["currency"] == "USD" and first["analyst"] == "inspector"
    assert first["first_seen"].startswith("20") and first["last_seen"] and first["decided_at"].startswith("20")
    cli("export", "--format", "csv", "--out", str(out))  # legit suspects leave the default export
    assert ("M1", "Acme") not in {(row["listing_id"], row["brand"]) for row in csv.DictReader(out.open())}
    cli("export", "--format", "csv", "--status", "legit", "--brand", "Acme", "--out", str(out))
    assert [(row["listing_id"], row["verdict"]) for row in csv.DictReader(out.open())] == [("M1", "legit")]
    cli("export", "--format", "csv", "--since", "2999-01-01", "--out", str(out))
    assert list(csv.DictReader(out.open())) == []
    assert "not an ISO date" in cli("export", "--format", "csv", "--since", "soon", "--out", str(out), expect=2).stderr
    out_json = tmp_path / "out.json"
    cli("export", "--format", "json", "--brand", "Ferrari", "--min-score", "0.01", "--out", str(out_json))
    rows = json.loads(out_json.read_text(encoding="utf-8"))
    m1 = next(row for row in rows if row["listing_id"] == "M1")
    assert m1["reasons"] and all(item["reason"] for item in m1["reasons"])
    assert len(m1["reasons"]) >= 2 and {item["matcher"] for item in m1["reasons"]} <= {"text", "title", "price", "ocr"}
    # The listing's own page lists both brands and the verdict's brand.
    shown = json.loads(cli("review", "show", "M1").stdout)
    assert sorted(item["brand"] for item in shown["brands"]) == ["Acme", "Ferrari"]
    assert [(item["brand"], item["verdict"]) for item in shown["verdicts"]] == [
        ("Ferrari", "counterfeit"),
        ("Acme", "legit"),
    ]


# -- migration from version 1 -------------------------------------------------------------------------

MOMENT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _version_1_store(url: str) -> None:
    """A store as counterscan's first release made it, with suspects, evidence and verdicts."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            v1.metadata.create_all(conn)
            conn.execute(sa.insert(v1.lock_guard).values(guard_id=1))
            conn.execute(sa.insert(v1.schema_version).values(version=1, applied_at=MOMENT))
            conn.execute(
                sa.insert(v1.members).values(member_id=1, name="owner", role="member", key_hash="x", created_at=MOMENT)
            )
            for brand_id, name in ((1, "Acme"), (2, "Beeline")):
                conn.execute(
                    sa.insert(v1.brands).values(
                        brand_id=brand_id,
                        name=name,
                        name_key=name.lower(),
                        member_id=1,
                        aliases=[],
                        lookalikes=[],
                        authorised_sellers=[],
                        categories=[],
                        created_at=MOMENT,
                        updated_at=MOMENT,
                    )
                )
            for pk in (1, 2, 3):
                conn.execute(
                    sa.insert(v1.listings).values(
                        listing_pk=pk,
                        source="feed",
                        listing_id=f"L{pk}",
                        title=f"listing {pk}",
                        description="",
                        seller_id="s",
                        attributes={},
                        content_hash=f"h{pk}",
                        version=1,
                        ingested_at=MOMENT,
                        updated_at=MOMENT,
                        scanned_at=MOMENT,
                    )
                )
            conn.execute(
                sa.insert(v1.scans).values(scan_id=1, started_at=MOMENT, status="done", listings_scanned=3, scope="all")
            )
            evidence = [
                # L1: a copied photo of Acme's and a counterfeit word beside Beeline's name.
                (1, 0, "phash", 1, 0.9, "signal-a"),
                (1, 1, "text", 2, 0.5, "counterfeit-term"),
                (1, 2, "price", 2, 0.4, "price"),
                # L3: Acme only.
                (3, 0, "text", 1, 0.3, "brand-mention"),
            ]
            for listing_pk, position, matcher, brand_id, score, signal in evidence:
                conn.execute(
                    sa.insert(v1.evidence).values(
                        listing_pk=listing_pk,
                        position=position,
                        scan_id=1,
                        matcher=matcher,
                        brand_id=brand_id,
                        score=score,
                        reason=f"{matcher} found",
                        details={"signal": signal},
                    )
                )
            old_scores: list[tuple[int, float, int | None, int | None]] = [
                (1, 0.77, 1, 0),
                (2, 0.0, None, None),
                (3, 0.3, 1, 0),
            ]
            for listing_pk, score, scored_brand, best in old_scores:
                conn.execute(
                    sa.insert(v1.scores).values(
                        listing_pk=listing_pk,
                        score=score,
                        brand_id=scored_brand,
                        best_position=best,
                        scorer="model:1" if listing_pk == 1 else "cold-start",
                        scan_id=1,
                        scored_at=MOMENT,
                    )
                )
            for listing_pk, verdict in ((1, "counterfeit"), (3, "legit"), (3, "counterfeit")):
                conn.execute(
                    sa.insert(v1.verdicts).values(
                        listing_pk=listing_pk, verdict=verdict, note=None, analyst="ana", decided_at=MOMENT
                    )
                )
    finally:
        engine.dispose()


def test_an_old_store_with_evidence_needs_the_scorer_to_upgrade_and_is_left_as_it_was(db_url: str) -> None:
    """The store sits below the ranker: opened without the scorer, the upgrade stops cleanly."""
    _version_1_store(db_url)
    with pytest.raises(ExternalError, match="upgrade_scorer"):
        Store.open(db_url)
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert current_version(conn) == 1  # the steps' transaction was rolled back
    finally:
        engine.dispose()
    store = Store.open(db_url, upgrade_scorer=cold_start_scores)
    store.close()


def test_migration_from_version_1_keys_suspects_by_listing_and_brand(db_url: str) -> None:
    _version_1_store(db_url)
    store = Store.open(db_url, upgrade_scorer=cold_start_scores)
    try:
        with store.engine.connect() as conn:
            assert current_version(conn) == t.LATEST_VERSION == 4
            scores = {
                (row.listing_pk, row.brand_id): (row.score, row.best_position, row.scorer)
                for row in conn.execute(sa.select(t.scores))
            }
            verdicts = [(row.listing_pk, row.brand_id, row.verdict) for row in conn.execute(sa.select(t.verdicts))]
            last_seen = conn.execute(sa.select(t.listings.c.last_seen_at)).scalars().all()
            tables = set(sa.inspect(conn).get_table_names())
        # The version-1 score is kept; Beeline's evidence on L1 gets its cold-start score (1 - 0.5 * 0.6);
        # the clean listing L2 is no brand's suspect.
        assert scores[(1, 1)] == (0.77, 0, "model:1")
        assert scores[(1, 2)] == (pytest.approx(0.7), 1, "cold-start")
        assert scores[(3, 1)] == (0.3, 0, "cold-start")
        assert set(scores) == {(1, 1), (1, 2), (3, 1)}
        assert sorted(verdicts) == [(1, 1, "counterfeit"), (3, 1, "counterfeit"), (3, 1, "legit")]
        assert last_seen == [None, None, None] and "scores_v1" not in tables

        assert [(s.listing_id, s.brand, s.status) for s in store.suspects()] == [
            ("L1", "Acme", "counterfeit"),
            ("L1", "Beeline", "new"),
            ("L3", "Acme", "counterfeit"),
        ]
        assert [s.listing_id for s in store.suspects(brand="Beeline")] == ["L1"]
        assert [(pk, brand, label) for pk, brand, _listing, label in store.labelled()] == [(1, 1, 1), (3, 1, 1)]
        # The migrated store works as a new one does.
        store.record_verdict(1, verdict="legit", note=None, analyst="ana", brand_id=2)
        assert [s.status for s in store.suspects(brand="Beeline")] == ["legit"]
    finally:
        store.close()
    again = Store.open(db_url)  # a second open finds the latest version and changes nothing
    try:
        with again.engine.connect() as conn:
            assert [row.version for row in conn.execute(sa.select(t.schema_version))] == [1, 2, 3, 4]
    finally:
        again.close()


# -- honest seller history (issue 14, item 2) ---------------------------------------------------------


def _text_world(tmp_path: Path, rows: list[tuple[str, str, str]]) -> tuple[Settings, Store]:
    settings = Settings.load(home=tmp_path / "home", environ={})
    store = Store.open(settings.database_url)
    owner = add_member(store, "acme-group").member
    add_brand(store, owner, "Acme", keywords=["Roadrunner"])
    feed = tmp_path / "feed.csv"
    feed.write_text(
        "listing_id,title,seller_id\n" + "".join(f"{lid},{title},{seller}\n" for lid, title, seller in rows),
        encoding="utf-8",
    )
    ingest(store, BlobStore(settings.blob_dir), decode_limits(settings), open_source(str(feed), name="feed"))
    run_scan(store, settings)
    return settings, store


def test_seller_history_counts_only_other_listings_decided_before(tmp_path: Path) -> None:
    # Text that cannot tell the two kinds apart, and one seller per listing: a seller's history could
    # only ever be the listing's own verdict, which must not become its feature.
    rows = [(f"L{n:02d}", "Acme Roadrunner" + (" replica" if n % 2 else ""), f"seller-{n}") for n in range(16)]
    labels = {f"L{n:02d}": int(n % 4 in (0, 1)) for n in range(16)}
    settings, store = _text_world(tmp_path, rows)
    try:
        acme = store.brand("Acme").brand_id
        for listing_id, label in labels.items():
            verdict: VerdictLabel = "counterfeit" if label else "legit"
            store.record_verdict(store.find_listing(listing_id), verdict=verdict, note=None, analyst="ana")
        run_scan(store, settings, rescan_all=True)  # evidence matched again, with every verdict known
        evidence = store.evidence_of([store.find_listing(lid) for lid in labels], except_brands=())
        assert not [item for found in evidence.values() for item in found if item.matcher == "seller"]

        features, y, _cold = training_set(store)
        seller = FEATURES.index("seller_confirmed")
        assert list(y) == list(labels.values()) and not features[:, seller].any()
        honest = cross_validated_ap(features, y)
        without = cross_validated_ap(np.delete(features, seller, axis=1), y)
        assert honest == pytest.approx(without) and honest < 0.95
        # What the leak looked like: the same labels, the seller's count including the listing itself.
        leaky = features.copy()
        leaky[:, seller] = y
        assert cross_validated_ap(leaky, y) == pytest.approx(1.0)

        # A seller's other listing counts, but only when confirmed before this listing was first seen.
        add = tmp_path / "more.csv"
        add.write_text("listing_id,title,seller_id\nM1,Acme Roadrunner,seller-0\n", encoding="utf-8")
        ingest(store, BlobStore(settings.blob_dir), decode_limits(settings), open_source(str(add), name="feed"))
        run_scan(store, settings)
        m1 = store.find_listing("M1")
        [seller_evidence] = [item for item in store.evidence_of([m1], except_brands=())[m1] if item.matcher == "seller"]
        assert seller_evidence.details["confirmed"] == 1  # L00, decided before M1 was scanned
        store.record_verdict(m1, verdict="legit", note=None, analyst="ana", brand_id=acme)
        with store.engine.begin() as conn:  # M1 as first seen before L00's verdict was recorded
            conn.execute(sa.update(t.listings).where(t.listings.c.listing_pk == m1).values(ingested_at=MOMENT))
        features, y, _cold = training_set(store)
        assert not features[:, seller].any()
    finally:
        store.close()


def test_train_refuses_a_model_that_does_not_beat_the_cold_start_scorer(tmp_path: Path) -> None:
    # Counterfeit words are the whole story here: the cold-start scorer ranks perfectly.
    rows = [(f"L{n:02d}", "Acme Roadrunner" + (" replica" if n % 2 else ""), f"seller-{n}") for n in range(12)]
    _settings, store = _text_world(tmp_path, rows)
    try:
        for n in range(12):
            verdict: VerdictLabel = "counterfeit" if n % 2 else "legit"
            store.record_verdict(store.find_listing(f"L{n:02d}"), verdict=verdict, note=None, analyst="ana")
        refused = train(store)
        assert not refused.accepted and refused.cold_start_average_precision == pytest.approx(1.0)
        assert "no model can beat it on these verdicts" in refused.line() and store.active_model() is None
        forced = train(store, force=True)
        assert forced.accepted and forced.model_id == 1
        assert [(info.model_id, info.active) for info in models(store)] == [(1, True)]
        assert rollback(store, actor="ana") is None and store.active_model() is None
        activate(store, 1, actor="ana")
        assert [(info.model_id, info.active) for info in models(store)] == [(1, True)]
        with pytest.raises(NotFoundError):
            activate(store, 7, actor="ana")
    finally:
        store.close()


# -- the CLI for people (issue 14, item 5) -----------------------------------------------------------


def test_reasons_in_plain_words_headline_by_strength_width_and_version(
    sqlite_cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    cli = sqlite_cli
    assert cli("--version").stdout.strip() == f"counterscan {__version__}"
    _two_brands_one_listing(cli, tmp_path, photos)
    [acme] = _listed(cli, "--brand", "Acme")
    # The headline is the strongest picture evidence: the product photo found copied, point by point.
    assert "photo copies Acme product photo (asset #1)" in acme["reason"] and "matching points" in acme["reason"]
    shown = cli("review", "show", "M1").stdout
    assert "copy of Acme asset #1 (" in shown and "distance" in shown and "crop-" not in shown
    wide = cli("review", "list", "--brand", "Acme", env={"COLUMNS": "260"}).stdout
    assert acme["reason"] in wide
    narrow = cli("review", "list", "--brand", "Acme", env={"COLUMNS": "100"}).stdout
    assert acme["reason"] not in narrow and "…" in narrow


def test_the_headline_reason_is_picture_evidence_before_a_price() -> None:
    def found(matcher: str, score: float) -> Evidence:
        return Evidence(matcher=matcher, brand_id=1, brand="Acme", score=score, reason=matcher)

    evidence = [found("price", 0.69), found("text", 0.5), found("phash", 0.62)]
    assert cold_start_scores(evidence)[0].best == 2
    assert cold_start_scores(evidence[:2])[0].best == 0  # without a picture, the strongest finding leads
