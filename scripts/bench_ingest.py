"""Ingestion throughput: listings/s for a CSV feed into SQLite, against a baseline in the same process.

    python scripts/bench_ingest.py --rows 100000

The baseline is the floor any ingester pays: the stdlib csv reader plus one executemany of the
raw rows into an SQLite table in one transaction. counterscan does more per row (parsing and
validation, content hashes for idempotence, versions, quarantine, checkpoints); the ratio shows
what that costs.
"""

from __future__ import annotations

import argparse
import csv
import random
import sqlite3
import tempfile
import time
from pathlib import Path

from counterscan.imaging.decode import DecodeLimits
from counterscan.ingest import ingest, open_source
from counterscan.store import BlobStore, Store

COLUMNS = ["listing_id", "title", "description", "price", "currency", "seller_id", "url", "marketplace"]


def make_feed(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    words = ["sneaker", "running", "shoe", "leather", "classic", "limited", "edition", "sale", "new", "size"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for index in range(rows):
            title = " ".join(rng.choice(words) for _ in range(6))
            writer.writerow(
                [
                    f"L{index:08d}",
                    title,
                    title * 3,
                    f"{rng.uniform(5, 300):.2f}",
                    "USD",
                    f"seller-{rng.randrange(5000)}",
                    f"https://market.example/item/{index}",
                    "bench",
                ]
            )


def baseline(feed: Path, database: Path) -> float:
    started = time.perf_counter()
    connection = sqlite3.connect(database)
    connection.execute(f"create table raw ({', '.join(COLUMNS)})")
    with feed.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        with connection:
            connection.executemany(f"insert into raw values ({', '.join('?' * len(COLUMNS))})", reader)
    connection.close()
    return time.perf_counter() - started


def counterscan_ingest(feed: Path, folder: Path) -> tuple[float, int]:
    store = Store.open(f"sqlite:///{folder / 'bench.db'}")
    started = time.perf_counter()
    summary = ingest(store, BlobStore(folder / "blobs"), DecodeLimits(25_000_000, 60_000_000), open_source(str(feed)))
    elapsed = time.perf_counter() - started
    store.close()
    return elapsed, summary.new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        feed = folder / "feed.csv"
        make_feed(feed, args.rows)
        floor = baseline(feed, folder / "baseline.db")
        elapsed, landed = counterscan_ingest(feed, folder)
        assert landed == args.rows, f"only {landed} of {args.rows} rows landed"
        print(f"rows: {args.rows}")
        print(f"baseline (csv.reader + sqlite3.executemany): {args.rows / floor:,.0f} rows/s")
        print(f"counterscan ingest into SQLite:              {args.rows / elapsed:,.0f} rows/s")
        print(f"ratio counterscan / baseline: {floor / elapsed:.2f}")


if __name__ == "__main__":
    main()
