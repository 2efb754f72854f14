"""Re-used product photos: are official photos found in listings after the edits sellers make?

    python scripts/eval_reuse.py --data ../shared/data/flickrlogos27-train [--products 40] [--clean 200]

Product photos: FlickrLogos-27 training photos of half of its brands (drawn by ``--seed``, the
photos used as official product photos) and scikit-image's and scikit-learn's samples; each is
one brand's ``product`` asset. Every product photo is edited each way of ``EDITS`` with random
parameters (seeded): turned 5 and 12 degrees, cropped to a half and to a third of its area at a
random place, put in a 2x2 collage, shot in perspective, shrunk onto a plain canvas, mirrored and
cropped, framed with a sale banner, inside a "screenshot" of a shop page, resized, recompressed
and recoloured. Clean photos: FlickrLogos photos of the *other* brands only (a clean photo never
shows, by the annotations, a product brand's logo) and other scikit-image samples; a third of them are edited the same
ways (a clean collage holds only clean photos).

The product runs as a user runs it, with the default settings: a home in a temporary folder, a
member, a brand per FlickrLogos brand (its photos that brand's product photos, all showing its
logo) and per other photo, ``assets add --kind product`` of the originals, the edited
and clean photos ingested from a generated CSV feed, a scan, and each listing's score read from the
review queue. A product listing is found when its score is above 0.5 *and* its brand is the
product's; a clean listing must stay at or below 0.5. The same data also runs with
``image_matchers = "phash,dhash"`` (what a default scan ran before the copies matcher: the
"before" column; ``--no-before`` skips it).
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps
from skimage import data as skdata
from sklearn.datasets import load_sample_images

from counterscan.config import Settings
from counterscan.ingest import ingest, open_source
from counterscan.matchers import image_matchers
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.batch import run_scan
from counterscan.scan.executors import make_executor
from counterscan.store import BlobStore, Store

PRODUCT_SAMPLES = ("astronaut", "coffee", "chelsea", "rocket", "china", "flower")
CLEAN_SAMPLES = ("camera", "moon", "coins", "gravel", "brick", "page", "text", "grass", "hubble_deep_field",
                 "retina", "immunohistochemistry", "horse", "clock")  # fmt: skip
MIN_PRODUCT_SIDE = 300
"""Product photos are at least this many pixels on their shorter side."""
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
BEFORE_MATCHERS = "phash,dhash"
"""What a default scan ran for brands with product photos before the copies matcher (main at 3ffdc93)."""

Edit = Callable[[Image.Image, random.Random, list[Image.Image]], Image.Image]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default()


def _fit(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    return image.resize(
        (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.LANCZOS
    )


def _cover(image: Image.Image, width: int, height: int) -> Image.Image:
    return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)


def turned(degrees: float) -> Edit:
    def edit(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
        angle = rng.choice((-1, 1)) * degrees * rng.uniform(0.9, 1.1)
        fill = tuple(rng.randrange(200, 256) for _ in range(3))
        turned = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)
        return _fit(turned, rng.randrange(480, 720))

    return edit


def cropped(area: float, *, mirrored: bool = False) -> Edit:
    """A part of ``area`` of the picture, of a random shape and place (at most 3:1 off the original's)."""

    def edit(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
        source = ImageOps.mirror(image) if mirrored else image
        width_share = rng.uniform(max(area, np.sqrt(area / 3)), min(1.0, np.sqrt(area * 3)))
        height_share = area / width_share
        width, height = round(source.width * width_share), round(source.height * height_share)
        left, top = rng.randrange(0, source.width - width + 1), rng.randrange(0, source.height - height + 1)
        part = source.crop((left, top, left + width, top + height))
        return _fit(part, rng.randrange(400, 640))

    return edit


def collage(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    cell = rng.randrange(220, 330)
    others = rng.sample(pool, 3)
    tiles = [image, *others]
    rng.shuffle(tiles)
    gap = rng.randrange(0, 12)
    sheet = Image.new("RGB", (2 * cell + 3 * gap, 2 * cell + 3 * gap), "white")
    for number, tile in enumerate(tiles):
        sheet.paste(_cover(tile, cell, cell), (gap + (number % 2) * (cell + gap), gap + (number // 2) * (cell + gap)))
    return sheet


def perspective(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    """The picture shot at an angle: its corners moved in by up to a fifth of its size."""
    width, height = image.size
    cut = [rng.uniform(0.0, 0.2) for _ in range(8)]
    quad = (
        cut[0] * width, cut[1] * height,
        cut[2] * width, height * (1 - cut[3]),
        width * (1 - cut[4]), height * (1 - cut[5]),
        width * (1 - cut[6]), cut[7] * height,
    )  # fmt: skip
    background = Image.new("RGB", image.size, tuple(rng.randrange(40, 230) for _ in range(3)))
    source = np.array([[0, 0], [0, height], [width, height], [width, 0]], np.float32)
    target = np.array(quad, np.float32).reshape(4, 2)
    warp = cv2.getPerspectiveTransform(source, target)
    pixels = cv2.warpPerspective(np.asarray(image), warp, (width, height), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((height, width), 255, np.uint8), warp, (width, height))
    background.paste(Image.fromarray(pixels), mask=Image.fromarray(mask))
    return _fit(background, rng.randrange(480, 720))


def on_canvas(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    side = rng.randrange(600, 900)
    canvas = Image.new("RGB", (side, side), tuple(rng.randrange(180, 256) for _ in range(3)))
    small = _fit(image, round(side * rng.uniform(0.35, 0.5)))
    canvas.paste(small, (rng.randrange(0, side - small.width), rng.randrange(0, side - small.height)))
    return canvas


def banner(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    picture = _fit(image, rng.randrange(420, 600))
    band = round(picture.height * rng.uniform(0.15, 0.25))
    border = rng.randrange(8, 30)
    colour = rng.choice(((200, 20, 30), (250, 200, 0), (20, 20, 20), (230, 80, 0)))
    framed = Image.new("RGB", (picture.width + 2 * border, picture.height + band + 2 * border), colour)
    on_top = rng.random() < 0.5
    framed.paste(picture, (border, border + (band if on_top else 0)))
    draw = ImageDraw.Draw(framed)
    text = rng.choice(("SALE -50%", "HOT DEAL", "-70% TODAY", "FREE SHIPPING", "BEST PRICE"))
    y = border // 2 if on_top else border + picture.height + border // 2
    draw.text((border + 10, y + band // 6), text, font=_font(max(12, band * 2 // 3)), fill="white")
    return framed


def screenshot(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    """The picture inside a shop page: a title bar, a side column of text, buttons."""
    width, height = rng.randrange(720, 1000), rng.randrange(600, 800)
    page = Image.new("RGB", (width, height), (248, 248, 248))
    draw = ImageDraw.Draw(page)
    bar = rng.randrange(40, 70)
    draw.rectangle((0, 0, width, bar), fill=(rng.randrange(30, 90), rng.randrange(60, 140), rng.randrange(120, 220)))
    draw.text((14, bar // 4), "shop.example  |  Search products", font=_font(bar // 3), fill="white")
    side = round(width * rng.uniform(0.3, 0.4))
    picture = _fit(image, min(width - side - 40, height - bar - 40))
    left = 20 if rng.random() < 0.7 else side + 20
    page.paste(picture, (left, bar + 20))
    text_left = picture.width + 40 if left == 20 else 20
    for line in range(rng.randrange(4, 9)):
        draw.text((text_left, bar + 30 + line * 28), rng.choice(("Brand new", "Free returns", "In stock", "4.8 stars",
                                                              "Ships today", "Price: $19.99")), font=_font(18),
                  fill=(40, 40, 40))  # fmt: skip
    draw.rounded_rectangle((text_left, height - 90, text_left + 160, height - 50), 8, fill=(240, 140, 0))
    draw.text((text_left + 20, height - 82), "Add to cart", font=_font(18), fill="white")
    return page


def resized(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    return _fit(image, round(max(image.size) * rng.uniform(0.4, 1.5)))


def recompressed(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    return image  # the JPEG quality is drawn low for this edit (see QUALITY)


def recoloured(image: Image.Image, rng: random.Random, pool: list[Image.Image]) -> Image.Image:
    changed = ImageEnhance.Color(image).enhance(rng.uniform(0.2, 1.8))
    changed = ImageEnhance.Brightness(changed).enhance(rng.uniform(0.75, 1.25))
    changed = ImageEnhance.Contrast(changed).enhance(rng.uniform(0.75, 1.3))
    shift = np.array([rng.randrange(-25, 26) for _ in range(3)], np.int16)
    return Image.fromarray(np.clip(np.asarray(changed, np.int16) + shift, 0, 255).astype(np.uint8))


EDITS: dict[str, Edit] = {
    "turn 5": turned(5),
    "turn 12": turned(12),
    "crop 1/2": cropped(1 / 2),
    "crop 1/3": cropped(1 / 3),
    "collage 2x2": collage,
    "perspective": perspective,
    "canvas": on_canvas,
    "mirror+crop": cropped(0.7, mirrored=True),
    "sale banner": banner,
    "screenshot": screenshot,
    "resize": resized,
    "recompress": recompressed,
    "recolour": recoloured,
}
QUALITY = {"recompress": (25, 45)}
"""JPEG quality drawn per edit (default 70-92)."""


def sample(name: str) -> Image.Image:
    if name in ("china", "flower"):
        return Image.fromarray(load_sample_images().images[("china", "flower").index(name)])
    return Image.fromarray(np.asarray(getattr(skdata, name)())).convert("RGB")


def choose_photos(
    data: Path, products: int, clean: int, seed: int
) -> tuple[list[tuple[str, Image.Image]], list[Image.Image]]:
    """(brand, product photo) pairs and clean photos, the clean ones of other brands than the
    products'. A FlickrLogos photo is a product photo of the brand whose logo it shows (a brand's
    product photos all show its logo); each scikit-image or scikit-learn photo is a brand's own."""
    brands_of: dict[str, set[str]] = defaultdict(set)
    for line in (data / "flickr_logos_27_dataset_training_set_annotation.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            brands_of[parts[0]].add(parts[1])
    rng = random.Random(seed)
    brands = sorted({brand for found in brands_of.values() for brand in found})
    rng.shuffle(brands)
    product_brands = set(brands[: len(brands) // 2])
    files = sorted(brands_of)
    rng.shuffle(files)
    # An official product photo is no thumbnail: FlickrLogos holds photos down to 100 px.
    large = [f for f in files if min(Image.open(data / "images" / f).size) >= MIN_PRODUCT_SIDE]
    product_files = [f for f in large if brands_of[f] <= product_brands][: products - len(PRODUCT_SAMPLES)]
    clean_files = [f for f in files if not brands_of[f] & product_brands][: clean - len(CLEAN_SAMPLES)]
    if len(product_files) + len(PRODUCT_SAMPLES) < products or len(clean_files) + len(CLEAN_SAMPLES) < clean:
        sys.exit(f"not enough photos in {data} for {products} products and {clean} clean photos")

    def flickr(name: str) -> Image.Image:
        return Image.open(data / "images" / name).convert("RGB")

    product_photos = [(name, sample(name)) for name in PRODUCT_SAMPLES]
    product_photos += [("+".join(sorted(brands_of[f])), flickr(f)) for f in product_files]
    clean_photos = [sample(name) for name in CLEAN_SAMPLES] + [flickr(f) for f in clean_files]
    return [(brand, _fit(p, min(800, max(p.size)))) for brand, p in product_photos], [
        _fit(p, min(800, max(p.size))) for p in clean_photos
    ]


def build_feed(
    folder: Path, products: list[tuple[str, Image.Image]], clean: list[Image.Image], seed: int, clean_edited: float
) -> tuple[Path, dict[str, tuple[str, str | None]]]:
    """The originals as asset files, the listings' photos and their CSV; per listing its edit and
    the brand of its product photo (None: a clean photo)."""
    rng = random.Random(seed)
    (folder / "assets").mkdir(parents=True)
    (folder / "listings").mkdir()
    truth: dict[str, tuple[str, str | None]] = {}
    rows: list[dict[str, str]] = []

    def listing(image: Image.Image, edit: str, brand: str | None, quality: tuple[int, int]) -> None:
        listing_id = f"l-{len(rows):04d}"
        path = folder / "listings" / f"{listing_id}.jpg"
        image.convert("RGB").save(path, "JPEG", quality=rng.randrange(*quality))
        rows.append({"listing_id": listing_id, "title": f"Item {len(rows)}", "image_paths": f"listings/{path.name}"})
        truth[listing_id] = (edit, brand)

    for number, (brand, photo) in enumerate(products):
        photo.save(folder / "assets" / f"product-{number:03d}.jpg", "JPEG", quality=92)
        for edit, change in EDITS.items():
            listing(change(photo, rng, clean), edit, brand, QUALITY.get(edit, (70, 93)))
    for number, photo in enumerate(clean):
        others = clean[:number] + clean[number + 1 :]
        if rng.random() < clean_edited:
            edit = rng.choice(sorted(EDITS))
            listing(EDITS[edit](photo, rng, others), edit, None, QUALITY.get(edit, (70, 93)))
        else:
            listing(_fit(photo, rng.randrange(400, 800)), "none", None, (70, 93))
    feed = folder / "listings.csv"
    with feed.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["listing_id", "title", "image_paths"])
        writer.writeheader()
        writer.writerows(rows)
    return feed, truth


def run_product(
    folder: Path, feed: Path, products: list[str], matchers: str, workers: int | None
) -> tuple[dict[str, tuple[float, str | None]], float]:
    """Each listing's score and brand after a scan as ``counterscan scan`` runs it (``matchers``: an
    ``image_matchers`` override; ``workers``: worker processes, the core count by default)."""
    home = folder / f"home-{matchers or 'default'}".replace(",", "-")
    settings = replace(Settings.load(home=home), image_matchers=matchers)
    store = Store.open(settings.database_url)
    try:
        blobs = BlobStore(settings.blob_dir)
        actor = add_member(store, "evaluator").member
        limits = upload_limits(settings)
        kit = image_matchers(settings)
        for brand in sorted(set(products)):
            add_brand(store, actor, brand, keywords=[])
        for number, brand in enumerate(products):
            path = folder / "assets" / f"product-{number:03d}.jpg"
            add_asset_files(store, blobs, limits, kit, actor, brand=brand, kind="product", paths=[path])
        ingest(store, blobs, limits.image, open_source(str(feed), name="eval-market"))
        started = time.perf_counter()
        pool = make_executor("local", workers=workers, threads=settings.scan_worker_threads)
        try:
            run_scan(store, settings, executor=pool)
        finally:
            pool.close()
        scan_seconds = time.perf_counter() - started
        scores: dict[str, tuple[float, str | None]] = {}
        # A listing with evidence for several brands is a suspect of each: its best one counts.
        for suspect in store.suspects(include_clean=True):
            if suspect.listing_id not in scores or suspect.score > scores[suspect.listing_id][0]:
                scores[suspect.listing_id] = (suspect.score, suspect.brand)
    finally:
        store.close()
    return scores, scan_seconds


def table(truth: dict[str, tuple[str, str | None]], runs: dict[str, dict[str, tuple[float, str | None]]]) -> bool:
    """Print recall per edit and the clean photos' scores per run; whether the last run passes."""
    names = list(runs)
    print(f"\n{'edit':14} {'listings':>8} " + " ".join(f"{name:>10}" for name in names))
    passed = True
    overall = {name: [0, 0] for name in names}
    for edit in EDITS:
        ids = [i for i, (e, product) in truth.items() if e == edit and product is not None]
        cells = []
        for name in names:
            found = sum(1 for i in ids if _found(runs[name].get(i), truth[i][1]))
            overall[name][0] += found
            overall[name][1] += len(ids)
            cells.append(f"{found / max(1, len(ids)):>10.3f}")
        passed &= sum(1 for i in ids if _found(runs[names[-1]].get(i), truth[i][1])) >= 0.85 * len(ids)
        print(f"{edit:14} {len(ids):>8} " + " ".join(cells))
    print(
        f"{'overall':14} {overall[names[0]][1]:>8} " + " ".join(f"{f / max(1, n):>10.3f}" for f, n in overall.values())
    )
    clean_ids = [i for i, (_e, product) in truth.items() if product is None]
    for label, pick in (("clean max", max), ("clean > 0.5", None)):
        cells = []
        for name in names:
            scores = [runs[name].get(i, (0.0, None))[0] for i in clean_ids]
            value = pick(scores, default=0.0) if pick else sum(1 for s in scores if s > 0.5)
            cells.append(f"{value:>10.3f}" if pick else f"{value:>10d}")
        print(f"{label:14} {len(clean_ids):>8} " + " ".join(cells))
    last = runs[names[-1]]
    found, total = overall[names[-1]]
    passed &= found >= 0.95 * total
    passed &= not any(last.get(i, (0.0, None))[0] > 0.5 for i in clean_ids)
    return passed


def _found(result: tuple[float, str | None] | None, brand: str | None) -> bool:
    return result is not None and result[0] > 0.5 and result[1] == brand


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/flickrlogos27-train"))
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--clean", type=int, default=200)
    parser.add_argument("--clean-edited", type=float, default=1 / 3, help="share of clean photos edited too")
    parser.add_argument("--seed", type=int, default=21)
    parser.add_argument("--no-before", action="store_true", help=f"skip the run with image_matchers={BEFORE_MATCHERS}")
    parser.add_argument("--workers", type=int, help="scan worker processes (default: the core count, as the CLI)")
    parser.add_argument("--keep", type=Path, help="build the data and homes in this folder and keep them")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="eval-reuse-") as scratch:
        folder = args.keep or Path(scratch)
        products, clean = choose_photos(args.data, args.products, args.clean, args.seed)
        feed, truth = build_feed(folder, products, clean, args.seed, args.clean_edited)
        print(
            f"{len(products)} product photos of {len({b for b, _p in products})} brands x {len(EDITS)} edits, "
            f"{len(clean)} clean photos ({folder})"
        )
        runs: dict[str, dict[str, tuple[float, str | None]]] = {}
        for label, matchers in ((("before", BEFORE_MATCHERS),) if not args.no_before else ()) + (("after", ""),):
            brands = [brand for brand, _photo in products]
            runs[label], seconds = run_product(folder, feed, brands, matchers, args.workers)
            print(f"{label}: image_matchers={matchers or '(default)'}, scan {seconds:.0f} s", flush=True)
        passed = table(truth, runs)
    print("\nPASS" if passed else "\nFAIL: recall >= 0.95 overall and >= 0.85 per edit, no clean photo above 0.5")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
