"""Precision on brands whose names are ordinary words: innocent listings against counterfeits.

    python scripts/eval_precision.py [--data data/eval/precision] [--threshold 0.5] [--verbose]

The labelled set (``data/eval/precision``: ``brands.toml`` and ``listings.jsonl``) holds brand words
in their ordinary senses (a galaxy lamp, apple slices, a sea shell), honest accessories in several
phrasings and languages ("case compatible with Galaxy S23", "Ladekabel für iPhone 15"), genuine
listings at fair prices, and counterfeits (replica vocabulary, look-alike spellings, confusable
letters, named products far under their MSRP). It runs the product as a user would, with the
default settings: brands registered with their keywords, categories, products and MSRPs, the
listings ingested from a CSV feed, a scan, the scores read back from the review queue. Each
category alternates between a development half and a check half (by its position in the file);
both are reported, with the share of each category above the threshold.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import tomllib
from collections import defaultdict
from pathlib import Path

from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits
from counterscan.registry.brands import add_brand, set_product
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.store import BlobStore, Store

DATA = Path(__file__).resolve().parent.parent / "data" / "eval" / "precision"
HALVES = ("dev", "check")


def register(store: Store, brands: list[dict[str, object]]) -> None:
    owner = add_member(store, "eval-owner").member
    for entry in brands:
        name = str(entry["name"])
        add_brand(
            store,
            owner,
            name,
            keywords=list(entry.get("keywords", [])),  # type: ignore[call-overload]
            categories=list(entry.get("categories", [])),  # type: ignore[call-overload]
            lookalikes=list(entry.get("lookalikes", [])),  # type: ignore[call-overload]
            msrp=float(entry["msrp"]),  # type: ignore[arg-type]
            currency="USD",
        )
        for product, msrp in entry.get("products", []):  # type: ignore[attr-defined]
            set_product(store, owner, name, str(product), msrp=float(msrp), currency="USD")


def scores(data: Path) -> tuple[list[dict[str, object]], dict[str, tuple[float, str]]]:
    """The listings of the set and, per listing id, its best score and the reason given."""
    listings = [json.loads(line) for line in (data / "listings.jsonl").read_text(encoding="utf-8").splitlines() if line]
    brands = tomllib.loads((data / "brands.toml").read_text(encoding="utf-8"))["brand"]
    with tempfile.TemporaryDirectory() as temporary:
        settings = Settings.load(home=Path(temporary) / "home", environ={})
        feed = Path(temporary) / "precision.csv"
        with feed.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["listing_id", "title", "price", "currency", "seller_id"])
            for number, item in enumerate(listings):
                writer.writerow([item["listing_id"], item["title"], item["price"], "USD", f"seller-{number}"])
        store = Store.open(settings.database_url)
        try:
            register(store, brands)
            ingest(store, BlobStore(settings.blob_dir), decode_limits(settings), open_source(str(feed), name="eval"))
            run_scan(store, settings)
            found: dict[str, tuple[float, str]] = {}
            for suspect in store.suspects(include_clean=True):
                if suspect.listing_id not in found or suspect.score > found[suspect.listing_id][0]:
                    found[suspect.listing_id] = (suspect.score, f"{suspect.brand}: {suspect.reason}")
        finally:
            store.close()
    return listings, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--verbose", action="store_true", help="print every listing with its score")
    args = parser.parse_args()
    listings, found = scores(args.data)
    table: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: {half: [0, 0] for half in HALVES})
    position: dict[str, int] = defaultdict(int)
    wrong = []
    for item in listings:
        kind, label = str(item["kind"]), str(item["label"])
        half = HALVES[position[kind] % 2]
        position[kind] += 1
        score, reason = found.get(str(item["listing_id"]), (0.0, ""))
        flagged = score > args.threshold
        cell = table[(label, kind)][half]
        cell[0] += int(flagged)
        cell[1] += 1
        if flagged != (label == "counterfeit"):
            wrong.append(f"  {label:11} {score:6.3f}  {item['title']}  [{reason}]")
        if args.verbose:
            print(f"{label:11} {kind:26} {score:6.3f}  {item['title']}  [{reason}]")
    print(f"{'label':11} {'category':26} {'dev > ' + str(args.threshold):>12} {'check':>8} {'all':>8}")
    totals: dict[str, dict[str, list[int]]] = defaultdict(lambda: {half: [0, 0] for half in HALVES})
    for (label, kind), halves in sorted(table.items()):
        cells = [f"{halves[half][0]}/{halves[half][1]}" for half in HALVES]
        both = [halves["dev"][0] + halves["check"][0], halves["dev"][1] + halves["check"][1]]
        print(f"{label:11} {kind:26} {cells[0]:>12} {cells[1]:>8} {both[0]:>4}/{both[1]:<3}")
        for half in HALVES:
            totals[label][half][0] += halves[half][0]
            totals[label][half][1] += halves[half][1]
    for label in sorted(totals):
        parts = []
        for half in HALVES:
            flagged, count = totals[label][half]
            parts.append(f"{half} {flagged}/{count} ({flagged / max(1, count):.0%})")
        print(f"{label} above {args.threshold}: " + ", ".join(parts))
    if wrong:
        print("wrongly placed:")
        print("\n".join(wrong))


if __name__ == "__main__":
    main()
