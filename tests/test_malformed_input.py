"""Issue 23: malformed input never blocks a feed or answers a 500.

One parser judges every outbound URL before any name is looked up (feed images, HTTP sources, the
check's ``image_urls``, webhooks); at ingest a malformed URL costs only its image, and whatever one
row raises costs only that row. Over a real server (uvicorn on loopback), malformed URLs, chunked
bodies past the cap and over-long fields are 4xx answers naming the field, never a 5xx or a
traceback in the log.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from counterscan.errors import DataError
from counterscan.imaging.decode import DecodeLimits
from counterscan.ingest import FetchOptions, ingest, open_source
from counterscan.ingest.mapping import parse_mapped
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.ingest.urls import MalformedURLError, check_host, parse_url
from counterscan.records import Rejected
from counterscan.registry.members import add_member
from counterscan.service.check import listing_from_fields
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from counterscan.store.storable import MAX_FIELD_CHARS
from tests.conftest import jpeg_bytes
from tests.test_check import Running, checking  # noqa: F401  (a real server, its check indexes warm)

LIMITS = DecodeLimits(max_bytes=5_000_000, max_pixels=40_000_000)
UPLOAD_CAP = 400_000

MALFORMED = {
    "http://0177.0.0.1:8080/x.jpg": "leading zero in '0177' (octal forms are ambiguous)",
    "http://256.1.1.1/x.jpg": "part 256 is over 255",
    "http://1.2.3.999/x.jpg": "part 999 is over 255",
    "http://127.1/x.jpg": "2 parts, an address has 4",
    "http://0x7f.0.0.1/x.jpg": "hexadecimal part '0x7f'",
    "http://[::1/x.jpg": "unbalanced '[' or ']' around the host",
    "http://[zzzz]/x.jpg": "the bracketed host is not a valid IPv6 address",
    "http://[fe80::1%25eth0]/x.jpg": "IPv6 zone ids are not allowed",
    "http://xn--/x.jpg": "is not a valid international name",
    "http://LOCALHOST./x.jpg": "ends with a dot",
    "http://a b.example/x.jpg": "the host part holds ' '",
    "http://a..b.example/x.jpg": "has an empty label",
    "http://-a.example/x.jpg": "is not letters, digits and inner hyphens",
    "http://example.com:0/x.jpg": "port 0 is not a number from 1 to 65535",
    "http://example.com:99999/x.jpg": "port 99999 is not a number from 1 to 65535",
    "http://example.com:8o/x.jpg": "port '8o' is not a number",
    "http://user@evil@example.com/x.jpg": "more than one '@' before the host",
    "http:///x.jpg": "has no host",
    "http:x.jpg": "no '//' after the scheme",
    "javascript:alert(1)": "unsupported URL scheme 'javascript'",
}


@pytest.mark.parametrize("url", list(MALFORMED))
def test_a_malformed_url_is_a_typed_error_with_its_reason(url: str) -> None:
    with pytest.raises(MalformedURLError) as raised:
        parse_url(url)
    message = str(raised.value)
    assert MALFORMED[url] in message
    assert "\n" not in message


def test_well_formed_urls_parse_to_their_ascii_host_and_port() -> None:
    assert parse_url("https://Bücher.Example/a.jpg").host == "xn--bcher-kva.example"
    assert parse_url("http://[::ffff:7f00:1]:8080/x").host == "::ffff:7f00:1"
    assert parse_url("http://user:pw@img_1.example.com/x y.jpg").port == 80
    assert parse_url("https://93.184.216.34/x").port == 443
    assert check_host("[::1]") == "::1"


def test_a_malformed_host_never_reaches_the_resolver() -> None:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"]

    policy = NetPolicy(resolver=resolver)
    for url in MALFORMED:
        with pytest.raises(MalformedURLError):
            policy.check_url(url)
    for host in ("256.1.1.1", "LOCALHOST.", "xn--", "a b", "a..b"):
        with pytest.raises(MalformedURLError):
            policy.resolve(host, 80)
    assert asked == []


# -- ingest: a bad image costs its image, a bad row its row; the batch lands; re-runs go on ------


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["listing_id", "title", "image_paths", "image_urls"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def feed_folder(tmp_path: Path, photos: dict[str, Image.Image]) -> Path:
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(jpeg_bytes(photos["coffee"]))
    (folder / "adir.jpg").mkdir()  # a folder named like a picture
    return folder


def test_malformed_image_urls_and_a_folder_cost_only_their_images(
    store: Store, blobs: BlobStore, feed_folder: Path
) -> None:
    rows = [{"listing_id": f"g{i}", "title": f"good {i}", "image_paths": "good.jpg"} for i in range(5)]
    rows += [
        {"listing_id": f"u{n}", "title": "malformed URL", "image_paths": "good.jpg", "image_urls": url}
        for n, url in enumerate(MALFORMED)
        if url.startswith("http")
    ]
    rows.append({"listing_id": "dir", "title": "a folder as a picture", "image_paths": "adir.jpg;good.jpg"})
    feed = _write_csv(feed_folder / "feed.csv", rows)
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.216.34"]

    fetch = FetchOptions(network=NetPolicy(resolver=resolver), max_retries=0, timeout_seconds=1.0)
    summary = ingest(store, blobs, LIMITS, open_source(str(feed), name="m"), fetch=fetch)
    malformed = len(rows) - 6
    assert (summary.new, summary.quarantined) == (len(rows), 0)
    assert summary.images_failed == malformed + 1
    assert asked == []
    reasons = {entry.record: entry.reason for entry in store.quarantined("m")}
    for number, url in enumerate(url for url in MALFORMED if url.startswith("http")):
        [reason] = [text for record, text in reasons.items() if f"(listing u{number})" in record]
        assert reason.startswith(f"{url}: malformed URL: ") and MALFORMED[url] in reason, reason
    [folder_reason] = [text for record, text in reasons.items() if "(listing dir)" in record]
    assert "is a folder, not an image file" in folder_reason
    with store.engine.connect() as conn:
        landed = conn.execute(
            sa.select(t.listings.c.listing_id, sa.func.count(t.listing_images.c.sha256))
            .select_from(t.listings.join(t.listing_images))
            .group_by(t.listings.c.listing_id)
        ).all()
    # Every row landed with its good picture.
    assert dict(landed) == {row["listing_id"]: 1 for row in rows}
    # The next run is not blocked: a new row lands; the failed images are tried again and fail again.
    with feed.open("a", encoding="utf-8") as handle:
        handle.write("later,a later row,good.jpg,\n")
    again = ingest(store, blobs, LIMITS, open_source(str(feed), name="m"), fetch=fetch)
    assert (again.new, again.quarantined, again.images_retried_ok) == (1, 0, 0)
    assert asked == []


def test_an_http_source_with_a_malformed_url_is_refused_before_any_lookup() -> None:
    for url in ("http://[::1/feed", "http://256.1.1.1/feed", "http://xn--/feed"):
        with pytest.raises(MalformedURLError):
            open_source(url)


def test_an_unterminated_quote_past_the_field_limit_costs_one_row(
    store: Store, blobs: BlobStore, tmp_path: Path
) -> None:
    # 12,000 rows after the quote: read into one field they pass the CSV field limit.
    lines = ["listing_id,title", "a0,before"] + ['x1,"never closed'] + [f"b{i},after {i}" for i in range(12_000)]
    feed = tmp_path / "quote.csv"
    feed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = ingest(store, blobs, LIMITS, open_source(str(feed), name="q"))
    assert (summary.new, summary.quarantined) == (12_001, 1)
    [entry] = store.quarantined("q")
    assert entry.record == "quote.csv line 3"
    assert "a quote opened on line 3 is never closed" in entry.reason
    assert ingest(store, blobs, LIMITS, open_source(str(feed), name="q")).read == 0


def test_a_semicolon_csv_is_read_and_unknown_columns_are_named(
    store: Store, blobs: BlobStore, feed_folder: Path
) -> None:
    feed = feed_folder / "semi.csv"
    feed.write_text("listing_id;title;image_path;colour\ns1;one;good.jpg;red\ns2;two;good.jpg;blue\n", "utf-8")
    summary = ingest(store, blobs, LIMITS, open_source(str(feed), name="semi"))
    assert (summary.new, summary.quarantined) == (2, 0)
    assert summary.unknown_columns == ("image_path", "colour")
    assert "unknown columns (kept as attributes): image_path (did you mean image_paths?), colour" in summary.line()


# -- over a real server: 4xx naming the field, no 5xx, no traceback -----------------------------


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_errors() -> Iterator[_Errors]:
    handler = _Errors()
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "uvicorn", "fastapi", "counterscan")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def test_malformed_urls_and_long_fields_over_http_are_4xx_naming_the_field(
    checking: Callable[..., Running],  # noqa: F811
    server_errors: _Errors,
) -> None:
    running = checking()
    with running.client("owner") as client:
        for url, reason in MALFORMED.items():
            checked = client.post("/v1/check", json={"title": "a cup", "image_urls": ["https://ok.example/a.jpg", url]})
            assert checked.status_code == 422, (url, checked.text)
            detail = checked.json()["detail"]
            assert detail.startswith("check: image_urls[1]: ") and reason in detail, detail
            hook = client.post("/v1/webhooks", json={"url": url, "events": ["suspect.new"]})
            assert hook.status_code == 400, (url, hook.text)
            assert hook.json()["detail"].startswith("webhook url: ") and reason in hook.json()["detail"]
        odd = client.post("/v1/check", json={"title": "a cup", "image_urls": {"not": "a list"}})
        assert odd.status_code == 422 and "image_urls must be a list" in odd.text
        nan = client.post(
            "/v1/check", content=b'{"title": "a cup", "price": NaN}', headers={"Content-Type": "application/json"}
        )
        assert nan.status_code == 400 and "price" in nan.text
        # Fields are held to the feed's limits: past them refused before any scoring (at the limit,
        # see the test below: scoring a 131,072-character description is not quick on a busy machine).
        over = client.post("/v1/check", json={"title": "a cup", "description": "d" * (MAX_FIELD_CHARS + 1)})
        assert over.status_code == 422
        assert (
            over.json()["detail"]
            == f"check: description: {MAX_FIELD_CHARS + 1:,} characters (at most {MAX_FIELD_CHARS:,})"
        )
        seller = client.post("/v1/check", json={"title": "a cup", "seller_id": "s" * 201})
        assert seller.status_code == 422 and "seller_id: 201 characters" in seller.text
    assert not server_errors.records, [record.getMessage() for record in server_errors.records]


def test_check_fields_at_the_feed_limits_are_taken(store: Store) -> None:
    member = add_member(store, "acme-group").member
    listing = listing_from_fields({"title": "t", "description": "d" * MAX_FIELD_CHARS, "seller_id": "s" * 200}, member)
    assert len(listing.description) == MAX_FIELD_CHARS
    with pytest.raises(DataError, match=r"check: description: 131,073 characters \(at most 131,072\)"):
        listing_from_fields({"description": "d" * (MAX_FIELD_CHARS + 1)}, member)


def test_check_bodies_past_the_cap_are_refused_as_they_stream(
    checking: Callable[..., Running],  # noqa: F811
    server_errors: _Errors,
) -> None:
    running = checking(max_upload_bytes=UPLOAD_CAP)
    sent = 0
    chunk = b"x" * 65_536

    def body() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"title": "a cup", "description": "'
        # Ten times the cap: a server that reads it all before looking would take it whole.
        while sent < 10 * UPLOAD_CAP:
            sent += len(chunk)
            yield chunk
        yield b'"}'

    with running.client("owner") as client:
        try:
            response = client.post("/v1/check", content=body(), headers={"Content-Type": "application/json"})
        except httpx.RemoteProtocolError:
            response = None  # the server may close the connection while the client still sends
        if response is not None:
            assert response.status_code == 413, response.text
            assert "over the cap" in response.json()["detail"]
            assert response.request.headers.get("transfer-encoding") == "chunked"
        # The server still answers, and a small check still works.
        small = client.post("/v1/check", json={"title": "a cup"})
        assert small.status_code == 200, small.text
        _multipart_past_the_cap(client)
        # The pre-hashed check's body is parsed by FastAPI itself: counted all the same.
        sent = 0  # the generator's count, from the start again
        try:
            hashed = client.post("/v1/check/signals", content=body(), headers={"Content-Type": "application/json"})
        except httpx.RemoteProtocolError:
            hashed = None
        if hashed is not None:
            assert hashed.status_code == 413, hashed.text

    assert not server_errors.records, [record.getMessage() for record in server_errors.records]


def _multipart_past_the_cap(client: httpx.Client) -> None:
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(2 * UPLOAD_CAP // 65_536 + 2):
            yield b"\xff" * 65_536
        yield f"\r\n--{boundary}--\r\n".encode()

    try:
        response = client.post(
            "/v1/check", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
    except httpx.RemoteProtocolError:
        return  # the server closed the connection while the client still sent
    assert response.status_code == 413, response.text
    assert response.request.headers.get("transfer-encoding") == "chunked"


def test_json_lines_with_a_bare_nan_price_quarantine_that_row(store: Store, blobs: BlobStore, tmp_path: Path) -> None:
    feed = tmp_path / "nan.jsonl"
    rows = [json.dumps({"listing_id": "a", "price": 3.5}), '{"listing_id": "b", "price": NaN}', '{"listing_id": "c"}']
    feed.write_text("\n".join(rows) + "\n", encoding="utf-8")
    summary = ingest(store, blobs, LIMITS, open_source(str(feed), name="nan"))
    assert (summary.new, summary.quarantined) == (2, 1)
    [entry] = store.quarantined("nan")
    assert entry.reason == "price NaN is not a number"


class _RowThatFails(dict[str, object]):
    """A row whose reading fails in a way no parser expects (as a broken reader's row could)."""

    def get(self, key: str, default: object = None) -> object:
        raise RuntimeError(f"cannot read {key}")


def test_whatever_one_row_raises_ends_as_its_quarantine_entry() -> None:
    outcome = parse_mapped("s", "feed.jsonl line 7", _RowThatFails(listing_id="x"), {}, None)
    assert isinstance(outcome, Rejected)
    assert (outcome.record, outcome.reason) == ("feed.jsonl line 7", "unexpected RuntimeError: cannot read listing_id")
    assert outcome.raw == {"row": {"listing_id": "x"}, "base_dir": None}
