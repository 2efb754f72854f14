"""Real-time checks on a real uvicorn server on 127.0.0.1: same answer as a batch scan, readiness
while indexes reload, what each kind of key may see, pre-hashed images, stored checks."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from PIL import Image

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.imaging.decode import Picture
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.service.webhooks import Deliverer
from counterscan.store import BlobStore, Store
from tests.conftest import jpeg_bytes
from tests.feedserver import Reply, feed_server
from tests.webhook_receiver import receiver


@dataclass(frozen=True)
class Running:
    url: str
    settings: Settings
    keys: dict[str, str]

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[who]}"}, timeout=60)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, httpx.get(f"{url}/readyz").text
        time.sleep(0.1)


@pytest.fixture
def checking(tmp_path: Path, db_url: str, photos: dict[str, Image.Image]) -> Iterator[Callable[..., Running]]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**changes: object) -> Running:
        base = Settings.load(home=tmp_path / "home", db_url=db_url, environ={})
        settings = replace(base, allowed_private_networks=("127.0.0.1/32",), **changes)  # type: ignore[arg-type]
        store = Store.open(settings.database_url)
        owner = add_member(store, "acme-group")
        rival = add_member(store, "rival")
        market = add_member(store, "bazaar", role="marketplace")
        analyst = add_member(store, "inspector", role="analyst")
        add_brand(store, owner.member, "Acme", keywords=["Roadrunner"])
        add_brand(store, rival.member, "Beeline", keywords=["Beeline"])
        folder = tmp_path / "assets"
        folder.mkdir()
        (folder / "coffee.jpg").write_bytes(jpeg_bytes(photos["coffee"]))
        blobs = BlobStore(settings.blob_dir)
        add_asset_files(
            store,
            blobs,
            upload_limits(settings),
            image_matchers(settings),
            owner.member,
            brand="Acme",
            kind="product",
            paths=[folder],
        )
        store.close()
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        _wait_ready(url)
        keys = {"owner": owner.api_key, "rival": rival.api_key, "market": market.api_key, "analyst": analyst.api_key}
        return Running(url, settings, keys)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=15)


def completed(client: httpx.Client, answer: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    """The complete answer of a check: this one, or once its costly matchers finish in the background."""
    deadline = time.monotonic() + timeout
    while answer["status"] == "pending":
        assert time.monotonic() < deadline, "the check did not complete"
        time.sleep(0.05)
        reply = client.get(f"/v1/check/{answer['check_id']}")
        assert reply.status_code == 200, reply.text
        answer = reply.json()
    return answer


def _photo(photos: dict[str, Image.Image], name: str) -> bytes:
    # Re-encoded smaller and at another quality: a seller's copy, not the brand's file.
    copy = photos[name].copy()
    copy.thumbnail((500, 500))
    return jpeg_bytes(copy, quality=75)


def test_check_equals_a_batch_scan_of_the_same_listing(
    checking: Callable[..., Running], photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    running = checking()
    picture = _photo(photos, "coffee")
    fields = {"title": "Roadrunner espresso cup, factory replica", "price": "12", "currency": "USD", "seller_id": "s1"}
    with running.client("analyst") as analyst:
        response = analyst.post(
            "/v1/check", data={**fields, "listing_id": "c1"}, files=[("images", ("cup.jpg", picture, "image/jpeg"))]
        )
        assert response.status_code == 200, response.text
        checked = completed(analyst, response.json())
    assert checked["brand"] == "Acme" and checked["score"] > 0.5
    (acme,) = checked["suspects"]
    assert {item["matcher"] for item in acme["evidence"]} >= {"phash", "text"}

    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "cup.jpg").write_bytes(picture)
    (feed / "listings.jsonl").write_text(json.dumps({**fields, "listing_id": "b1", "image_paths": "cup.jpg"}) + "\n")
    store = Store.open(running.settings.database_url)
    try:
        ingest(store, BlobStore(running.settings.blob_dir), decode_limits(running.settings), open_source(str(feed)))
        run_scan(store, running.settings)
        (suspect,) = store.suspects()
        stored = store.evidence_of([suspect.listing_pk], except_brands=())[suspect.listing_pk]
    finally:
        store.close()
    assert (suspect.brand, suspect.score) == (checked["brand"], round(checked["score"], 4))
    assert [(item.matcher, item.asset_id, item.score, item.reason) for item in stored] == [
        (item["matcher"], item["asset_id"], item["score"], item["reason"]) for item in acme["evidence"]
    ]


def test_each_key_sees_what_it_may(checking: Callable[..., Running], photos: dict[str, Image.Image]) -> None:
    running = checking()
    form = {"title": "Roadrunner and Beeline bundle"}
    files = [("images", ("a.jpg", _photo(photos, "coffee"), "image/jpeg"))]
    answers = {}
    for who in ("market", "owner", "rival", "analyst"):
        with running.client(who) as client:
            answer = client.post("/v1/check", data=form, files=files)
            assert answer.status_code == 200, answer.text
            # Not stored: no "stored" member at all, as evidence a key may not see is left out, not null.
            head = ["score", "brand", "suspects", "scorer", "listing_id", "images", "check_id", "status"]
            assert list(answer.json()) == [*head, "pending"]  # OCR reads the photo after the answer
            answers[who] = {item["brand"]: item for item in answer.json()["suspects"]}
    assert set(answers["market"]) == {"Acme", "Beeline"}
    assert all(set(item) == {"brand", "score"} for item in answers["market"].values())
    assert "evidence" in answers["owner"]["Acme"] and "evidence" not in answers["owner"]["Beeline"]
    assert "evidence" in answers["rival"]["Beeline"] and "evidence" not in answers["rival"]["Acme"]
    assert all("evidence" in item for item in answers["analyst"].values())
    assert {name: item["score"] for name, item in answers["market"].items()} == {
        name: item["score"] for name, item in answers["analyst"].items()
    }
    with httpx.Client(base_url=running.url) as anonymous:
        assert anonymous.post("/v1/check", data=form).status_code == 401


@pytest.mark.slow
def test_readiness_flips_while_an_index_reloads_and_new_assets_match(
    checking: Callable[..., Running], photos: dict[str, Image.Image]
) -> None:
    running = checking(check_refresh_seconds=2.0)
    rocket = _photo(photos, "rocket")
    files = [("images", ("r.jpg", rocket, "image/jpeg"))]
    with running.client("owner") as owner:
        assert owner.post("/v1/check", files=files).json()["suspects"] == []
        uploaded = owner.post(
            "/v1/brands/Acme/assets", files=[("files", ("rocket.jpg", jpeg_bytes(photos["rocket"]), "image/jpeg"))]
        )
        assert uploaded.status_code == 201, uploaded.text
        changed_at = time.monotonic()
        stale = httpx.get(f"{running.url}/readyz")
        assert stale.status_code == 503 and "reloading" in stale.json()["reason"]
        _wait_ready(running.url, timeout=60)
        assert time.monotonic() - changed_at < 60
        (found,) = owner.post("/v1/check", files=files).json()["suspects"]
    assert found["brand"] == "Acme" and any(item["matcher"] == "phash" for item in found["evidence"])


def test_pre_hashed_images_and_image_urls(checking: Callable[..., Running], photos: dict[str, Image.Image]) -> None:
    running = checking()
    picture = _photo(photos, "coffee")
    phash = next(matcher for matcher in image_matchers(running.settings) if matcher.name == "phash")
    hexes = phash.encode(Picture.open(picture, decode_limits(running.settings))).hex()
    with running.client("owner") as owner:
        answer = owner.post("/v1/check/signals", json={"title": "cup", "images": [{"phash": hexes}]})
        assert answer.status_code == 200, answer.text
        (acme,) = answer.json()["suspects"]
        assert acme["brand"] == "Acme" and [item["matcher"] for item in acme["evidence"]] == ["phash"]
        bad = owner.post("/v1/check/signals", json={"images": [{"phash": "xyz"}]})
        assert bad.status_code == 400 and "hex" in bad.json()["detail"]

        with feed_server() as feed:
            feed.route("/cup.jpg", lambda _p, _q, _h: Reply(body=picture, headers={"Content-Type": "image/jpeg"}))
            fetched = owner.post("/v1/check", json={"title": "a cup", "image_urls": [f"{feed.url}/cup.jpg"]})
            assert fetched.status_code == 200, fetched.text
            assert [item["brand"] for item in fetched.json()["suspects"]] == ["Acme"]
            missing = owner.post("/v1/check", json={"image_urls": [f"{feed.url}/missing.jpg"]})
            assert missing.status_code == 422 and "missing.jpg" in missing.json()["detail"]
        refused = owner.post("/v1/check", json={"image_urls": ["http://169.254.169.254/latest/meta-data"]})
        assert refused.status_code == 422 and "refused" in refused.json()["detail"]


def test_stored_checks_join_the_review_queue(checking: Callable[..., Running], photos: dict[str, Image.Image]) -> None:
    running = checking()
    with running.client("market") as market:
        answer = market.post(
            "/v1/check?store=true",
            data={"title": "Roadrunner replica", "listing_id": "m-77"},
            files=[("images", ("a.jpg", _photo(photos, "coffee"), "image/jpeg"))],
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["stored"] == {"source": "check:bazaar", "listing_id": "m-77"}
    assert list(answer.json())[-1] == "stored"
    store = Store.open(running.settings.database_url)
    try:
        (suspect,) = store.suspects()
    finally:
        store.close()
    assert (suspect.listing_id, suspect.brand, suspect.score) == ("m-77", "Acme", round(answer.json()["score"], 4))


def test_bombs_and_non_images_are_413_and_415(checking: Callable[..., Running]) -> None:
    from tests.test_bombs import png_bomb, use_bomb

    running = checking()
    with running.client("owner") as owner:
        for name, data in (("tall.png", png_bomb(1, 59_000_000)), ("square.png", png_bomb(7_700, 7_700))):
            answer = owner.post("/v1/check", files=[("images", (name, data, "image/png"))])
            assert answer.status_code == 413 and "image 1" in answer.json()["detail"], answer.text
        answer = owner.post("/v1/check", files=[("images", ("bomb.svg", use_bomb(), "image/svg+xml"))])
        assert answer.status_code == 415, answer.text  # the check reads raster photos only
        answer = owner.post("/v1/check", files=[("images", ("notes.txt", b"not a picture", "text/plain"))])
        assert answer.status_code == 415 and "not a recognised image" in answer.json()["detail"]


def test_costly_matchers_finish_after_the_answer_and_a_signed_webhook_says_so(
    checking: Callable[..., Running], photos: dict[str, Image.Image]
) -> None:
    running = checking()
    fields = {"title": "Roadrunner espresso cup", "listing_id": "bg1"}
    with receiver() as hook, running.client("owner") as owner:
        made = owner.post("/v1/webhooks", json={"url": hook.url, "events": ["check.completed"]})
        assert made.status_code == 201, made.text
        hook.secret = made.json()["secret"]
        response = owner.post("/v1/check", data=fields, files=[("images", ("cup.jpg", _photo(photos, "coffee")))])
        assert response.status_code == 200, response.text
        first = response.json()
        # The answer came from the hashes and the words; the costly matchers the product photos turn
        # on (copies, OCR) were still looking at the photo.
        assert first["status"] == "pending" and first["pending"] == ["copies", "ocr"]
        assert first["brand"] == "Acme"
        assert {item["matcher"] for item in first["suspects"][0]["evidence"]} & {"copies", "ocr"} == set()
        done = completed(owner, first)
        assert done["status"] == "complete" and done["check_id"] == first["check_id"]
        assert "pending" not in done or done["pending"] == []
        # Another member's key does not see it.
        with running.client("rival") as rival:
            assert rival.get(f"/v1/check/{first['check_id']}").status_code == 404

        store = Store.open(running.settings.database_url)
        deliverer = Deliverer(store, running.settings)
        try:
            assert deliverer.send_due().delivered == 1
            assert deliverer.send_due().delivered == 0  # delivered once
        finally:
            deliverer.close()
            store.close()
    (delivery,) = hook.received
    assert delivery.event == "check.completed" and delivery.signature_ok
    assert delivery.body["check_id"] == first["check_id"] and delivery.body["answer"]["score"] == done["score"]
