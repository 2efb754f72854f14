"""A labelled evaluation set built from the bundled demo pictures, for the ranker's evaluation.

Counterfeits re-use official photos, talk like fakes, hide brand names or sell far under MSRP;
legitimate listings resell the real thing near MSRP, often with the brand's own photo (resellers
do that), and name the brand honestly. Each kind of listing shows its tells only some of the
time, so no single matcher separates the two and a learned ranker has something to learn.
"""

from __future__ import annotations

import csv
import io
import random
import tomllib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from counterscan.config import Settings, demo_data_dir
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits, image_matchers
from counterscan.matchers.perceptual import crop_fraction
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.store import BlobStore, Store


@dataclass(frozen=True)
class LabelledSet:
    labels: dict[str, int]
    """listing id -> 1 counterfeit, 0 legit"""
    brands: dict[str, str]


def _jpeg(image: Image.Image, path: Path, quality: int) -> str:
    image.convert("RGB").save(path, "JPEG", quality=quality)
    return str(path)


def build(settings: Settings, folder: Path, *, listings: int = 300, seed: int = 5) -> LabelledSet:
    rng = random.Random(seed)
    data = demo_data_dir()
    manifest = tomllib.loads((data / "brands.toml").read_text(encoding="utf-8"))
    store = Store.open(settings.database_url)
    blobs = BlobStore(settings.blob_dir)
    owner = add_member(store, "eval-owner").member
    photos: dict[str, list[Image.Image]] = {}
    for entry in manifest["brand"]:
        add_brand(store, owner, entry["name"], keywords=entry["keywords"], msrp=entry["msrp"], currency="USD")
        paths = [data / path for path in entry["products"]]
        add_asset_files(
            store,
            blobs,
            upload_limits(settings),
            image_matchers(settings),
            owner,
            brand=entry["name"],
            kind="product",
            paths=paths,
        )
        photos[entry["name"]] = [Image.open(io.BytesIO(path.read_bytes())).convert("RGB") for path in paths]
    own_photos = [Image.open(path).convert("RGB") for path in sorted((data / "listings" / "images").glob("m-4*.jpg"))]
    msrp = {entry["name"]: float(entry["msrp"]) for entry in manifest["brand"]}
    keywords = {entry["name"]: entry["keywords"] for entry in manifest["brand"]}
    folder.mkdir(parents=True, exist_ok=True)
    rows, labels, brands = [], {}, {}
    for number in range(listings):
        brand = rng.choice(sorted(photos))
        fake = rng.random() < 0.4
        listing_id = f"E{number:04d}"
        name = brand if rng.random() < 0.8 else brand.replace("i", "1").replace("a", "4")
        if fake and rng.random() < 0.5:
            name = brand  # not every fake disguises the name
        words = [name, rng.choice(keywords[brand])]
        if fake and rng.random() < 0.35:
            words.append(rng.choice(["replica", "1:1", "AAA quality", "mirror quality"]))
        if not fake and rng.random() < 0.1:
            words.append("not a replica, genuine")  # the vocabulary appears in honest listings too
        price = msrp[brand] * (rng.uniform(0.1, 0.45) if fake and rng.random() < 0.7 else rng.uniform(0.55, 1.05))
        uses_official = rng.random() < (0.6 if fake else 0.35)
        picture = rng.choice(photos[brand]) if uses_official else rng.choice(own_photos)
        cut = rng.uniform(0, 0.06)
        picture = crop_fraction(picture, (cut, cut, cut, cut))

        image = _jpeg(picture, folder / f"{listing_id}.jpg", rng.randint(50, 90))
        rows.append([listing_id, " ".join(words), f"{price:.2f}", "USD", f"seller-{rng.randrange(40)}", image])
        labels[listing_id] = int(fake)
        brands[listing_id] = brand
    feed = folder / "labelled.csv"
    with feed.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "title", "price", "currency", "seller_id", "image_paths"])
        writer.writerows(rows)
    ingest(store, blobs, decode_limits(settings), open_source(str(feed), name="labelled"))
    store.close()
    return LabelledSet(labels=labels, brands=brands)
