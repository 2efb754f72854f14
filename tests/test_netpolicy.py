"""Issue 16: the outbound address policy and the local image policy, against a real server on loopback."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from counterscan.errors import UserError
from counterscan.imaging.decode import DecodeLimits
from counterscan.ingest import FetchOptions, ingest, open_source
from counterscan.ingest.http_client import BadURLError, PoliteClient, RefusedAddressError, RetryPolicy
from counterscan.ingest.netpolicy import AddressRefusedError, NetPolicy, classify
from counterscan.ingest.urls import MalformedURLError
from counterscan.store import BlobStore, Store
from tests.conftest import jpeg_bytes
from tests.feedserver import FeedServer, Reply, feed_server

LIMITS = DecodeLimits(max_bytes=5_000_000, max_pixels=40_000_000)
LOOPBACK = NetPolicy.from_cidrs(["127.0.0.0/8"])
QUICK = RetryPolicy(max_retries=0, timeout_seconds=2.0)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


def port_of(server: FeedServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def write_feed(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted({key for row in rows for key in row}))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:7f00:1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 form of 127.0.0.1
        ("2002:7f00:1::", "loopback"),  # 6to4 form of 127.0.0.1
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("172.32.0.1", None),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("fd00::1", "private"),
        ("fec0::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("0.1.2.3", "reserved"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
        ("100::1", "reserved"),
        ("4000::1", "reserved"),  # outside global unicast 2000::/3
    ],
)
def test_address_classification(address: str, expected: str | None) -> None:
    assert classify(address) == expected


def test_allow_list_lets_only_its_networks_through() -> None:
    policy = NetPolicy.from_cidrs(["10.20.0.0/16", "fd12::/16"])
    assert policy.refusal("10.20.3.4") is None and policy.refusal("::ffff:10.20.3.4") is None
    assert policy.refusal("fd12::5") is None
    assert policy.refusal("10.21.0.1") == "private"
    assert policy.refusal("127.0.0.1") == "loopback"
    assert policy.refusal("8.8.8.8") is None
    with pytest.raises(UserError, match="not a network"):
        NetPolicy.from_cidrs(["10.0.0.0/33"])


def test_check_url_names_the_setting_that_allows_it() -> None:
    policy = NetPolicy()
    with pytest.raises(AddressRefusedError, match=r"link-local.*allowed_private_networks"):
        policy.check_url("http://169.254.169.254/latest/meta-data/")
    with pytest.raises(MalformedURLError, match="scheme 'file'"):
        policy.check_url("file:///etc/passwd")
    NetPolicy(resolver=lambda host, port: ["93.184.216.34"]).check_url("https://hooks.example.com/x")


def test_feed_image_urls_on_loopback_make_no_request_unless_allow_listed(
    server: FeedServer, store: Store, blobs: BlobStore, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    server.json("/img/a.jpg", [Reply(200, jpeg_bytes(photos["coffee"]))])
    feed = write_feed(tmp_path / "feed.csv", [{"listing_id": "L1", "image_urls": f"{server.url}/img/a.jpg"}])
    refused = ingest(store, blobs, LIMITS, open_source(str(feed), name="m"), fetch=FetchOptions(max_retries=0))
    assert (refused.new, refused.images_fetched, refused.images_failed) == (1, 0, 1)
    [problem] = refused.problems
    assert "127.0.0.1 is a loopback address: refused" in problem.reason
    assert "allowed_private_networks" in problem.reason
    assert [entry.reason for entry in store.quarantined()] == [problem.reason]
    assert server.hits == []
    # Allow-listed, the next run's retry of the failed image fetches it.
    allowed = ingest(store, blobs, LIMITS, open_source(str(feed), name="m"), fetch=FetchOptions(network=LOOPBACK))
    assert allowed.images_retried_ok == 1
    assert len(server.hits_for("/img/a.jpg")) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:{port}/x",
        "http://[::1]:{port}/x",
        "http://[::ffff:127.0.0.1]:{port}/x",
    ],
)
def test_loopback_spellings_are_refused(server: FeedServer, url: str) -> None:
    server.json("/x", [Reply(200, b"secret")])
    with PoliteClient(QUICK) as client, pytest.raises(RefusedAddressError, match="loopback address: refused"):
        client.get(url.format(port=port_of(server)), max_bytes=1000)
    assert server.hits == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.1:{port}/x",
        "http://2130706433:{port}/x",  # 127.0.0.1 as one number
        "http://0177.0.0.1:{port}/x",  # octal
        "http://0x7f.0.0.1:{port}/x",
    ],
)
def test_short_and_octal_ipv4_spellings_are_malformed_before_any_lookup(server: FeedServer, url: str) -> None:
    server.json("/x", [Reply(200, b"secret")])
    with PoliteClient(QUICK) as client, pytest.raises(BadURLError, match="not a valid IPv4 address"):
        client.get(url.format(port=port_of(server)), max_bytes=1000)
    assert server.hits == []


def test_ipv6_loopback_stays_refused_when_only_ipv4_loopback_is_allowed(server: FeedServer) -> None:
    with PoliteClient(QUICK, network=LOOPBACK) as client, pytest.raises(RefusedAddressError, match="::1"):
        client.get(f"http://[::1]:{port_of(server)}/x", max_bytes=1000)


def test_redirect_from_an_allowed_host_to_a_refused_one_is_refused(server: FeedServer) -> None:
    only_here = NetPolicy.from_cidrs(["127.0.0.1/32"])
    port = port_of(server)
    server.json("/hop", [Reply(302, headers={"Location": f"http://127.0.0.2:{port}/inside"})])
    server.json("/meta", [Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})])
    server.json("/inside", [Reply(200, b"internal")])
    with PoliteClient(QUICK, network=only_here) as client:
        with pytest.raises(RefusedAddressError, match=r"127\.0\.0\.2 is a loopback address"):
            client.get(f"{server.url}/hop", max_bytes=1000)
        with pytest.raises(RefusedAddressError, match=r"169\.254\.169\.254 is a link-local address"):
            client.get(f"{server.url}/meta", max_bytes=1000)
    assert [hit.path for hit in server.hits] == ["/hop", "/meta"]


def test_connects_to_the_checked_address_without_resolving_again(server: FeedServer) -> None:
    """DNS rebinding: a name that answers 127.0.0.1 to the check and 10.x to a second lookup."""
    answers = [["127.0.0.1"], ["10.9.9.9"]]
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), 2) - 1]

    server.json("/x", [Reply(200, b"ok")])
    policy = NetPolicy.from_cidrs(["127.0.0.0/8"], resolver=rebinding)
    with policy.client(timeout=2) as client:
        response = client.get(f"http://feed.example:{port_of(server)}/x")
    assert response.content == b"ok"
    assert asked == ["feed.example"]
    assert server.hits[0].headers["host"] == f"feed.example:{port_of(server)}"


def test_bearer_token_is_not_sent_to_another_host_after_a_redirect(server: FeedServer) -> None:
    port = port_of(server)
    policy = NetPolicy.from_cidrs(["127.0.0.0/8"], resolver=lambda host, port: ["127.0.0.1"])
    server.json("/same", [Reply(302, headers={"Location": "/landing"})])
    server.json("/away", [Reply(302, headers={"Location": f"http://other.example:{port}/landing"})])
    server.json("/landing", [Reply(200, b"[]")])
    headers = {"Authorization": "Bearer s3cret"}
    with PoliteClient(QUICK, network=policy, headers=headers) as client:
        client.get(f"{server.url}/same", max_bytes=100)
        client.get(f"{server.url}/away", max_bytes=100)
    first, second = server.hits_for("/landing")
    assert first.headers.get("authorization") == "Bearer s3cret"
    assert "authorization" not in second.headers and second.headers["host"] == f"other.example:{port}"
    assert all(hit.headers.get("authorization") == "Bearer s3cret" for hit in server.hits_for("/same"))
    assert server.hits_for("/away")[0].headers.get("authorization") == "Bearer s3cret"


def test_http_source_keeps_the_urls_own_query_and_is_policed(
    server: FeedServer, store: Store, blobs: BlobStore, tmp_path: Path
) -> None:
    server.json("/feed", lambda query: {"items": [{"listing_id": "q1"}] if query.get("page") == "1" else []})
    mapping = tmp_path / "m.toml"
    mapping.write_text('[http]\npagination = "page"\n')
    url = f"{server.url}/feed?category=shoes&page=9"
    with pytest.raises(UserError, match="loopback address: refused"):
        ingest(store, blobs, LIMITS, open_source(url, mapping=mapping), fetch=FetchOptions(network=LOOPBACK))
    assert server.hits == []
    summary = ingest(
        store, blobs, LIMITS, open_source(url, mapping=mapping, network=LOOPBACK), fetch=FetchOptions(network=LOOPBACK)
    )
    assert summary.new == 1
    assert [hit.query for hit in server.hits_for("/feed")][:2] == [
        {"category": "shoes", "page": "1"},
        {"category": "shoes", "page": "2"},
    ]


def test_cli_ingest_obeys_the_allow_list_setting(server: FeedServer, tmp_path: Path) -> None:
    from tests.conftest import Cli

    server.json("/feed", [Reply(200, json.dumps([{"listing_id": "c1"}]).encode())])
    cli = Cli(tmp_path / "home")
    refused = cli("ingest", f"{server.url}/feed", expect=2)
    assert "allowed_private_networks" in refused.stderr and server.hits == []
    allowed = cli("ingest", f"{server.url}/feed", env={"COUNTERSCAN_ALLOWED_PRIVATE_NETWORKS": "127.0.0.0/8"})
    assert "new 1" in allowed.stdout


# -- local image paths ------------------------------------------------------------------------


def test_local_image_paths_stay_inside_the_feed_folder(
    store: Store, blobs: BlobStore, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    feed_dir = tmp_path / "feed"
    outside = tmp_path / "elsewhere"
    feed_dir.mkdir()
    outside.mkdir()
    (feed_dir / "in.jpg").write_bytes(jpeg_bytes(photos["coffee"]))
    (outside / "secret.jpg").write_bytes(jpeg_bytes(photos["moon"]))
    (feed_dir / "link.jpg").symlink_to(outside / "secret.jpg")
    os.mkfifo(feed_dir / "pipe.jpg")
    rows = [
        {"listing_id": "ok", "image_paths": "in.jpg"},
        {"listing_id": "abs-in", "image_paths": str(feed_dir / "in.jpg")},
        {"listing_id": "dotdot", "image_paths": "../elsewhere/secret.jpg"},
        {"listing_id": "abs-out", "image_paths": str(outside / "secret.jpg")},
        {"listing_id": "symlink", "image_paths": "link.jpg"},
        {"listing_id": "fifo", "image_paths": "pipe.jpg"},
        {"listing_id": "system", "image_paths": "/etc/passwd"},
    ]
    feed = write_feed(feed_dir / "feed.csv", rows)
    started = time.monotonic()
    summary = ingest(store, blobs, LIMITS, open_source(str(feed), name="local"))
    assert time.monotonic() - started < 30  # the FIFO did not hang the reader
    assert (summary.new, summary.images_fetched, summary.images_failed) == (7, 2, 5)
    reasons = {re.search(r"line (\d+)", problem.record)[1]: problem.reason for problem in summary.problems}  # type: ignore[index]
    assert "contains '..': refused" in reasons["4"]
    for record in ("5", "6", "8"):
        assert "outside the feed's folder: refused" in reasons[record]
        assert "local_image_roots" in reasons[record]
    assert "not a regular file" in reasons["7"]
    stored = {p.read_bytes() for p in blobs.root.rglob("*") if p.is_file()}
    assert stored == {jpeg_bytes(photos["coffee"])}

    rooted = FetchOptions(local_roots=(outside,))
    again = ingest(store, blobs, LIMITS, open_source(str(feed), name="local"), fetch=rooted)
    assert again.images_retried_ok == 2  # the absolute path and the symlink into the allowed root
