"""Issue 16: fuzzing kept in the suite: uploads through the real HTTP server, feed rows through ``ingest``.

Each run draws COUNTERSCAN_FUZZ_EXAMPLES cases per test (a CI-sized 25 by default); ``make fuzz``
runs 10,000 of each. Every case asserts: no 5xx, no traceback (in a response or the server's
log), no half-written asset or listing, and that the good files and rows in it still land.
"""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from counterscan.imaging.decode import DecodeLimits
from counterscan.ingest import FetchOptions, ingest, open_source
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.ingest.urls import check_host
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from tests.conftest import png_bytes
from tests.test_api import Server, _client, server  # noqa: F401  (the real HTTP server fixture)

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("COUNTERSCAN_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class Tally:
    """What a fuzz run saw, printed at its end (the numbers the issue asks to record)."""

    name: str
    cases: int = 0
    server_errors: int = 0
    tracebacks: int = 0
    half_written: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.cases += 1
        self.statuses[outcome] = self.statuses.get(outcome, 0) + 1
        report = os.environ.get("COUNTERSCAN_FUZZ_REPORT")
        if report and self.cases % 100 == 0:  # a long run that is stopped still leaves its numbers
            with Path(report).open("a", encoding="utf-8") as handle:
                handle.write(self.line() + "\n")

    def line(self) -> str:
        return (
            f"fuzz {self.name}: cases {self.cases}, 5xx {self.server_errors}, tracebacks {self.tracebacks}, "
            f"half-written rows {self.half_written}, outcomes {json.dumps(self.statuses, sort_keys=True)}"
        )


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[_Errors]:
    """Errors the server logs (an unhandled exception in a request is logged with its traceback)."""
    handler = _Errors()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "fastapi", "counterscan")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


# -- uploads through the real HTTP server ------------------------------------------------------

GOOD_PNG = png_bytes(Image.new("RGB", (64, 48), (200, 30, 30)))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares these dimensions (its pixel data is cut short)."""
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, (name, data) in enumerate(entries):
            try:
                archive.writestr(name or "x", data)
            except (IndexError, ValueError):  # a name zipfile itself refuses ("/", NUL)
                archive.writestr(f"entry{number}", data)
    return buffer.getvalue()


names = st.one_of(
    st.text(min_size=0, max_size=40),
    st.text(min_size=400, max_size=700),
    st.sampled_from(["a.png", "../../etc/passwd", "/abs.png", "dir/", "x" * 600 + ".png", "nul\x00.png", "é.svg"]),
)
contents = st.one_of(
    st.binary(max_size=2000),
    st.just(GOOD_PNG),
    st.builds(lambda cut: GOOD_PNG[:cut], st.integers(0, len(GOOD_PNG))),
    st.builds(_png_header, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1)),
    st.sampled_from(
        [
            b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'><rect width='5' height='5'/></svg>",
            b"<svg xmlns='http://www.w3.org/2000/svg'><use href='#a'/><g id='a'><use href='#a'/></g></svg>",
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><svg>&a;</svg>",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
            b"\xff\xd8\xff\xe0" + b"\x00" * 100,
        ]
    ),
)
upload_files = st.lists(
    st.one_of(
        st.tuples(names, contents),
        st.tuples(st.just("pack.zip"), st.builds(_zip, st.lists(st.tuples(names, contents), max_size=4))),
    ),
    min_size=1,
    max_size=4,
)


def _asset_state(server: Server, store: Store) -> tuple[set[str], set[str]]:  # noqa: F811
    """(sha256 of every stored asset, every blob file in the blob store)."""
    with store.engine.connect() as conn:
        rows = set(conn.execute(sa.select(t.assets.c.sha256).where(t.assets.c.kind != "text")).scalars())
    root = server.settings.blob_dir
    blobs = {path.name for path in root.rglob("*") if path.is_file()} if root.exists() else set()
    return rows, blobs


@pytest.fixture(scope="module")
def upload_tally() -> Iterator[Tally]:
    tally = Tally("uploads over HTTP")
    yield tally
    print("\n" + tally.line())
    report = os.environ.get("COUNTERSCAN_FUZZ_REPORT")
    if report:
        with Path(report).open("a", encoding="utf-8") as handle:
            handle.write("final " + tally.line() + "\n")


def test_fuzz_uploads_through_the_http_server(
    server: Server,  # noqa: F811
    server_errors: _Errors,
    upload_tally: Tally,
) -> None:
    @FUZZ
    @given(files=upload_files, kind=st.sampled_from(["logo", "product", "text", "", "bogus"]), good=st.booleans())
    def case(files: list[tuple[str, bytes]], kind: str, good: bool) -> None:
        parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
        if good:
            parts.append(("files", ("good.png", GOOD_PNG, "image/png")))
        response = client.post("/v1/brands/Acme/assets", data={"kind": kind}, files=parts)
        upload_tally.count(str(response.status_code))
        if response.status_code >= 500:
            upload_tally.server_errors += 1
        if "Traceback" in response.text or server_errors.records:
            upload_tally.tracebacks += 1
        rows, blobs = _asset_state(server, store)
        if rows != blobs:
            upload_tally.half_written += 1
        assert response.status_code < 500, response.text[:500]
        assert "Traceback" not in response.text
        assert not server_errors.records, [record.getMessage() for record in server_errors.records]
        assert rows == blobs, f"assets without a blob {rows - blobs}, blobs without an asset {blobs - rows}"
        if good and kind in ("logo", "product") and response.status_code == 201:
            body = response.json()
            # The same picture may already be stored under another name: it lands either way.
            assert body["added"] or body["already_present"], body
            assert not any(item["name"] == "good.png" for item in body["rejected"]), body

    store = Store.open(server.settings.database_url)
    try:
        with _client(server, server.owner_key) as client:
            case()
    finally:
        store.close()


# -- feed rows through ingest ------------------------------------------------------------------

LIMITS = DecodeLimits(max_bytes=5_000_000, max_pixels=40_000_000)
FAST = FetchOptions(workers=2, per_host=2, timeout_seconds=1.0, max_retries=0)

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 10, max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["\x00", "\ud800", "a\udfffb", "x" * 131_073, "'; DROP TABLE listings; --"]),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
FIELDS = ("listing_id", "title", "description", "price", "currency", "seller_id", "url", "image_paths", "extra")
hostile_rows = st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6)
hostile_lines = st.one_of(
    hostile_rows.map(lambda row: json.dumps(row)),
    st.text(max_size=60),
    st.integers(1, 3000).map(lambda depth: '{"listing_id": "deep", "x": ' + "[" * depth + "]" * depth + "}"),
    st.integers(4200, 5000).map(lambda digits: '{"listing_id": "big", "n": ' + "9" * digits + "}"),
)


@pytest.fixture(scope="module")
def feed_tally() -> Iterator[Tally]:
    tally = Tally("feed rows through ingest")
    yield tally
    print("\n" + tally.line())
    report = os.environ.get("COUNTERSCAN_FUZZ_REPORT")
    if report:
        with Path(report).open("a", encoding="utf-8") as handle:
            handle.write("final " + tally.line() + "\n")


def test_fuzz_feed_rows_through_ingest(db_url: str, tmp_path: Path, feed_tally: Tally) -> None:
    store = Store.open(db_url)
    blobs = BlobStore(tmp_path / "blobs")
    counter = iter(range(10**9))

    @FUZZ
    @given(bad=st.lists(hostile_lines, min_size=1, max_size=5), good=st.integers(1, 4), as_csv=st.booleans())
    def case(bad: list[str], good: int, as_csv: bool) -> None:
        number = next(counter)
        source = f"fuzz{number}"
        feed = tmp_path / f"{source}.{'csv' if as_csv else 'jsonl'}"
        good_rows = [{"listing_id": f"good{i}", "title": f"good row {i}"} for i in range(good)]
        if as_csv:
            data = (
                b"listing_id,title,extra\n"
                + b"".join(f"good{i},good row {i},\n".encode() for i in range(good))
                + b"".join(line.encode("utf-8", "surrogatepass").replace(b"\n", b" ") + b"\n" for line in bad)
            )
            feed.write_bytes(data)
        else:
            lines = [json.dumps(row) for row in good_rows] + [line.replace("\n", " ") for line in bad]
            feed.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass") + b"\n")
        try:
            summary = ingest(store, blobs, LIMITS, open_source(str(feed), name=source), fetch=FAST)
        except Exception:
            feed_tally.cases += 1
            feed_tally.tracebacks += 1
            raise
        feed_tally.count("all landed" if summary.quarantined == 0 else "some quarantined")
        with store.engine.connect() as conn:
            titles: dict[str, str] = dict(
                conn.execute(
                    sa.select(t.listings.c.listing_id, t.listings.c.title).where(t.listings.c.source == source)
                ).all()
            )
            # Half-written: a listing of this source whose image rows or checkpoint are missing.
            images: dict[str, int] = dict(
                conn.execute(
                    sa.select(t.listings.c.listing_id, sa.func.count(t.listing_images.c.position))
                    .select_from(t.listings.outerjoin(t.listing_images))
                    .where(t.listings.c.source == source)
                    .group_by(t.listings.c.listing_id)
                ).all()
            )
        state = store.source_state(source)
        half = state is None or not (state[3] or {}).get("complete")
        for item_id in titles:
            if item_id.startswith("good") and images.get(item_id, 0) != 0:
                half = True
        if half:
            feed_tally.half_written += 1
        assert not half, (state, images)
        for row in good_rows:
            # Good rows come first: a hostile row reusing their id is the duplicate, quarantined.
            assert titles.get(str(row["listing_id"])) == row["title"], (titles, summary)
        assert summary.read == summary.new + summary.updated + summary.unchanged + summary.quarantined
        # The next run is never blocked: nothing new to read, nothing fails.
        again = ingest(store, blobs, LIMITS, open_source(str(feed), name=source), fetch=FAST)
        assert again.read == 0

    try:
        case()
    finally:
        store.close()


# -- URLs and hosts: feed images, the check's image_urls, webhooks ------------------------------

_octets = st.one_of(
    st.integers(0, 255).map(str),
    st.integers(256, 99999).map(str),  # over 255
    st.integers(0, 255).map(lambda n: f"0{n:o}"),  # octal
    st.integers(0, 255).map(hex),  # hexadecimal
    st.text("0123456789x", min_size=0, max_size=5),
)
# Only non-public first octets (never a real connection), plus malformed ones.
_first_octet = st.one_of(st.sampled_from(["0", "10", "127", "169", "192", "224", "240", "255"]), _octets)
ipv4_hosts = st.one_of(
    st.builds(lambda first, rest: ".".join([first, *rest]), _first_octet, st.lists(_octets, min_size=0, max_size=5)),
    st.integers(0, 2**40).map(str),  # one number
)
_groups = st.text("0123456789abcdefABCDEFxz:.%", min_size=0, max_size=40)
ipv6_hosts = st.one_of(
    st.builds(lambda inner: f"[{inner}]", _groups),
    st.builds(lambda inner: f"[{inner}", _groups),  # unbalanced
    st.builds(lambda inner, zone: f"[{inner}%25{zone}]", _groups, st.text(max_size=6)),
    st.sampled_from(["[::1]", "[::ffff:127.0.0.1]", "[fe80::1]", "[::]", "[]", "[[::1]]", "]::1["]),
)
_label = st.text(st.characters(codec="utf-8"), min_size=0, max_size=12)
idna_hosts = st.one_of(
    st.builds(lambda rest: "xn--" + rest, st.text("abcdefghijklmnopqrstuvwxyz0123456789-", max_size=12)),
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.sampled_from(
        ["LOCALHOST.", "localhost", "a..b", ".a", "a b", "-a.example", "ex ample.invalid", "Bücher.invalid"]
    ),
)
hosts = st.one_of(ipv4_hosts, ipv6_hosts, idna_hosts)
ports = st.one_of(st.none(), st.integers(-5, 70000).map(str), st.text("0123456789o: +-", max_size=7), st.just(""))
userinfo = st.one_of(st.none(), st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=10))
fuzzed_urls = st.one_of(
    st.builds(
        lambda scheme, user, host, port, path: (
            f"{scheme}://{'' if user is None else user + '@'}{host}{'' if port is None else ':' + port}/{path}"
        ),
        st.sampled_from(["http", "https", "HTTP", "hTtPs", "ftp", "file", "javascript", ""]),
        userinfo,
        hosts,
        ports,
        st.text(max_size=12),
    ),
    st.text(max_size=40),
)
fuzzed_paths = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["adir.jpg", "adir.jpg/", "../x.jpg", "/etc/passwd", "good.jpg\x00", "C:\\x.jpg", "~/x.jpg", ""]),
)


@pytest.fixture(scope="module")
def url_tally() -> Iterator[Tally]:
    tally = Tally("URLs and paths through ingest")
    yield tally
    print("\n" + tally.line())
    report = os.environ.get("COUNTERSCAN_FUZZ_REPORT")
    if report:
        with Path(report).open("a", encoding="utf-8") as handle:
            handle.write("final " + tally.line() + "\n")


def test_fuzz_image_urls_and_paths_through_ingest(db_url: str, tmp_path: Path, url_tally: Tally) -> None:
    """Arbitrary strings in every URL and path field: rows land, bad images are quarantined, re-runs go on."""
    store = Store.open(db_url)
    blobs = BlobStore(tmp_path / "blobs")
    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "good.png").write_bytes(GOOD_PNG)
    (folder / "adir.jpg").mkdir()
    counter = iter(range(10**9))
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["192.0.2.1"]  # a documentation address: refused, never connected to

    fetch = FetchOptions(
        workers=2, per_host=2, timeout_seconds=1.0, max_retries=0, network=NetPolicy(resolver=resolver)
    )

    @FUZZ
    @given(
        urls=st.lists(fuzzed_urls, min_size=1, max_size=4),
        paths=st.lists(fuzzed_paths, min_size=0, max_size=3),
        listing_url=fuzzed_urls,
    )
    def case(urls: list[str], paths: list[str], listing_url: str) -> None:
        source = f"urls{next(counter)}"
        feed = folder / f"{source}.jsonl"
        rows = [
            {"listing_id": "good", "title": "good", "image_paths": ["good.png"]},
            {"listing_id": "hostile", "image_urls": urls, "image_paths": paths, "url": listing_url},
        ]
        feed.write_bytes(b"".join(json.dumps(row).encode("utf-8", "surrogatepass") + b"\n" for row in rows))
        try:
            summary = ingest(store, blobs, LIMITS, open_source(str(feed), name=source), fetch=fetch)
            again = ingest(store, blobs, LIMITS, open_source(str(feed), name=source), fetch=fetch)
        except Exception:
            url_tally.cases += 1
            url_tally.tracebacks += 1
            raise
        url_tally.count("all images landed" if summary.images_failed == 0 else "some images quarantined")
        with store.engine.connect() as conn:
            landed = set(
                conn.execute(sa.select(t.listings.c.listing_id).where(t.listings.c.source == source)).scalars()
            )
        state = store.source_state(source)
        half = "good" not in landed or state is None or not (state[3] or {}).get("complete")
        if half:
            url_tally.half_written += 1
        assert not half, (landed, state)
        assert summary.quarantined + len(landed) == 2, summary
        assert again.read == 0
        for host in asked:
            check_host(host)  # only well-formed hosts ever reach the resolver
        asked.clear()

    try:
        case()
    finally:
        store.close()


@pytest.fixture(scope="module")
def url_http_tally() -> Iterator[Tally]:
    tally = Tally("URLs over HTTP (check image_urls, webhooks)")
    yield tally
    print("\n" + tally.line())
    report = os.environ.get("COUNTERSCAN_FUZZ_REPORT")
    if report:
        with Path(report).open("a", encoding="utf-8") as handle:
            handle.write("final " + tally.line() + "\n")


def test_fuzz_urls_through_the_http_server(
    server: Server,  # noqa: F811
    server_errors: _Errors,
    url_http_tally: Tally,
) -> None:
    @FUZZ
    @given(url=fuzzed_urls, as_list=st.booleans())
    def case(url: str, as_list: bool) -> None:
        body = {"title": "a cup", "image_urls": [url] if as_list else url}
        for response in (
            client.post("/v1/check", json=body),
            client.post("/v1/webhooks", json={"url": url, "events": ["suspect.new"]}),
        ):
            # 503: the check's indexes are not loaded on this server (no lifespan): URLs are judged first.
            url_http_tally.count(str(response.status_code))
            if response.status_code >= 500 and response.status_code != 503:
                url_http_tally.server_errors += 1
            if "Traceback" in response.text or server_errors.records:
                url_http_tally.tracebacks += 1
            assert response.status_code < 500 or response.status_code == 503, response.text[:500]
            assert "Traceback" not in response.text
            assert not server_errors.records, [record.getMessage() for record in server_errors.records]
        for hook in client.get("/v1/webhooks").json():
            client.delete(f"/v1/webhooks/{hook['webhook_id']}")

    with _client(server, server.owner_key) as client:
        case()
