"""A logo found inside a photo (by its keypoints or by its shape): the logo's outline carried into
the photo, and the evidence that shows it there (``details["region"]``, drawn by the review UI and
the HTML report)."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from counterscan.matchers.base import asset_evidence
from counterscan.records import AssetSignal, Evidence

Region = list[list[float]]
"""The logo's corners in the photo's pixels, clockwise from its top left."""


FULL_INLIERS = 48
"""Distinct agreeing points at which a logo found by its local features is as sure as it gets."""


def inlier_confidence(inliers: float, *, least: int = 8) -> float:
    """The confidence of a logo found by ``inliers`` distinct points agreeing with one plausible
    homography (summed over the local-feature matchers that found it in the same photo)."""
    if inliers < least:
        return 0.0
    return round(0.55 + 0.4 * min(1.0, (inliers - least) / (FULL_INLIERS - least)), 4)


MIN_INSIDE = 0.6
"""Share of a logo's box that must lie inside the photo: a logo printed on something in the photo
is seen there, not mostly beyond its edges (chance matches fit boxes that run far outside)."""


def inside_share(quad: np.ndarray, width: int, height: int) -> float:
    """The share of the convex ``quad`` (a logo's box in the photo) that lies inside the photo."""
    box = np.asarray(quad, np.float32).reshape(4, 2)
    area = float(cv2.contourArea(box))
    if area <= 0:
        return 0.0
    frame = logo_corners(width, height, np.float32)
    overlap, _points = cv2.intersectConvexConvex(box, frame)
    return float(overlap) / area


def logo_corners(width: int, height: int, dtype: type[np.floating]) -> np.ndarray:
    """The corners of a ``width`` x ``height`` logo picture, clockwise from the top left."""
    return np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype)


def logo_evidence(
    matcher: str,
    asset: AssetSignal,
    image_sha256: str,
    *,
    distance: float,
    score: float,
    how: str,
    details: Mapping[str, object],
    region: Region,
) -> Evidence:
    """Evidence of a logo asset found in a photo ``how`` (the reason's tail), ``region`` last in its details."""
    return asset_evidence(
        matcher,
        asset,
        image_sha256,
        distance=distance,
        score=score,
        reason=f"{asset.brand} logo (asset #{asset.asset_id}) found in the photo{how}",
        details={**details, "region": region},
    )
