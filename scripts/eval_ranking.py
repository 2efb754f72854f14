"""The trained ranker against the cold-start scorer, side by side, on a held-out half.

    python scripts/eval_ranking.py [--listings 300]

Builds the labelled set of ``counterscan.ranking.labelled`` (bundled demo pictures, listings with known
labels), scans it, records verdicts for half of the listings (the training half), trains the
ranker and re-scores; then prints average precision and precision@10 of both scorers on the
other half, which the ranker never saw.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

from counterscan.config import Settings
from counterscan.ranking.labelled import build
from counterscan.ranking.metrics import average_precision, precision_at_k
from counterscan.ranking.training import train
from counterscan.review.queue import decide
from counterscan.scan.batch import run_scan
from counterscan.store import Store


def scores(store: Store) -> dict[str, float]:
    return {suspect.listing_id: suspect.score for suspect in store.suspects(include_clean=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listings", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        settings = Settings.load(home=Path(temporary) / "home", environ={})
        labelled = build(settings, Path(temporary) / "images", listings=args.listings)
        ids = sorted(labelled.labels)
        random.Random(0).shuffle(ids)
        training_ids, held_out = ids[: len(ids) // 2], ids[len(ids) // 2 :]
        store = Store.open(settings.database_url)
        try:
            run_scan(store, settings)
            cold = scores(store)
            for listing_id in training_ids:
                verdict = "counterfeit" if labelled.labels[listing_id] else "legit"
                decide(store, listing_id, verdict=verdict, note=None, analyst="eval")
            report = train(store, actor="eval")
            run_scan(store, settings, rescan_all=True)
            trained = scores(store)
        finally:
            store.close()
        truth = [labelled.labels[i] for i in held_out]
        print(f"{len(held_out)} held-out listings ({sum(truth)} counterfeit); trained on {len(training_ids)}")
        print(report.line())
        print(f"{'scorer':12} {'AP':>6} {'P@10':>6}")
        for label, table in (("cold-start", cold), ("trained", trained)):
            values = [table.get(i, 0.0) for i in held_out]
            print(f"{label:12} {average_precision(values, truth):6.3f} {precision_at_k(values, truth, 10):6.3f}")


if __name__ == "__main__":
    main()
