"""Review UI latency with many suspects: the queue page and a suspect page, over real HTTP.

    python scripts/bench_review.py --suspects 100000            # SQLite under a temporary home
    python scripts/bench_review.py --suspects 100000 --db postgresql+psycopg://postgres@127.0.0.1:5432/test

Builds a store through the store's own batch writers (ingestion batches, scan results, verdicts on
a tenth of the suspects), serves the app with uvicorn on loopback, signs in as an analyst and a
member, and times each page (median and 95th percentile of --repeat requests, after one warm-up).
The baseline, timed in the same process on the same store, is the CLI's queue
(``store.suspects(limit=50)``): the same queue query, in the CLI's rank order, as ``Suspect`` records.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from counterscan.config import Settings
from counterscan.records import Evidence, ImageOutcome, IngestedListing, Listing, ScanResult
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.store import BlobStore, Store
from counterscan.store.queue import QueueFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.reviewsite import serve

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
MARKETS = ("shopzone", "bazaar", "megamart", "tradepost")
BATCH = 5000


def build(settings: Settings, count: int) -> tuple[str, str]:
    rng = random.Random(7)
    blobs = BlobStore(settings.blob_dir)
    pictures = []
    for index in range(20):
        pixels = np.random.default_rng(index).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        path = Path(tempfile.mkdtemp()) / "p.png"
        Image.fromarray(pixels).save(path)
        pictures.append(blobs.put(path.read_bytes()))
    with Store.open(settings.database_url) as store:
        owner = add_member(store, "owner")
        analyst = add_member(store, "analyst", role="analyst")
        brands = [
            add_brand(store, owner.member if index == 0 else add_member(store, f"m{index}").member, f"Brand{index}")
            for index in range(5)
        ]
        scan_id = store.start_scan()
        for start in range(0, count, BATCH):
            items = [
                IngestedListing(
                    listing=Listing(
                        source="bench",
                        listing_id=f"L{number:07d}",
                        title=f"Listing {number} sneakers replica",
                        price=float(rng.randint(5, 200)),
                        currency="USD",
                        seller_id=f"s{number % 3000}",
                        seller_name=f"Seller {number % 3000}",
                        marketplace=MARKETS[number % len(MARKETS)],
                    ),
                    images=(ImageOutcome(ref=f"img{number}.jpg", sha256=pictures[number % len(pictures)]),),
                )
                for number in range(start, min(start + BATCH, count))
            ]
            store.commit_ingest_batch("bench", items, [], None)
            keys = store.listing_keys("bench", [item.listing.listing_id for item in items])
            results = []
            for item in items:
                brand = brands[rng.randrange(len(brands))]
                score = rng.random()
                evidence = Evidence(
                    matcher="phash",
                    brand_id=brand.brand_id,
                    brand=brand.name,
                    score=score,
                    reason=f"image is a near-copy of {brand.name} asset (pHash distance 4/64, original)",
                    image_sha256=item.images[0].sha256,
                    distance=4.0,
                )
                pk = keys[item.listing.listing_id]
                results.append(
                    ScanResult(listing_pk=pk, score=score, brand_id=brand.brand_id, evidence=(evidence,), best=0)
                )
            store.write_results(scan_id, results)
            judged = [(result.listing_pk, int(result.brand_id or 0)) for result in results[: len(results) // 10]]
            store.record_suspect_verdicts(judged, verdict="counterfeit", note=None, analyst="analyst", via="bench")
        store.finish_scan(scan_id, status="done", listings_scanned=count)
    return owner.api_key, analyst.api_key


def sign_in(client: httpx.Client, key: str) -> None:
    form = client.get("/review/login")
    found = CSRF.search(form.text)
    assert found
    response = client.post("/review/login", data={"csrf": found.group(1), "api_key": key})
    assert response.status_code == 303, response.text


def timed(client: httpx.Client, url: str, repeat: int) -> tuple[float, float]:
    assert client.get(url).status_code == 200, url
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, url
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suspects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in a temporary home)")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-review-"))
    settings = replace(Settings.load(home=home, environ={}), db_url=args.db)
    began = time.perf_counter()
    owner_key, analyst_key = build(settings, args.suspects)
    kind = settings.database_url.split(":")[0]
    print(f"built {args.suspects:,} suspects in {time.perf_counter() - began:.0f} s ({kind})")

    with Store.open(settings.database_url) as store:
        store.suspects(limit=50)
        samples = []
        for _ in range(max(3, args.repeat // 4)):
            began = time.perf_counter()
            store.suspects(limit=50, status="new")
            samples.append((time.perf_counter() - began) * 1000)
        baseline = statistics.median(samples)
        top = store.queue_page(QueueFilter(), limit=1).rows[0]
        deep = store.queue_page(QueueFilter(), limit=1000).next_cursor
        brand_id = store.brand("Brand0").brand_id
    print(f"baseline: CLI queue store.suspects(limit=50, status=new): {baseline:.1f} ms (median, in process)")

    pages = {
        "queue, default": "/review/",
        "queue, status=new": "/review/?status=new",
        "queue, status=counterfeit": "/review/?status=counterfeit",
        "queue, one brand": f"/review/?brand={brand_id}",
        "queue, marketplace + min score": "/review/?marketplace=bazaar&min_score=0.5",
        "queue, one seller": "/review/?seller=s17",
        "queue, page 21 (keyset)": f"/review/?after={deep}",
        "queue, oldest first": "/review/?sort=oldest",
        "suspect page": f"/review/suspects/{top.listing_pk}/{top.brand_id}",
        "seller page": f"/review/sellers/{top.seller_id}",
    }
    # The per-request access log would drown the table.
    logging.getLogger("counterscan.access").setLevel(logging.WARNING)
    with serve(settings) as url:
        for label, key in (("analyst", analyst_key), ("member", owner_key)):
            with httpx.Client(base_url=url, timeout=60) as client:
                sign_in(client, key)
                print(f"-- signed in as {label}")
                for name, page in pages.items():
                    if label == "member" and page.startswith(("/review/suspects", "/review/sellers", "/review/?brand")):
                        continue
                    median, p95 = timed(client, page, args.repeat)
                    flag = "" if name.startswith(("suspect", "seller")) or median < 200 else "  OVER 200 ms"
                    ratio = median / baseline
                    print(f"{name:34s} median {median:7.1f} ms  p95 {p95:7.1f} ms  ({ratio:4.2f}x baseline){flag}")


if __name__ == "__main__":
    main()
