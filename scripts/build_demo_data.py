"""Build the demo set in data/demo from CC0 logos and public-domain photos.

    python scripts/build_demo_data.py --shared ../shared/data --out data/demo

Logos come from simple-icons (CC0); photos from scikit-image's bundled samples (CC0 or
public domain, see each function in skimage.data). Official product photos are real photos
with the brand's logo stamped on; listings re-use them after resizing, cropping, mirroring
and JPEG re-encoding, or show unrelated photos. The ``demo_truth`` column records which is
which so the demo can check its own ranking.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
from pathlib import Path

import cairosvg
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps
from skimage import data as skdata

BRANDS = {
    # brand: (simple-icons slug, keywords, msrp, product photos)
    "Nike": ("nike", ["Air Max", "Swoosh"], 120.0, ["astronaut", "rocket"]),
    "Adidas": ("adidas", ["Ultraboost", "Three Stripes"], 150.0, ["hubble_deep_field", "chelsea"]),
    "Puma": ("puma", ["Suede Classic"], 80.0, ["coffee"]),
}
CLEAN_PHOTOS = ["text", "retina", "immunohistochemistry", "camera", "moon", "coins", "gravel", "brick", "page", "grass"]


def photo(name: str) -> Image.Image:
    array = getattr(skdata, name)()
    image = Image.fromarray(np.asarray(array))
    image = image.convert("RGB")
    image.thumbnail((640, 640))
    return image


def logo(shared: Path, slug: str, width: int) -> Image.Image:
    png = cairosvg.svg2png(url=str(shared / "simple-icons" / "icons" / f"{slug}.svg"), output_width=width)
    return Image.open(io.BytesIO(png)).convert("RGBA")


def stamp(image: Image.Image, mark: Image.Image) -> Image.Image:
    base = image.convert("RGBA")
    plate = Image.new("RGBA", (mark.width + 16, mark.height + 16), (255, 255, 255, 230))
    plate.alpha_composite(mark, (8, 8))
    base.alpha_composite(plate, (base.width - plate.width - 12, 12))
    return base.convert("RGB")


def jpeg(image: Image.Image, path: Path, quality: int = 85) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)
    return path.name


LABEL_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")


def printed(image: Image.Image, *lines: str) -> Image.Image:
    """A shoe-box label with ``lines`` printed on it, laid over the lower part of a photo."""
    label = Image.new("RGB", (image.width * 3 // 4, image.height // 3), (250, 250, 245))
    draw = ImageDraw.Draw(label)
    size = label.height // (len(lines) + 1)
    for number, line in enumerate(lines):
        font = ImageFont.truetype(str(LABEL_FONT), size if number == 0 else size * 2 // 3)
        draw.text((size // 2, size // 3 + number * size * 5 // 4), line, font=font, fill=(15, 15, 20))
    base = image.copy()
    base.paste(label, (image.width // 8, image.height - label.height - image.height // 12))
    return base


def worn(image: Image.Image, mark: Image.Image, angle: float) -> Image.Image:
    """The logo printed on something in an ordinary photo: tilted, on a light patch, a quarter of the width."""
    width = image.width // 4
    mark = mark.resize((width, round(mark.height * width / mark.width)), Image.Resampling.LANCZOS)
    patch = Image.new("RGBA", (mark.width + 24, mark.height + 24), (235, 232, 225, 255))
    patch.alpha_composite(mark, (12, 12))
    patch = patch.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    base = image.convert("RGBA")
    base.alpha_composite(patch, (image.width // 2 - patch.width // 2, image.height // 3))
    return base.convert("RGB")


def product_shot(mark: Image.Image, width: int) -> Image.Image:
    """A product photographed on a plain grey backdrop (a tote bag with a one-colour mark printed on
    it, head-on): the flat mark has no texture or corners for SIFT, only its outline."""
    rng = np.random.default_rng(7)
    backdrop = np.linspace(150, 118, 480)[:, None, None] + rng.normal(0, 3, (480, 640, 1))
    base = Image.fromarray(np.clip(np.broadcast_to(backdrop, (480, 640, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(base)
    draw.rounded_rectangle((150, 90, 490, 440), radius=28, fill=(214, 208, 196))
    draw.arc((240, 10, 400, 170), 200, 340, fill=(60, 55, 50), width=9)
    mark = mark.resize((width, round(mark.height * width / mark.width)), Image.Resampling.LANCZOS)
    canvas = base.convert("RGBA")
    canvas.alpha_composite(mark, (320 - mark.width // 2, 265 - mark.height // 2))
    return canvas.convert("RGB")


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom))))


def collage(tiles: list[Image.Image], cell: int = 280, gap: int = 6) -> Image.Image:
    """A 2x2 sheet of ``tiles``, each cut to a square cell (a seller's "lot" photo)."""
    sheet = Image.new("RGB", (2 * cell + 3 * gap, 2 * cell + 3 * gap), "white")
    for number, tile in enumerate(tiles[:4]):
        square = ImageOps.fit(tile, (cell, cell), Image.Resampling.LANCZOS)
        sheet.paste(square, (gap + (number % 2) * (cell + gap), gap + (number // 2) * (cell + gap)))
    return sheet


def half(image: Image.Image) -> Image.Image:
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("data/demo"))
    args = parser.parse_args()
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "listings" / "images").mkdir(parents=True)

    products: dict[str, list[Image.Image]] = {}
    manifest = ["# Demo brands; asset paths are relative to this file.", ""]
    for brand, (slug, keywords, msrp, photos) in BRANDS.items():
        folder = out / "assets" / slug
        folder.mkdir(parents=True)
        shutil.copy(args.shared / "simple-icons" / "icons" / f"{slug}.svg", folder / "logo.svg")
        mark = logo(args.shared, slug, 96)
        products[brand] = []
        for name in photos:
            product = stamp(photo(name), mark)
            jpeg(product, folder / f"product-{name}.jpg", quality=92)
            products[brand].append(product)
        manifest += [
            "[[brand]]",
            f'name = "{brand}"',
            f"keywords = {keywords!r}".replace("'", '"'),
            f"msrp = {msrp}",
            'currency = "USD"',
            'authorised_sellers = ["official-store"]',
            f'logos = ["assets/{slug}/logo.svg"]',
            f"products = {[f'assets/{slug}/product-{name}.jpg' for name in photos]!r}".replace("'", '"'),
            "",
        ]
    (out / "brands.toml").write_text("\n".join(manifest), encoding="utf-8")

    images = out / "listings" / "images"
    nike, adidas, puma = products["Nike"], products["Adidas"], products["Puma"]
    nike_logo = logo(args.shared, "nike", 400)
    nike_logo_flat = Image.new("RGB", nike_logo.size, "white")
    nike_logo_flat.paste(nike_logo, mask=nike_logo)
    rows = [
        # planted re-uses of official assets
        (
            "m-1001",
            "Running shoes men size 42 NEW",
            39.0,
            "shoe-deals",
            jpeg(half(nike[0]), images / "m-1001.jpg", 60),
            "reuse",
        ),
        (
            "m-1002",
            "Sport sneakers, fast shipping",
            45.0,
            "bestprice88",
            jpeg(crop(nike[1], 0.05, 0.05, 0.05, 0.05), images / "m-1002.jpg", 40),
            "reuse",
        ),
        (
            "m-1003",
            "Trainers unisex",
            52.5,
            "bestprice88",
            jpeg(ImageOps.mirror(half(adidas[0])), images / "m-1003.jpg", 70),
            "reuse",
        ),
        (
            "m-1004",
            "Classic suede low top",
            29.99,
            "kicks4less",
            jpeg(crop(half(puma[0]), 0.1, 0, 0, 0), images / "m-1004.jpg", 50),
            "reuse",
        ),
        (
            "m-1005",
            "Performance running shoe",
            61.0,
            "shoe-deals",
            jpeg(crop(adidas[1], 0, 0.08, 0.08, 0), images / "m-1005.jpg", 45),
            "reuse",
        ),
        (
            "m-1006",
            "Sticker pack sports logo",
            4.5,
            "stickerz",
            jpeg(half(nike_logo_flat), images / "m-1006.jpg", 75),
            "reuse",
        ),
        # a cropped official photo inside a collage: no hash sees it, the copies matcher does
        (
            "m-1101",
            "Lot of 4 items, mixed sizes",
            15.0,
            "lots-r-us",
            jpeg(
                collage([photo("moon"), crop(adidas[1], 0.25, 0.2, 0.1, 0.15), photo("gravel"), photo("brick")]),
                images / "m-1101.jpg",
                75,
            ),
            "collage",
        ),
        # what only words and prices give away (text and price evidence; weaker than a copied photo)
        (
            "m-2001",
            "Nike Air Max replica 1:1 mirror quality",
            35.0,
            "kicks4less",
            jpeg(photo("gravel"), images / "m-2001.jpg"),
            "text",
        ),
        ("m-2002", "N1ke Air Max 90 unisex", 19.0, "shoe-deals", jpeg(photo("page"), images / "m-2002.jpg"), "text"),
        (
            "m-2003",
            "Adidaas Ultraboost 22 running",
            25.0,
            "kicks4less",
            jpeg(photo("grass"), images / "m-2003.jpg"),
            "text",
        ),
        ("m-2004", "Puma Suede Classic low", 9.0, "stickerz", jpeg(photo("coins"), images / "m-2004.jpg"), "text"),
        # the brand's name printed on the photo, nowhere in the words (the "ocr" matcher reads it)
        (
            "m-2101",
            "Running shoes, original box",
            30.0,
            "shoe-deals",
            jpeg(printed(photo("coffee"), "adidas", "ULTRABOOST"), images / "m-2101.jpg", 80),
            "printed",
        ),
        # the brand's logo on a product in an ordinary photo, nothing else to go on (the logo matchers find it)
        (
            "m-2201",
            "Gym bag, barely used",
            22.0,
            "bagz",
            jpeg(worn(photo("clock"), logo(args.shared, "puma", 400), 9.0), images / "m-2201.jpg", 82),
            "logo",
        ),
        # a flat one-colour mark on a product shot on a plain backdrop, nothing else to go on
        (
            "m-2202",
            "Tote bag, new with tags",
            15.0,
            "bagz",
            jpeg(product_shot(logo(args.shared, "nike", 400), 200), images / "m-2202.jpg", 85),
            "logo",
        ),
        # an honest second-hand listing that names the brand at a fair price
        (
            "m-3002",
            "Nike Air Max 90, worn twice",
            85.0,
            "seller-77",
            jpeg(photo("brick"), images / "m-3002.jpg"),
            "clean",
        ),
        # a genuine listing by the brand's authorised seller, re-using its own photo
        (
            "m-3001",
            "Nike official store: Air Max",
            120.0,
            "official-store",
            jpeg(nike[0], images / "m-3001.jpg"),
            "clean",
        ),
    ]
    for number, name in enumerate(CLEAN_PHOTOS, start=1):
        rows.append(
            (
                f"m-4{number:03d}",
                f"Second-hand item #{number}, good condition",
                10.0 + number,
                f"seller-{number}",
                jpeg(photo(name), images / f"m-4{number:03d}.jpg"),
                "clean",
            )
        )

    with (out / "listings" / "listings.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "listing_id",
                "title",
                "description",
                "price",
                "currency",
                "seller_id",
                "url",
                "marketplace",
                "image_paths",
                "demo_truth",
            ]
        )
        for listing_id, title, price, seller, image, truth in rows:
            writer.writerow(
                [
                    listing_id,
                    title,
                    "",
                    price,
                    "USD",
                    seller,
                    f"https://market.example/item/{listing_id}",
                    "demo-market",
                    f"images/{image}",
                    truth,
                ]
            )
        # Bad records, quarantined by ingestion while the rest land:
        writer.writerow(
            ["m-9001", "Price is not a number", "", "cheap!", "USD", "seller-x", "", "demo-market", "", "clean"]
        )
        writer.writerow(["", "Row without a listing id", "", "10", "USD", "seller-x", "", "demo-market", "", "clean"])
    (images / "m-9002.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    with (out / "listings" / "listings.csv").open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(
            [
                "m-9002",
                "Listing whose photo is corrupt",
                "",
                "12",
                "USD",
                "seller-y",
                "",
                "demo-market",
                "images/m-9002.jpg",
                "clean",
            ]
        )
    (out / "README.md").write_text(
        "# Demo data\n\nBuilt by `scripts/build_demo_data.py`. Logos: simple-icons (CC0; the marks remain "
        "trademarks of their owners). Photos: scikit-image sample images (CC0 / public domain). "
        "`listings/listings.csv` has a `demo_truth` column: `reuse` (a planted re-use of an official "
        "asset), `text` (only its words give it away), `printed` (the brand's name printed on its "
        "photo), `logo` (the brand's logo on something in an ordinary photo or a product shot), `collage` (a "
        "cropped official photo in a collage) or `clean`. Three rows are bad on purpose "
        "(a non-numeric price, a missing id, a corrupt photo) and end in the quarantine.\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
