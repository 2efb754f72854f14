"""A logo found inside a photo (by its keypoints or by its shape): the logo's outline carried into
the photo, and the evidence that shows it there (``details["region"]``, drawn by the review UI and
the HTML report)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from counterscan.matchers.base import asset_evidence
from counterscan.records import AssetSignal, Evidence

Region = list[list[float]]
"""The logo's corners in the photo's pixels, clockwise from its top left."""


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
