"""Scores from evidence: a cold-start scorer until analysts' verdicts exist, then a trained ranker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from counterscan.matchers.facts import MATCHER_FACTS
from counterscan.ranking.features import POINT_MATCHERS, points_per_photo, same_photo
from counterscan.records import Evidence

SAME_PHOTO_BONUS = 0.5


@dataclass(frozen=True)
class Score:
    score: float
    brand_id: int | None
    best: int | None
    """Index of the strongest evidence for the winning brand."""


PICTURE_EVIDENCE = frozenset(name for name, facts in MATCHER_FACTS.items() if facts.settles_picture)
"""A copied photo or a logo found in one: what a takedown notice leads with, before words or a price."""


def headline_key(evidence: Evidence) -> tuple[bool, float]:
    """Orders a brand's evidence for its headline reason: picture evidence first, then by confidence."""
    return evidence.matcher in PICTURE_EVIDENCE, evidence.score


LOCAL_FEATURES = "local-features"
"""One signal for the logo matchers whose agreeing points add up (their sum is its confidence)."""


def _signal(evidence: Evidence) -> str:
    if evidence.matcher in POINT_MATCHERS:
        return LOCAL_FEATURES
    return f"{evidence.matcher}:{evidence.details.get('signal', '')}"


def cold_start_scores(evidence: Sequence[Evidence]) -> list[Score]:
    """Per brand with evidence, the noisy-OR of each matcher's best confidence; best first.

    Taking only the best finding per matcher and signal keeps a listing with ten copies of
    the same photo from outranking one with a single copy and a matching brand name. The logo
    matchers that count agreeing points (RootSIFT keypoints, XFeat marks) are one finding whose
    confidence comes from their counts added up in one photo (``points_per_photo``). A logo seen
    and the brand's name read in the *same* photo corroborate each other beyond two independent
    findings: the brand's miss probability is halved once more (``SAME_PHOTO_BONUS``).
    """
    points: dict[int, float] = {}
    for (brand_id, _photo), sure in points_per_photo(evidence).items():
        points[brand_id] = max(points.get(brand_id, 0.0), sure)
    best_per_brand: dict[int, dict[str, int]] = {}
    for position, item in enumerate(evidence):
        signals = best_per_brand.setdefault(item.brand_id, {})
        key = _signal(item)
        if key not in signals or item.score > evidence[signals[key]].score:
            signals[key] = position
    corroborated = {brand_id for brand_id, _photo in same_photo(evidence)}
    found = []
    for brand_id, signals in best_per_brand.items():
        miss = 1.0
        for key, position in signals.items():
            sure = evidence[position].score
            if key == LOCAL_FEATURES:
                sure = max(sure, points.get(brand_id, 0.0))
            miss *= 1.0 - min(max(sure, 0.0), 1.0)
        if brand_id in corroborated:
            miss *= 1.0 - SAME_PHOTO_BONUS
        strongest = max(signals.values(), key=lambda position: (*headline_key(evidence[position]), -position))
        found.append(Score(score=round(1.0 - miss, 6), brand_id=brand_id, best=strongest))
    return sorted(found, key=lambda item: (-item.score, item.best if item.best is not None else 0))


def cold_start_score(evidence: Sequence[Evidence]) -> Score:
    """The most likely brand's cold-start score (see :func:`cold_start_scores`)."""
    scores = cold_start_scores(evidence)
    if not scores or scores[0].score <= 0:
        return Score(score=0.0, brand_id=None, best=None)
    return scores[0]


class Ranker(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Calibrated logistic regression over the feature rows of ``ranking/features.py``.

    A scikit-learn estimator: parameters in ``__init__``, ``fit`` returns self, learned state ends
    in ``_``; so it cross-validates and calibrates like any other.
    """

    def __init__(self, C: float = 1.0, calibration: str = "sigmoid", cv: int = 3) -> None:
        self.C = C
        self.calibration = calibration
        self.cv = cv

    def fit(self, X: Any, y: Any) -> Ranker:
        X, y = validate_data(self, X, y)
        self.classes_ = unique_labels(y)
        base = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000))
        smallest = int(np.bincount(np.searchsorted(self.classes_, y)).min())
        if len(self.classes_) > 1 and smallest >= self.cv:
            self.model_ = CalibratedClassifierCV(base, method=self.calibration, cv=self.cv).fit(X, y)
        else:  # too few examples of a class to hold some out for calibration
            self.model_ = base.fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        probabilities: np.ndarray = self.model_.predict_proba(X)
        return probabilities

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        labels: np.ndarray = self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return labels
