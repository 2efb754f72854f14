"""What a default scan costs a photo, on real photos with brands' logos registered, cold and warm.

    python scripts/bench_scan.py --data ../shared/data/flickrlogos27-train [--photos 800] [--brands 25]
        [--per-brand 3] [--workers 2]

``--brands`` FlickrLogos-27 brands register logo crops from the annotation file (``--per-brand``
photos each, chosen by a fixed seed, as ``eval_logos.py`` does); ``--photos`` other distinct photos
of the training set are listings, one each. Each scan runs in a fresh process on a fresh copy of
the same store, through the library's ``run_scan`` with the default matchers, so start-up (imports),
index builds or loads and worker start-up are all counted:

- **cold (today's path)**: no index saved, every worker builds every index (as each worker, scan and
  server start did before indexes were persisted);
- **warm**: the indexes the cold scan saved under ``HOME/index`` are there (a nightly scan with an
  unchanged catalogue): workers load them.

Printed per scan: CPU ms a photo (median and p90 of the per-image CPU the workers report, and the
amortised mean: all CPU of the scan's processes over the photos), listings/s, peak memory per
worker, bytes of image signals stored a photo, and the projection for 1M distinct photos on 2 and
4 cores. CPU time, not wall time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ANNOTATIONS = "flickr_logos_27_dataset_training_set_annotation.txt"


def logo_crops(data: Path, brands: int, per_brand: int, seed: int) -> tuple[dict[str, list[Path]], set[str]]:
    """Per brand, PNG crops of its annotated logos in ``per_brand`` photos; the photos cropped."""
    from PIL import Image

    boxes: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = defaultdict(list)
    for line in (data / ANNOTATIONS).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 7:
            x1, y1, x2, y2 = (int(v) for v in parts[3:7])
            if x2 - x1 >= 16 and y2 - y1 >= 16:
                boxes[parts[1]].append((parts[0], (x1, y1, x2, y2)))
    rng = random.Random(seed)
    crops: dict[str, list[Path]] = {}
    used: set[str] = set()
    folder = Path(tempfile.mkdtemp(prefix="bench-logos-"))
    for brand in sorted(boxes)[:brands]:
        names = sorted({name for name, _box in boxes[brand]})
        for name in rng.sample(names, min(per_brand, len(names))):
            used.add(name)
            picture = Image.open(data / "images" / name).convert("RGB")
            for number, (box_name, box) in enumerate(boxes[brand]):
                if box_name == name:
                    path = folder / f"{brand}-{Path(name).stem}-{number}.png"
                    picture.crop(box).save(path)
                    crops.setdefault(brand, []).append(path)
    return crops, used


def build(home: Path, data: Path, photos: int, brands: int, per_brand: int) -> int:
    """The store: brands with logo assets, and one listing per distinct photo; returns the listings."""
    import csv

    from counterscan.config import Settings
    from counterscan.ingest import ingest, open_source
    from counterscan.matchers import decode_limits, image_matchers
    from counterscan.registry.assets import add_asset_files, upload_limits
    from counterscan.registry.brands import add_brand
    from counterscan.registry.members import add_member
    from counterscan.store import BlobStore, Store

    settings = Settings.load(home=home, environ={})
    store = Store.open(settings.database_url)
    blobs = BlobStore(settings.blob_dir)
    owner = add_member(store, "bench").member
    crops, used = logo_crops(data, brands, per_brand, seed=0)
    for brand, paths in crops.items():
        add_brand(store, owner, brand)
        add_asset_files(
            store,
            blobs,
            upload_limits(settings),
            image_matchers(settings),
            owner,
            brand=brand,
            kind="logo",
            paths=paths,
        )
    listed = [path for path in sorted((data / "images").glob("*.jpg")) if path.name not in used][:photos]
    # A feed's local images must sit under its folder.
    (home.parent / "photos").mkdir()
    listed = [Path(shutil.copy(path, home.parent / "photos" / path.name)) for path in listed]
    feed = home.parent / "feed.csv"
    with feed.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "title", "image_paths"])
        writer.writerows([f"P{number:06d}", "photo", str(path)] for number, path in enumerate(listed))
    ingest(store, blobs, decode_limits(settings), open_source(str(feed), name="bench"))
    store.close()
    return len(listed)


def scan_here(home: Path, workers: int) -> None:
    """One scan in this (fresh) process; prints its figures as JSON."""
    import sqlalchemy as sa

    from counterscan.config import Settings
    from counterscan.scan.batch import run_scan
    from counterscan.scan.executors import make_executor
    from counterscan.store import Store
    from counterscan.store import schema as t

    settings = Settings.load(home=home, environ={})
    store = Store.open(settings.database_url)
    executor = make_executor("local", workers=workers, threads=settings.scan_worker_threads)
    started = time.perf_counter()
    try:
        summary = run_scan(store, settings, executor=executor)
    finally:
        executor.close()
    elapsed = time.perf_counter() - started
    with store.engine.connect() as conn:
        signal_bytes = conn.execute(sa.select(sa.func.sum(sa.func.length(t.image_signals.c.signal)))).scalar() or 0
        text_bytes = conn.execute(sa.select(sa.func.sum(sa.func.length(t.image_text.c.lines)))).scalar() or 0
    store.close()
    print(
        json.dumps(
            {
                "scanned": summary.scanned,
                "seconds": elapsed,
                "matchers": list(summary.matchers),
                "histogram": {str(k): v for k, v in summary.image_cpu_ms.items()},
                "indexes_built": list(summary.indexes_built),
                "signal_bytes": int(signal_bytes) + int(text_bytes),
                "skipped": dict(summary.stages_skipped),
            }
        )
    )


def quantile(histogram: dict[int, int], share: float) -> float:
    total = sum(histogram.values())
    running = 0
    for value in sorted(histogram):
        running += histogram[value]
        if running >= share * total:
            return float(value)
    return 0.0


def run_scan_process(home: Path, workers: int) -> dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, __file__, "--scan-here", str(home), "--workers", str(workers)],
        check=True,
        capture_output=True,
        text=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of children: the largest process so far (the scan, or one of its workers), in KB.
    figures["peak_mb"] = after.ru_maxrss / 1024
    return figures


def show(label: str, figures: dict[str, object], photos: int, workers: int) -> float:
    histogram = {int(k): int(v) for k, v in dict(figures["histogram"]).items()}  # type: ignore[call-overload]
    amortised = 1000 * float(figures["cpu_seconds"]) / photos  # type: ignore[arg-type]
    hours = amortised * 1_000_000 / 1000 / 3600
    print(
        f"{label:44} median {quantile(histogram, 0.5):6.0f} ms  p90 {quantile(histogram, 0.9):6.0f} ms  "
        f"amortised {amortised:6.0f} ms a photo  {photos / float(figures['seconds']):5.1f} listings/s  "  # type: ignore[arg-type]
        f"peak {float(figures['peak_mb']):5.0f} MB a process  "  # type: ignore[arg-type]
        f"{int(figures['signal_bytes']) / photos / 1024:5.1f} KB stored a photo  "  # type: ignore[call-overload]
        f"1M photos: {hours / 2:5.1f} h on 2 cores, {hours / 4:5.1f} h on 4"
    )
    print(
        f"{'':44} indexes built: {figures['indexes_built'] or 'none'}; stages skipped: {figures['skipped'] or 'none'}"
    )
    return amortised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickrlogos27-train"))
    parser.add_argument("--photos", type=int, default=800)
    parser.add_argument("--brands", type=int, default=25)
    parser.add_argument("--per-brand", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scan-here", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan_here is not None:
        scan_here(args.scan_here, args.workers)
        return
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        template = root / "template" / "home"
        photos = build(template, args.data, args.photos, args.brands, args.per_brand)
        shutil.rmtree(template / "index", ignore_errors=True)  # uploads need none; the cold scan starts bare
        print(f"{photos} distinct photos, {args.brands} brands' logos ({args.per_brand} photos' crops each), "
              f"{args.workers} worker(s); CPU time of every process of the scan")  # fmt: skip
        cold_home = root / "cold" / "home"
        shutil.copytree(template, cold_home)
        cold = run_scan_process(cold_home, args.workers)
        print(f"image matchers: {', '.join(cold['matchers'])}")  # type: ignore[arg-type]
        before = show("cold: every worker builds its indexes (today)", cold, photos, args.workers)
        warm_home = root / "warm" / "home"
        shutil.copytree(template, warm_home)
        shutil.copytree(cold_home / "index", warm_home / "index")
        warm = run_scan_process(warm_home, args.workers)
        after = show("warm: workers load the saved indexes", warm, photos, args.workers)
        print(f"warm / cold amortised CPU a photo: {after / before:.2f}")


if __name__ == "__main__":
    main()
