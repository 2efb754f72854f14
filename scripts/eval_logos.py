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

    python scripts/eval_logos.py --ocr [--limit N]

OCR alone (a separate part): the share of logo photos in which the "ocr" image matcher reads the
brand's name (honestly spelt, disguised or look-alike), per brand and per half, with brands
registered by their usual names; reads naming another brand, reads on the no-logo photos, and the
reading cost per photo (CPU time, one thread).
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
from counterscan.imaging import DecodeLimits, Picture, decode
from counterscan.matchers.keypoints import KeypointMatcher
from counterscan.matchers.ocr import READ_SIDE, OcrMatcher, read_picture
from counterscan.matchers.ocr_engine import ReaderOptions, TextReader
from counterscan.records import AssetSignal, Brand
from counterscan.uploads import rasterise_svg

LIMITS = DecodeLimits(max_bytes=50_000_000, max_pixels=100_000_000)
NEGATIVES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "camera", "moon", "coins",
             "gravel", "brick", "page", "grass", "immunohistochemistry", "horse", "clock")  # fmt: skip


def as_picture(data: bytes) -> Picture:
    return Picture.open(data, LIMITS)


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
    parser.add_argument("--ocr", action="store_true", help="OCR alone: the share of photos whose brand name is read")
    parser.add_argument("--limit", type=int, default=None, help="--ocr: at most this many photos")
    args = parser.parse_args()
    if args.ocr:
        ocr_alone(args.data, args.limit)
        return
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
    matcher = KeypointMatcher()
    signals: list[AssetSignal] = []
    asset_images: set[str] = set()
    official = 0

    def register(brand_id: int, brand: str, picture: bytes) -> None:
        asset_id = len({signal.asset_id for signal in signals}) + 1
        for variant, signal in matcher.encode_asset(as_picture(picture)):
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
        [found] = matcher.query(index, [(name, matcher.encode(as_picture(data)))])
        elapsed.append(time.perf_counter() - started)
        truth.append(brand_of[name])
        predicted.append(found[0].brand if found else None)
        scores.append(found[0].score if found else 0.0)
    negative_truth: list[str | None] = []
    negative_predicted: list[str | None] = []
    negative_scores: list[float] = []
    for name, image in negatives():
        [found] = matcher.query(index, [(name, matcher.encode(as_picture(png(image))))])
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


# The brands as an owner registers them: the dataset's labels run words together ("Cocacola").
OCR_PROFILES = {
    "Cocacola": ("Coca-Cola", ("Coca Cola", "Cocacola")),
    "McDonalds": ("McDonald's", ("McDonalds",)),
    "RedBull": ("Red Bull", ("RedBull",)),
    "Nbc": ("NBC", ()),
    "Fedex": ("FedEx", ()),
}
NAME_SIGNALS = ("brand-mention", "disguised-brand", "lookalike")


def ocr_alone(data: Path, limit: int | None) -> None:
    """In how many logo photos is the brand's name read? (OCR only; no logo assets involved.)"""
    brand_of: dict[str, str] = {}
    for line in (data / "flickr_logos_27_dataset_training_set_annotation.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            brand_of[parts[0]] = parts[1]
    labels = sorted(set(brand_of.values()))
    brands = [
        Brand(brand_id=number, name=OCR_PROFILES.get(label, (label, ()))[0], member="eval",
              aliases=OCR_PROFILES.get(label, (label, ()))[1])
        for number, label in enumerate(labels, start=1)
    ]  # fmt: skip
    brand_name = {label: brand.name for label, brand in zip(labels, brands, strict=True)}
    matcher = OcrMatcher(TextReader(ReaderOptions()))
    index = matcher.index_brands(brands)
    photos = sorted(brand_of)[:limit]
    read: dict[str, bool] = {}
    wrong = 0
    cpu: list[float] = []
    for name in photos:
        raw = (data / "images" / name).read_bytes()
        image = decode(raw, LIMITS, draft_size=(READ_SIDE, READ_SIDE))
        started = time.process_time()
        text = read_picture(matcher.reader, image, Image.open(io.BytesIO(raw)).size)
        cpu.append(time.process_time() - started)
        found = matcher.match_text(index, name, text)
        truth = brand_name[brand_of[name]]
        read[name] = any(e.brand == truth and e.details.get("signal") in NAME_SIGNALS for e in found)
        wrong += any(e.brand != truth for e in found)
    on_negatives = 0
    for _name, picture in negatives():
        on_negatives += bool(matcher.match_text(index, None, read_picture(matcher.reader, picture, picture.size)))
    print(f"OCR alone, {len(photos)} logo photos of {len(labels)} brands (reader {matcher.reader.options.key()}):")
    for label, names in (("all", photos), ("even half", photos[::2]), ("odd half", photos[1::2])):
        print(f"  {label:10} brand name read in {sum(read[n] for n in names) / max(1, len(names)):.3f} of the photos")
    print(f"  photos where another brand was read: {wrong}; no-logo photos with a brand read: {on_negatives}")
    print(f"  reading cost per photo (CPU, one thread): median {np.median(cpu) * 1000:.0f} ms, "
          f"90th percentile {np.percentile(cpu, 90) * 1000:.0f} ms")  # fmt: skip
    print("  per brand: " + ", ".join(
        f"{brand_name[label]} {np.mean([read[n] for n in photos if brand_of[n] == label]):.2f}"
        for label in labels if any(brand_of[n] == label for n in photos)
    ))  # fmt: skip


if __name__ == "__main__":
    main()
