"""Flat logos inside photos by their silhouette: one colour, few corners, a distinctive outline.

SIFT finds few corners on a plain mark (an apple, a swoosh, two arches), but such a mark is a
stable region of one colour whose *outline* is distinctive. Both sides are cut into maximally
stable extremal regions (MSER, dark and light). Each region is normalised for position, scale
and any affine distortion by its second moments (a tilted logo and a head-on one become the same
shape, up to a rotation) and sampled on a polar grid around its centre: GRID_RINGS x GRID_ANGLES
cells, one bit each, 32 bytes per region. A rotation turns the grid's columns, so a logo region
and a photo region are compared at every turn; the best overlap (intersection over union of the
cells, each weighted by its area) is the match. The turn that fits, together with the two
regions' moments, is an affine transform from the logo to the photo: it projects the logo's
outline into the photo (the matched region) and must keep a sane shape.

Regions that say nothing (a disk, a square, a bar: what any photo is full of) and regions that
two brands share are not used as logo shapes. Matching is a nearest-neighbour search over the
turn-invariant spectrum of every logo region, then the exact overlap for the few nearest.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from counterscan.imaging.decode import Picture
from counterscan.matchers.index import load_derived, save_derived, signals_digest
from counterscan.matchers.outline import Region, logo_corners, logo_evidence
from counterscan.records import AssetKind, AssetSignal, Brand, Evidence

GRID_RINGS = 8
GRID_ANGLES = 32
# The grid covers radius 0 to REACH in the normalised frame (unit covariance: a uniform disk has
# radius 2); each cell is the share of the region in it, averaged over the cell and then rounded.
REACH = 3.0
RING_RADII = (np.arange(GRID_RINGS) + 0.5) * REACH / GRID_RINGS
CANVAS = 96
OVERSAMPLE = 4
# Cell weights: a ring's cells cover an area growing with its radius.
WEIGHTS = np.repeat(RING_RADII / RING_RADII.sum() / GRID_ANGLES, GRID_ANGLES).astype(np.float32)
HARMONICS = 8

PHOTO_SIDE = 480
SHARED_SIDE = 800
PHOTO_REGIONS = 80
PHOTO_MIN_AREA = 120
ASSET_SIDE = 256
ASSET_MIN_SHARE = 0.04
"""A logo region must cover this share of the logo's picture: a letter of a wordmark is no mark."""
ASSET_REGIONS = 8
SIMPLE_MAX = 0.8
"""Regions that overlap a plain shape (disk, square, triangle) this well say nothing."""
SHARED_MAX = 0.8
"""Logo regions of two brands that overlap this well identify neither."""
NEAREST = 16
MIN_CELLS = GRID_RINGS * GRID_ANGLES // 10

_REGION = struct.Struct("<ffeee")  # centre x, y; square root of the covariance (a, b, c)
REGION_BYTES = _REGION.size + GRID_RINGS * GRID_ANGLES // 8


@dataclass(frozen=True)
class ShapeOptions:
    min_overlap: float = 0.88
    """Weighted overlap of a photo region with a logo region to count as found."""
    margin: float = 0.2
    """How much better the logo must fit than the plainest shape that fits the photo region."""
    rival_margin: float = 0.0
    """How much better the logo must fit than any other brand's logo shape."""


@dataclass(frozen=True)
class Regions:
    """Normalised regions of one picture."""

    centres: np.ndarray
    """(n, 2) float32 in the picture's pixels"""
    roots: np.ndarray
    """(n, 2, 2) float32: the square root of each region's covariance (normalised frame -> pixels)"""
    bits: np.ndarray
    """(n, GRID_RINGS * GRID_ANGLES) bool, ring-major"""
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.centres)

    def to_bytes(self) -> bytes:
        head = struct.pack("<HHH", self.width, self.height, len(self))
        packed = np.packbits(self.bits, axis=1)
        rows = [
            _REGION.pack(float(c[0]), float(c[1]), float(r[0, 0]), float(r[0, 1]), float(r[1, 1])) + p.tobytes()
            for c, r, p in zip(self.centres, self.roots, packed, strict=True)
        ]
        return head + b"".join(rows)

    @classmethod
    def from_bytes(cls, data: bytes) -> Regions:
        width, height, count = struct.unpack_from("<HHH", data)
        centres = np.zeros((count, 2), np.float32)
        roots = np.zeros((count, 2, 2), np.float32)
        packed = np.zeros((count, GRID_RINGS * GRID_ANGLES // 8), np.uint8)
        offset = 6
        for row in range(count):
            x, y, a, b, c = _REGION.unpack_from(data, offset)
            centres[row] = (x, y)
            roots[row] = ((a, b), (b, c))
            packed[row] = np.frombuffer(data, np.uint8, packed.shape[1], offset + _REGION.size)
            offset += REGION_BYTES
        bits = np.unpackbits(packed, axis=1).astype(bool)
        return cls(centres, roots, bits, width, height)


def _empty(width: int, height: int) -> Regions:
    return Regions(
        np.zeros((0, 2), np.float32),
        np.zeros((0, 2, 2), np.float32),
        np.zeros((0, GRID_RINGS * GRID_ANGLES), bool),
        width,
        height,
    )


def grid(mask: np.ndarray, centre: np.ndarray, root: np.ndarray) -> np.ndarray:
    """The polar grid of one region (``mask`` bool, ``centre`` in its pixels, ``root`` the square
    root of its covariance): the region mapped into the normalised frame, then averaged per cell."""
    unit = CANVAS / (2 * REACH)
    linear = unit * np.linalg.inv(root)
    affine = np.hstack([linear, (CANVAS / 2 - linear @ centre)[:, None]]).astype(np.float64)
    normalised = cv2.warpAffine(mask.view(np.uint8) * np.float32(1), affine, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR)
    polar = cv2.warpPolar(
        normalised,
        (GRID_RINGS * OVERSAMPLE, GRID_ANGLES * OVERSAMPLE),
        (CANVAS / 2, CANVAS / 2),
        REACH * unit,
        cv2.INTER_LINEAR + cv2.WARP_POLAR_LINEAR,
    )  # rows: angles, columns: radii
    cells = polar.reshape(GRID_ANGLES, OVERSAMPLE, GRID_RINGS, OVERSAMPLE).mean(axis=(1, 3))
    return np.asarray(cells.T.reshape(-1) >= 0.5)


LEVELS = tuple(range(32, 240, 32))
"""Grey levels a photo is cut at, each way (darker and lighter than the level)."""
MIN_FILL = 0.08
"""A region filling less of its box is a tangle of texture, not a mark."""


@dataclass(frozen=True)
class _Component:
    box: tuple[int, int, int, int]
    """x0, y0, x1, y1 inclusive"""
    mask: np.ndarray
    """bool, the box's size"""
    area: int


def _cut(gray: np.ndarray, levels: Sequence[int], min_area: int) -> list[list[_Component]]:
    """Connected components of the picture cut at each level, darker and lighter: a flat mark is a
    component at every level between its tone and its background's (what MSER calls stable)."""
    height, width = gray.shape
    max_area = int(0.5 * width * height)
    cuts = []
    for level in levels:
        for binary in (gray < level, gray >= level):
            _count, labels, stats, _centres = cv2.connectedComponentsWithStats(binary.view(np.uint8), connectivity=8)
            found = []
            # Label 0 is the other tone.
            for label in np.nonzero((stats[1:, 4] >= min_area) & (stats[1:, 4] <= max_area))[0] + 1:
                x, y, w, h, area = (int(v) for v in stats[label])
                sides = (x == 0) + (y == 0) + (x + w == width) + (y + h == height)
                if sides >= 3 or area < MIN_FILL * w * h:
                    continue
                mask = labels[y : y + h, x : x + w] == label
                found.append(_Component((x, y, x + w - 1, y + h - 1), mask, area))
            cuts.append(found)
    return cuts


def _stable(cuts: list[list[_Component]], limit: int) -> list[_Component]:
    """One component per group of near-copies (the same mark cut at neighbouring levels), the
    groups seen at the most levels first, then the biggest."""
    groups: list[list[_Component]] = []
    heads = np.zeros((0, 4), np.int64)
    for component in sorted((c for cut in cuts for c in cut), key=lambda c: -c.area):
        same = np.nonzero(_box_overlap(np.array(component.box), heads) > 0.85)[0]
        if len(same):
            groups[int(same[0])].append(component)
        else:
            groups.append([component])
            heads = np.vstack([heads, component.box])
    groups.sort(key=lambda group: (-len(group), -group[0].area))
    return [group[len(group) // 2] for group in groups[:limit]]


def _otsu(gray: np.ndarray) -> int:
    level, _binary = cv2.threshold(cv2.GaussianBlur(gray, (3, 3), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return max(1, int(level))


def describe(gray: np.ndarray, *, min_area: int, max_regions: int, drawn: bool = False) -> Regions:
    """The normalised regions of a grey picture (uint8 array), plain ones dropped.
    ``drawn``: a logo's picture, cut at Otsu's level rather than at every level."""
    height, width = gray.shape
    levels = (_otsu(gray),) if drawn else LEVELS
    centres, roots, bits = [], [], []
    for component in _stable(_cut(gray, levels, min_area), 3 * max_regions):
        x0, y0 = component.box[:2]
        moments = cv2.moments(component.mask.view(np.uint8), binaryImage=True)
        area = moments["m00"]
        centre = np.array([moments["m10"] / area, moments["m01"] / area])
        # Pixels are squares, not points: 1/12 of a pixel's variance each way.
        covariance = np.array([[moments["mu20"], moments["mu11"]], [moments["mu11"], moments["mu02"]]]) / area
        values, vectors = np.linalg.eigh(covariance + np.eye(2) / 12)
        if values.min() <= 0.5:
            continue  # a line of pixels
        root = (vectors * np.sqrt(values)) @ vectors.T
        centres.append(centre + np.array([x0, y0]))
        roots.append(root)
        bits.append(grid(component.mask, centre, root))
    if not centres:
        return _empty(width, height)
    regions = Regions(np.array(centres, np.float32), np.array(roots, np.float32), np.array(bits, bool), width, height)
    filled = regions.bits.sum(axis=1)
    # A region that fills few cells (a thin ring, a scribble) fits anything as thin.
    keep = np.nonzero((simplicity(regions.bits) < SIMPLE_MAX) & (filled >= MIN_CELLS))[0][:max_regions]
    return Regions(regions.centres[keep], regions.roots[keep], regions.bits[keep], width, height)


def _box_overlap(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one inclusive box with each of ``boxes``."""
    ix = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1
    iy = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    area = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    return np.asarray(inter / (area + areas - inter), np.float64)


def overlaps(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best weighted overlap over all turns, and the turn, of each row of ``first`` (n, cells)
    with each row of ``second`` (m, cells): (n, m) overlaps and (n, m) turns in grid steps."""
    a = first.reshape(len(first), GRID_RINGS, GRID_ANGLES).astype(np.float32)
    b = second.reshape(len(second), GRID_RINGS, GRID_ANGLES).astype(np.float32)
    weights = WEIGHTS.reshape(GRID_RINGS, GRID_ANGLES)[:, 0]
    # Circular cross-correlation along the angles, ring by ring, through the FFT.
    spectrum_a = np.fft.rfft(a * weights[None, :, None], axis=2)
    spectrum_b = np.fft.rfft(b, axis=2)
    product = np.einsum("nrk,mrk->nmk", spectrum_a, np.conj(spectrum_b))
    intersection = np.fft.irfft(product, n=GRID_ANGLES, axis=2)  # [n, m, turn of b]
    mass_a = (a * weights[None, :, None]).sum(axis=(1, 2))
    mass_b = (b * weights[None, :, None]).sum(axis=(1, 2))
    union = mass_a[:, None, None] + mass_b[None, :, None] - intersection
    ratio = intersection / np.maximum(union, 1e-9)
    turn = ratio.argmax(axis=2)
    return np.take_along_axis(ratio, turn[..., None], axis=2)[..., 0], turn


def pair_overlaps(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`overlaps`, for row ``i`` of ``first`` with row ``i`` of ``second`` only: (n,) each."""
    a = first.reshape(len(first), GRID_RINGS, GRID_ANGLES).astype(np.float32)
    b = second.reshape(len(second), GRID_RINGS, GRID_ANGLES).astype(np.float32)
    weights = WEIGHTS.reshape(GRID_RINGS, GRID_ANGLES)[:, 0][None, :, None]
    product = (np.fft.rfft(a * weights, axis=2) * np.conj(np.fft.rfft(b, axis=2))).sum(axis=1)
    intersection = np.fft.irfft(product, n=GRID_ANGLES, axis=1)
    union = (a * weights).sum(axis=(1, 2))[:, None] + (b * weights).sum(axis=(1, 2))[:, None] - intersection
    ratio = intersection / np.maximum(union, 1e-9)
    turn = ratio.argmax(axis=1)
    return ratio[np.arange(len(ratio)), turn], turn


@functools.cache
def _plain_shapes() -> np.ndarray:
    """Grids of the shapes any photo is full of, drawn and normalised like every region."""
    side = 200
    drawings = []
    disk = np.zeros((side, side), np.uint8)
    cv2.circle(disk, (100, 100), 80, 255, -1)
    drawings.append(disk)
    square = np.zeros((side, side), np.uint8)
    square[30:170, 30:170] = 255
    drawings.append(square)
    triangle = np.zeros((side, side), np.uint8)
    cv2.fillPoly(triangle, [np.array([[100, 20], [180, 170], [20, 170]], np.int32)], 255)
    drawings.append(triangle)
    ring = disk.copy()
    cv2.circle(ring, (100, 100), 50, 0, -1)
    drawings.append(ring)
    bits = []
    for drawing in drawings:
        ys, xs = np.nonzero(drawing)
        points = np.stack([xs, ys], axis=1).astype(np.float64)
        values, vectors = np.linalg.eigh(np.cov(points.T) + np.eye(2) / 12)
        bits.append(grid(drawing > 0, points.mean(axis=0), (vectors * np.sqrt(values)) @ vectors.T))
    return np.array(bits)


def simplicity(bits: np.ndarray) -> np.ndarray:
    """How well each region is explained by a plain shape (best overlap with any of them)."""
    if not len(bits):
        return np.zeros(0, np.float32)
    return np.asarray(overlaps(bits, _plain_shapes())[0].max(axis=1), np.float32)


def spectrum(bits: np.ndarray) -> np.ndarray:
    """A turn-invariant key per region: the magnitudes of each ring's low harmonics, unit length."""
    grid = bits.reshape(len(bits), GRID_RINGS, GRID_ANGLES).astype(np.float32)
    weights = WEIGHTS.reshape(GRID_RINGS, GRID_ANGLES)[:, 0]
    keys = np.abs(np.fft.rfft(grid * np.sqrt(weights)[None, :, None], axis=2))[:, :, :HARMONICS]
    keys = keys.reshape(len(bits), -1)
    return np.asarray(keys / np.maximum(np.linalg.norm(keys, axis=1, keepdims=True), 1e-9), np.float32)


def logo_regions(image: Image.Image) -> Regions:
    gray = image.convert("L")
    scale = ASSET_SIDE / max(gray.size)
    small = gray.resize((max(8, round(gray.width * scale)), max(8, round(gray.height * scale))))
    min_area = max(30, int(ASSET_MIN_SHARE * small.width * small.height))
    regions = describe(np.asarray(small), min_area=min_area, max_regions=ASSET_REGIONS, drawn=True)
    return Regions(regions.centres / scale, regions.roots / scale, regions.bits, gray.width, gray.height)


def photo_regions(image: Image.Image, original_size: tuple[int, int]) -> Regions:
    gray = image.convert("L")
    gray.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
    scale = original_size[0] / gray.width
    regions = describe(np.asarray(gray), min_area=PHOTO_MIN_AREA, max_regions=PHOTO_REGIONS)
    width, height = original_size
    return Regions(regions.centres * scale, regions.roots * scale, regions.bits, width, height)


def _shared(bits: np.ndarray, brand: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Regions that another brand's region fits (a shape two brands share identifies neither),
    compared only with each region's nearest other-brand regions by key, a chunk at a time, so the
    cost grows linearly with the number of logos."""
    keys = spectrum(bits)
    shared = np.zeros(len(bits), bool)
    for start in range(0, len(bits), chunk):
        rows = np.arange(start, min(start + chunk, len(bits)))
        similarity = np.where(brand[rows, None] != brand[None, :], keys[rows] @ keys.T, -np.inf)
        nearest = np.argsort(-similarity, axis=1)[:, :NEAREST]
        valid = np.take_along_axis(similarity, nearest, axis=1) > -np.inf
        fit, _turn = pair_overlaps(np.repeat(bits[rows], nearest.shape[1], axis=0), bits[nearest.reshape(-1)])
        shared[rows] = ((fit.reshape(nearest.shape) >= SHARED_MAX) & valid).any(axis=1)
    return shared


class ShapeIndex:
    """Every logo's distinctive regions, keyed by their turn-invariant spectrum."""

    def __init__(self, matcher: ShapeMatcher, signals: Sequence[AssetSignal], saved: np.ndarray | None = None) -> None:
        """``saved``: which regions of these very signals are distinctive (the costly part), if known."""
        self.matcher = matcher
        assets = [(signal, Regions.from_bytes(signal.signal)) for signal in signals]
        owner = [number for number, (_s, regions) in enumerate(assets) for _ in range(len(regions))]
        self.assets = assets
        self.owner = np.array(owner, int)
        self.brand = np.array([assets[n][0].brand_id for n in owner], int)
        self.row = np.array([row for _s, regions in assets for row in range(len(regions))], int)
        self.bits = (
            np.concatenate([regions.bits for _s, regions in assets])
            if owner
            else np.zeros((0, GRID_RINGS * GRID_ANGLES), bool)
        )
        self.kept = np.ones(len(self.bits), bool)
        """Which of the logos' regions are used (those no two brands share)."""
        if len(self.bits):
            self.kept = ~_shared(self.bits, self.brand) if saved is None else saved.astype(bool)
            keep = self.kept
            self.owner, self.brand, self.row, self.bits = (
                self.owner[keep],
                self.brand[keep],
                self.row[keep],
                self.bits[keep],
            )
        self.keys = spectrum(self.bits) if len(self.bits) else np.zeros((0, GRID_RINGS * HARMONICS), np.float32)

    def __len__(self) -> int:
        return len(self.bits)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        return [self.matcher.match(self, sha256, Regions.from_bytes(signal)) for sha256, signal in signals]

    def save(self, path: Path) -> None:
        save_derived(path, signals_digest(signal for signal, _regions in self.assets), kept=self.kept)


class ShapeMatcher:
    """Flat logo assets found inside listing photos by their silhouette, with the matched region."""

    name = "shapes"
    asset_kinds: tuple[AssetKind, ...] = ("logo",)

    def __init__(self, options: ShapeOptions | None = None) -> None:
        self.options = options or ShapeOptions()

    def encode(self, picture: Picture) -> bytes:
        # The grey the keypoint matcher asks for too (one decode for both), reduced further here.
        return photo_regions(picture.grey(SHARED_SIDE), picture.size).to_bytes()

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        return [("original", logo_regions(picture.full("L")).to_bytes())]

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> ShapeIndex:
        return ShapeIndex(self, signals)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> ShapeIndex:
        saved = load_derived(path, signals_digest(signals), "kept")
        return ShapeIndex(self, signals, None if saved is None else saved["kept"])

    def match(self, index: ShapeIndex, sha256: str, photo: Regions) -> list[Evidence]:
        """The logos of ``index`` found in one photo by their shape, best first."""
        if not len(index) or not len(photo):
            return []
        nearest = np.argsort(-(spectrum(photo.bits) @ index.keys.T), axis=1)[:, :NEAREST]
        fit, turns = pair_overlaps(np.repeat(photo.bits, nearest.shape[1], axis=0), index.bits[nearest.reshape(-1)])
        fit, turns = fit.reshape(nearest.shape), turns.reshape(nearest.shape)
        plain = simplicity(photo.bits)
        brands = index.brand[nearest]
        options = self.options
        best: dict[int, tuple[float, Evidence]] = {}
        for region, column in zip(*np.nonzero(fit >= options.min_overlap), strict=True):
            value = float(fit[region, column])
            # The best fit of another brand's shape to the same region: a region that fits two
            # brands about as well says little about either.
            rival = float(np.max(fit[region], where=brands[region] != brands[region, column], initial=0.0))
            if value < plain[region] + options.margin or value < rival + options.rival_margin:
                continue
            candidate = nearest[region, column]
            number = int(index.owner[candidate])
            signal, logo = index.assets[number]
            quad = _project(logo, int(index.row[candidate]), photo, region, int(turns[region, column]))
            if quad is None:
                continue
            strength = value - max(float(plain[region]), rival)
            if number not in best or best[number][0] < strength:
                evidence = self._evidence(signal, sha256, value, quad, float(plain[region]), rival)
                best[number] = (strength, evidence)
        return [evidence for _strength, evidence in sorted(best.values(), key=lambda item: -item[0])]

    def _evidence(
        self, asset: AssetSignal, sha256: str, fit: float, quad: Region, plain: float, rival: float
    ) -> Evidence:
        low = self.options.min_overlap
        return logo_evidence(
            self.name,
            asset,
            sha256,
            distance=round(1 - fit, 4),
            # Under a keypoint match's 0.55-0.95: one outline is weaker evidence than many features.
            score=round(0.45 + 0.15 * min(1.0, (fit - low) / max(1e-6, 1 - low)), 4),
            how=(f" by its shape: a region of one tone whose outline covers {fit:.0%} of the logo's"),
            details={"overlap": round(fit, 4), "plain": round(plain, 4), "rival": round(rival, 4)},
            region=quad,
        )


def _project(logo: Regions, row: int, photo: Regions, region: int, turn: int) -> Region | None:
    """The logo's outline in the photo, through the affine transform that fits the two regions."""
    # Photo grid column k + turn matches logo column k: the photo's frame is the logo's turned.
    angle = turn * 2 * np.pi / GRID_ANGLES
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    linear = photo.roots[region] @ rotation @ np.linalg.inv(logo.roots[row])
    quad = (logo_corners(logo.width, logo.height, np.float64) - logo.centres[row]) @ linear.T + photo.centres[region]
    if not _plausible(quad, logo.width, logo.height):
        return None
    return [[round(float(x), 1), round(float(y), 1)] for x, y in quad]


def _plausible(quad: np.ndarray, width: int, height: int) -> bool:
    """Not mirrored, not squashed beyond a steep tilt, and with a sensible size."""
    edge_a = quad[1] - quad[0]
    edge_b = quad[3] - quad[0]
    cross = edge_a[0] * edge_b[1] - edge_a[1] * edge_b[0]
    if cross <= 0:
        return False  # a mirror image
    stretch = (float(np.linalg.norm(edge_a)) / max(1, width)) / max(
        1e-6, float(np.linalg.norm(edge_b)) / max(1, height)
    )
    if not 0.4 < stretch < 2.5:
        return False
    cosine = abs(float(edge_a @ edge_b)) / max(1e-6, float(np.linalg.norm(edge_a) * np.linalg.norm(edge_b)))
    return cosine < 0.7 and abs(cross) >= 100
