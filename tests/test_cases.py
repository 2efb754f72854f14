"""Issue 22: takedown cases. Confirmed counterfeits grouped per (marketplace, seller), followed to removal."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from counterscan.errors import NotFoundError, PermissionDeniedError, UserError
from counterscan.records import IngestedListing, Listing
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.review import cases
from counterscan.store import Store
from counterscan.store import schema as t
from counterscan.store.migrations import current_version
from tests.conftest import Cli
from tests.old_schemas import schema_v3 as v3

FEED = [
    # listing_id, title, seller_id, marketplace, url
    ("L1", "Acme Roadrunner replica", "s1", "shopzone", "https://shopzone.example/item/L1"),
    ("L2", "Acme Roadrunner 1:1 copy", "s1", "shopzone", "javascript:alert(1)"),
    ("L3", "Acme Roadrunner boots", "s2", "shopzone", "https://shopzone.example/item/L3"),
    ("L4", "Beeline Buzz replica", "s1", "shopzone", "https://shopzone.example/item/L4"),
    ("L5", "Acme Roadrunner fake", "s1", "bazaar", "https://bazaar.example/L5"),
]


def _world(cli: Cli, tmp_path: Path) -> dict[str, str]:
    """Two members' brands, five listings that name them, scanned; returns the members' keys."""
    cli("init")
    keys = {"acme": cli.add_member("acme-group"), "bee": cli.add_member("bee-corp", use=False)}
    cli("brands", "add", "Acme", "--member", "acme-group", "--keyword", "Roadrunner")
    cli(
        "brands",
        "add",
        "Beeline",
        "--member",
        "bee-corp",
        "--keyword",
        "Buzz",
        env={"COUNTERSCAN_API_KEY": keys["bee"]},
    )
    feed = tmp_path / "feed.csv"
    with feed.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "title", "seller_id", "seller_name", "marketplace", "url", "price", "currency"])
        for listing_id, title, seller, market, url in FEED:
            writer.writerow([listing_id, title, seller, f"Seller {seller}", market, url, "9.5", "USD"])
    cli("ingest", str(feed), "--name", "feed")
    cli("scan", "--workers", "1")
    keys["ana"] = cli.add_member("ana", role="analyst")
    return keys


def test_cases_over_the_cli(cli: Cli, tmp_path: Path) -> None:
    keys = _world(cli, tmp_path)
    assert json.loads(cli("cases", "list", "--format", "json").stdout) == []

    # A counterfeit verdict files the listing at once, per (marketplace, seller).
    cli("review", "decide", "L1", "--verdict", "counterfeit", "--note", "copied box art")
    listed = json.loads(cli("cases", "list", "--format", "json").stdout)
    assert [(c["marketplace"], c["seller_id"], c["status"], c["listings"], c["brands"]) for c in listed] == [
        ("shopzone", "s1", "open", 1, ["Acme"])
    ]
    cli("review", "decide", "L2", "L5", "--verdict", "counterfeit")
    cli("review", "decide", "L4", "--verdict", "counterfeit")
    cli("review", "decide", "L3", "--verdict", "legit")  # legit listings open no case
    listed = json.loads(cli("cases", "list", "--format", "json").stdout)
    assert sorted((c["marketplace"], c["seller_id"], c["listings"]) for c in listed) == [
        ("bazaar", "s1", 1),
        ("shopzone", "s1", 3),
    ]
    shop = next(c["case_id"] for c in listed if c["marketplace"] == "shopzone")
    detail = json.loads(cli("cases", "show", str(shop), "--format", "json").stdout)
    assert [(item["listing_id"], item["brand"], item["rights_holder"]) for item in detail["listings"]] == [
        ("L1", "Acme", "acme-group"),
        ("L2", "Acme", "acme-group"),
        ("L4", "Beeline", "bee-corp"),
    ]
    assert detail["listings"][0]["note"] == "copied box art" and detail["listings"][0]["analyst"] == "ana"
    assert "listing-added" in cli("cases", "show", str(shop)).stdout

    # Statuses move by the rules, with who and when; every change is audited.
    refused = cli("cases", "set-status", str(shop), "--status", "removed", expect=2)
    assert "case 1 is open: it may go to reported, not removed" in refused.stderr.replace(str(shop), "1")
    # A member owning only some of the case's brands may not speak for the others.
    owner = cli("cases", "set-status", str(shop), "--status", "reported", "--key", keys["acme"], expect=5)
    assert "holds listings of other members' brands" in owner.stderr
    cli("cases", "set-status", str(shop), "--status", "reported", "--note", "ticket 42")
    cli("cases", "set-status", str(shop), "--status", "removed")
    events = json.loads(cli("cases", "show", str(shop), "--format", "json").stdout)["events"]
    assert [(e["action"], e["status"], e["actor"]) for e in events][-2:] == [
        ("status", "reported", "ana"),
        ("status", "removed", "ana"),
    ]
    assert events[-2]["note"] == "ticket 42"
    audit = json.loads(cli("audit", "--format", "json").stdout)
    assert [(row["action"], row["target"]) for row in audit if row["action"] == "case.status"] == [
        ("case.status", f"case {shop}"),
        ("case.status", f"case {shop}"),
    ]
    assert ("verdict", "listing feed/L1") in {(row["action"], row["target"]) for row in audit}  # ids, not keys

    # Changing a verdict takes the listing out; a new counterfeit of a removed case opens it again.
    cli("review", "decide", "L2", "--verdict", "legit")
    cli("review", "decide", "L2", "--verdict", "counterfeit")
    again = json.loads(cli("cases", "show", str(shop), "--format", "json").stdout)
    assert again["summary"]["status"] == "open" and len(again["listings"]) == 3
    assert [e["action"] for e in again["events"]][-2:] == ["listing-withdrawn", "listing-added"]

    # The notice packet for one marketplace: CSV, JSON and HTML with links (http(s) only) and evidence.
    out = tmp_path / "notice"
    written = cli("cases", "export", "--marketplace", "shopzone", "--out", str(out))
    assert "wrote 3 listings of 1 cases" in written.stdout
    rows = list(csv.DictReader(io.StringIO((out / "notices.csv").read_text(encoding="utf-8"))))
    assert [(row["listing_id"], row["brand"], row["rights_holder"], row["verdict"]) for row in rows] == [
        ("L1", "Acme", "acme-group", "counterfeit"),
        ("L2", "Acme", "acme-group", "counterfeit"),
        ("L4", "Beeline", "bee-corp", "counterfeit"),
    ]
    packet = json.loads((out / "notices.json").read_text(encoding="utf-8"))
    assert packet["marketplace"] == "shopzone" and len(packet["cases"][0]["listings"]) == 3
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="https://shopzone.example/item/L1"' in page and "acme-group" in page and "copied box art" in page
    assert 'href="javascript:' not in page and "javascript:alert(1)" in page  # shown, never a link
    missing = cli("cases", "export", "--marketplace", "nowhere", "--out", str(tmp_path / "x"), expect=2)
    assert "no open or reinstated cases on marketplace 'nowhere'" in missing.stderr
    assert any(row["action"] == "case.export" for row in json.loads(cli("audit", "--format", "json").stdout))


def test_case_rules_and_a_members_view(store: Store) -> None:

    owner = add_member(store, "acme-group").member
    rival = add_member(store, "rival").member
    analyst = add_member(store, "ana", role="analyst").member
    acme = add_brand(store, owner, "Acme")
    add_brand(store, rival, "Rival")
    listings = [Listing(source="feed", listing_id=f"L{n}", title="t", seller_id="s9", marketplace="m") for n in (1, 2)]
    store.commit_ingest_batch("feed", [IngestedListing(listing) for listing in listings], [], None)
    pks = [store.find_listing(f"L{n}") for n in (1, 2)]
    store.record_suspect_verdicts([(pks[0], acme.brand_id)], verdict="counterfeit", note=None, analyst="ana")
    hook = store.add_webhook(
        owner.member_id, url="https://hooks.example/acme", secret="s", events=["case.status"], min_score=0.0, actor="t"
    )
    (only,) = cases.list_cases(store, reader=owner)
    assert only.listings == 1 and only.brands == ("Acme",)
    assert cases.list_cases(store, reader=rival) == []
    with pytest.raises(NotFoundError):
        cases.show_case(store, only.case_id, reader=rival)
    with pytest.raises(NotFoundError):  # a rival never learns the case exists
        cases.set_status(store, only.case_id, "reported", note=None, actor=rival)
    # The owner of every brand in a case may move it on; an unknown status or a skipped step is refused.
    assert cases.set_status(store, only.case_id, "reported", note="n", actor=owner).status == "reported"
    (sent,) = store.deliveries(webhook_id=hook.webhook_id)  # the brand's owner hears of it
    assert sent.event == "case.status" and sent.payload["status"] == "reported" and sent.payload["previous"] == "open"
    with pytest.raises(UserError, match="unknown case status 'gone'"):
        cases.set_status(store, only.case_id, "gone", note=None, actor=analyst)
    with pytest.raises(UserError, match="may go to removed, rejected, open, not reinstated"):
        cases.set_status(store, only.case_id, "reinstated", note=None, actor=analyst)
    rival_brand = store.brand("Rival").brand_id
    store.record_suspect_verdicts([(pks[1], rival_brand)], verdict="counterfeit", note=None, analyst="ana")
    with pytest.raises(PermissionDeniedError):
        cases.set_status(store, only.case_id, "removed", note=None, actor=owner)
    assert [item.listing_id for item in cases.show_case(store, only.case_id, reader=owner).listings] == ["L1"]
    assert cases.set_status(store, only.case_id, "removed", note=None, actor=analyst).status == "removed"


def test_a_version_3_store_gets_cases_for_its_counterfeit_verdicts(db_url: str) -> None:
    """The step to version 4 files every (listing, brand) whose latest verdict is counterfeit."""
    moment = datetime(2026, 10, 1, tzinfo=UTC)
    engine = sa.create_engine(db_url)
    try:
        with engine.begin() as conn:
            v3.metadata.create_all(conn)
            conn.execute(sa.insert(v3.lock_guard).values(guard_id=1))
            conn.execute(sa.insert(v3.schema_version).values(version=3, applied_at=moment))
            conn.execute(sa.insert(v3.members).values(member_id=1, name="owner", role="member", created_at=moment))
            conn.execute(
                sa.insert(v3.brands).values(
                    brand_id=1,
                    name="Acme",
                    name_key="acme",
                    member_id=1,
                    aliases=[],
                    lookalikes=[],
                    authorised_sellers=[],
                    categories=[],
                    created_at=moment,
                    updated_at=moment,
                )
            )
            for pk, seller, market in ((1, "s1", "shopzone"), (2, "s1", "shopzone"), (3, None, None)):
                conn.execute(
                    sa.insert(v3.listings).values(
                        listing_pk=pk,
                        source="feed",
                        listing_id=f"L{pk}",
                        title=f"listing {pk}",
                        description="",
                        seller_id=seller,
                        marketplace=market,
                        attributes={},
                        content_hash=f"h{pk}",
                        version=1,
                        ingested_at=moment,
                        updated_at=moment,
                    )
                )
            # L1 confirmed; L2 confirmed then cleared (no case); L3 confirmed, no seller nor marketplace.
            for pk, verdict in ((1, "counterfeit"), (2, "counterfeit"), (2, "legit"), (3, "counterfeit")):
                conn.execute(
                    sa.insert(v3.verdicts).values(
                        listing_pk=pk, brand_id=1, verdict=verdict, note="old", analyst="ana", decided_at=moment
                    )
                )
    finally:
        engine.dispose()
    with Store.open(db_url) as store:
        with store.engine.connect() as conn:
            assert current_version(conn) == t.LATEST_VERSION == 4
        found = sorted((c.marketplace, c.seller_id, c.listings, c.status) for c in store.cases())
        assert found == [("feed", "", 1, "open"), ("shopzone", "s1", 1, "open")]
        shop = next(c for c in store.cases() if c.marketplace == "shopzone")
        case = store.case(shop.case_id)
        assert [(item.listing_id, item.analyst, item.note) for item in case.listings] == [("L1", "ana", "old")]
        assert [(event.action, event.actor) for event in case.events] == [("opened", "ana"), ("listing-added", "ana")]
