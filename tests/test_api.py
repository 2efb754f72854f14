"""The members' HTTP API, served by a real uvicorn server on 127.0.0.1 and called with httpx."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand, set_product
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.store import BlobStore, Store
from tests.conftest import jpeg_bytes, png_bytes

UPLOAD_CAP = 400_000


@dataclass(frozen=True)
class Server:
    url: str
    owner_key: str
    rival_key: str
    analyst_key: str
    settings: Settings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    settings = replace(Settings.load(home=tmp_path / "home", db_url=db_url, environ={}), max_upload_bytes=UPLOAD_CAP)
    store = Store.open(settings.database_url)
    owner = add_member(store, "acme-group")
    rival = add_member(store, "rival")
    analyst = add_member(store, "inspector", role="analyst")
    add_brand(store, owner.member, "Acme", keywords=["Roadrunner"])
    add_brand(store, rival.member, "Rival")
    store.close()
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not running.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield Server(f"http://127.0.0.1:{port}", owner.api_key, rival.api_key, analyst.api_key, settings)
    running.should_exit = True
    thread.join(timeout=10)


def _client(server: Server, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def _asset_count(server: Server) -> int:
    store = Store.open(server.settings.database_url)
    try:
        return len(store.assets(include_removed=True))
    finally:
        store.close()


def _blob_count(server: Server) -> int:
    root = server.settings.blob_dir
    return sum(1 for path in root.rglob("*") if path.is_file()) if root.exists() else 0


def test_upload_list_delete_round_trip(server: Server, photos: dict[str, Image.Image]) -> None:
    with _client(server, server.owner_key) as client:
        assert client.get("/v1/me").json()["name"] == "acme-group"
        assert [brand["name"] for brand in client.get("/v1/brands").json()] == ["Acme"]
        response = client.post(
            "/v1/brands/Acme/assets",
            data={"kind": "product"},
            files=[
                ("files", ("front.jpg", jpeg_bytes(photos["coffee"]), "image/jpeg")),
                ("files", ("notes.txt", b"not a picture", "text/plain")),
            ],
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert [asset["original_name"] for asset in body["added"]] == ["front.jpg"]
        assert body["rejected"][0]["name"] == "notes.txt" and "not a recognised image" in body["rejected"][0]["reason"]
        listed = client.get("/v1/brands/Acme/assets").json()
        product = next(asset for asset in listed if asset["kind"] == "product")
        deleted = client.delete(f"/v1/assets/{product['asset_id']}")
        assert deleted.status_code == 200 and deleted.json()["removed"] is True
        assert all(asset["kind"] == "text" for asset in client.get("/v1/brands/Acme/assets").json())
        history = client.get("/v1/brands/Acme/assets", params={"history": "true"}).json()
        assert any(asset["removed"] for asset in history)


def test_wrong_or_missing_key_is_401_and_writes_nothing(server: Server, photos: dict[str, Image.Image]) -> None:
    before = (_asset_count(server), _blob_count(server))
    for key in (None, "cs_not-a-real-key"):
        with _client(server, key) as client:
            response = client.post(
                "/v1/brands/Acme/assets", files=[("files", ("a.jpg", jpeg_bytes(photos["coffee"]), "image/jpeg"))]
            )
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert client.get("/v1/brands").status_code == 401
    with httpx.Client(base_url=server.url, headers={"X-API-Key": server.owner_key}) as client:
        assert client.get("/v1/me").status_code == 200  # the other header works too
    assert (_asset_count(server), _blob_count(server)) == before


def test_another_members_brand_is_403_and_writes_nothing(server: Server, photos: dict[str, Image.Image]) -> None:
    before = (_asset_count(server), _blob_count(server))
    with _client(server, server.rival_key) as client:
        response = client.post(
            "/v1/brands/Acme/assets", files=[("files", ("a.jpg", jpeg_bytes(photos["coffee"]), "image/jpeg"))]
        )
        assert response.status_code == 403
        assert "may not change brand 'Acme'" in response.json()["detail"]
        assert client.get("/v1/brands/Acme").status_code == 403
        assert client.get("/v1/results", params={"brand": "Acme"}).status_code == 403
        acme_asset = 1  # the keyword Roadrunner
        assert client.delete(f"/v1/assets/{acme_asset}").status_code == 403
    assert (_asset_count(server), _blob_count(server)) == before


def test_oversized_upload_is_413_and_writes_nothing(server: Server, photos: dict[str, Image.Image]) -> None:
    before = (_asset_count(server), _blob_count(server))
    big = png_bytes(photos["hubble_deep_field"].resize((900, 900)))
    assert len(big) > UPLOAD_CAP
    with _client(server, server.owner_key) as client:
        response = client.post("/v1/brands/Acme/assets", files=[("files", ("big.png", big, "image/png"))])
        assert response.status_code == 413
    assert (_asset_count(server), _blob_count(server)) == before


def test_non_image_is_415_and_writes_nothing(server: Server) -> None:
    before = (_asset_count(server), _blob_count(server))
    with _client(server, server.owner_key) as client:
        response = client.post(
            "/v1/brands/Acme/assets",
            files=[("files", ("logo.png", b"%PDF-1.7 definitely not a PNG", "image/png"))],
        )
        assert response.status_code == 415
        assert "not a recognised image" in response.json()["detail"]["rejected"][0]["reason"]
        assert client.post("/v1/brands/Acme/assets", data={"kind": "logo"}).status_code == 400
    assert (_asset_count(server), _blob_count(server)) == before


def test_analyst_reads_everything_members_only_their_own(server: Server) -> None:
    with _client(server, server.analyst_key) as client:
        assert [brand["name"] for brand in client.get("/v1/brands").json()] == ["Acme", "Rival"]
        assert client.get("/v1/brands/Rival").status_code == 200
        assert client.get("/v1/results").json() == []
        assert client.post("/v1/brands/Acme/assets", files=[("files", ("a", b"x", "text/plain"))]).status_code == 403
    with _client(server, server.owner_key) as client:
        assert client.get("/v1/brands/Nope").status_code == 404


def _as_before(record: Any, *extra: tuple[str, Any]) -> dict[str, Any]:
    """A record as the API wrote it before it had response models: ``asdict`` sent as JSON."""
    return {**json.loads(json.dumps(asdict(record))), **dict(extra)}


def _same_fields(answer: Any, records: Sequence[dict[str, Any]]) -> None:
    rows = answer if isinstance(answer, list) else [answer]
    assert len(rows) == len(records) and rows, (answer, records)
    for row, record in zip(rows, records, strict=True):
        assert list(row) == list(record)  # the same fields in the same order
        for name, value in record.items():
            assert row[name] == value and type(row[name]) is type(value), (name, row[name], value)


def test_answers_are_the_stored_records_field_for_field(
    server: Server, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    with _client(server, server.owner_key) as client:
        made = client.post("/v1/webhooks", json={"url": "https://93.184.216.34/hook", "secret": "s", "min_score": 0})
        assert made.status_code == 201, made.text
        uploaded = client.post(
            "/v1/brands/Acme/assets", files=[("files", ("cup.jpg", jpeg_bytes(photos["coffee"]), "x"))]
        )
        assert uploaded.status_code == 201, uploaded.text
    store = Store.open(server.settings.database_url)
    try:
        owner = store.member("acme-group")
        set_product(store, owner, "Acme", "Espresso cup", msrp=20, currency="usd")
        feed = tmp_path / "feed.jsonl"
        feed.write_text('{"listing_id": "a1", "title": "Roadrunner replica", "price": 3}\n')
        ingest(store, BlobStore(server.settings.blob_dir), decode_limits(server.settings), open_source(str(feed)))
        run_scan(store, server.settings)
        (hook,) = store.webhooks()
        (asset,) = (asset for asset in store.assets("Acme") if asset.kind == "product")
        expected = {
            "/v1/me": [_as_before(owner)],
            "/v1/brands": [_as_before(brand) for brand in store.brands(member_id=owner.member_id)],
            "/v1/brands/Acme": [_as_before(store.brand("Acme"))],
            "/v1/brands/Acme/assets": [_as_before(found) for found in store.assets("Acme")],
            "/v1/results": [_as_before(found) for found in store.suspects(limit=100)],
            "/v1/webhooks": [_as_before(hook)],
            "/v1/webhooks/deliveries": [_as_before(found) for found in store.deliveries(member_id=owner.member_id)],
        }
    finally:
        store.close()
    assert expected["/v1/brands/Acme"][0]["products"] == [{"name": "Espresso cup", "msrp": 20.0, "currency": "USD"}]
    assert len(expected["/v1/webhooks/deliveries"]) == 1 and len(expected["/v1/results"]) == 1
    _same_fields(made.json(), [_as_before(hook, ("secret", "s"))])
    _same_fields(uploaded.json(), [{"added": [_as_before(asset)], "already_present": [], "rejected": []}])
    with _client(server, server.owner_key) as client:
        for path, records in expected.items():
            _same_fields(client.get(path).json(), records)
        removed = client.delete(f"/v1/assets/{asset.asset_id}").json()
        _same_fields(removed, [_as_before(replace(asset, removed=True))])
        _same_fields(client.delete(f"/v1/webhooks/{hook.webhook_id}").json(), [_as_before(hook)])


def test_openapi_schema_lists_the_endpoints(server: Server) -> None:
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/brands", "/v1/brands/{brand}/assets", "/v1/assets/{asset_id}", "/v1/results"} <= set(schema["paths"])
    assert "delete" in schema["paths"]["/v1/assets/{asset_id}"]


def test_results_show_only_the_members_own_brands(
    server: Server, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    store = Store.open(server.settings.database_url)
    try:
        add_brand(store, store.member("rival"), "Beeline", keywords=["Beeline"])
        feed = tmp_path / "feed.jsonl"
        feed.write_text(
            '{"listing_id": "a1", "title": "Roadrunner replica"}\n{"listing_id": "b1", "title": "Beeline fake"}\n'
        )
        blobs = BlobStore(server.settings.blob_dir)
        ingest(store, blobs, decode_limits(server.settings), open_source(str(feed)))
        run_scan(store, server.settings)
    finally:
        store.close()
    with _client(server, server.owner_key) as client:
        assert [row["listing_id"] for row in client.get("/v1/results").json()] == ["a1"]
    with _client(server, server.rival_key) as client:
        assert [row["listing_id"] for row in client.get("/v1/results").json()] == ["b1"]
    with _client(server, server.analyst_key) as client:
        assert sorted(row["listing_id"] for row in client.get("/v1/results").json()) == ["a1", "b1"]


def test_a_listing_with_evidence_for_two_brands_is_in_both_owners_results(
    server: Server, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    store = Store.open(server.settings.database_url)
    blobs = BlobStore(server.settings.blob_dir)
    try:
        asset = tmp_path / "rival.jpg"
        asset.write_bytes(jpeg_bytes(photos["coffee"], 95))
        limits = upload_limits(server.settings)
        matchers = image_matchers(server.settings)
        add_asset_files(
            store, blobs, limits, matchers, store.member("rival"), brand="Rival", kind="product", paths=[asset]
        )
        (tmp_path / "copy.jpg").write_bytes(jpeg_bytes(photos["coffee"].resize((300, 200)), 60))
        feed = tmp_path / "feed.jsonl"
        feed.write_text('{"listing_id": "both", "title": "Roadrunner replica 1:1", "image_paths": "copy.jpg"}\n')
        ingest(store, blobs, decode_limits(server.settings), open_source(str(feed)))
        run_scan(store, server.settings)
    finally:
        store.close()
    for key, brand in ((server.owner_key, "Acme"), (server.rival_key, "Rival")):
        with _client(server, key) as client:
            rows = client.get("/v1/results").json()
            assert [(row["listing_id"], row["brand"]) for row in rows] == [("both", brand)]
    with _client(server, server.analyst_key) as client:
        rows = client.get("/v1/results").json()
        assert sorted(row["brand"] for row in rows if row["listing_id"] == "both") == ["Acme", "Rival"]
