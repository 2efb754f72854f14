"""A real review site for the web UI tests: a store with two members' brands, scanned listings, uvicorn on loopback."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from PIL import Image

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.store import BlobStore, Store

MATCHERS = "phash,dhash,keypoints"
"""The test sites find logos inside photos too, so suspect pages have regions to draw."""
LISTINGS = ("a1", "a2", "a3", "a4", "r1", "c1")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Site:
    url: str
    settings: Settings
    owner_key: str
    """acme-group, owner of the brand Acme."""
    rival_key: str
    """rival, owner of the brand Rival."""
    analyst_key: str

    def store(self) -> Store:
        return Store.open(self.settings.database_url)

    def listing_pk(self, listing_id: str) -> int:
        with self.store() as store:
            return store.find_listing(listing_id)

    def brand_id(self, name: str) -> int:
        with self.store() as store:
            return store.brand(name).brand_id

    def verdict_count(self) -> int:
        with self.store() as store:
            return sum(len(store.verdicts(store.find_listing(listing_id))) for listing_id in LISTINGS)

    def audit_verdicts(self) -> list[tuple[str, str, dict[str, object]]]:
        with self.store() as store:
            return [
                (entry.actor, entry.target, dict(entry.details))
                for entry in store.audit_log(limit=1000)
                if entry.action == "verdict"
            ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def build_store(settings: Settings, photos: dict[str, Image.Image], work: Path) -> tuple[str, str, str]:
    """Acme (owned by acme-group, MSRP 100 USD) and Rival (owned by rival); listings copying their photos."""
    pictures = work / "pictures"
    pictures.mkdir(parents=True)
    for name in ("coffee", "chelsea", "rocket", "astronaut"):
        photos[name].save(pictures / f"{name}.jpg", "JPEG", quality=92)
    photos["coffee"].crop((40, 30, 600, 380)).save(pictures / "coffee-crop.jpg", "JPEG", quality=90)
    # Acme's logo: a patch of the astronaut photo, which listing a4 shows whole (the keypoints matcher finds it).
    photos["astronaut"].crop((170, 20, 400, 250)).save(pictures / "acme-logo.png")
    blobs = BlobStore(settings.blob_dir)
    with Store.open(settings.database_url) as store:
        owner = add_member(store, "acme-group")
        rival = add_member(store, "rival")
        analyst = add_member(store, "inspector", role="analyst")
        add_brand(store, owner.member, "Acme", keywords=["Acme"], msrp=100.0, currency="USD")
        add_brand(store, rival.member, "Rival", keywords=["Rival"], msrp=80.0, currency="USD")
        limits, matchers = upload_limits(settings), image_matchers(settings)
        for actor, brand, kind, picture in (
            (owner, "Acme", "product", "coffee.jpg"),
            (owner, "Acme", "logo", "acme-logo.png"),
            (rival, "Rival", "product", "chelsea.jpg"),
        ):
            paths = [pictures / picture]
            add_asset_files(store, blobs, limits, matchers, actor.member, brand=brand, kind=kind, paths=paths)
        rows = [
            ("a1", "Espresso cup gift set", 19.0, "s1", "Cup Outlet", "shopzone", "coffee.jpg"),
            ("a2", "Coffee cup, boxed", 24.0, "s1", "Cup Outlet", "shopzone", "coffee-crop.jpg"),
            ("a3", "Latte mug", 15.0, "s2", "Mug Bazaar", "bazaar", "coffee.jpg"),
            ("a4", "Acme replica cup 1:1 mirror quality", 12.0, "s3", "Replica King", "bazaar", "astronaut.jpg"),
            ("r1", "Cat poster", 9.0, "s1", "Cup Outlet", "shopzone", "chelsea.jpg"),
            ("c1", "Garden rocket toy", 30.0, "s4", "Toys", "shopzone", "rocket.jpg"),
        ]
        feed = work / "feed.jsonl"
        feed.write_text(
            "".join(
                json.dumps(
                    {
                        "listing_id": listing_id,
                        "title": title,
                        "price": price,
                        "currency": "USD",
                        "seller_id": seller,
                        "seller_name": seller_name,
                        "marketplace": market,
                        "image_paths": [f"pictures/{picture}"],
                        "url": f"https://{market}.example/item/{listing_id}",
                    }
                )
                + "\n"
                for listing_id, title, price, seller, seller_name, market, picture in rows
            )
        )
        ingest(store, blobs, decode_limits(settings), open_source(str(feed), name="market"))
        run_scan(store, settings)
    return owner.api_key, rival.api_key, analyst.api_key


@contextmanager
def serve(settings: Settings) -> Iterator[str]:
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)


@contextmanager
def signed_in(site: Site, key: str) -> Iterator[httpx.Client]:
    """An httpx client holding a session cookie, as a browser would after the sign-in form."""
    with httpx.Client(base_url=site.url, timeout=30) as client:
        form = client.get("/review/login")
        response = client.post("/review/login", data={"csrf": csrf_of(form), "api_key": key, "next": "/review/"})
        assert response.status_code == 303, response.text
        yield client


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)
