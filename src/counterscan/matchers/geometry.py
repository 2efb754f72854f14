"""The geometric check shared by the matchers that find an asset inside a photo (a copied product
photo, a brand's mark): a RANSAC homography from the asset to the photo, and whether it is a
picture of the asset or a coincidence of matched points.

Raw RANSAC inlier counts mislead: a degenerate homography squashes the asset onto a few photo
points, and the same photo point matched by many asset points (or the reverse) counts many times,
so logo-free photos reached 60-400 "inliers" in the logo study of issue 20. Here an inlier counts
once per distinct point on *both* sides, and the asset's outline carried into the photo must be a
picture of something: convex and not mirrored, of a plausible area, with sides that keep roughly
the asset's proportions and a perspective no camera makes refused.

:func:`verify_homography` is the one entry point::

    found = verify_homography(asset_points, photo_points, asset_size, photo_size, threshold=6.0)
    if found is not None:
        found.inliers      # distinct inlier points (the evidence's strength)
        found.quad         # the asset's corners in the photo, clockwise from its top left
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Size = tuple[int, int]
"""Width and height in pixels."""


@dataclass(frozen=True)
class Plausible:
    """What a projected asset outline may look like (the defaults fit product photos and logos)."""

    min_inliers: int = 8
    """Distinct inlier points on both sides, at least."""
    min_area: float = 64.0
    """The outline covers at least this many photo pixels."""
    max_area_ratio: float = 40.0
    """and at most this many times the photo's area (a crop to a sixth of an asset is 36 times)."""
    max_aspect_change: float = 3.0
    """Its width-to-height proportion within this factor of the asset's."""
    max_side_ratio: float = 4.0
    """Opposite sides at most this many times as long as each other (perspective, not a fold)."""
    distinct_share: float = 0.005
    """Two points closer than this share of their picture's longest side are one point."""


PLAUSIBLE = Plausible()


@dataclass(frozen=True, eq=False)
class Verified:
    """An asset found in a photo by its geometry."""

    inliers: int
    """Distinct inlier points: counted once however often a point was matched, on both sides."""
    matches: int
    """Correspondences the check was given."""
    homography: np.ndarray
    """3 x 3, float64: asset pixels -> photo pixels."""
    quad: np.ndarray
    """(4, 2) float64: the asset's corners in the photo's pixels, clockwise from its top left."""
    inlier_mask: np.ndarray
    """(matches,) bool: which correspondences agree with the homography."""

    def region(self) -> list[list[float]]:
        """The quad as the evidence's ``details["region"]`` (what the review UI and report draw)."""
        return [[round(float(x), 1), round(float(y), 1)] for x, y in self.quad]


def corners(size: Size) -> np.ndarray:
    """The corners of a ``size`` picture, clockwise from the top left."""
    width, height = size
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)


def distinct_points(points: np.ndarray, size: Size, share: float = PLAUSIBLE.distinct_share) -> int:
    """How many different places ``points`` are at, two within ``share`` of the longest side being one."""
    if not len(points):
        return 0
    cell = max(1.0, share * max(size))
    return len(np.unique(np.floor(np.asarray(points, np.float64) / cell).astype(np.int64), axis=0))


def verify_homography(
    src_pts: np.ndarray,
    dst_pts: np.ndarray,
    asset_size: Size,
    listing_size: Size,
    *,
    threshold: float = 6.0,
    plausible: Plausible = PLAUSIBLE,
    iterations: int = 1000,
) -> Verified | None:
    """The asset found in the listing photo, or None.

    ``src_pts`` (n, 2) are points in the asset's pixels (``asset_size``), ``dst_pts`` (n, 2) the
    photo points they were matched with (``listing_size``); ``threshold`` is RANSAC's reprojection
    error in photo pixels; ``iterations`` caps RANSAC's samples (it stops earlier when most matches
    agree, so the cap is what a photo *without* the asset costs). None when there are too few
    matches, RANSAC finds no homography, fewer than ``plausible.min_inliers`` distinct points agree
    with it, or the asset's outline carried into the photo is not a plausible picture of it
    (:func:`plausible_quad`).
    """
    src = np.ascontiguousarray(src_pts, np.float32).reshape(-1, 2)
    dst = np.ascontiguousarray(dst_pts, np.float32).reshape(-1, 2)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} asset points but {len(dst)} photo points")
    if len(src) < max(4, plausible.min_inliers):
        return None
    homography, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=iterations, confidence=0.995)
    if homography is None or mask is None or not np.isfinite(homography).all():
        return None
    agree = mask.ravel().astype(bool)
    inliers = min(
        distinct_points(src[agree], asset_size, plausible.distinct_share),
        distinct_points(dst[agree], listing_size, plausible.distinct_share),
    )
    if inliers < plausible.min_inliers:
        return None
    quad = project(homography, corners(asset_size))
    if quad is None or not plausible_quad(quad, asset_size, listing_size, plausible):
        return None
    return Verified(inliers=inliers, matches=len(src), homography=homography, quad=quad, inlier_mask=agree)


def project(homography: np.ndarray, points: np.ndarray) -> np.ndarray | None:
    """``points`` carried by ``homography``; None when one falls behind the camera (the homography
    folds the plane through infinity: no photo shows that)."""
    lifted = np.hstack([points, np.ones((len(points), 1))]) @ np.asarray(homography, np.float64).T
    if (lifted[:, 2] <= 1e-9).any():
        return None
    projected: np.ndarray = lifted[:, :2] / lifted[:, 2:]
    return projected


def plausible_quad(quad: np.ndarray, asset_size: Size, listing_size: Size, plausible: Plausible = PLAUSIBLE) -> bool:
    """Whether ``quad`` (the asset's corners in the photo, clockwise from its top left) can be a
    picture of the asset: convex and turning the same way as the asset (a mirrored copy is matched
    through a mirrored view, never by a homography that flips), of an area between
    ``plausible.min_area`` pixels and ``max_area_ratio`` photos, keeping the asset's proportions
    within ``max_aspect_change`` and opposite sides within ``max_side_ratio`` of each other."""
    quad = np.asarray(quad, np.float64)
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        return False
    edges = np.roll(quad, -1, axis=0) - quad
    following = np.roll(edges, -1, axis=0)
    turns = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    # Image y points down: the asset's clockwise corners turn with a positive cross product.
    if not (turns > 0).all():
        return False
    area = 0.5 * float(np.sum(quad[:, 0] * np.roll(quad[:, 1], -1) - np.roll(quad[:, 0], -1) * quad[:, 1]))
    if area < plausible.min_area or area > plausible.max_area_ratio * listing_size[0] * listing_size[1]:
        return False
    sides = np.linalg.norm(edges, axis=1)
    if sides.min() < 1.0:
        return False
    if max(sides[0], sides[2]) > plausible.max_side_ratio * min(sides[0], sides[2]):
        return False
    if max(sides[1], sides[3]) > plausible.max_side_ratio * min(sides[1], sides[3]):
        return False
    aspect = (sides[0] + sides[2]) / (sides[1] + sides[3])
    expected = asset_size[0] / max(1, asset_size[1])
    change = aspect / expected
    return bool(1 / plausible.max_aspect_change < change < plausible.max_aspect_change)
