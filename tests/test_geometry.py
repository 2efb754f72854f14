"""The shared geometric check: distinct inliers, and outlines no photo of the asset can have refused."""

from __future__ import annotations

import numpy as np

from counterscan.matchers.geometry import corners, distinct_points, plausible_quad, verify_homography

ASSET = (400, 300)
PHOTO = (640, 480)


def _grid(count: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).uniform([5, 5], [395, 295], (count, 2))


def _carry(points: np.ndarray, homography: np.ndarray) -> np.ndarray:
    lifted = np.hstack([points, np.ones((len(points), 1))]) @ homography.T
    return np.asarray(lifted[:, :2] / lifted[:, 2:])


def test_a_turned_smaller_copy_is_verified_with_its_outline() -> None:
    angle = np.radians(12)
    turn = np.array([[np.cos(angle), -np.sin(angle), 120], [np.sin(angle), np.cos(angle), 60], [0, 0, 1]])
    homography = turn @ np.diag([0.8, 0.8, 1.0])
    asset_points = _grid(80)
    photo_points = _carry(asset_points, homography)
    noise = np.random.default_rng(5).uniform([0, 0], PHOTO, (40, 2))  # wrong matches
    found = verify_homography(
        np.vstack([asset_points, _grid(40, seed=9)]), np.vstack([photo_points, noise]), ASSET, PHOTO
    )
    assert found is not None
    assert 70 <= found.inliers <= 80 and found.matches == 120
    assert np.allclose(found.quad, _carry(corners(ASSET), homography), atol=2)
    assert len(found.region()) == 4


def test_one_photo_point_matched_many_times_counts_once() -> None:
    # Forty asset points all sent to four photo points: RANSAC keeps many, but four places are no copy.
    asset_points = _grid(40)
    photo_points = np.repeat(np.array([[100.0, 100.0], [300.0, 100.0], [300.0, 300.0], [100.0, 300.0]]), 10, axis=0)
    assert verify_homography(asset_points, photo_points, ASSET, PHOTO) is None
    assert distinct_points(photo_points, PHOTO) == 4


def test_degenerate_outlines_are_refused() -> None:
    square = corners(ASSET)
    assert plausible_quad(square + 10, ASSET, PHOTO)
    assert not plausible_quad(square[::-1], ASSET, PHOTO)  # mirrored: turns the other way
    assert not plausible_quad(square[[0, 2, 1, 3]], ASSET, PHOTO)  # folded, not convex
    assert not plausible_quad(square * 0.01, ASSET, PHOTO)  # squashed onto a few pixels
    assert not plausible_quad(square * [1.0, 0.05], ASSET, PHOTO)  # proportions lost
    assert not plausible_quad(np.array([[0, 0], [400, 0], [210, 300], [190, 300]], float), ASSET, PHOTO)
    assert not plausible_quad(square * 100, ASSET, PHOTO)  # far larger than any crop


def test_too_few_or_unrelated_matches_find_nothing() -> None:
    rng = np.random.default_rng(11)
    assert verify_homography(_grid(6), _grid(6), ASSET, PHOTO) is None
    assert verify_homography(_grid(200), rng.uniform([0, 0], PHOTO, (200, 2)), ASSET, PHOTO) is None
