"""Brand marks inside photos by learned local features (XFeat), flat silhouettes included.

RootSIFT (``keypoints.py``) needs corners and texture; a flat mark (an apple, a cat, a chevron)
has few, but XFeat's learned keypoints and descriptors still find its outline. Every ``logo``
asset is described at a few sizes (a mark in a photo is rarely as large as its asset) and in
negative (a dark mark on light packaging is printed light on dark elsewhere). The listing photo
is described once, with the options every matcher shares (one forward pass per photo).

All marks' descriptors sit in one FAISS index: each photo descriptor votes for the marks whose
descriptors are close enough; the best-voted marks are checked geometrically (a homography that
carries the mark onto distinct photo points, into a convex box of plausible size and shape), and
the count of distinct points that agree is the evidence. Evidence records the projected box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import faiss
import numpy as np
from PIL import Image, ImageOps

from counterscan.imaging.decode import Picture
from counterscan.imaging.learned import DESCRIPTOR_SIZE, FeatureOptions, LocalFeatureNetwork
from counterscan.matchers.geometry import Plausible, distinct_points, verify_homography
from counterscan.matchers.index import load_point_index, save_point_index
from counterscan.matchers.outline import MIN_INSIDE, inlier_confidence, inside_share, logo_evidence
from counterscan.records import AssetKind, AssetSignal, Brand, Evidence

ASSET_SIDES = (96, 160, 256, 400)
"""Longest side (px) of each size a mark is described at."""
ASSET_TOP_K = 256
MIN_SIDE = 40
"""XFeat needs 32 px on each side; a short side under this is padded."""
PAD_SHARE = 0.1
NEIGHBOURS = 8
CANDIDATES = 8
"""Mark views (asset and variant) checked geometrically per photo, the best-voted first ..."""
PER_BRAND = 3
"""... and at most this many of one brand."""
RANSAC_PIXELS = 5.0
"""RANSAC's reprojection tolerance in the pixels the network saw the photo at."""
MIN_AREA = 24.0 * 24.0
"""A mark's box in the photo covers at least this many pixels (smaller: too few points to tell)."""
MARK_DISTINCT = 0.02
"""On the mark's side, points closer than this share of its longest side are one point."""
MAX_AREA_RATIO = 1.5
"""A logo's box may run a little past the photo's edges, not be much larger than the photo."""
_FORMAT = 1
_HEAD = 16


@dataclass(frozen=True)
class MarkOptions:
    min_similarity: float = 0.82
    """Cosine similarity of two descriptors to count as the same point."""
    min_inliers: int = 14
    """Distinct photo points a mark's homography must carry (fewer: not found); chosen on the even
    half of FlickrLogos-27 (8-12 let flat shapes of other brands through)."""
    photo: FeatureOptions = field(default_factory=FeatureOptions)
    """How the listing photo is looked at: the options every matcher shares by default."""


@dataclass(frozen=True)
class MarkFeatures:
    """Keypoints (full-size pixels of the picture) and unit descriptors of a photo or a mark."""

    points: np.ndarray
    descriptors: np.ndarray
    width: int
    height: int

    def to_bytes(self) -> bytes:
        """Points as float32, descriptors as int8 (unit vectors times 127: a step far under the
        distance between two different points): 72 bytes a keypoint."""
        quantised = np.clip(np.rint(self.descriptors * 127), -127, 127).astype(np.int8)
        head = np.array([_FORMAT, self.width, self.height, len(self.points)], np.uint32).tobytes()
        return bytes(head + self.points.astype("<f4").tobytes() + quantised.tobytes())

    @classmethod
    def from_bytes(cls, data: bytes) -> MarkFeatures:
        _format, width, height, count = (int(v) for v in np.frombuffer(data, "<u4", 4))
        points = np.frombuffer(data, "<f4", 2 * count, _HEAD).reshape(count, 2)
        quantised = np.frombuffer(data, np.int8, DESCRIPTOR_SIZE * count, _HEAD + 8 * count)
        descriptors = quantised.reshape(count, DESCRIPTOR_SIZE).astype(np.float32)
        descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-6)
        return cls(points.astype(np.float32), descriptors, width, height)


def mark_features(network: LocalFeatureNetwork, image: Image.Image) -> MarkFeatures:
    """XFeat features of a mark at each of ASSET_SIDES, in the mark's own pixels."""
    rgb = image.convert("RGB")
    points, descriptors = [], []
    for side in ASSET_SIDES:
        scale = side / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        pixels = np.asarray(rgb.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC))
        # A margin of the mark's own edge colours: keypoints on its outline need pixels around it.
        pad_x = max(round(PAD_SHARE * size[0]), (MIN_SIDE - size[0] + 1) // 2, 0)
        pad_y = max(round(PAD_SHARE * size[1]), (MIN_SIDE - size[1] + 1) // 2, 0)
        padded = cv2.copyMakeBorder(pixels, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
        found, described, _scores = network.extract(padded, top_k=ASSET_TOP_K)
        found = (found - np.array([pad_x, pad_y], np.float32)) / scale
        inside = (
            (found[:, 0] >= -0.02 * rgb.width)
            & (found[:, 0] <= 1.02 * rgb.width)
            & (found[:, 1] >= -0.02 * rgb.height)
            & (found[:, 1] <= 1.02 * rgb.height)
        )
        points.append(found[inside])
        descriptors.append(described[inside])
    return MarkFeatures(
        np.concatenate(points).astype(np.float32),
        np.concatenate(descriptors).astype(np.float32),
        rgb.width,
        rgb.height,
    )


class MarkIndex:
    """Every mark's descriptors in one FAISS HNSW index, each row knowing its mark and point."""

    def __init__(
        self, matcher: MarkMatcher, signals: Sequence[AssetSignal], saved: faiss.IndexHNSWFlat | None = None
    ) -> None:
        """``saved``: the descriptor index of these very signals, loaded rather than built again."""
        self.matcher = matcher
        self.assets = [(signal, MarkFeatures.from_bytes(signal.signal)) for signal in signals]
        owners = [np.full(len(features.points), number) for number, (_s, features) in enumerate(self.assets)]
        self.owner = np.concatenate(owners) if owners else np.zeros(0, int)
        self.points = np.concatenate([f.points for _s, f in self.assets]) if self.assets else np.zeros((0, 2))
        if saved is not None:
            self.index = saved
        else:
            self.index = faiss.IndexHNSWFlat(DESCRIPTOR_SIZE, 32)
            if self.assets:
                self.index.add(np.ascontiguousarray(np.concatenate([f.descriptors for _s, f in self.assets])))
        self.index.hnsw.efSearch = 64

    def __len__(self) -> int:
        return len(self.assets)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        return [self.matcher.match(self, sha256, MarkFeatures.from_bytes(signal)) for sha256, signal in signals]

    def save(self, path: Path) -> None:
        save_point_index(path, (signal for signal, _features in self.assets), self.index)


class MarkMatcher:
    """Brand marks (logo assets) found inside listing photos by XFeat, with the matched box."""

    name = "marks"
    asset_kinds: tuple[AssetKind, ...] = ("logo",)

    def __init__(self, network: LocalFeatureNetwork, options: MarkOptions | None = None) -> None:
        self.network = network
        self.options = options or MarkOptions()

    def encode(self, picture: Picture) -> bytes:
        features = self.network.features(picture, self.options.photo)
        return MarkFeatures(features.keypoints, features.descriptors, *picture.size).to_bytes()

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        """The mark as drawn, and in negative."""
        image = picture.full("RGB")
        return [
            ("original", mark_features(self.network, image).to_bytes()),
            ("negative", mark_features(self.network, ImageOps.invert(image)).to_bytes()),
        ]

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> MarkIndex:
        return MarkIndex(self, signals)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> MarkIndex:
        return MarkIndex(self, signals, load_point_index(path, signals))

    def match(self, index: MarkIndex, sha256: str, photo: MarkFeatures) -> list[Evidence]:
        """The marks of ``index`` found in one photo, best first (one per brand)."""
        if not len(index) or len(photo.points) < self.options.min_inliers or index.index.ntotal < 2:
            return []
        distances, ids = index.index.search(np.ascontiguousarray(photo.descriptors), NEIGHBOURS)
        # Unit vectors: squared L2 distance = 2 - 2 cos.
        close = (ids >= 0) & (distances <= 2.0 - 2.0 * self.options.min_similarity)
        rows, columns = np.nonzero(close)
        if len(rows) < self.options.min_inliers:
            return []
        matched = ids[rows, columns]
        owners = index.owner[matched]
        # One correspondence per (photo point, mark): the nearest, as neighbours come sorted.
        _, first = np.unique(rows * len(index) + owners, return_index=True)
        rows, matched, owners = rows[first], matched[first], owners[first]
        votes = np.bincount(owners, minlength=len(index))
        best: dict[int, Evidence] = {}
        tried: dict[int, int] = {}
        for number in np.argsort(-votes, kind="stable"):
            if votes[number] < self.options.min_inliers or sum(tried.values()) >= CANDIDATES:
                break
            # A few views per brand, so that a brand with many assets cannot crowd out the others.
            brand_id = index.assets[number][0].brand_id
            if tried.get(brand_id, 0) >= PER_BRAND:
                continue
            tried[brand_id] = tried.get(brand_id, 0) + 1
            chosen = owners == number
            signal, mark = index.assets[number]
            inliers, region = self._verify(index.points[matched[chosen]], photo.points[rows[chosen]], mark, photo)
            if region is None:
                continue
            evidence = self._evidence(signal, sha256, int(votes[number]), inliers, region)
            if signal.brand_id not in best or evidence.score > best[signal.brand_id].score:
                best[signal.brand_id] = evidence
        return sorted(best.values(), key=lambda item: (-item.score, item.brand_id))

    def _verify(
        self, mark_points: np.ndarray, photo_points: np.ndarray, mark: MarkFeatures, photo: MarkFeatures
    ) -> tuple[int, list[list[float]] | None]:
        """Distinct points agreeing with a plausible homography from the mark into the photo, and
        the mark's box in the photo (None: not found)."""
        plausible = Plausible(min_inliers=self.options.min_inliers, min_area=MIN_AREA, max_area_ratio=MAX_AREA_RATIO)
        # RANSAC's tolerance in the photo's full-size pixels, whatever size the network saw.
        threshold = RANSAC_PIXELS * max(1.0, max(photo.width, photo.height) / self.options.photo.side)
        found = verify_homography(
            mark_points, photo_points, (mark.width, mark.height), (photo.width, photo.height),
            threshold=threshold, plausible=plausible,
        )  # fmt: skip
        if found is None or inside_share(found.quad, photo.width, photo.height) < MIN_INSIDE:
            return 0, None
        # A mark is described at several sizes, so one of its points comes back several times a
        # pixel or so apart: on the mark's side, points closer than MARK_DISTINCT of its size are one.
        inliers = min(
            found.inliers,
            distinct_points(mark_points[found.inlier_mask], (mark.width, mark.height), MARK_DISTINCT),
        )
        if inliers < self.options.min_inliers:
            return inliers, None
        return inliers, found.region()

    def _evidence(
        self, asset: AssetSignal, sha256: str, votes: int, inliers: int, region: list[list[float]]
    ) -> Evidence:
        return logo_evidence(
            self.name,
            asset,
            sha256,
            distance=float(-inliers),
            score=inlier_confidence(inliers),
            how=f" by its learned local features: {inliers} distinct points agree with one view of the mark",
            details={"inliers": inliers, "votes": votes, "variant": asset.variant},
            region=region,
        )
