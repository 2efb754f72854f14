"""Issue 5: ingestion jobs: file formats, mappings, HTTP APIs, image fetching, checkpoints, quarantine."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from PIL import Image

from counterscan.errors import ExternalError, UserError
from counterscan.imaging.decode import DecodeLimits
from counterscan.ingest import FetchOptions, ingest, open_source, retry_quarantine
from counterscan.ingest.http_client import FetchError, PoliteClient, RetryPolicy, retry_after_seconds
from counterscan.ingest.images import ImageCollector
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from tests.conftest import jpeg_bytes
from tests.feedserver import FeedServer, Reply, feed_server

LIMITS = DecodeLimits(max_bytes=5_000_000, max_pixels=40_000_000)
# The feed server listens on loopback, which the outbound policy refuses unless allow-listed.
LOOPBACK = NetPolicy.from_cidrs(["127.0.0.0/8"])
FAST = FetchOptions(workers=4, per_host=2, timeout_seconds=2.0, max_retries=2, network=LOOPBACK)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


def listing_ids(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(t.listings.c.listing_id)).scalars())


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


# -- files ------------------------------------------------------------------------------------


def test_parquet_gzip_and_folders(store: Store, blobs: BlobStore, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    pd.DataFrame(
        {"listing_id": ["p1", "p2"], "title": ["a", "b"], "price": [1.5, None], "image_urls": [[], ["x.jpg"]]}
    ).to_parquet(folder / "part-1.parquet")
    with gzip.open(folder / "part-2.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write('{"listing_id": "j1", "title": "gz"}\n{"listing_id": "j2"}\n')
    with gzip.open(folder / "part-3.csv.gz", "wt", encoding="utf-8", newline="") as handle:
        handle.write("listing_id,title\nc1,csv\n")
    (folder / "notes.txt").write_text("ignored: not a feed")
    summary = ingest(store, blobs, LIMITS, open_source(str(folder), name="drop"), fetch=FAST)
    assert (summary.read, summary.new) == (5, 5)
    assert listing_ids(store) == ["c1", "j1", "j2", "p1", "p2"]
    assert summary.images_failed == 1  # x.jpg does not exist next to the file
    # A new file in the folder is all the next run reads.
    (folder / "part-4.jsonl").write_text('{"listing_id": "n1"}\n')
    again = ingest(store, blobs, LIMITS, open_source(str(folder), name="drop"), fetch=FAST)
    assert (again.read, again.new) == (1, 1)


def test_mapping_file_renames_columns(store: Store, blobs: BlobStore, tmp_path: Path) -> None:
    feed = tmp_path / "export.jsonl"
    feed.write_text(json.dumps({"item": {"id": "x1", "name": "Sneaker"}, "offer": {"amount": "9.99", "ccy": "eur"}}))
    mapping = tmp_path / "market.toml"
    mapping.write_text(
        '[source]\nname = "market-x"\n[columns]\nlisting_id = "item.id"\ntitle = "item.name"\n'
        'price = "offer.amount"\ncurrency = "offer.ccy"\n'
    )
    summary = ingest(store, blobs, LIMITS, open_source(str(feed), mapping=mapping), fetch=FAST)
    assert summary.source == "market-x" and summary.new == 1
    [listing] = store.listings_to_scan()
    assert (listing.listing.title, listing.listing.price, listing.listing.currency) == ("Sneaker", 9.99, "EUR")
    bad = tmp_path / "bad.toml"
    bad.write_text('[columns]\nlisting_ident = "id"\n')
    with pytest.raises(UserError, match="unknown column"):
        open_source(str(feed), mapping=bad)


def test_appended_csv_continues_after_committed_rows(store: Store, blobs: BlobStore, tmp_path: Path) -> None:
    feed = tmp_path / "feed.csv"
    write_csv(feed, [{"listing_id": f"r{i}", "title": "t"} for i in range(3)])
    assert ingest(store, blobs, LIMITS, open_source(str(feed)), fetch=FAST).new == 3
    with feed.open("a", encoding="utf-8") as handle:
        handle.write("r3,t\nr4,t\n")
    appended = ingest(store, blobs, LIMITS, open_source(str(feed)), fetch=FAST)
    assert (appended.read, appended.new) == (2, 2)
    rewritten = write_csv(feed, [{"listing_id": "r0", "title": "changed"}])
    changed = ingest(store, blobs, LIMITS, open_source(str(rewritten)), fetch=FAST)
    assert (changed.read, changed.updated) == (1, 1)


def test_not_utf8_quarantines_the_row_or_decodes_with_the_declared_encoding(
    store: Store, blobs: BlobStore, tmp_path: Path
) -> None:
    feed = tmp_path / "latin.csv"
    feed.write_bytes("listing_id,title\n1,caf\xe9\n2,plain\n".encode("latin-1"))
    summary = ingest(store, blobs, LIMITS, open_source(str(feed)), fetch=FAST)
    assert (summary.new, summary.quarantined) == (1, 1)
    assert "byte 0xE9 is not UTF-8" in store.quarantined()[0].reason
    mapping = tmp_path / "latin.toml"
    mapping.write_text('[source]\nencoding = "latin-1"\n')
    fixed = ingest(store, blobs, LIMITS, open_source(str(feed), name="latin1", mapping=mapping), fetch=FAST)
    assert (fixed.new, fixed.quarantined) == (2, 0)
    with store.engine.connect() as conn:
        titles = set(conn.execute(sa.select(t.listings.c.title).where(t.listings.c.source == "latin1")).scalars())
    assert titles == {"café", "plain"}


# -- the HTTP API source ----------------------------------------------------------------------


def page_api(server: FeedServer, pages: list[list[dict[str, object]]]) -> None:
    def body(query: dict[str, str]) -> object:
        page = int(query.get("page", "1"))
        return {"data": {"items": pages[page - 1] if page <= len(pages) else []}}

    server.json("/listings", body)


def mapping_file(tmp_path: Path, http: str) -> Path:
    path = tmp_path / "api.toml"
    path.write_text("[http]\n" + http)
    return path


def test_page_pagination_and_incremental_runs(
    store: Store, blobs: BlobStore, server: FeedServer, tmp_path: Path
) -> None:
    pages: list[list[dict[str, object]]] = [
        [{"listing_id": f"a{i}"} for i in range(p * 3, p * 3 + 3)] for p in range(2)
    ]
    page_api(server, pages)
    mapping = mapping_file(tmp_path, 'items = "data.items"\npagination = "page"\npage_size_param = "per_page"\n')
    source = open_source(f"{server.url}/listings", mapping=mapping, network=LOOPBACK)
    first = ingest(store, blobs, LIMITS, source, fetch=FAST)
    assert first.source == server.url.split("//")[1]
    assert (first.read, first.new) == (6, 6)
    assert [hit.query["page"] for hit in server.hits_for("/listings")] == ["1", "2", "3"]
    assert server.hits_for("/listings")[0].query["per_page"] == "100"
    pages[1].append({"listing_id": "late"})  # appended to the last page we saw as empty: page 3
    pages.append([{"listing_id": "a6"}])
    second = ingest(
        store, blobs, LIMITS, open_source(f"{server.url}/listings", mapping=mapping, network=LOOPBACK), fetch=FAST
    )
    assert [hit.query["page"] for hit in server.hits_for("/listings")][3:] == ["3", "4"]
    assert second.new == 1 and "a6" in listing_ids(store)


def test_cursor_pagination_with_bearer_token(
    store: Store, blobs: BlobStore, server: FeedServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def body(query: dict[str, str]) -> object:
        cursor = query.get("cursor")
        if cursor is None:
            return {"items": [{"listing_id": "c1"}], "next": "abc"}
        if cursor == "abc":
            return {"items": [{"listing_id": "c2"}], "next": None}
        return {"items": []}

    server.json("/cursor", body)
    monkeypatch.setenv("MARKET_TOKEN", "s3cret")
    mapping = mapping_file(tmp_path, 'pagination = "cursor"\nnext_cursor = "next"\ntoken_env = "MARKET_TOKEN"\n')
    summary = ingest(
        store, blobs, LIMITS, open_source(f"{server.url}/cursor", mapping=mapping, network=LOOPBACK), fetch=FAST
    )
    assert summary.new == 2
    assert all(hit.headers["authorization"] == "Bearer s3cret" for hit in server.hits_for("/cursor"))
    monkeypatch.delenv("MARKET_TOKEN")
    with pytest.raises(UserError, match="MARKET_TOKEN"):
        ingest(store, blobs, LIMITS, open_source(f"{server.url}/cursor", mapping=mapping, network=LOOPBACK), fetch=FAST)


def _client(**policy: float) -> PoliteClient:
    retry = RetryPolicy(**{"base_delay": 0.01, "timeout_seconds": 1.0, **policy})  # type: ignore[arg-type]
    return PoliteClient(retry, network=LOOPBACK)


@pytest.mark.slow
def test_429_then_success_honours_retry_after(server: FeedServer) -> None:
    server.json("/busy", [Reply(429, b"slow down", {"Retry-After": "1"}), Reply(200, b'{"ok": true}')])
    with _client() as client:
        body, _headers, _url = client.get(f"{server.url}/busy", max_bytes=1000)
    assert json.loads(body) == {"ok": True}
    first, second = server.hits_for("/busy")
    assert second.at - first.at >= 0.9


def test_500_then_success(server: FeedServer) -> None:
    server.json("/flaky", [Reply(500), Reply(503), Reply(200, b"[]")])
    with _client() as client:
        assert client.get(f"{server.url}/flaky", max_bytes=1000)[0] == b"[]"
    assert len(server.hits_for("/flaky")) == 3
    server.json("/down", [Reply(500)])
    with _client(max_retries=2) as client, pytest.raises(FetchError, match=r"HTTP 500 \(gave up after 3 attempts\)"):
        client.get(f"{server.url}/down", max_bytes=1000)


def test_slow_response_times_out(server: FeedServer) -> None:
    server.json("/slow", [Reply(200, b"late", delay=2.0)])
    with _client(timeout_seconds=0.3, max_retries=1) as client, pytest.raises(FetchError, match="timed out"):
        client.get(f"{server.url}/slow", max_bytes=1000)


def test_huge_content_length_is_refused_without_reading(server: FeedServer) -> None:
    server.json("/huge", [Reply(200, b"x" * 100, declared_length=2 * 1024**3)])
    with _client() as client, pytest.raises(FetchError, match="2147483648 bytes refused"):
        client.get(f"{server.url}/huge", max_bytes=10_000_000)


def test_redirect_loop_is_refused(server: FeedServer) -> None:
    server.json("/loop", [Reply(302, headers={"Location": "/loop"})])
    server.json("/elsewhere", [Reply(302, headers={"Location": "file:///etc/passwd"})])
    with _client() as client:
        with pytest.raises(FetchError, match="more than 5 redirects"):
            client.get(f"{server.url}/loop", max_bytes=1000)
        with pytest.raises(FetchError, match="unsupported URL scheme 'file'"):
            client.get(f"{server.url}/elsewhere", max_bytes=1000)
    assert len(server.hits_for("/loop")) == 6


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_rate_cap_spaces_requests(server: FeedServer) -> None:
    server.json("/tick", [Reply(200, b"ok")])
    with PoliteClient(RetryPolicy(), requests_per_second=10, network=LOOPBACK) as client:
        for _ in range(5):
            client.get(f"{server.url}/tick", max_bytes=100)
    times = [hit.at for hit in server.hits_for("/tick")]
    # Arrival times carry the server thread's scheduling jitter; the span of five requests at
    # 10/s cannot be shorter than four intervals less that jitter, and no two arrive together.
    assert times[-1] - times[0] >= 0.35
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.04


def test_api_failure_is_an_external_error_and_keeps_earlier_pages(
    store: Store, blobs: BlobStore, server: FeedServer, tmp_path: Path
) -> None:
    def body(query: dict[str, str]) -> object:
        if query["page"] == "1":
            return {"items": [{"listing_id": "ok1"}]}
        raise RuntimeError("unreachable")

    server.json("/half", body)
    server.routes["/half"] = lambda path, query, headers: (
        Reply(200, json.dumps({"items": [{"listing_id": "ok1"}]}).encode()) if query["page"] == "1" else Reply(500)
    )
    mapping = mapping_file(tmp_path, 'pagination = "page"\nmax_retries = 1\n')
    with pytest.raises(ExternalError, match="page 2: HTTP 500"):
        ingest(store, blobs, LIMITS, open_source(f"{server.url}/half", mapping=mapping, network=LOOPBACK), fetch=FAST)
    assert listing_ids(store) == ["ok1"]
    state = store.source_state(server.url.split("//")[1])
    assert state is not None and state[3] == {"next_page": 2}


# -- images -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_image_fetching_caps_and_failures_and_retry(
    store: Store, blobs: BlobStore, server: FeedServer, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    picture = jpeg_bytes(photos["coffee"])
    server.json("/img/ok.jpg", [Reply(200, picture, {"Content-Type": "image/jpeg"})])
    server.json("/img/huge.jpg", [Reply(200, b"\xff\xd8", declared_length=2 * 1024**3)])
    server.json("/img/page.jpg", [Reply(200, b"<!DOCTYPE html><html>gone</html>", {"Content-Type": "text/html"})])
    server.json("/img/loop.jpg", [Reply(302, headers={"Location": "/img/loop.jpg"})])
    server.json("/img/later.jpg", [Reply(500)])
    refs = ["ok.jpg", "huge.jpg", "page.jpg", "loop.jpg", "later.jpg"]
    rows: list[dict[str, object]] = [
        {"listing_id": "L1", "image_urls": ";".join(f"{server.url}/img/{ref}" for ref in refs)}
    ]

    rows.append({"listing_id": "L2", "image_urls": f"{server.url}/img/ok.jpg"})  # shares the picture
    feed = write_csv(tmp_path / "feed.csv", rows)
    summary = ingest(store, blobs, LIMITS, open_source(str(feed)), fetch=FAST)
    assert (summary.new, summary.images_fetched, summary.images_failed) == (2, 2, 4)
    reasons = {problem.record.rsplit(" ", 1)[-1]: problem.reason for problem in summary.problems}
    assert "2147483648 bytes refused" in reasons["2"]
    assert "HTML page" in reasons["3"]
    assert "more than 5 redirects" in reasons["4"]
    assert "HTTP 500" in reasons["5"]
    assert len(server.hits_for("/img/ok.jpg")) == 1  # fetched once for both listings
    assert len(list(blobs.root.rglob("*"))) == 2  # one folder, one blob
    # The failed image is fetched again by the next run of the source, and the listing rescanned.
    store.write_results(store.start_scan(), [])
    server.json("/img/later.jpg", [Reply(200, jpeg_bytes(photos["rocket"]))])
    again = ingest(store, blobs, LIMITS, open_source(str(feed)), fetch=FAST)
    assert again.images_retried_ok == 1
    [l1] = [item for item in store.listings_to_scan() if item.listing.listing_id == "L1"]
    assert len(l1.image_sha256s) == 2
    result = retry_quarantine(store, blobs, LIMITS, fetch=FAST)
    assert result.resolved == 1 and result.still_failing == 3


def test_per_host_limit(server: FeedServer, store: Store, blobs: BlobStore, photos: dict[str, Image.Image]) -> None:
    picture = jpeg_bytes(photos["moon"])
    for index in range(12):
        # Each reply waits until three are in flight at once: the limit is reached, never passed.
        server.json(f"/slowimg/{index}.jpg", [Reply(200, picture + bytes([index]), until_in_flight=3)])
    options = FetchOptions(workers=8, per_host=3, timeout_seconds=5, network=LOOPBACK)
    with ImageCollector(store, blobs, LIMITS, options) as collector:
        outcomes = collector.collect([f"{server.url}/slowimg/{index}.jpg" for index in range(12)])
    assert all(outcome.sha256 for outcome in outcomes.values())
    assert server.max_in_flight["/slowimg"] == 3


def test_quarantine_retry_uses_the_fixed_mapping(tmp_path: Path) -> None:
    from tests.conftest import Cli

    cli = Cli(tmp_path / "home")
    feed = tmp_path / "feed.jsonl"
    feed.write_text('{"id": "m1", "cost": "12"}\n{"id": "m2", "cost": "lots"}\n')
    mapping = tmp_path / "m.toml"
    mapping.write_text('[columns]\nlisting_id = "id"\nprice = "cost"\n')
    result = cli("ingest", str(feed), "--mapping", str(mapping), "--name", "mkt")
    assert "new 1" in result.stdout and "price 'lots' is not a number" in result.stderr
    assert "1 still failing" in cli("quarantine", "retry").stdout
    mapping.write_text('[columns]\nlisting_id = "id"\n')  # price no longer mapped: the row is fine
    cli("ingest", str(feed), "--mapping", str(mapping), "--name", "mkt")
    assert "1 resolved, 0 still failing" in cli("quarantine", "retry").stdout
    assert "lots" not in cli("quarantine", "list").stdout


# -- crash safety -----------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_exactly_the_feed(tmp_path: Path, server: FeedServer) -> None:
    per_page, page_count = 500, 12
    delay = {"seconds": 0.25}

    def route(_path: str, query: dict[str, str], _headers: dict[str, str]) -> Reply:
        page = int(query["page"])
        items = (
            [{"listing_id": f"k{page:02d}-{i:04d}", "title": "t"} for i in range(per_page)]
            if page <= page_count
            else []
        )
        return Reply(200, json.dumps({"items": items}).encode(), delay=delay["seconds"])

    server.route("/slowfeed", route)
    mapping = mapping_file(tmp_path, 'pagination = "page"\nrequests_per_second = 0\n')
    home = tmp_path / "home"
    command = [sys.executable, "-m", "counterscan", "--home", str(home), "ingest", f"{server.url}/slowfeed"]
    command += ["--mapping", str(mapping), "--name", "slow"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("COUNTERSCAN_")}
    env["COUNTERSCAN_ALLOWED_PRIVATE_NETWORKS"] = "127.0.0.0/8"
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    database = home / "counterscan.db"
    deadline = time.monotonic() + 60
    committed = 0
    while committed < 2000:
        assert time.monotonic() < deadline and process.poll() is None, "ingest ended before it could be killed"
        time.sleep(0.1)
        if database.exists():
            engine = sa.create_engine(f"sqlite:///{database}")
            try:
                with engine.connect() as conn:
                    committed = conn.execute(sa.select(sa.func.count()).select_from(t.listings)).scalar_one()
            except sa.exc.OperationalError:
                committed = 0
            finally:
                engine.dispose()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert committed < per_page * page_count
    delay["seconds"] = 0.0
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert resumed.returncode == 0, resumed.stderr
    store = Store.open(f"sqlite:///{database}")
    try:
        ids = listing_ids(store)
        with store.engine.connect() as conn:
            versions = conn.execute(sa.select(sa.func.max(t.listings.c.version))).scalar_one()

        assert ids == sorted(f"k{page:02d}-{i:04d}" for page in range(1, page_count + 1) for i in range(per_page))
        assert versions == 1 and store.quarantined() == []
    finally:
        store.close()
    # The resumed run started after the acknowledged pages instead of from page 1.
    pages = [int(hit.query["page"]) for hit in server.hits_for("/slowfeed")]
    restart = next(i for i in range(1, len(pages)) if pages[i] <= pages[i - 1])
    assert pages[restart] > 1, pages


def test_a_local_picture_is_read_once_per_run_unless_it_changes(
    store: Store, blobs: BlobStore, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    picture = folder / "shared.jpg"
    original = jpeg_bytes(photos["coffee"])
    picture.write_bytes(original)
    ref = str(picture)
    with ImageCollector(store, blobs, LIMITS, FAST) as collector:
        first = collector.collect([ref], folder=folder)[ref]
        assert first.sha256 is not None
        # Other bytes behind the same size, mtime and inode: the run's memo answers, the file is not read.
        stamp = picture.stat()
        altered = bytearray(original)
        altered[len(altered) // 2] ^= 0x01
        picture.write_bytes(bytes(altered))
        os.utime(picture, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert collector.collect([ref], folder=folder)[ref].sha256 == first.sha256
        # A file that really changed is read again within the run.
        replaced = jpeg_bytes(photos["rocket"])
        picture.write_bytes(replaced)
        again = collector.collect([ref], folder=folder)[ref]
        assert again.sha256 is not None and again.sha256 != first.sha256
        assert blobs.get(again.sha256) == replaced
    # A new run reads every file afresh.
    os.utime(picture, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with ImageCollector(store, blobs, LIMITS, FAST) as collector:
        assert collector.collect([ref], folder=folder)[ref].sha256 == again.sha256
