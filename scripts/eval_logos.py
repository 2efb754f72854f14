"""Logos inside real photos: precision, recall, average precision and brand accuracy on FlickrLogos-27.

    python scripts/eval_logos.py --data ../shared/data/flickrlogos27-train [--per-brand 5] [--no-official]

For each of the 27 brands, the annotated logo boxes of ``--per-brand`` photos (chosen by a fixed
seed, never by looking at results) are cropped into logo assets, and the brand's official SVG
logo is added where simple-icons or gilbarbara-logos (beside ``--data``) has one; every other photo
of the training set is a positive for its brand, and real photos with no logo (scikit-image's and
scikit-learn's samples) are negatives. The logo matchers a default scan runs (``--matchers`` to
choose others) each look at every photo; a photo counts as detected when the best evidence of all
of them names its brand (together: the brand the cold-start scorer ranks first, from all their
evidence, as a scan scores a listing); a detection naming another brand, or any detection on a
negative, is a false positive. Metrics are printed for all positives and for the even- and odd-numbered halves
(settings were chosen on the even half only), for each matcher alone and together: precision and
recall of every detection, AP, the best recall at precision 0.98 or more, and how many of the 50
highest-scoring detections name the right brand; then each brand's recall and each matcher's
cost per photo. ``--cache`` keeps each matcher's evidence per
photo in a folder so that a change to one matcher re-runs only that one.

    python scripts/eval_logos.py --ocr [--limit N]

OCR alone (a separate part): the share of logo photos in which the "ocr" image matcher reads the
brand's name (honestly spelt, disguised or look-alike), per brand and per half, with brands
registered by their usual names; reads naming another brand, reads on the no-logo photos, and the
reading cost per photo (CPU time, one thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import pickle
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_images

from counterscan.config import Settings
from counterscan.imaging.decode import DecodeLimits, Picture, decode
from counterscan.matchers import IMAGE_MATCHERS, AssetIndex, ImageMatcher, default_logo_matchers
from counterscan.matchers.ocr import READ_SIDE, OcrMatcher, read_picture
from counterscan.matchers.ocr_engine import ReaderOptions, TextReader
from counterscan.ranking.metrics import average_precision
from counterscan.ranking.ranker import cold_start_scores
from counterscan.records import AssetSignal, Brand, Evidence
from counterscan.registry.uploads import rasterise_svg

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


Found = list[list[Evidence]]


def report(label: str, truth: list[str | None], predicted: list[str | None], scores: list[float]) -> None:
    correct = [p is not None and p == t for p, t in zip(predicted, truth, strict=True)]
    detected = sum(p is not None for p in predicted)
    positives = sum(t is not None for t in truth)
    precision = sum(correct) / max(1, detected)
    recall = sum(correct) / max(1, positives)
    # AP over positives: ranked by score, a hit counts only when it names the right brand.
    ap = average_precision(scores, [int(c) for c in correct]) * recall
    on_negatives = sum(1 for p, t in zip(predicted, truth, strict=True) if t is None and p is not None)
    order = sorted((i for i, p in enumerate(predicted) if p is not None), key=lambda i: -scores[i])
    hits = np.cumsum([correct[i] for i in order]) if order else np.zeros(0)
    precise = [hits[k] for k in range(len(order)) if hits[k] / (k + 1) >= PRECISE]
    top = sum(correct[i] for i in order[:TOP])
    print(f"  {label:32} precision {precision:.3f}  recall {recall:.3f}  AP {ap:.3f}  "
          f"recall@P{PRECISE} {max(precise, default=0) / max(1, positives):.3f}  "
          f"top {TOP} right {top}/{min(TOP, len(order))}  detections on no-logo photos {on_negatives}")  # fmt: skip


PRECISE = 0.98
TOP = 50


def best(found: Found) -> tuple[list[str | None], list[float]]:
    """Each photo's verdict: the brand of its strongest evidence, and that evidence's score."""
    return [f[0].brand if f else None for f in found], [f[0].score if f else 0.0 for f in found]


def together(*found: Found) -> tuple[list[str | None], list[float]]:
    """Each photo's verdict from every matcher's evidence, scored as a scan scores a listing."""
    predicted: list[str | None] = []
    scores: list[float] = []
    for per_photo in zip(*found, strict=True):
        evidence = [e for matcher in per_photo for e in matcher]
        ranked = cold_start_scores(evidence)
        if not ranked or ranked[0].best is None or ranked[0].score <= 0:
            predicted.append(None)
            scores.append(0.0)
            continue
        predicted.append(evidence[ranked[0].best].brand)
        scores.append(ranked[0].score)
    return predicted, scores


def load_assets(data: Path, per_brand: int, seed: int, use_official: bool) -> tuple[
    list[tuple[int, str, bytes, bool]], dict[str, str], set[str]
]:  # fmt: skip
    """(brand id, brand, PNG, is official) per logo asset; each photo's brand; the photos cropped."""
    boxes: dict[str, list[tuple[str, tuple[int, int, int, int]]]] = defaultdict(list)
    brand_of: dict[str, str] = {}
    for line in (data / "flickr_logos_27_dataset_training_set_annotation.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 7:
            name, brand = parts[0], parts[1]
            x1, y1, x2, y2 = (int(v) for v in parts[3:7])
            if x2 - x1 >= 16 and y2 - y1 >= 16:
                boxes[brand].append((name, (x1, y1, x2, y2)))
            brand_of[name] = brand
    rng = random.Random(seed)
    assets: list[tuple[int, str, bytes, bool]] = []
    asset_images: set[str] = set()
    for brand_id, brand in enumerate(sorted(boxes), start=1):
        names = sorted({name for name, _box in boxes[brand]})
        for name in rng.sample(names, min(per_brand, len(names))):
            asset_images.add(name)
            picture = Image.open(data / "images" / name).convert("RGB")
            for box_name, box in boxes[brand]:
                if box_name == name:
                    assets.append((brand_id, brand, png(picture.crop(box)), False))
        if use_official:
            assets += [(brand_id, brand, logo, True) for logo in official_logos(data, brand)]
    return assets, brand_of, asset_images


def eval_brands(assets: list[tuple[int, str, bytes, bool]]) -> list[Brand]:
    """The brands of the logo assets, registered by their usual names (as in ``--ocr``)."""
    labels = dict(sorted({(brand_id, label) for brand_id, label, _png, _official in assets}))
    return [
        Brand(brand_id=brand_id, name=OCR_PROFILES.get(label, (label, ()))[0], member="eval",
              aliases=OCR_PROFILES.get(label, (label, ()))[1])
        for brand_id, label in labels.items()
    ]  # fmt: skip


def run(
    matcher: ImageMatcher[AssetIndex], assets: list[tuple[int, str, bytes, bool]], pictures: list[tuple[str, bytes]]
) -> tuple[Found, list[float]]:
    """Evidence for every picture, and the matcher's time per picture (encode and query)."""
    signals = [
        AssetSignal(asset_id, brand_id, brand, signal, variant)
        for asset_id, (brand_id, brand, picture, _official) in enumerate(assets, start=1)
        for variant, signal in matcher.encode_asset(as_picture(picture))
    ]
    # The brands in scope, as a scan hands them to every index (the OCR matcher looks for their names).
    index = matcher.build_index(signals, eval_brands(assets))
    label_of = {brand_id: label for brand_id, label, _png, _official in assets}
    found: Found = []
    elapsed = []
    for name, data in pictures:
        started = time.perf_counter()
        [evidence] = index.query([(name, matcher.encode(as_picture(data)))])
        elapsed.append(time.perf_counter() - started)
        # Verdicts name the data set's brand labels ("McDonalds", not the registered "McDonald's").
        found.append([dataclasses.replace(e, brand=label_of[e.brand_id]) for e in evidence])
    return found, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickrlogos27-train"))
    parser.add_argument("--per-brand", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-official", action="store_true", help="crops only, no official SVG logos")
    parser.add_argument("--matchers", help="comma-separated image matchers (default: what a default scan runs)")
    parser.add_argument("--cache", type=Path, help="folder keeping each matcher's evidence between runs")
    parser.add_argument("--fresh", default="", help="comma-separated matchers to re-run despite the cache")
    parser.add_argument("--every", type=int, default=1, help="only every n-th positive photo (quick looks)")
    parser.add_argument("--ocr", action="store_true", help="OCR alone: the share of photos whose brand name is read")
    parser.add_argument("--limit", type=int, default=None, help="--ocr: at most this many photos")
    args = parser.parse_args()
    if args.ocr:
        ocr_alone(args.data, args.limit)
        return
    assets, brand_of, asset_images = load_assets(args.data, args.per_brand, args.seed, not args.no_official)
    photos = sorted(name for name in brand_of if name not in asset_images)[:: args.every]
    pictures = [(name, (args.data / "images" / name).read_bytes()) for name in photos]
    pictures += [(f"negative:{name}", png(image)) for name, image in negatives()]
    settings = Settings()
    if args.matchers:
        matchers = [IMAGE_MATCHERS[name.strip()](settings) for name in args.matchers.split(",")]
    else:
        matchers = default_logo_matchers(settings)
    results: dict[str, tuple[Found, list[float]]] = {}
    for matcher in matchers:
        path = args.cache / f"{matcher.name}-{args.every}.pickle" if args.cache else None
        if path is not None and path.exists() and matcher.name not in args.fresh.split(","):
            results[matcher.name] = pickle.loads(path.read_bytes())
            continue
        results[matcher.name] = run(matcher, assets, pictures)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(results[matcher.name]))
    official = sum(1 for *_rest, is_official in assets if is_official)
    print(f"logo assets: {len(assets)} ({len(assets) - official} crops from {len(asset_images)} photos, "
          f"{args.per_brand} per brand; {official} official SVG logos)")  # fmt: skip
    count = len(photos)
    print(f"positives: {count} photos, negatives: {len(pictures) - count} no-logo photos")
    truth: list[str | None] = [brand_of[name] for name in photos] + [None] * (len(pictures) - count)
    verdicts = {name: best(found) for name, (found, _t) in results.items()}
    if len(results) > 1:
        verdicts[" + ".join(results)] = together(*(found for found, _t in results.values()))
    for label, (predicted, scores) in verdicts.items():
        print(f"{label}:")
        for part, rows in (("all", slice(None)), ("even half (settings chosen here)", slice(0, None, 2)),
                           ("odd half (not looked at)", slice(1, None, 2))):  # fmt: skip
            report(part, truth[:count][rows] + truth[count:], predicted[:count][rows] + predicted[count:],
                   scores[:count][rows] + scores[count:])  # fmt: skip
    print("recall per brand (even / odd half):")
    brands = sorted({brand for brand in truth if brand is not None})
    print(f"  {'brand':10} {'photos':>6}  " + "  ".join(f"{label[:22]:>22}" for label in verdicts))
    for brand in brands:
        cells = []
        for predicted, _scores in verdicts.values():
            halves = []
            for start in (0, 1):
                members = [i for i in range(start, count, 2) if truth[i] == brand]
                halves.append(sum(predicted[i] == brand for i in members) / max(1, len(members)))
            cells.append(f"{halves[0]:.2f} / {halves[1]:.2f}")
        photos_of = sum(1 for t in truth if t == brand)
        print(f"  {brand:10} {photos_of:>6}  " + "  ".join(f"{cell:>22}" for cell in cells))
    for name, (_found, elapsed) in results.items():
        print(f"{name}: encode + match per photo median {np.median(elapsed) * 1000:.0f} ms, "
              f"90th percentile {np.percentile(elapsed, 90) * 1000:.0f} ms against {len(assets)} logos")  # fmt: skip


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
    index = matcher.build_index((), brands)
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
