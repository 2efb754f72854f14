"""Whole-image near-duplicates: perceptual hashes with crop, flip and rotation variants of each asset.

Three hashes share one matcher: pHash and dHash (64 bits, as imagehash defines them, on a JPEG-draft decode)
and PDQ (256 bits, Meta's pdqhash, at full resolution). Measured on FlickrLogos photos
(docs/matching.md): a plain hash moves about as far under a 10% crop as unrelated photos are
apart, so each asset is indexed under a small grid of crops; flips and quarter turns of the
whole picture are indexed too, so the listing's image is hashed once. Asset hashes live in a
FAISS binary index persisted under the home folder and updated as assets come and go.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from counterscan.imaging.decode import HASH_DRAFT_SIDE, Picture
from counterscan.matchers.base import asset_evidence
from counterscan.matchers.facts import hash_bits
from counterscan.matchers.index import BinaryHashIndex, as_matrix
from counterscan.records import IMAGE_ASSET_KINDS, AssetKind, AssetSignal, Brand, Evidence
from counterscan.signals import as_table

Cut = tuple[float, float, float, float]

# Levels a border pixel may differ from the corner's colour (JPEG noise); a trimmed picture
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


@functools.cache
def _dct_rows(size: int, kept: int) -> np.ndarray:
    """The first ``kept`` rows of the (unnormalised, type II) DCT matrix that scipy.fftpack.dct applies."""
    k, n = np.arange(kept)[:, None], np.arange(size)[None, :]
    return np.asarray(2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * size)))


def _shrink(image: Image.Image, size: tuple[int, int], reducing_gap: float | None = None) -> np.ndarray:
    small = image.convert("L").resize(size, Image.Resampling.LANCZOS, reducing_gap=reducing_gap)
    return np.asarray(small, dtype=np.float64)


def phash_bytes(image: Image.Image) -> bytes:
    """imagehash's pHash (hash_size 8, highfreq_factor 4), its DCT as two small matrix products:
    only the 8x8 low frequencies are kept, so the other 24 rows of each transform are skipped."""
    rows = _dct_rows(32, 8)
    # Box-reduce first, then Lanczos (reducing_gap): the resize is most of the cost, and this
    # halves it; the hash moves 0.4 bits on average (dHash, comparing neighbours, would move 3).
    low = rows @ _shrink(image, (32, 32), reducing_gap=2.0) @ rows.T
    return _bits_to_bytes(low > np.median(low))


def dhash_bytes(image: Image.Image) -> bytes:
    """imagehash's dHash (hash_size 8): is each pixel of a 9x8 thumbnail brighter than its left neighbour."""
    pixels = _shrink(image, (9, 8))
    return _bits_to_bytes(pixels[:, 1:] > pixels[:, :-1])


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


PHASH = HashAlgorithm("phash", "pHash", hash_bits("phash"), phash_bytes, full_resolution=False)
DHASH = HashAlgorithm("dhash", "dHash", hash_bits("dhash"), dhash_bytes, full_resolution=False)
PDQ = HashAlgorithm("pdq", "PDQ", hash_bits("pdq"), pdq_bytes, full_resolution=True, requires="pdqhash")
HASH_ALGORITHMS = {algorithm.name: algorithm for algorithm in (PHASH, DHASH, PDQ)}


def trim_border(image: Image.Image) -> Image.Image:
    """The picture without a uniform frame: a border added around a stolen photo moves every
    hash as far as an unrelated photo. Only a picture whose whole outer edge is one colour is
    trimmed (a frame, or a product shot on a plain background), never an ordinary photo, whose
    edges an edit would trim differently each time. Assets and listings are trimmed alike."""
    pixels = np.asarray(image, dtype=np.int16)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    background = pixels[0, 0]
    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if int(np.abs(edge - background).max()) > BORDER_TOLERANCE:
        return image
    content = (np.abs(pixels - background) > BORDER_TOLERANCE).any(axis=2)
    rows, columns = np.flatnonzero(content.any(axis=1)), np.flatnonzero(content.any(axis=0))
    if not len(rows):
        return image  # all background: nothing to keep
    box = (int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1)
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


_TURNS = {
    "mirror": "mirrored copy",
    "flip": "upside-down mirrored copy",
    "rotate-90": "copy turned a quarter",
    "rotate-180": "copy turned upside down",
    "rotate-270": "copy turned a quarter",
    "transpose": "mirrored, turned copy",
    "transverse": "mirrored, turned copy",
}


def describe_variant(variant: str) -> str:
    """The asset variant a listing's photo matched, in an analyst's words ("crop-5-5-5-5": cropped copy)."""
    if variant.startswith("crop-"):
        return "cropped copy"
    return _TURNS.get(variant, "copy")


def asset_variants(image: Image.Image, compute: Callable[[Image.Image], bytes]) -> list[tuple[str, bytes]]:
    """The hash of every indexed variant of an asset picture, the original first."""
    variants = [(variant_name(cut), compute(crop_fraction(image, cut))) for cut in CROP_VARIANTS]
    variants.extend((name, compute(image.transpose(method))) for name, method in DIHEDRAL_VARIANTS)
    return variants


class HashMatcher:
    """One perceptual hash, searched exactly within a Hamming radius in a FAISS binary index."""

    asset_kinds: tuple[AssetKind, ...] = IMAGE_ASSET_KINDS

    def __init__(self, algorithm: HashAlgorithm, *, max_distance: int, index_dir: Path | None = None) -> None:
        self.algorithm = algorithm
        self.name = algorithm.name
        self.max_distance = max_distance
        self.index_dir = index_dir

    def _image(self, picture: Picture) -> Image.Image:
        if self.algorithm.full_resolution:
            return picture.full()
        # pHash and dHash share this one grey draft decode.
        return picture.reduced(HASH_DRAFT_SIDE, "L")

    def _trimmed(self, picture: Picture, image: Image.Image) -> Image.Image:
        return picture.derived(("trimmed", self.algorithm.full_resolution), lambda: trim_border(image))

    def encode(self, picture: Picture) -> bytes:
        """The picture's hash, followed by the hash of the picture without its frame if it has one."""
        image = self._image(picture)
        trimmed = self._trimmed(picture, image)
        hashes = [self.algorithm.compute(image)]
        if trimmed is not image:
            hashes.append(self.algorithm.compute(trimmed))
        return b"".join(hashes)

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        image = self._image(picture)
        variants = asset_variants(image, self.algorithm.compute)
        trimmed = self._trimmed(picture, image)
        if trimmed is not image:
            variants.append(("trimmed", self.algorithm.compute(trimmed)))
        return variants

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> HashIndex:
        """The index over ``signals``, kept up to date in ``index_dir`` when the matcher has one."""
        if self.index_dir is None:
            return self._sync(BinaryHashIndex(self.algorithm.bits), signals)
        return self.load_index(self.index_dir / f"{self.name}.npz", signals, brands)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> HashIndex:
        return self._sync(BinaryHashIndex(self.algorithm.bits, path), signals)

    def _sync(self, hashes: BinaryHashIndex, signals: Sequence[AssetSignal]) -> HashIndex:
        hashes.sync(as_table(signals).of_width(self.algorithm.bits // 8))
        return HashIndex(self, hashes)

    def evidence(self, image_sha256: str, hits: list[tuple[AssetSignal, int]]) -> list[Evidence]:
        """One finding per asset among ``hits`` (asset signal, distance), nearest first."""
        best: dict[int, tuple[AssetSignal, int]] = {}
        for asset_signal, distance in hits:
            current = best.get(asset_signal.asset_id)
            if current is None or distance < current[1]:
                best[asset_signal.asset_id] = (asset_signal, distance)
        found = [
            asset_evidence(
                self.name,
                asset_signal,
                image_sha256,
                distance=float(distance),
                score=self.confidence(distance),
                reason=(
                    f"{describe_variant(asset_signal.variant)} of {asset_signal.brand} asset "
                    f"#{asset_signal.asset_id} ({self.algorithm.label} distance {distance}/{self.algorithm.bits})"
                    + (f", hash-only from {asset_signal.origin}" if asset_signal.origin else "")
                ),
                details={"variant": asset_signal.variant, "max_distance": self.max_distance}
                | ({"origin": asset_signal.origin} if asset_signal.origin else {}),
            )
            for asset_signal, distance in best.values()
        ]
        return sorted(found, key=lambda evidence: evidence.distance or 0.0)

    def confidence(self, distance: int) -> float:
        """0.99 for an exact copy, falling linearly to 0.6 at the edge of the radius."""
        return round(0.99 - 0.39 * min(distance, self.max_distance) / max(self.max_distance, 1), 4)


class HashIndex:
    """One hash's asset signals, searched within the matcher's Hamming radius."""

    def __init__(self, matcher: HashMatcher, hashes: BinaryHashIndex) -> None:
        self.matcher = matcher
        self.hashes = hashes

    def __len__(self) -> int:
        return len(self.hashes)

    def save(self, path: Path) -> None:
        self.hashes.save(path)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        if not signals:
            return []
        # A listing's signal is its hash, then that of its trimmed picture when it has a frame.
        bits = self.matcher.algorithm.bits
        width = bits // 8
        owners: list[int] = []
        rows: list[bytes] = []
        for number, (_sha256, signal) in enumerate(signals):
            for start in range(0, len(signal), width):
                owners.append(number)
                rows.append(signal[start : start + width])
        per_image: list[list[tuple[AssetSignal, int]]] = [[] for _ in signals]
        hits = self.hashes.within(as_matrix(rows, bits), self.matcher.max_distance)
        for number, row_hits in zip(owners, hits, strict=True):
            per_image[number].extend(row_hits)
        return [self.matcher.evidence(sha256, hits) for (sha256, _), hits in zip(signals, per_image, strict=True)]
