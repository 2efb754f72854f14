"""Issue 9: incremental, locked, resumable scans on local processes and Dask; PostgreSQL concurrency."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from counterscan.config import Settings
from counterscan.errors import LockHeldError
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.registry.assets import add_asset_files, remove_asset, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import STALE_LOCK, ScanStatus, run_scan
from counterscan.scan.executors import DaskExecutor, ProcessExecutor, native_threads
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from tests.conftest import Cli, jpeg_bytes, load_photo

pytestmark = pytest.mark.slow

ASSET_PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
OTHER_PHOTOS = ("moon", "coins", "camera", "brick", "gravel", "page", "text", "grass")


def build_world(settings: Settings, tmp_path: Path, *, listings: int, sources: int = 1) -> dict[str, str]:
    """Two brands with product photos; listings re-using them (cropped, re-encoded) or showing other photos.

    Returns the expected brand per listing id ('' for clean ones).
    """
    store = Store.open(settings.database_url)
    blobs = BlobStore(settings.blob_dir)
    owner = add_member(store, "owner").member
    add_brand(store, owner, "Alpha")
    add_brand(store, owner, "Beta")
    folder = tmp_path / "assets"
    folder.mkdir(exist_ok=True)
    for index, name in enumerate(ASSET_PHOTOS):
        path = folder / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(load_photo(name), 95))
        brand = "Alpha" if index % 2 == 0 else "Beta"
        add_asset_files(
            store,
            blobs,
            upload_limits(settings),
            image_matchers(settings),
            owner,
            brand=brand,
            kind="product",
            paths=[path],
        )
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    rng = random.Random(3)
    expected: dict[str, str] = {}
    photos = {name: load_photo(name, 320) for name in ASSET_PHOTOS + OTHER_PHOTOS}
    rows: list[list[dict[str, str]]] = [[] for _ in range(sources)]
    for number in range(listings):
        reuse = number % 3 == 0
        name = ASSET_PHOTOS[number % len(ASSET_PHOTOS)] if reuse else OTHER_PHOTOS[number % len(OTHER_PHOTOS)]
        image = photos[name]
        cut = rng.randint(0, 8)
        image = image.crop((cut, cut, image.width - cut, image.height - cut))
        path = images / f"{number}.jpg"
        path.write_bytes(jpeg_bytes(image, rng.randint(60, 90)))
        listing_id = f"s{number % sources}-{number:05d}"
        expected[listing_id] = ("Alpha" if ASSET_PHOTOS.index(name) % 2 == 0 else "Beta") if reuse else ""
        rows[number % sources].append({"listing_id": listing_id, "title": "item", "image_paths": str(path)})
    for index, source_rows in enumerate(rows):
        feed = tmp_path / f"source{index}.csv"
        with feed.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["listing_id", "title", "image_paths"])
            writer.writeheader()
            writer.writerows(source_rows)
        ingest(store, blobs, decode_limits(settings), open_source(str(feed), name=f"source{index}"))
    store.close()
    return expected


def suspects_by_id(settings: Settings) -> dict[str, tuple[str | None, float]]:
    store = Store.open(settings.database_url)
    try:
        # A listing's best brand (suspects come best first; a listing may be a suspect of several brands).
        found: dict[str, tuple[str | None, float]] = {}
        for s in store.suspects(include_clean=True):
            found.setdefault(s.listing_id, (s.brand, s.score))
        return found
    finally:
        store.close()


@pytest.fixture
def world_settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings.load(home=tmp_path / "home", db_url=db_url, environ={})


def test_scan_finds_reuses_and_only_them(world_settings: Settings, tmp_path: Path) -> None:
    expected = build_world(world_settings, tmp_path, listings=30)
    store = Store.open(world_settings.database_url)
    try:
        summary = run_scan(store, world_settings)
        assert (summary.status, summary.scanned) == (ScanStatus.DONE, 30)
        assert run_scan(store, world_settings).status is ScanStatus.NOTHING_TO_DO
    finally:
        store.close()
    found = suspects_by_id(world_settings)
    assert {listing_id: brand or "" for listing_id, (brand, _score) in found.items()} == expected


def test_asset_changes_rescan_only_the_affected_brand(world_settings: Settings, tmp_path: Path) -> None:
    build_world(world_settings, tmp_path, listings=24)
    store = Store.open(world_settings.database_url)
    try:
        run_scan(store, world_settings)
        before = suspects_by_id(world_settings)
        beta_hits = {key for key, (brand, _score) in before.items() if brand == "Beta"}
        owner = store.member("owner")
        [coffee] = [asset for asset in store.assets("Beta") if asset.original_name == "coffee.jpg"]
        remove_asset(store, owner, coffee.asset_id)
        moon = tmp_path / "moon.jpg"
        moon.write_bytes(jpeg_bytes(load_photo("moon"), 95))
        add_asset_files(
            store,
            BlobStore(world_settings.blob_dir),
            upload_limits(world_settings),
            image_matchers(world_settings),
            owner,
            brand="Alpha",
            kind="product",
            paths=[moon],
        )
        summary = run_scan(store, world_settings)
        assert summary.rescanned == 24 and summary.scanned == 0 and summary.status is ScanStatus.DONE
        with store.engine.connect() as conn:
            reasons = conn.execute(sa.select(t.evidence.c.asset_id)).scalars().all()
        assert coffee.asset_id not in reasons  # the removed asset's evidence is gone
    finally:
        store.close()
    after = suspects_by_id(world_settings)
    moon_hits = {key for key, (brand, _score) in after.items() if brand == "Alpha"} - {
        key for key, (brand, _score) in before.items() if brand == "Alpha"
    }
    assert moon_hits, "the new Alpha asset matched the moon listings on the re-scan"
    still_beta = {key for key, (brand, _score) in after.items() if brand == "Beta"}
    assert still_beta and still_beta < beta_hits  # rocket re-uses kept, coffee re-uses gone


def test_local_processes_and_dask_give_the_same_suspects(tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    settings = Settings.load(home=tmp_path / "home", environ={})
    build_world(settings, tmp_path, listings=90)
    results = {}
    for label in ("inline", "processes", "dask"):
        store = Store.open(settings.database_url)
        try:
            if label == "inline":
                run_scan(store, settings, rescan_all=True)
            elif label == "processes":
                pool = ProcessExecutor(2)
                try:
                    run_scan(store, settings, executor=pool, rescan_all=True)
                finally:
                    pool.close()
            else:
                with (
                    LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
                    Client(cluster) as client,
                ):
                    executor = DaskExecutor(client=client)
                    assert executor.workers == 2
                    summary = run_scan(store, settings, executor=executor, rescan_all=True)
                    # The Dask workers loaded the indexes the earlier scans saved under HOME/index.
                    assert summary.indexes_built == ()
        finally:
            store.close()
        results[label] = suspects_by_id(settings)
    assert results["inline"] == results["processes"] == results["dask"]
    assert sum(1 for brand, _score in results["inline"].values() if brand) == 30


def test_lock_blocks_overlap_and_stale_locks_are_taken_over(world_settings: Settings, tmp_path: Path) -> None:
    build_world(world_settings, tmp_path, listings=3)
    store = Store.open(world_settings.database_url)
    try:
        store.acquire_lock("scan:source:source0", "elsewhere:1", conflicts=["scan:all"], stale_after=STALE_LOCK)
        with pytest.raises(LockHeldError, match="holder elsewhere:1"):
            run_scan(store, world_settings)
        # A scan of another source may run beside it.
        assert run_scan(store, world_settings, source="source1").status is ScanStatus.NOTHING_TO_DO
        with store.engine.begin() as conn:
            conn.execute(sa.update(t.locks).values(heartbeat_at=sa.func.now() - timedelta(hours=2)))
        assert run_scan(store, world_settings).status is ScanStatus.DONE
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.locks)).scalar_one() == 0
    finally:
        store.close()


def test_time_budget_ends_a_scan_partially_and_the_next_run_continues(tmp_path: Path) -> None:
    cli = Cli(tmp_path / "home")
    settings = Settings.load(home=tmp_path / "home", environ={})
    build_world(settings, tmp_path, listings=300)
    first = cli("scan", "--workers", "1", "--max-minutes", "0.00001", expect=11)
    assert "time budget reached" in first.stdout and "listings left" in first.stdout
    second = cli("scan", "--workers", "1")
    assert "scanned" in second.stdout
    assert "nothing to do" in cli("scan", expect=10).stdout
    assert len(suspects_by_id(settings)) == 300


def _scored(database: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            scanned = sa.select(sa.func.count()).where(t.listings.c.scanned_at.is_not(None))
            return int(conn.execute(scanned).scalar_one())
    except sa.exc.OperationalError:
        return 0
    finally:
        engine.dispose()


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_kill_9_mid_scan_frees_the_lock_ends_the_workers_and_resumes(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "home", environ={})
    total = 900
    build_world(settings, tmp_path, listings=total)
    env = {key: value for key, value in os.environ.items() if not key.startswith("COUNTERSCAN_")}
    # The hashes only: the first batches must land within the test's wait on a shared machine.
    env["COUNTERSCAN_IMAGE_MATCHERS"] = "phash,dhash"
    command = [sys.executable, "-m", "counterscan", "--home", str(settings.home), "scan", "--workers", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    database = settings.home / "counterscan.db"
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while (done := _scored(database)) < 128 or not workers:
        assert process.poll() is None and time.monotonic() < deadline, "scan ended before it could be killed"
        workers |= _children(process.pid)
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    done = _scored(database)
    assert 0 < done < total
    # The pool's workers end with the scan (no orphans)...
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "pool workers outlived the killed scan"
    # ...and its lock does not block the next scan: its holder is gone from this host.
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr  # not 12: the dead scan's lock was freed at once
    assert f"{total - done} new or changed" in resumed.stdout  # finished batches were not redone
    store = Store.open(settings.database_url)
    try:
        with store.engine.connect() as conn:
            scored = conn.execute(sa.select(sa.func.count()).where(t.listings.c.scanned_at.is_not(None))).scalar_one()
            suspects = conn.execute(sa.select(sa.func.count()).select_from(t.scores)).scalar_one()
            duplicates = conn.execute(
                sa.select(t.evidence.c.listing_pk, t.evidence.c.position)
                .group_by(t.evidence.c.listing_pk, t.evidence.c.position)
                .having(sa.func.count() > 1)
            ).all()
            with_evidence = conn.execute(
                sa.select(sa.func.count(sa.distinct(t.evidence.c.listing_pk))).select_from(t.evidence)
            ).scalar_one()
        assert scored == total and duplicates == [] and with_evidence == total // 3
        assert suspects == with_evidence  # one suspect per (listing, brand); here each listing has one brand
    finally:
        store.close()


@pytest.mark.postgres
def test_concurrent_scans_of_two_sources_and_an_upload_lose_nothing(postgres_url, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings.load(home=tmp_path / "home", db_url=postgres_url(), environ={})
    expected = build_world(settings, tmp_path, listings=120, sources=2)
    errors: list[BaseException] = []

    def scan(source: str) -> None:
        store = Store.open(settings.database_url)
        try:
            run_scan(store, settings, source=source)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    def upload() -> None:
        store = Store.open(settings.database_url)
        try:
            path = tmp_path / "late.jpg"
            path.write_bytes(jpeg_bytes(load_photo("coins"), 95))
            add_asset_files(
                store,
                BlobStore(settings.blob_dir),
                upload_limits(settings),
                image_matchers(settings),
                store.member("owner"),
                brand="Beta",
                kind="product",
                paths=[path],
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=scan, args=(f"source{i}",)) for i in range(2)] + [
        threading.Thread(target=upload)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    found = suspects_by_id(settings)
    assert set(found) == set(expected)
    assert all((found[key][0] or "") == brand for key, brand in expected.items() if brand)
    # Whatever the interleaving, the next scans leave every listing as a full re-scan would:
    # the asset uploaded during the scans (a coins photo) now flags every coins listing as Beta.
    store = Store.open(settings.database_url)
    try:
        run_scan(store, settings)
        incremental = suspects_by_id(settings)
        run_scan(store, settings, rescan_all=True)
    finally:
        store.close()
    assert incremental == suspects_by_id(settings)
    coins = [
        key for key in expected if int(key.split("-")[1]) % 3 and OTHER_PHOTOS[int(key.split("-")[1]) % 8] == "coins"
    ]
    assert coins and all(incremental[key][0] == "Beta" for key in coins)


def test_a_scan_of_one_source_leaves_the_others_to_rescan(tmp_path: Path) -> None:
    settings = Settings.load(home=tmp_path / "home", environ={})
    build_world(settings, tmp_path, listings=20, sources=2)
    store = Store.open(settings.database_url)
    try:
        run_scan(store, settings)
        moon = tmp_path / "moon.jpg"
        moon.write_bytes(jpeg_bytes(load_photo("moon"), 95))
        limits = upload_limits(settings)
        owner = store.member("owner")
        blobs = BlobStore(settings.blob_dir)
        add_asset_files(
            store, blobs, limits, image_matchers(settings), owner, brand="Beta", kind="product", paths=[moon]
        )
        assert run_scan(store, settings, source="source0").rescanned == 10
        assert run_scan(store, settings, source="source0").status is ScanStatus.NOTHING_TO_DO
        assert run_scan(store, settings, source="source1").rescanned == 10
        assert run_scan(store, settings).rescanned == 20  # the all-sources record is older than both
        assert run_scan(store, settings, source="source1").status is ScanStatus.NOTHING_TO_DO
    finally:
        store.close()


def test_print_cron(tmp_path: Path) -> None:

    out = Cli(tmp_path / "home")("schedule", "print-cron", "--at", "5 3 * * *", "--feed", "/feeds/a.csv").stdout
    line = out.strip().splitlines()[-1]
    assert line.startswith("5 3 * * * (") and "ingest /feeds/a.csv" in line and "scan --max-minutes 240" in line


@pytest.mark.parametrize("threads", [1, 2])
def test_scan_worker_processes_run_the_native_thread_count_asked_for(threads: int) -> None:
    """Each worker's FAISS (OpenMP) and OpenCV pools are sized deliberately, whatever the core count."""
    executor = ProcessExecutor(1, threads=threads)
    try:
        assert executor.pool().submit(native_threads).result() == {"faiss": threads, "opencv": threads}
    finally:
        executor.close()
