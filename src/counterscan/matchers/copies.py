"""Official product photos re-used in listings, whatever sellers did to them: learned local features
(XFeat) matched point to point and checked geometrically.

A hash sees the whole picture, so a copy turned 5 degrees, cropped to a third, put in a collage,
shot in perspective or shrunk onto a canvas is another picture to it. Here the copy is a *region*
of the listing photo: XFeat's keypoints of the listing photo (640 px, 1024 points: the same forward
pass as the logo matchers) are looked up in one FAISS HNSW index over every product photo's points,
each photo described three ways (at 640 px; at 320 px, for copies shrunk into a collage or onto a
canvas; mirrored at 800 px, for mirrored crops). The views with the most close neighbours
(cosine > ``MIN_SIMILARITY``) are a shortlist; each is matched exactly (mutual nearest neighbours)
and checked with a RANSAC homography (:mod:`counterscan.matchers.geometry`): the number of distinct
points that agree is the evidence, and the product photo's outline carried into the listing photo
is the region drawn in the review.

Signals are compact: per point two float16 coordinates and 64 descriptor components quantised to
one byte each (68 bytes a point, at most about 70 kB a photo).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from counterscan.imaging.decode import Picture
from counterscan.imaging.learned import DESCRIPTOR_SIZE, FeatureOptions, LocalFeatureNetwork, LocalFeatures
from counterscan.matchers.base import asset_evidence
from counterscan.matchers.geometry import Verified, verify_homography
from counterscan.matchers.index import load_point_index, save_point_index
from counterscan.records import AssetKind, AssetSignal, Brand, Evidence

LISTING_VIEW = FeatureOptions()
"""The listing photo as the logo matchers see it too: one forward pass serves both."""
ASSET_VIEWS: tuple[tuple[str, FeatureOptions], ...] = (
    ("original", FeatureOptions(side=640, top_k=1024)),
    ("small", FeatureOptions(side=320, top_k=1024)),
    ("mirrored", FeatureOptions(side=800, top_k=1024, mirrored=True)),
)
MIN_SIMILARITY = 0.82
"""Cosine similarity of two descriptors of one point (measured in issue 20's study)."""
NEIGHBOURS = 8
SHORTLIST = 4
"""Asset views, the most voted for, matched exactly and checked geometrically per listing photo."""
MIN_VOTES = 8
REPROJECTION = 6.0
"""RANSAC's tolerance in pixels of the 640 px listing view."""
RANSAC_ITERATIONS = 500
"""Enough for a copy whose mutual matches agree a third of the time or more (0.995 confidence)."""
HNSW_NEIGHBOURS = 16
HNSW_SEARCH = 32
"""The graph's links per point and the search's breadth: the votes only pick a shortlist, which is
then matched exactly, so a few missed neighbours cost nothing (measured: half the search time of
32 links and a breadth of 48)."""
_FORMAT = 1
_HEADER = 16


@dataclass(frozen=True)
class CopyOptions:
    min_inliers: int = 20
    """Distinct agreeing points for any evidence at all: unrelated photos reach 17-23, copies 36 and
    more (scripts/eval_reuse.py, docs/matching.md); weak evidence is kept below 0.5."""
    sure_inliers: int = 30
    """Distinct agreeing points where a copy is scored 0.5, between the two."""


def calibrated_score(inliers: int, sure_inliers: int) -> float:
    """The confidence of ``inliers`` distinct agreeing points: 0.5 at ``sure_inliers``, falling as
    the cube of the share below it (0.15 at two thirds), and above it the chance of a miss falling
    as the cube of the share (0.79 at 4/3, 0.94 at twice, 0.99 at four times): never quite 1, so
    a photo copied whole still outranks one sharing a corner with another product photo."""
    share = inliers / max(1, sure_inliers)
    score = 0.5 * share**3 if share <= 1 else 1.0 - 0.5 / share**3
    return round(min(score, 0.999999), 6)


def features_to_bytes(features: LocalFeatures) -> bytes:
    """A header (format, width, height, points), float16 coordinates, descriptors as bytes."""
    width, height = features.size
    count = len(features)
    quantised = np.clip(np.rint(features.descriptors * 127.5 + 127.5), 0, 255).astype(np.uint8)
    head = np.array([_FORMAT, width, height, count], "<u4").tobytes()
    return head + features.keypoints.astype("<f2").tobytes() + quantised.tobytes()


def features_from_bytes(data: bytes) -> LocalFeatures:
    if len(data) < _HEADER:
        raise ValueError("a copies signal of fewer bytes than its header")
    _format, width, height, count = (int(v) for v in np.frombuffer(data, "<u4", 4))
    if len(data) != _HEADER + count * (4 + DESCRIPTOR_SIZE):
        raise ValueError(f"a copies signal of {len(data)} bytes does not hold {count} points")
    keypoints = np.frombuffer(data, "<f2", 2 * count, _HEADER).reshape(count, 2).astype(np.float32)
    quantised = np.frombuffer(data, np.uint8, DESCRIPTOR_SIZE * count, _HEADER + 4 * count)
    descriptors = (quantised.reshape(count, DESCRIPTOR_SIZE).astype(np.float32) - 127.5) / 127.5
    descriptors /= np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-6)
    return LocalFeatures(keypoints, descriptors, np.zeros(count, np.float32), (width, height))


class CopyIndex:
    """Every product photo view's descriptors in one FAISS HNSW index (inner product), each row
    knowing its view."""

    def __init__(
        self, matcher: CopyMatcher, signals: Sequence[AssetSignal], saved: faiss.IndexHNSWFlat | None = None
    ) -> None:
        """``saved``: the descriptor index of these very signals, loaded rather than built again."""
        self.matcher = matcher
        self.views = [(signal, features_from_bytes(signal.signal)) for signal in signals]
        counts = [len(features) for _signal, features in self.views]
        self.owner = np.repeat(np.arange(len(self.views)), counts) if self.views else np.zeros(0, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # A saved index of another size than these views (a damaged or foreign file) is built again.
        if saved is not None and saved.ntotal == len(self.owner):
            self.index = saved
        else:
            self.index = faiss.IndexHNSWFlat(DESCRIPTOR_SIZE, HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
            if len(self.owner):
                self.index.add(np.ascontiguousarray(np.concatenate([f.descriptors for _s, f in self.views])))
        self.index.hnsw.efSearch = HNSW_SEARCH

    def __len__(self) -> int:
        return len(self.views)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        return [self.matcher.match(self, sha256, features_from_bytes(signal)) for sha256, signal in signals]

    def save(self, path: Path) -> None:
        save_point_index(path, (signal for signal, _features in self.views), self.index)


class CopyMatcher:
    """Product photos found copied, whole or in part, into listing photos, with the copied region."""

    name = "copies"
    asset_kinds: tuple[AssetKind, ...] = ("product",)

    def __init__(self, network: LocalFeatureNetwork, options: CopyOptions | None = None) -> None:
        self.network = network
        self.options = options or CopyOptions()
        """Where the index is kept between scans (building it costs seconds per thousand photos)."""

    def encode(self, picture: Picture) -> bytes:
        return features_to_bytes(self.network.features(picture, LISTING_VIEW))

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        return [(name, features_to_bytes(self.network.features(picture, view))) for name, view in ASSET_VIEWS]

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> CopyIndex:
        return CopyIndex(self, signals)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> CopyIndex:
        return CopyIndex(self, signals, load_point_index(path, signals))

    def match(self, index: CopyIndex, sha256: str, photo: LocalFeatures) -> list[Evidence]:
        """The product photos of ``index`` found in one listing photo, best first (one finding per asset)."""
        if not len(index) or len(photo) < MIN_VOTES or index.index.ntotal == 0:
            return []
        similarities, ids = index.index.search(np.ascontiguousarray(photo.descriptors), NEIGHBOURS)
        rows, columns = np.nonzero((ids >= 0) & (similarities > MIN_SIMILARITY))
        views = index.owner[ids[rows, columns]]
        # A vote per (photo point, view): a point near several points of one view counts once.
        pairs = np.unique(rows.astype(np.int64) * len(index) + views)
        votes = np.bincount(pairs % len(index), minlength=len(index))
        best: dict[int, tuple[Verified, int, int]] = {}
        for view in np.argsort(-votes, kind="stable")[:SHORTLIST]:
            if votes[view] < MIN_VOTES:
                break
            verified = self._verify(index.views[view][1], photo, np.unique(rows[views == view]))
            if verified is None:
                continue
            asset_id = index.views[view][0].asset_id
            if asset_id not in best or verified.inliers > best[asset_id][0].inliers:
                best[asset_id] = (verified, int(view), int(votes[view]))
        found = [
            self._evidence(index.views[view][0], sha256, verified, votes) for verified, view, votes in best.values()
        ]
        return sorted(found, key=lambda item: -item.score)

    def _verify(self, asset: LocalFeatures, photo: LocalFeatures, candidates: np.ndarray) -> Verified | None:
        """The asset view checked against the photo points the index found near it: mutual nearest
        neighbours (exact, over both pictures' points), then the homography."""
        if len(candidates) < self.options.min_inliers:
            return None
        similarity = photo.descriptors[candidates] @ asset.descriptors.T
        forward = similarity.argmax(axis=1)
        close = similarity[np.arange(len(candidates)), forward] > MIN_SIMILARITY
        candidates, forward = candidates[close], forward[close]
        targets = np.unique(forward)
        backward = (asset.descriptors[targets] @ photo.descriptors.T).argmax(axis=1)
        mutual = backward[np.searchsorted(targets, forward)] == candidates
        if int(mutual.sum()) < self.options.min_inliers:
            return None
        # Keypoints are in full-size pixels; the tolerance is REPROJECTION px of the network's view.
        scale = max(1.0, max(photo.size) / LISTING_VIEW.side)
        verified = verify_homography(
            asset.keypoints[forward[mutual]],
            photo.keypoints[candidates[mutual]],
            asset.size,
            photo.size,
            threshold=REPROJECTION * scale,
            iterations=RANSAC_ITERATIONS,
        )
        if verified is None or verified.inliers < self.options.min_inliers:
            return None
        return verified

    def _evidence(self, asset: AssetSignal, sha256: str, verified: Verified, votes: int) -> Evidence:
        mirrored = " (mirrored)" if asset.variant == "mirrored" else ""
        return asset_evidence(
            self.name,
            asset,
            sha256,
            distance=float(-verified.inliers),
            score=calibrated_score(verified.inliers, self.options.sure_inliers),
            reason=(
                f"photo copies {asset.brand} product photo (asset #{asset.asset_id}){mirrored}: "
                f"{verified.inliers} matching points, region drawn"
            ),
            details={
                "inliers": verified.inliers,
                "matches": verified.matches,
                "votes": votes,
                "variant": asset.variant,
                "region": verified.region(),
            },
        )
