"""Logos inside real photos: precision, recall, average precision and brand accuracy on FlickrLogos-27.

    python scripts/eval_logos.py --data ../shared/data/flickrlogos27-train [--per-brand 3]

For each of the 27 brands, the annotated logo boxes of ``--per-brand`` photos (chosen by a fixed
seed, never by looking at results) are cropped into logo assets; every other photo of the
training set is a positive for its brand, and real photos with no logo (scikit-image's samples)
are negatives. A photo counts as detected when the keypoint matcher's best evidence names its
brand; a detection naming another brand, or any detection on a negative, is a false positive.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from counterscan.evaluate import average_precision
from counterscan.imaging import DecodeLimits
from counterscan.matchers.keypoints import KeypointMatcher
from counterscan.records import AssetSignal

LIMITS = DecodeLimits(max_bytes=50_000_000, max_pixels=100_000_000)
NEGATIVES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "camera", "moon", "coins",
             "gravel", "brick", "page", "grass", "immunohistochemistry", "horse", "clock")  # fmt: skip


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickrlogos27-train"))
    parser.add_argument("--per-brand", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    boxes: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = defaultdict(list)
    brand_of: dict[str, str] = {}
    for line in (args.data / "flickr_logos_27_dataset_training_set_annotation.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 7:
            name, brand = parts[0], parts[1]
            x1, y1, x2, y2 = (int(v) for v in parts[3:7])
            if x2 - x1 >= 16 and y2 - y1 >= 16:
                boxes[brand].append((name, (x1, y1, x2, y2)))
            brand_of[name] = brand
    rng = random.Random(args.seed)
    matcher = KeypointMatcher(LIMITS)
    signals: list[AssetSignal] = []
    asset_images: set[str] = set()
    for brand_id, brand in enumerate(sorted(boxes), start=1):
        names = sorted({name for name, _box in boxes[brand]})
        for name in rng.sample(names, min(args.per_brand, len(names))):
            asset_images.add(name)
            picture = Image.open(args.data / "images" / name).convert("RGB")
            for box_name, box in boxes[brand]:
                if box_name == name:
                    for variant, signal in matcher.encode_asset(png(picture.crop(box))):
                        signals.append(AssetSignal(len(signals) + 1, brand_id, brand, signal, variant))
    index = matcher.build_index(signals)
    photos = sorted(name for name in brand_of if name not in asset_images)
    truth: list[str | None] = []
    predicted: list[str | None] = []
    scores: list[float] = []
    elapsed: list[float] = []
    for name in photos:
        data = (args.data / "images" / name).read_bytes()
        started = time.perf_counter()
        [found] = matcher.query(index, [(name, matcher.encode(data))])
        elapsed.append(time.perf_counter() - started)
        truth.append(brand_of[name])
        predicted.append(found[0].brand if found else None)
        scores.append(found[0].score if found else 0.0)
    for name in NEGATIVES:
        image = Image.fromarray(np.asarray(getattr(skdata, name)())).convert("RGB")
        [found] = matcher.query(index, [(name, matcher.encode(png(image)))])
        truth.append(None)
        predicted.append(found[0].brand if found else None)
        scores.append(found[0].score if found else 0.0)
    detected = [p is not None for p in predicted]
    correct = [p is not None and p == t for p, t in zip(predicted, truth, strict=True)]
    positives = sum(1 for t in truth if t is not None)
    precision = sum(correct) / max(1, sum(detected))
    recall = sum(correct) / positives
    ap = average_precision(scores, [int(c) for c in correct]) * (sum(correct) / positives if positives else 0)
    false_on_negatives = sum(1 for p, t in zip(predicted, truth, strict=True) if t is None and p is not None)
    print(f"logo assets: {len(signals)} crops from {len(asset_images)} photos ({args.per_brand} per brand)")
    print(f"positives: {positives} photos, negatives: {len(NEGATIVES)} no-logo photos")
    print(f"precision {precision:.3f}  recall {recall:.3f}  average precision {ap:.3f}")
    print(f"brand accuracy among detections {precision:.3f}; detections on no-logo photos {false_on_negatives}")
    print(f"matching time per photo: median {np.median(elapsed) * 1000:.0f} ms against {len(signals)} logos")


if __name__ == "__main__":
    main()
