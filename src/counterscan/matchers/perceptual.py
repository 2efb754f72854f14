"""Whole-image near-duplicates: perceptual hashes with crop, flip and rotation variants of each asset.

Three hashes share one matcher: pHash and dHash (64 bits, imagehash, on a JPEG-draft decode)
and PDQ (256 bits, Meta's pdqhash, at full resolution). Measured on FlickrLogos photos
(docs/matching.md): a plain hash moves about as far under a 10% crop as unrelated photos are
apart, so each asset is indexed under a small grid of crops; flips and quarter turns of the
whole picture are indexed too, so the listing's image is hashed once. Asset hashes live in a
FAISS binary index persisted under the home folder and updated as assets come and go.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageChops

from counterscan.imaging import HASH_DRAFT_SIZE, DecodeLimits, decode
from counterscan.matchers.index import BinaryHashIndex, as_matrix
from counterscan.records import IMAGE_ASSET_KINDS, AssetKind, AssetSignal, Evidence

Cut = tuple[float, float, float, float]

# Grey levels a border pixel may differ from the corner's colour (JPEG noise); a trimmed picture
# keeps at least this share of the area, or the "border" was the picture itself.
BORDER_TOLERANCE = 24
MIN_TRIMMED_AREA = 0.2

# (left, top, right, bottom) fractions cut away; the first is the untouched original.
CROP_VARIANTS: tuple[Cut, ...] = (
    (0.0, 0.0, 0.0, 0.0),
    (0.025, 0.025, 0.025, 0.025),
    (0.05, 0.05, 0.05, 0.05),
    (0.075, 0.075, 0.075, 0.075),
    (0.1, 0.0, 0.0, 0.0),
    (0.0, 0.1, 0.0, 0.0),
    (0.0, 0.0, 0.1, 0.0),
    (0.0, 0.0, 0.0, 0.1),
    (0.05, 0.0, 0.05, 0.0),
    (0.0, 0.05, 0.0, 0.05),
    (0.1, 0.1, 0.0, 0.0),
    (0.0, 0.1, 0.1, 0.0),
    (0.0, 0.0, 0.1, 0.1),
    (0.1, 0.0, 0.0, 0.1),
)

# The other seven symmetries of the square, applied to the whole picture.
DIHEDRAL_VARIANTS: tuple[tuple[str, Image.Transpose], ...] = (
    ("mirror", Image.Transpose.FLIP_LEFT_RIGHT),
    ("flip", Image.Transpose.FLIP_TOP_BOTTOM),
    ("rotate-90", Image.Transpose.ROTATE_90),
    ("rotate-180", Image.Transpose.ROTATE_180),
    ("rotate-270", Image.Transpose.ROTATE_270),
    ("transpose", Image.Transpose.TRANSPOSE),
    ("transverse", Image.Transpose.TRANSVERSE),
)


def _bits_to_bytes(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=bool).reshape(-1)).tobytes()


def phash_bytes(image: Image.Image) -> bytes:
    return _bits_to_bytes(imagehash.phash(image).hash)


def dhash_bytes(image: Image.Image) -> bytes:
    return _bits_to_bytes(imagehash.dhash(image).hash)


def pdq_bytes(image: Image.Image) -> bytes:
    import pdqhash  # optional: only when the "pdq" matcher is turned on

    bits, _quality = pdqhash.compute(np.ascontiguousarray(np.asarray(image.convert("RGB"))))
    return _bits_to_bytes(bits)


@dataclass(frozen=True)
class HashAlgorithm:
    name: str
    label: str
    bits: int
    compute: Callable[[Image.Image], bytes]
    full_resolution: bool
    """Hash the picture as decoded at full size (PDQ's own downsampling wants all of it)."""
    requires: str | None = None
    """An optional package the hash needs."""


PHASH = HashAlgorithm("phash", "pHash", 64, phash_bytes, full_resolution=False)
DHASH = HashAlgorithm("dhash", "dHash", 64, dhash_bytes, full_resolution=False)
PDQ = HashAlgorithm("pdq", "PDQ", 256, pdq_bytes, full_resolution=True, requires="pdqhash")


def trim_border(image: Image.Image) -> Image.Image:
    """The picture without a uniform frame: a border added around a stolen photo moves every
    hash as far as an unrelated photo. Only pictures whose four corners share one colour are
    trimmed (a frame, or a product shot on a plain background), never ordinary photos, whose
    edges an edit would trim differently each time. Assets and listings are trimmed alike."""
    right, bottom = image.width - 1, image.height - 1
    corners = [image.getpixel(corner) for corner in ((0, 0), (right, 0), (0, bottom), (right, bottom))]
    channels = np.array(corners, dtype=np.int16).reshape(4, -1)
    if int((channels.max(axis=0) - channels.min(axis=0)).max()) > BORDER_TOLERANCE:
        return image
    background = Image.new(image.mode, image.size, corners[0])
    difference = ImageChops.difference(image, background)
    if difference.mode != "L":
        difference = difference.convert("L")
    box = difference.point(lambda value: 255 if value > BORDER_TOLERANCE else 0).getbbox()
    if box is None:
        return image
    width, height = box[2] - box[0], box[3] - box[1]
    if width * height < MIN_TRIMMED_AREA * image.width * image.height or (width, height) == image.size:
        return image
    return image.crop(box)


def crop_fraction(image: Image.Image, cut: Cut) -> Image.Image:
    left, top, right, bottom = cut
    width, height = image.size
    box = (round(width * left), round(height * top), round(width * (1 - right)), round(height * (1 - bottom)))
    return image.crop(box)


def variant_name(cut: Cut) -> str:
    if not any(cut):
        return "original"
    return "crop-" + "-".join(f"{round(part * 100)}" for part in cut)


def asset_variants(image: Image.Image, compute: Callable[[Image.Image], bytes]) -> list[tuple[str, bytes]]:
    """The hash of every indexed variant of an asset picture, the original first."""
    variants = [(variant_name(cut), compute(crop_fraction(image, cut))) for cut in CROP_VARIANTS]
    variants.extend((name, compute(image.transpose(method))) for name, method in DIHEDRAL_VARIANTS)
    return variants


class HashMatcher:
    """One perceptual hash, searched exactly within a Hamming radius in a FAISS binary index."""

    asset_kinds: tuple[AssetKind, ...] = IMAGE_ASSET_KINDS

    def __init__(
        self, algorithm: HashAlgorithm, limits: DecodeLimits, *, max_distance: int, index_dir: Path | None = None
    ) -> None:
        self.algorithm = algorithm
        self.name = algorithm.name
        self.limits = limits
        self.max_distance = max_distance
        self.index_dir = index_dir

    def _decode(self, data: bytes, source: str | None) -> Image.Image:
        if self.algorithm.full_resolution:
            return decode(data, self.limits, source=source)
        return decode(data, self.limits, draft_size=HASH_DRAFT_SIZE, mode="L", source=source)

    def encode(self, data: bytes, *, source: str | None = None) -> bytes:
        """The picture's hash, followed by the hash of the picture without its frame if it has one."""
        image = self._decode(data, source)
        trimmed = trim_border(image)
        hashes = [self.algorithm.compute(image)]
        if trimmed is not image:
            hashes.append(self.algorithm.compute(trimmed))
        return b"".join(hashes)

    def encode_asset(self, data: bytes, *, source: str | None = None) -> list[tuple[str, bytes]]:
        image = self._decode(data, source)
        variants = asset_variants(image, self.algorithm.compute)
        trimmed = trim_border(image)
        if trimmed is not image:
            variants.append(("trimmed", self.algorithm.compute(trimmed)))
        return variants

    def build_index(self, signals: Sequence[AssetSignal]) -> BinaryHashIndex:
        index = BinaryHashIndex(self.algorithm.bits, self.index_dir, self.name)
        index.sync([signal for signal in signals if len(signal.signal) * 8 == self.algorithm.bits])
        return index

    def query(self, index: BinaryHashIndex, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        if not signals:
            return []
        width = self.algorithm.bits // 8
        owners: list[int] = []
        rows: list[bytes] = []
        for number, (_sha256, signal) in enumerate(signals):
            for start in range(0, len(signal), width):
                owners.append(number)
                rows.append(signal[start : start + width])
        per_image: list[list[tuple[AssetSignal, int]]] = [[] for _ in signals]
        hits = index.within(as_matrix(rows, self.algorithm.bits), self.max_distance)
        for number, row_hits in zip(owners, hits, strict=True):
            per_image[number].extend(row_hits)
        return [self._evidence(sha256, hits) for (sha256, _), hits in zip(signals, per_image, strict=True)]

    def _evidence(self, image_sha256: str, hits: list[tuple[AssetSignal, int]]) -> list[Evidence]:
        best: dict[int, tuple[AssetSignal, int]] = {}
        for asset_signal, distance in hits:
            current = best.get(asset_signal.asset_id)
            if current is None or distance < current[1]:
                best[asset_signal.asset_id] = (asset_signal, distance)
        found = [
            Evidence(
                matcher=self.name,
                brand_id=asset_signal.brand_id,
                brand=asset_signal.brand,
                asset_id=asset_signal.asset_id,
                image_sha256=image_sha256,
                distance=float(distance),
                score=self.confidence(distance),
                reason=(
                    f"image is a near-copy of {asset_signal.brand} asset #{asset_signal.asset_id} "
                    f"({self.algorithm.label} distance {distance}/{self.algorithm.bits}, {asset_signal.variant})"
                ),
                details={"variant": asset_signal.variant, "max_distance": self.max_distance},
            )
            for asset_signal, distance in best.values()
        ]
        return sorted(found, key=lambda evidence: evidence.distance or 0.0)

    def confidence(self, distance: int) -> float:
        """0.99 for an exact copy, falling linearly to 0.6 at the edge of the radius."""
        return round(0.99 - 0.39 * min(distance, self.max_distance) / max(self.max_distance, 1), 4)
