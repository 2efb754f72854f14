"""Hash banks at scale: memory, load and search of 10M hashes, each against a baseline in the same run.

    python scripts/bench_index.py [--hashes 10000000] [--queries 2000] [--store-rows 1000000]

1. Holding signals: a ``SignalTable`` (columns) against a list of ``AssetSignal`` objects (the old
   form), bytes per row measured on the same rows, then the table at ``--hashes`` rows.
2. Reading them from the store (SQLite): rows/s for ``--store-rows`` rows.
3. The persisted index: build from scratch, then the load of an unchanged index (what every scan
   and the check service does) against FAISS's own deserialisation of the same file.
4. Search at ``--hashes`` rows, 64-bit at radius 10 (pHash) and 256-bit at radius 31 (PDQ): the
   flat scan (exact) against FAISS's multi-index hashing (``IndexBinaryMultiHash``, HMA's
   choice), queries/s on one thread and recall of every answer against the flat scan's.

The hashes are shaped like a catalogue's: assets with 22 variants each that sit a few bits from
their original, and queries that are near-copies (a few bits from a variant) or unrelated.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import sqlalchemy as sa

from counterscan.matchers.index import BinaryHashIndex
from counterscan.records import AssetSignal
from counterscan.signals import SignalTable, SignalTableBuilder
from counterscan.store import Store
from counterscan.store import schema as t

VARIANTS = 22


def rss_mb() -> float:
    with Path("/proc/self/statm").open() as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 1e6


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def catalogue(rows: int, bits: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` hashes: per asset an original and variants a few bits away from it."""
    width = bits // 8
    assets = -(-rows // VARIANTS)
    originals = rng.integers(0, 256, (assets, width), dtype=np.uint8)
    hashes = np.repeat(originals, VARIANTS, axis=0)[:rows]
    flips = rng.integers(0, 256, hashes.shape, dtype=np.uint8) & rng.integers(0, 256, hashes.shape, dtype=np.uint8)
    flips &= rng.integers(0, 256, hashes.shape, dtype=np.uint8)  # about 1 bit in 8 flipped
    return np.asarray(hashes ^ flips)


def table_of(hashes: np.ndarray) -> SignalTable:
    rows, width = hashes.shape
    names = [f"crop-{i}" for i in range(VARIANTS)]
    return SignalTable(
        asset_ids=np.arange(rows, dtype=np.int64) // VARIANTS,
        brand_ids=(np.arange(rows, dtype=np.int64) // VARIANTS % 1000).astype(np.int32),
        variant_codes=(np.arange(rows) % VARIANTS).astype(np.uint16),
        variants=tuple(names),
        data=hashes.reshape(-1),
        offsets=np.arange(rows + 1, dtype=np.int64) * width,
        brand_names={i: f"brand {i}" for i in range(1000)},
    )


def holding(rows: int, sample: int, rng: np.random.Generator) -> None:
    print(f"\n1. holding signals ({sample:,} rows measured both ways, then {rows:,} as a table)")
    hashes = catalogue(sample, 64, rng)
    gc.collect()
    before = rss_mb()
    objects = [
        AssetSignal(
            i // VARIANTS, i // VARIANTS % 1000, f"brand {i // VARIANTS % 1000}", row.tobytes(), f"crop-{i % 22}"
        )
        for i, row in enumerate(hashes)
    ]
    as_objects = rss_mb() - before
    del objects
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    builder = SignalTableBuilder()
    for i, row in enumerate(hashes):
        builder.add(i // VARIANTS, i // VARIANTS % 1000, f"crop-{i % 22}", row.tobytes())
    table = builder.build()
    built = time.perf_counter() - started
    as_table = rss_mb() - before
    print(f"   AssetSignal objects: {as_objects * 1e6 / sample:,.0f} bytes/row (baseline)")
    print(
        f"   SignalTable:         {as_table * 1e6 / sample:,.0f} bytes/row "
        f"({as_objects / max(as_table, 1e-9):.1f}x smaller), built at {sample / built:,.0f} rows/s"
    )
    del table
    big = table_of(catalogue(rows, 64, rng))
    size = sum(a.nbytes for a in (big.asset_ids, big.brand_ids, big.variant_codes, big.data, big.offsets))
    print(f"   {rows:,} 64-bit rows as a table: {size / 1e6:,.0f} MB of arrays ({size / rows:.0f} bytes/row)")


def reading(rows: int, rng: np.random.Generator) -> None:
    print(f"\n2. reading {rows:,} signals from the store (SQLite)")
    with tempfile.TemporaryDirectory() as folder:
        store = Store.open(f"sqlite:///{folder}/bench.db")
        hashes = catalogue(rows, 64, rng)
        assets = -(-rows // VARIANTS)
        with store.engine.begin() as conn:
            conn.execute(sa.insert(t.members), [{"name": "m", "role": "member", "key_hash": "x", "created_at": _now()}])
            conn.execute(
                sa.insert(t.brands),
                [
                    {
                        "name": "B",
                        "name_key": "b",
                        "member_id": 1,
                        "aliases": [],
                        "lookalikes": [],
                        "authorised_sellers": [],
                        "categories": [],
                        "created_at": _now(),
                        "updated_at": _now(),
                    }
                ],
            )
            conn.execute(
                sa.insert(t.assets),
                [
                    {
                        "asset_id": a + 1,
                        "brand_id": 1,
                        "kind": "product",
                        "sha256": f"{a:064x}",
                        "original_name": "x",
                        "width": 1,
                        "height": 1,
                        "created_at": _now(),
                        "updated_at": _now(),
                        "created_by": "m",
                        "live_key": f"1:{a}",
                    }
                    for a in range(assets)
                ],
            )
            conn.execute(
                sa.insert(t.asset_signals),
                [
                    {
                        "asset_id": i // VARIANTS + 1,
                        "matcher": "phash",
                        "variant": f"crop-{i % VARIANTS}",
                        "signal": hashes[i].tobytes(),
                    }
                    for i in range(rows)
                ],
            )
        started = time.perf_counter()
        table = store.asset_signals("phash")
        seconds = time.perf_counter() - started
        store.close()
    assert len(table) == rows
    print(f"   {rows / seconds:,.0f} rows/s ({seconds:.1f} s); 10M rows would take {1e7 / rows * seconds:.0f} s")


def _now() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def persisted(rows: int, rng: np.random.Generator) -> None:
    print(f"\n3. the persisted index at {rows:,} 64-bit rows")
    table = table_of(catalogue(rows, 64, rng))
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        BinaryHashIndex(64, Path(folder) / "phash.npz").sync(table)
        build = time.perf_counter() - started
        started = time.perf_counter()
        index = BinaryHashIndex(64, Path(folder) / "phash.npz")
        report = index.sync(table)
        load = time.perf_counter() - started
        assert report.added == 0 and not report.rebuilt and len(index) == rows
        started = time.perf_counter()
        with np.load(Path(folder) / "phash.npz") as saved:
            faiss.deserialize_index_binary(saved["index"])
        bare = time.perf_counter() - started
    print(
        f"   build from scratch {build:.2f} s; load unchanged {load:.2f} s"
        f" = {load / bare:.1f}x FAISS's own load ({bare:.2f} s)"
    )


def searching(
    rows: int, bits: int, radius: int, queries: int, nhash: int, nflip: int, rng: np.random.Generator
) -> None:
    print(f"\n4. search, {rows:,} {bits}-bit hashes, radius {radius}, {queries:,} queries, one thread")
    hashes = catalogue(rows, bits, rng)
    picks = hashes[rng.integers(0, rows, queries // 2)]
    noise = rng.integers(0, 256, picks.shape, dtype=np.uint8) & rng.integers(0, 256, picks.shape, dtype=np.uint8)
    noise &= rng.integers(0, 256, picks.shape, dtype=np.uint8) & rng.integers(0, 256, picks.shape, dtype=np.uint8)
    near = picks ^ noise  # about 1 bit in 16 moved: re-encoded copies
    unrelated = rng.integers(0, 256, (queries - len(near), bits // 8), dtype=np.uint8)
    probe = np.ascontiguousarray(np.concatenate([near, unrelated]))
    before = rss_mb()
    started = time.perf_counter()
    flat = faiss.IndexBinaryFlat(bits)
    flat.add(hashes)
    flat_build = time.perf_counter() - started
    flat_mb = rss_mb() - before
    started = time.perf_counter()
    lims, _, ids = flat.range_search(probe, radius + 1)
    flat_seconds = time.perf_counter() - started
    truth = [set(ids[lims[i] : lims[i + 1]].tolist()) for i in range(len(probe))]
    del flat
    gc.collect()
    before = rss_mb()
    started = time.perf_counter()
    multi = faiss.IndexBinaryMultiHash(bits, nhash, bits // nhash)
    multi.nflip = nflip
    multi.add(hashes)
    multi_build = time.perf_counter() - started
    multi_mb = rss_mb() - before
    started = time.perf_counter()
    lims, _, ids = multi.range_search(probe, radius + 1)
    multi_seconds = time.perf_counter() - started
    found = [set(ids[lims[i] : lims[i + 1]].tolist()) for i in range(len(probe))]
    hits = sum(len(answer) for answer in truth)
    recall = sum(len(a & b) for a, b in zip(truth, found, strict=True)) / max(hits, 1)
    print(
        f"   flat scan (exact):   {len(probe) / flat_seconds:>9,.0f} q/s, build {flat_build:.1f} s, {flat_mb:,.0f} MB"
    )
    print(
        f"   multi-hash {nhash}x{bits // nhash} bits, {nflip} flips: {len(probe) / multi_seconds:>9,.0f} q/s "
        f"= {flat_seconds / multi_seconds:.1f}x the flat scan, build {multi_build:.1f} s, {multi_mb:,.0f} MB, "
        f"recall {recall:.4f} of {hits:,} true hits"
    )
    del multi, hashes
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hashes", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--store-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(7)
    holding(args.hashes, min(args.hashes, 1_000_000), rng)
    reading(args.store_rows, rng)
    persisted(args.hashes, rng)
    searching(args.hashes, 64, 10, args.queries, 4, 2, rng)
    searching(args.hashes, 256, 31, args.queries, 16, 1, rng)
    print(f"\npeak memory of this run: {peak_mb():,.0f} MB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
