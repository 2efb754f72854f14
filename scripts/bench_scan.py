"""End-to-end scan throughput (listings/s) and peak memory, with 1 and 2 worker processes.

    python scripts/bench_scan.py --photos ../shared/data/flickrlogos27-train/images --listings 10000

Listings re-use real photos, re-encoded and transformed (crops, resizes, JPEG quality), under
new ids; ``--distinct-images`` of them are different pictures (the rest repeat, as sellers
repeat photos). 50 of the photos are registered as product assets. Each configuration scans a
fresh copy of the same ingested store. The baseline, run in the same process on the same
distinct images, is the naive loop: full decode + imagehash.phash + a numpy brute-force search.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.matchers.perceptual import crop_fraction
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.scan.executors import InlineExecutor, ProcessExecutor
from counterscan.store import BlobStore, Store


def make_images(photos: list[Path], folder: Path, count: int, rng: random.Random) -> list[Path]:
    folder.mkdir(parents=True)
    made = []
    for index in range(count):
        image = Image.open(photos[index % len(photos)]).convert("RGB")
        cut = rng.uniform(0, 0.08)
        image = crop_fraction(image, (cut, cut, cut, cut))
        scale = rng.uniform(0.5, 1.0)
        image = image.resize((max(64, int(image.width * scale)), max(64, int(image.height * scale))))
        path = folder / f"{index:06d}.jpg"
        image.save(path, "JPEG", quality=rng.randint(50, 90))
        made.append(path)
    return made


def build(home: Path, photos: list[Path], listings: int, distinct: int) -> None:
    rng = random.Random(11)
    settings = Settings.load(home=home, environ={})
    store = Store.open(settings.database_url)
    blobs = BlobStore(settings.blob_dir)
    owner = add_member(store, "bench").member
    add_brand(store, owner, "Bench")
    add_asset_files(
        store,
        blobs,
        upload_limits(settings),
        image_matchers(settings),
        owner,
        brand="Bench",
        kind="product",
        paths=photos[:50],
    )
    images = make_images(photos, home.parent / "images", distinct, rng)
    feed = home.parent / "feed.csv"
    with feed.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "title", "image_paths"])
        for number in range(listings):
            writer.writerow([f"B{number:07d}", "bench listing", str(images[number % distinct])])
    ingest(store, blobs, decode_limits(settings), open_source(str(feed), name="bench"))
    store.close()


def scan_copy(template: Path, target: Path, workers: int) -> tuple[float, int]:
    shutil.copytree(template, target)
    settings = Settings.load(home=target, environ={})
    store = Store.open(settings.database_url)
    executor = InlineExecutor() if workers == 1 else ProcessExecutor(workers)
    started = time.perf_counter()
    try:
        summary = run_scan(store, settings, executor=executor)
    finally:
        executor.close()
        store.close()
    return time.perf_counter() - started, summary.scanned


def baseline(images: list[Path], assets: list[Path]) -> float:
    started = time.perf_counter()
    index = np.array([imagehash.phash(Image.open(path)).hash.reshape(-1) for path in assets])
    for path in images:
        query = imagehash.phash(Image.open(io.BytesIO(path.read_bytes()))).hash.reshape(-1)
        distances = (index != query).sum(axis=1)
        _ = np.nonzero(distances <= 10)[0]
    return time.perf_counter() - started


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=Path, required=True)
    parser.add_argument("--listings", type=int, default=10_000)
    parser.add_argument("--distinct-images", type=int, default=2_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        template = root / "template" / "home"
        build(template, photos, args.listings, args.distinct_images)
        images = sorted((root / "template" / "images").glob("*.jpg"))
        naive = baseline(images, photos[:50])
        print(f"listings {args.listings}, distinct images {args.distinct_images}, assets 50")
        # The naive loop decodes and hashes every listing's image: its listings/s is its images/s.
        naive_rate = len(images) / naive
        print(f"baseline (full decode + imagehash.phash + numpy search per listing): {naive_rate:,.0f} listings/s")
        for workers in args.workers:
            elapsed, scanned = scan_copy(template, root / f"run{workers}" / "home", workers)
            assert scanned == args.listings
            rate = scanned / elapsed
            print(
                f"scan, {workers} worker(s): {rate:,.0f} listings/s, {rate / naive_rate:.2f}x baseline "
                f"(end to end: store reads, matching, evidence and score writes); peak RSS {peak_mb():,.0f} MB"
            )


if __name__ == "__main__":
    main()
