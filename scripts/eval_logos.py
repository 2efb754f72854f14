"""Logos inside real photos: precision, recall, average precision and brand accuracy on FlickrLogos-27.

    python scripts/eval_logos.py --data ../shared/data/flickrlogos27-train [--per-brand 5] [--no-official]

For each of the 27 brands, the annotated logo boxes of ``--per-brand`` photos (chosen by a fixed
seed, never by looking at results) are cropped into logo assets, and the brand's official SVG
logo is added where simple-icons or gilbarbara-logos (beside ``--data``) has one; every other photo
of the training set is a positive for its brand, and real photos with no logo (scikit-image's and
scikit-learn's samples) are negatives. A photo counts as detected when the keypoint matcher's best
evidence names its brand; a detection naming another brand, or any detection on a negative, is a
false positive. Metrics are printed for all positives and for the even- and odd-numbered halves:
settings were chosen on the even half only.
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
from sklearn.datasets import load_sample_images

from counterscan.evaluate import average_precision
from counterscan.imaging import DecodeLimits
from counterscan.matchers.keypoints import KeypointMatcher
from counterscan.records import AssetSignal
from counterscan.uploads import rasterise_svg

LIMITS = DecodeLimits(max_bytes=50_000_000, max_pixels=100_000_000)
NEGATIVES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "camera", "moon", "coins",
             "gravel", "brick", "page", "grass", "immunohistochemistry", "horse", "clock")  # fmt: skip


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


OFFICIAL_NAMES = {"Cocacola": "cocacola", "McDonalds": "mcdonalds", "RedBull": "redbull"}


def official_logos(data: Path, brand: str) -> list[bytes]:
    """The brand's SVG logo from simple-icons and gilbarbara-logos, when they have it, as PNG."""
    name = OFFICIAL_NAMES.get(brand, brand.lower())
    found = []
    for folder in (data.parent / "simple-icons" / "icons", data.parent / "gilbarbara-logos" / "logos"):
        path = folder / f"{name}.svg"
        if path.exists():
            found.append(rasterise_svg(path.read_bytes(), source=str(path)))
    return found


def negatives() -> list[tuple[str, Image.Image]]:
    pictures = [(name, Image.fromarray(np.asarray(getattr(skdata, name)())).convert("RGB")) for name in NEGATIVES]
    samples = load_sample_images()
    pictures += [
        (name, Image.fromarray(image)) for name, image in zip(("china", "flower"), samples.images, strict=True)
    ]
    return pictures


def report(label: str, truth: list[str | None], predicted: list[str | None], scores: list[float]) -> None:
    correct = [p is not None and p == t for p, t in zip(predicted, truth, strict=True)]
    detected = sum(p is not None for p in predicted)
    positives = sum(t is not None for t in truth)
    precision = sum(correct) / max(1, detected)
    recall = sum(correct) / max(1, positives)
    # AP over positives: ranked by score, a hit counts only when it names the right brand.
    ap = average_precision(scores, [int(c) for c in correct]) * recall
    on_negatives = sum(1 for p, t in zip(predicted, truth, strict=True) if t is None and p is not None)
    print(f"{label:34} precision {precision:.3f}  recall {recall:.3f}  AP {ap:.3f}  "
          f"detections on no-logo photos {on_negatives}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickrlogos27-train"))
    parser.add_argument("--per-brand", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-official", action="store_true", help="crops only, no official SVG logos")
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
    official = 0

    def register(brand_id: int, brand: str, picture: bytes) -> None:
        asset_id = len({signal.asset_id for signal in signals}) + 1
        for variant, signal in matcher.encode_asset(picture):
            signals.append(AssetSignal(asset_id, brand_id, brand, signal, variant))

    for brand_id, brand in enumerate(sorted(boxes), start=1):
        names = sorted({name for name, _box in boxes[brand]})
        for name in rng.sample(names, min(args.per_brand, len(names))):
            asset_images.add(name)
            picture = Image.open(args.data / "images" / name).convert("RGB")
            for box_name, box in boxes[brand]:
                if box_name == name:
                    register(brand_id, brand, png(picture.crop(box)))
        if not args.no_official:
            for logo in official_logos(args.data, brand):
                register(brand_id, brand, logo)
                official += 1
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
    negative_truth: list[str | None] = []
    negative_predicted: list[str | None] = []
    negative_scores: list[float] = []
    for name, image in negatives():
        [found] = matcher.query(index, [(name, matcher.encode(png(image)))])
        negative_truth.append(None)
        negative_predicted.append(found[0].brand if found else None)
        negative_scores.append(found[0].score if found else 0.0)
    assets = len({signal.asset_id for signal in signals})
    print(f"logo assets: {assets} ({assets - official} crops from {len(asset_images)} photos, "
          f"{args.per_brand} per brand; {official} official SVG logos)")  # fmt: skip
    print(f"positives: {len(photos)} photos, negatives: {len(negative_truth)} no-logo photos")
    for label, rows in (("all", slice(None)), ("even half (settings chosen here)", slice(0, None, 2)),
                        ("odd half (not looked at)", slice(1, None, 2))):  # fmt: skip
        report(label, truth[rows] + negative_truth, predicted[rows] + negative_predicted,
               scores[rows] + negative_scores)  # fmt: skip
    correct = [p == t for p, t in zip(predicted, truth, strict=True) if p is not None]
    print(f"brand accuracy among detections on positives: {sum(correct) / max(1, len(correct)):.3f}")
    print(f"matching time per photo: median {np.median(elapsed) * 1000:.0f} ms against {assets} logos")


if __name__ == "__main__":
    main()
