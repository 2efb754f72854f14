"""Logos inside photos: local features, one descriptor index across all brands, geometric checks.

Every ``logo`` asset contributes RootSIFT descriptors from a few scales of its picture. A listing
photo's descriptors are looked up in one FAISS HNSW index over all logos at once, so the cost grows
slowly with the number of logos; matches passing Lowe's ratio test vote for their logo; the
best-voted logos are checked geometrically with a RANSAC homography, and a logo counts as found
only with enough inliers, a sane shape, and a high enough share of its votes agreeing. Evidence
records the matched region (the logo's outline projected into the photo) for the report.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import numpy as np
from PIL import Image, ImageOps

from counterscan.imaging.decode import Picture
from counterscan.matchers.geometry import Plausible, distinct_points, verify_homography
from counterscan.matchers.index import load_point_index, save_point_index
from counterscan.matchers.outline import MIN_INSIDE, Region, inlier_confidence, inside_share, logo_evidence
from counterscan.records import AssetKind, AssetSignal, Brand, Evidence

ASSET_SCALES = (160, 320, 640)
ASSET_FEATURES = 250
# Simulated views: the logo tilted by TILT (1/cos 45 degrees) along four directions, at TILT_SIDE px.
TILT = 2**0.5
TILT_ANGLES = (0.0, 45.0, 90.0, 135.0)
TILT_SIDE = 320
LISTING_SIDE = 800
LISTING_FEATURES = 800
RATIO = 0.8
MIN_VOTES = 8
NEIGHBOURS = 16

CANDIDATES = 5
RANSAC_PIXELS = 6.0
"""RANSAC's reprojection tolerance in the pixels SIFT saw the photo at."""
MIN_AREA = 100.0
LOGO_DISTINCT = 0.02
MAX_AREA_RATIO = 1.5
"""A logo's box may run a little past the photo's edges, not be much larger than the photo."""
_FORMAT = 2


@dataclass(frozen=True)
class KeypointOptions:
    min_inliers: int = 8
    min_inlier_ratio: float = 0.05


@dataclass(frozen=True)
class Features:
    points: np.ndarray
    """(n, 2) float32, in the picture's full-size pixel coordinates"""
    descriptors: np.ndarray
    """(n, 128) float32, RootSIFT"""
    width: int
    height: int

    def to_bytes(self) -> bytes:
        """A small header, points as float32 and RootSIFT as bytes: each component is at most 1 and
        a step of 1/255 is far under the distance between two features (136 bytes a feature)."""
        quantised = np.clip(np.rint(self.descriptors * 255), 0, 255).astype(np.uint8)
        head = np.array([_FORMAT, self.width, self.height, len(self.points)], np.uint32).tobytes()
        return bytes(head + self.points.astype("<f4").tobytes() + quantised.tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        if data[:2] == b"PK":  # signals stored before the compact format
            with np.load(io.BytesIO(data)) as arrays:
                width, height = (int(v) for v in arrays["size"])
                return cls(arrays["points"], arrays["descriptors"].astype(np.float32), width, height)
        _format, width, height, count = (int(v) for v in np.frombuffer(data, "<u4", 4))
        points = np.frombuffer(data, "<f4", 2 * count, 16).reshape(count, 2)
        quantised = np.frombuffer(data, np.uint8, 128 * count, 16 + 8 * count).reshape(count, 128)
        return cls(points.astype(np.float32), quantised.astype(np.float32) / 255, width, height)


def _sift(gray: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    found, descriptors = cv2.SIFT.create(nfeatures=limit).detectAndCompute(gray, None)
    if descriptors is None or not found:
        return np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32)
    root = np.sqrt(descriptors / np.maximum(descriptors.sum(axis=1, keepdims=True), 1e-7))
    return np.array([point.pt for point in found], np.float32), root.astype(np.float32)


def logo_features(image: Image.Image) -> Features:
    """Features of a logo at several sizes, and of views of it tilted away from the camera (as
    ASIFT simulates them): logos on bottles, shirts and shop fronts are rarely seen head-on."""
    gray = image.convert("L")
    points, descriptors = [], []
    for side in ASSET_SCALES:
        scale = side / max(gray.size)
        resized = gray.resize((max(8, round(gray.width * scale)), max(8, round(gray.height * scale))))
        found, described = _sift(np.asarray(resized), ASSET_FEATURES)
        points.append(found / scale)
        descriptors.append(described)
    pixels = np.asarray(gray)
    for angle in TILT_ANGLES:
        found, described = _tilted_view(pixels, angle)
        points.append(found)
        descriptors.append(described)
    return Features(np.concatenate(points), np.concatenate(descriptors), gray.width, gray.height)


def _tilted_view(pixels: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """SIFT on the logo turned by ``angle`` degrees and squeezed by TILT across; points mapped back."""
    height, width = pixels.shape
    scale = TILT_SIDE / max(width, height)
    warp = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    warp[0] /= TILT
    warp *= scale
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], np.float64) @ warp.T
    warp[:, 2] -= corners.min(axis=0)
    size = np.ceil(corners.max(axis=0) - corners.min(axis=0)).astype(int) + 1
    view = cv2.warpAffine(pixels, warp, (int(size[0]), int(size[1])), borderMode=cv2.BORDER_REPLICATE)
    found, described = _sift(view, ASSET_FEATURES)
    if not len(found):
        return found, described
    back = cv2.invertAffineTransform(warp)
    return (np.hstack([found, np.ones((len(found), 1), np.float32)]) @ back.T).astype(np.float32), described


def photo_features(image: Image.Image, original_size: tuple[int, int]) -> Features:
    gray = image.convert("L")
    gray.thumbnail((LISTING_SIDE, LISTING_SIDE))
    found, described = _sift(np.asarray(gray), LISTING_FEATURES)
    scale = original_size[0] / gray.width
    return Features(found * scale, described, original_size[0], original_size[1])


class LogoIndex:
    """Every logo's descriptors in one FAISS HNSW index, each row knowing its logo, brand and point."""

    def __init__(
        self, matcher: KeypointMatcher, signals: Sequence[AssetSignal], saved: faiss.IndexHNSWFlat | None = None
    ) -> None:
        """``saved``: the descriptor index of these very signals, loaded rather than built again."""
        self.matcher = matcher
        self.assets: list[tuple[AssetSignal, Features]] = [(s, Features.from_bytes(s.signal)) for s in signals]
        owners, points, descriptors = [], [], []
        for number, (_signal, features) in enumerate(self.assets):
            owners.append(np.full(len(features.descriptors), number))
            points.append(features.points)
            descriptors.append(features.descriptors)
        self.owner = np.concatenate(owners) if owners else np.zeros(0, int)
        brand_of_asset = np.array([signal.brand_id for signal, _features in self.assets] or [0])
        # Points closer than this (4% of the logo's size) are the same feature seen twice.
        self.tolerance = np.array([0.04 * max(f.width, f.height) for _s, f in self.assets] or [1.0])

        self.brand = brand_of_asset[self.owner] if len(self.owner) else np.zeros(0, int)
        self.points = np.concatenate(points) if points else np.zeros((0, 2), np.float32)
        if saved is not None:
            self.index = saved
        else:
            self.index = faiss.IndexHNSWFlat(128, 32)
            if descriptors:
                self.index.add(np.ascontiguousarray(np.concatenate(descriptors)))
        self.index.hnsw.efSearch = 48

    def __len__(self) -> int:
        return len(self.assets)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        return [self.matcher.match(self, sha256, Features.from_bytes(signal)) for sha256, signal in signals]

    def save(self, path: Path) -> None:
        save_point_index(path, (signal for signal, _features in self.assets), self.index)


class KeypointMatcher:
    """Logo assets found inside listing photos, with the matched region."""

    name = "keypoints"
    asset_kinds: tuple[AssetKind, ...] = ("logo",)

    def __init__(self, options: KeypointOptions | None = None) -> None:
        self.options = options or KeypointOptions()

    def encode(self, picture: Picture) -> bytes:
        return photo_features(picture.grey(LISTING_SIDE), picture.size).to_bytes()

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        """The logo as drawn, and in negative: a dark logo on light packaging is printed light on dark
        elsewhere, and SIFT descriptors flip with the contrast."""
        gray = picture.full("L")
        return [
            ("original", logo_features(gray).to_bytes()),
            ("negative", logo_features(ImageOps.invert(gray)).to_bytes()),
        ]

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> LogoIndex:
        return LogoIndex(self, signals)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> LogoIndex:
        return LogoIndex(self, signals, load_point_index(path, signals))

    def match(self, index: LogoIndex, sha256: str, photo: Features) -> list[Evidence]:
        """The logos of ``index`` found in one photo, best first."""
        if not len(index) or len(photo.descriptors) < MIN_VOTES or index.index.ntotal < 2:
            return []
        distances, ids = index.index.search(np.ascontiguousarray(photo.descriptors), NEIGHBOURS)
        # Lowe's ratio test against the nearest *different* feature: the same logo point seen at
        # another scale, or in another crop of the same brand, is a copy, not a rival.
        safe = np.maximum(ids, 0)
        first = safe[:, :1]
        other_brand = index.brand[safe] != index.brand[first]
        other_asset = index.owner[safe] != index.owner[first]
        moved = np.linalg.norm(index.points[safe] - index.points[first], axis=2) > index.tolerance[index.owner[first]]
        rival = (ids >= 0) & (other_brand | (~other_asset & moved))
        rival_distance = np.where(rival, distances, np.inf).min(axis=1)

        # Every neighbour of the first one's brand that passes the ratio test is a match: with
        # several crops of one logo, a photo point should count for each crop, not just the nearest.
        passing = (ids >= 0) & ~other_brand & (distances < (RATIO**2) * rival_distance[:, None])
        query_rows, columns = np.nonzero(passing)
        if len(np.unique(query_rows)) < MIN_VOTES:
            return []
        matched = ids[query_rows, columns]
        owners = index.owner[matched]
        # One correspondence per (photo point, logo): the nearest, as neighbours come sorted.
        _, first_of_pair = np.unique(query_rows * len(index) + owners, return_index=True)
        query_rows, matched, owners = query_rows[first_of_pair], matched[first_of_pair], owners[first_of_pair]
        votes = np.bincount(owners, minlength=len(index))
        found = []
        for number in np.argsort(-votes)[:CANDIDATES]:
            if votes[number] < MIN_VOTES:
                break
            chosen = owners == number
            verdict = self._verify(
                index, number, photo, photo.points[query_rows[chosen]], index.points[matched[chosen]]
            )

            if verdict is not None:
                found.append(self._evidence(index.assets[number][0], sha256, int(votes[number]), *verdict))
        return sorted(found, key=lambda item: -item.score)

    def _verify(
        self, index: LogoIndex, number: int, photo: Features, photo_points: np.ndarray, logo_points: np.ndarray
    ) -> tuple[int, Region] | None:
        """Distinct points agreeing with a plausible homography from the logo into the photo (the
        shared geometric check: a degenerate homography that squashes the logo onto a few points is
        refused), and the logo's outline in the photo."""
        features = index.assets[number][1]
        plausible = Plausible(min_inliers=self.options.min_inliers, min_area=MIN_AREA, max_area_ratio=MAX_AREA_RATIO)
        found = verify_homography(
            logo_points,
            photo_points,
            (features.width, features.height),
            (photo.width, photo.height),
            threshold=RANSAC_PIXELS * max(1.0, max(photo.width, photo.height) / LISTING_SIDE),
            plausible=plausible,
        )
        if found is None or inside_share(found.quad, photo.width, photo.height) < MIN_INSIDE:
            return None
        # The logo is described at several sizes and tilts: one of its points comes back several
        # times a pixel or so apart, and counts once.
        inliers = min(
            found.inliers,
            distinct_points(logo_points[found.inlier_mask], (features.width, features.height), LOGO_DISTINCT),
        )
        if inliers < self.options.min_inliers or inliers / len(logo_points) < self.options.min_inlier_ratio:
            return None
        return inliers, found.region()

    def _evidence(self, asset: AssetSignal, sha256: str, votes: int, inliers: int, quad: Region) -> Evidence:
        return logo_evidence(
            self.name,
            asset,
            sha256,
            distance=float(-inliers),
            score=inlier_confidence(inliers),
            how=f" by its SIFT keypoints: {inliers} distinct points agree with one view of the logo",
            details={"inliers": inliers, "votes": votes},
            region=quad,
        )
