"""Measure pHash, dHash and PDQ under common edits, and between unrelated photos, on real photos.

    python scripts/measure_hashes.py --images ../shared/data/flickrlogos27-train/images --count 300

For each hash: Hamming distance from an edited copy of a photo to the nearest indexed variant of
the photo (crops, flips, quarter turns; ``perceptual.asset_variants``), the false-match rate per
(photo, asset) pair at each threshold (an unrelated photo against every variant of another), and
encoding time per image. Prints the tables of docs/matching.md.
"""

from __future__ import annotations

import argparse
import io
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from counterscan.config import Settings
from counterscan.imaging.decode import DecodeLimits, Picture, decode
from counterscan.matchers.perceptual import DHASH, PDQ, PHASH, HashAlgorithm, HashMatcher, crop_fraction

LIMITS = DecodeLimits(max_bytes=50_000_000, max_pixels=100_000_000)
ALGORITHMS = (PHASH, DHASH, PDQ)


def as_picture(data: bytes) -> Picture:
    return Picture.open(data, LIMITS)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def framed(image: Image.Image) -> Image.Image:
    border = max(4, round(0.06 * max(image.size)))
    return ImageOps.expand(image, border=border, fill="white")


def banner(image: Image.Image) -> Image.Image:
    edited = image.copy()
    draw = ImageDraw.Draw(edited)
    height = round(0.12 * edited.height)
    draw.rectangle((0, edited.height - height, edited.width, edited.height), fill="white")
    draw.text((8, edited.height - height + 4), "SALE 70% OFF - FREE SHIPPING", fill="black")
    return edited


def watermark(image: Image.Image) -> Image.Image:
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    for row in range(0, image.height, max(20, image.height // 6)):
        draw.text((image.width // 5, row), "www.cheap-deals.example", fill=(255, 255, 255, 110))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def distances(query: bytes, signals: np.ndarray) -> np.ndarray:
    """Per indexed signal, its distance to the nearest of the query's hashes (a listing image has
    two when it had a frame to trim)."""
    hashes = np.frombuffer(query, np.uint8).reshape(-1, signals.shape[1])
    return np.asarray(np.bitwise_count(hashes[:, None, :] ^ signals[None, :, :]).sum(axis=2).min(axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    files = sorted(args.images.glob("*.jpg"))
    rng = random.Random(args.seed)
    files = rng.sample(files, min(args.count, len(files)))

    def random_crop(image: Image.Image) -> Image.Image:
        left, top = rng.uniform(0, 0.1), rng.uniform(0, 0.1)
        return crop_fraction(image, (left, top, 0.1 - left, 0.1 - top))

    edits: dict[str, Callable[[Image.Image], Image.Image]] = {
        "resize 50%, JPEG q40": lambda im: Image.open(io.BytesIO(jpeg(im.resize((im.width // 2, im.height // 2)), 40))),
        "10% crop, centred": lambda im: crop_fraction(im, (0.05, 0.05, 0.05, 0.05)),
        "10% crop, one side": lambda im: crop_fraction(im, (0.1, 0.0, 0.0, 0.0)),
        "10% crop, random offset": random_crop,
        "mirror": ImageOps.mirror,
        "rotated 90 degrees": lambda im: im.transpose(Image.Transpose.ROTATE_90),
        "white frame (6%)": framed,
        "text banner (12%)": banner,
        "tiled watermark text": watermark,
        "brightness +25%": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
    }
    originals = [decode(path.read_bytes(), LIMITS) for path in files]
    edited = {name: [jpeg(edit(image)) for image in originals] for name, edit in edits.items()}
    print(f"{len(files)} photos from {args.images}")
    measured = {algorithm.name: report(algorithm, files, edited) for algorithm in ALGORITHMS}
    defaults = Settings()
    (p_unrelated, p_edits), (d_unrelated, d_edits) = measured["phash"], measured["dhash"]
    p_limit, d_limit = defaults.phash_max_distance, defaults.dhash_max_distance
    either = (p_unrelated <= p_limit) | (d_unrelated <= d_limit)
    print(f"\npHash <= {p_limit} or dHash <= {d_limit} (the default pair): "
          f"false-match rate per pair {either.mean():.2e}")  # fmt: skip
    for name in edits:
        caught = (p_edits[name] <= p_limit) | (d_edits[name] <= d_limit)
        print(f"  {name:26} {caught.mean():.3f} caught")


def report(
    algorithm: HashAlgorithm, files: list[Path], edited: dict[str, list[bytes]]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Prints one hash's tables; returns the unrelated pairs' distances and each edit's nearest distances."""
    matcher = HashMatcher(algorithm, max_distance=0)
    width = algorithm.bits // 8
    datas = [path.read_bytes() for path in files]
    started = time.perf_counter()
    queries = [matcher.encode(as_picture(data)) for data in datas]
    per_image_ms = (time.perf_counter() - started) * 1000 / len(datas)
    variants = [np.frombuffer(b"".join(s for _, s in matcher.encode_asset(as_picture(data))), np.uint8)
                .reshape(-1, width) for data in datas]  # fmt: skip
    print(f"\n{algorithm.label} ({algorithm.bits} bits): {per_image_ms:.1f} ms per listing image")
    print(f"  {'edit':26} {'nearest variant mean/p95/p99/max':>34}  {'share within 10%/15%/20% of bits':>34}")
    by_edit: dict[str, np.ndarray] = {}
    for name, copies in edited.items():
        nearest = by_edit[name] = np.array(
            [distances(matcher.encode(as_picture(copy)), variants[i]).min() for i, copy in enumerate(copies)]
        )
        shares = [np.mean(nearest <= round(algorithm.bits * part)) for part in (0.10, 0.15, 0.20)]
        print(
            f"  {name:26} {nearest.mean():10.1f} {np.percentile(nearest, 95):5.0f} "
            f"{np.percentile(nearest, 99):5.0f} {nearest.max():5d}      "
            + "  ".join(f"{share:6.3f}" for share in shares)
        )
    unrelated = np.array(
        [distances(queries[i], variants[j]).min() for i in range(len(files)) for j in range(len(files)) if i != j]
    )
    print(f"  unrelated photo vs nearest variant of another: p0.1 {np.percentile(unrelated, 0.1):.0f}, "
          f"p1 {np.percentile(unrelated, 1):.0f}, median {np.median(unrelated):.0f}")  # fmt: skip
    for part in (0.10, 0.125, 0.15, 0.20, 0.25):
        threshold = round(algorithm.bits * part)
        print(f"  threshold {threshold:3d}: false-match rate per pair {np.mean(unrelated <= threshold):.2e}")
    return unrelated, by_edit


if __name__ == "__main__":
    main()
