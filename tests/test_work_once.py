"""Issue 21: indexes saved once and loaded by every worker and the server; a photo encoded once."""

from __future__ import annotations

import csv
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.scan.batch import ScanStatus, run_scan
from counterscan.scan.executors import ProcessExecutor
from counterscan.store import BlobStore, Store
from tests.conftest import jpeg_bytes, load_photo
from tests.test_scan import build_world

pytestmark = pytest.mark.slow

MATCHERS = ("phash", "dhash", "keypoints", "shapes")


def _feed(settings: Settings, tmp_path: Path, name: str, photos: list[tuple[str, Path]]) -> None:
    feed = tmp_path / f"{name}.csv"
    with feed.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["listing_id", "title", "image_paths"])
        writer.writeheader()
        writer.writerows({"listing_id": key, "title": "item", "image_paths": str(path)} for key, path in photos)
    store = Store.open(settings.database_url)
    try:
        ingest(store, BlobStore(settings.blob_dir), decode_limits(settings), open_source(str(feed), name=name))
    finally:
        store.close()


def _distinct_photos(tmp_path: Path, count: int) -> list[Path]:
    """``count`` photos with distinct bytes: crops of the sample photos that no asset shows."""
    folder = tmp_path / "new-photos"
    folder.mkdir()
    paths = []
    for number in range(count):
        image = load_photo(("moon", "coins", "camera", "brick", "gravel", "page", "text", "grass")[number % 8], 320)
        cut = number // 8
        path = folder / f"{number}.jpg"
        path.write_bytes(jpeg_bytes(image.crop((cut, cut, image.width - 2 * cut, image.height - cut)), 85))
        paths.append(path)
    return paths


def _saved(settings: Settings) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_mtime_ns, path.stat().st_size) for path in (settings.home / "index").iterdir()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_workers_and_server_load_unchanged_indexes_and_a_shared_photo_is_encoded_once(
    tmp_path: Path, db_url: str
) -> None:
    settings = replace(
        Settings.load(home=tmp_path / "home", db_url=db_url, environ={}), image_matchers=",".join(MATCHERS)
    )
    build_world(settings, tmp_path, listings=12)
    store = Store.open(settings.database_url)
    try:
        logo = tmp_path / "acme-logo.png"
        load_photo("astronaut").crop((170, 20, 400, 250)).save(logo)
        add_asset_files(
            store,
            BlobStore(settings.blob_dir),
            upload_limits(settings),
            image_matchers(settings),
            store.member("owner"),
            brand="Alpha",
            kind="logo",
            paths=[logo],
        )
        first = run_scan(store, settings)
        assert first.status is ScanStatus.DONE
        assert sorted(first.indexes_built) == sorted(MATCHERS)  # nothing saved yet: each built once
        saved = _saved(settings)
        assert {name.split("-")[0] for name in saved if name.endswith(".npz")} == set(MATCHERS)

        # New listings: 40 distinct photos, and one more photo in three listings far apart.
        photos = _distinct_photos(tmp_path, 41)
        shared = photos.pop()
        rows = [(f"new-{number:03d}", path) for number, path in enumerate(photos)]
        for position in (0, 20, 40):
            rows.insert(position, (f"shared-{position}", shared))
        _feed(settings, tmp_path, "tomorrow", rows)

        pool = ProcessExecutor(2)
        try:
            second = run_scan(store, settings, executor=pool)
            workers_started = pool.pools_started
        finally:
            pool.close()
        assert workers_started == 1, "43 listings with new photos go to the worker processes"
        assert second.scanned == 43 and second.status is ScanStatus.DONE
        assert second.indexes_built == ()  # each worker loaded the saved indexes
        assert _saved(settings) == saved  # ... and wrote none of them again
        # 41 distinct photos, each encoded once by each matcher, the shared one by one worker only.
        assert second.images_encoded == dict.fromkeys(MATCHERS, 41)

        # The shared photo again, in a listing of the day after: only the matcher whose signal the
        # store does not keep (keypoints) looks at it again.
        _feed(settings, tmp_path, "day-after", [("again", shared)])
        third = run_scan(store, settings)
        assert third.images_encoded == {"phash": 0, "dhash": 0, "keypoints": 1, "shapes": 0}
        assert third.indexes_built == ()
    finally:
        store.close()

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            except httpx.TransportError:
                answer = None
            if answer is not None and answer.status_code == 200:
                break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        assert answer.json()["indexes"] == dict.fromkeys(MATCHERS, "loaded")
        assert _saved(settings) == saved
    finally:
        server.should_exit = True
        thread.join(timeout=15)
