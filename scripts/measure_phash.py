"""Measure pHash distances under common edits, and between unrelated photos, on real photos.

    python scripts/measure_phash.py --images ../shared/data/flickrlogos27-train/images --count 300

Prints the tables of docs/matching.md: distance to the plain hash and to the nearest indexed
variant, for each edit, and the false-match rate per (photo, asset) pair at each threshold.
"""

from __future__ import annotations

import argparse
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from counterscan.imaging import DecodeLimits, decode
from counterscan.matchers.phash import PHashMatcher, crop_fraction

LIMITS = DecodeLimits(max_bytes=50_000_000, max_pixels=100_000_000)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.frombuffer(a, np.uint8) ^ np.frombuffer(b, np.uint8)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    files = sorted(args.images.glob("*.jpg"))
    rng = random.Random(args.seed)
    files = rng.sample(files, min(args.count, len(files)))
    matcher = PHashMatcher(LIMITS, max_distance=10)

    def random_crop(image: Image.Image) -> Image.Image:
        left, top = rng.uniform(0, 0.1), rng.uniform(0, 0.1)
        return crop_fraction(image, (left, top, 0.1 - left, 0.1 - top))

    edits: dict[str, Callable[[Image.Image], bytes]] = {
        "resize 50%": lambda im: jpeg(im.resize((im.width // 2, im.height // 2))),
        "JPEG quality 40": lambda im: jpeg(im, 40),
        "10% crop, centred": lambda im: jpeg(crop_fraction(im, (0.05, 0.05, 0.05, 0.05))),
        "10% crop, one side": lambda im: jpeg(crop_fraction(im, (0.1, 0.0, 0.0, 0.0))),
        "10% crop, corner": lambda im: jpeg(crop_fraction(im, (0.0, 0.1, 0.1, 0.0))),
        "10% crop, random offset": lambda im: jpeg(random_crop(im)),
        "mirror": lambda im: jpeg(ImageOps.mirror(im)),
    }
    plain: dict[str, list[int]] = {name: [] for name in edits}
    nearest: dict[str, list[int]] = {name: [] for name in edits}
    variants: list[list[bytes]] = []
    originals: list[bytes] = []
    for path in files:
        data = path.read_bytes()
        image = decode(data, LIMITS)
        own = [signal for _, signal in matcher.encode_asset(data)]
        variants.append(own)
        originals.append(own[0])
        for name, edit in edits.items():
            query = matcher.encode(edit(image))
            plain[name].append(hamming(query, own[0]))
            nearest[name].append(min(hamming(query, signal) for signal in own))
    print(f"{len(files)} photos from {args.images}")
    print(f"{'edit':28} {'plain mean/p95/p99/max':>26} {'nearest variant mean/p95/p99/max':>34}")
    for name in edits:
        a, b = np.array(plain[name]), np.array(nearest[name])
        print(
            f"{name:28} {a.mean():8.1f} {np.percentile(a, 95):5.0f} {np.percentile(a, 99):5.0f} {a.max():5d}"
            f" {b.mean():14.1f} {np.percentile(b, 95):5.0f} {np.percentile(b, 99):5.0f} {b.max():5d}"
        )
    unrelated = np.array(
        [
            min(hamming(originals[i], signal) for signal in variants[j])
            for i in range(len(files))
            for j in range(len(files))
            if i != j
        ]
    )
    print(f"unrelated (photo vs nearest variant of another): p0.1 {np.percentile(unrelated, 0.1):.0f}")
    for threshold in range(6, 15, 2):
        recall = np.mean(np.array(nearest["10% crop, random offset"]) <= threshold)
        print(
            f"threshold {threshold:2d}: false-match rate per pair {np.mean(unrelated <= threshold):.2e}, "
            f"random-offset crop recall {recall:.3f}"
        )


if __name__ == "__main__":
    main()
