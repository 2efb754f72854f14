"""Train the ranker on analysts' verdicts; score listings with the active model."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import average_precision_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from counterscan.errors import TrainingRefusedError, UserError
from counterscan.matchers.context import SellerMatcher, seller_history
from counterscan.ranking.features import FEATURES, feature_row
from counterscan.ranking.ranker import Ranker, cold_start_scores
from counterscan.records import Evidence, Listing
from counterscan.store.protocols import ActiveModel, ModelRegistry, TrainingSource, TrainingStore

MIN_PER_CLASS = 5
PERFECT = 1.0 - 1e-9
"""An average precision this high cannot be beaten: every counterfeit already ranks above every legit listing."""


@dataclass(frozen=True)
class TrainReport:
    model_id: int | None
    examples: int
    counterfeit: int
    average_precision: float
    cold_start_average_precision: float
    previous_average_precision: float | None
    accepted: bool
    folds: int = 5

    def line(self) -> str:
        text = (
            f"{self.examples} labelled listings ({self.counterfeit} counterfeit, {self.examples - self.counterfeit} "
            f"legit): cross-validated average precision {self.average_precision:.3f} "
            f"(cold-start scorer {self.cold_start_average_precision:.3f}"
            + (
                f", current model {self.previous_average_precision:.3f}"
                if self.previous_average_precision is not None
                else ""
            )
            + ")"
        )
        if self.accepted:
            return text + f"; model {self.model_id} is now active"
        return text + "; " + self.refusal()

    def refusal(self) -> str:
        """What the gate compared and what would change its answer."""
        rivals = [f"the cold-start scorer's {self.cold_start_average_precision:.3f}"]
        if self.previous_average_precision is not None:
            rivals.append(f"the current model's {self.previous_average_precision:.3f}")
        beaten_by = (
            "the cold-start scorer"
            if self.cold_start_average_precision >= self.average_precision
            else "the current model"
        )
        if self.cold_start_average_precision >= PERFECT:
            return (
                "kept the current scoring: the cold-start scorer already ranks every labelled counterfeit above "
                f"every labelled legit listing (average precision {self.cold_start_average_precision:.3f}), so no "
                "model can beat it on these verdicts. Verdicts where it errs or is unsure "
                "(`counterscan review list --to-label 10`) give a model something to learn; or use --force"
            )
        return (
            f"not better than {beaten_by}, kept the current scoring. The gate needs the new model's average "
            f"precision, predicted on held-out folds ({self.folds} folds over these {self.examples} verdicts), "
            f"above {' and '.join(rivals)} on the same listings; it got {self.average_precision:.3f}. "
            "Verdicts where the scorer is unsure teach it most (`counterscan review list --to-label 10`); "
            "or use --force to replace it anyway"
        )


def training_set(store: TrainingSource) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Features, labels and cold-start scores of every (listing, brand) with a counterfeit or legit verdict.

    Evidence is as stored, except the seller's history, which is rebuilt as of the time the listing
    was first seen: only verdicts on *other* listings, recorded before then, count. Otherwise a
    listing's own label (or later ones) would leak into its features through a re-scan.
    """
    labelled = store.labelled()
    pks = sorted({pk for pk, _brand, _listing, _label in labelled})
    evidence = store.evidence_of(pks, except_brands=())
    seen = store.first_seen(pks)
    confirmed = store.confirmed_counterfeits()
    brands = {brand.brand_id: brand for brand in store.brands()}
    rows = []
    for pk, brand_id, listing, _label in labelled:
        found = [item for item in evidence.get(pk, []) if item.matcher != "seller"]
        if brand_id in brands and pk in seen:
            history = seller_history(
                [item for item in confirmed if item.seller_id == listing.seller_id], before=seen[pk]
            )
            found.extend(SellerMatcher(history).match(listing, [brands[brand_id]]))
        rows.append((listing, found, brand_id))
    cold = [_cold_start_for(found, brand_id) for _listing, found, brand_id in rows]
    features = (
        np.stack([feature_row(listing, found, brand_id=brand_id) for listing, found, brand_id in rows])
        if rows
        else np.zeros((0, len(FEATURES)))
    )
    return features, np.array([label for _pk, _brand, _listing, label in labelled], dtype=int), cold


def _cold_start_for(evidence: Sequence[Evidence], brand_id: int) -> float:
    return next((found.score for found in cold_start_scores(evidence) if found.brand_id == brand_id), 0.0)


def folds_for(labels: np.ndarray) -> int:
    return int(min(5, np.bincount(labels).min()))


def cross_validated_ap(features: np.ndarray, labels: np.ndarray) -> float:
    folds = folds_for(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = cross_val_predict(Ranker(), features, labels, cv=splitter, method="predict_proba")[:, 1]
    return float(average_precision_score(labels, scores))


def train(store: TrainingStore, *, force: bool = False, actor: str = "analyst") -> TrainReport:
    features, labels, cold = training_set(store)
    counts = np.bincount(labels, minlength=2) if len(labels) else np.zeros(2, int)
    if counts.min() < MIN_PER_CLASS:
        raise TrainingRefusedError(missing_verdicts(int(counts[1]), int(counts[0])))
    ap = cross_validated_ap(features, labels)
    cold_ap = float(average_precision_score(labels, cold))
    current = store.active_model()
    previous = float(current[2]["average_precision"]) if current is not None else None
    # A model must beat, on held-out folds, both what ranks today and the scorer that needs no model.
    beaten = ap <= cold_ap or (previous is not None and ap <= previous)
    if beaten and not force:
        return TrainReport(
            None, len(labels), int(counts[1]), ap, cold_ap, previous, accepted=False, folds=folds_for(labels)
        )
    model = Ranker().fit(features, labels)
    metrics = {"average_precision": ap, "cold_start_average_precision": cold_ap, "examples": len(labels)}
    model_id = store.save_model(pickle.dumps(model), features=FEATURES, metrics=metrics, actor=actor)
    return TrainReport(
        model_id, len(labels), int(counts[1]), ap, cold_ap, previous, accepted=True, folds=folds_for(labels)
    )


def missing_verdicts(counterfeit: int, legit: int) -> str:
    """Why training cannot start yet, and exactly which verdicts would let it."""
    wanted = [
        f"{MIN_PER_CLASS - have} more {label}"
        for label, have in (("counterfeit", counterfeit), ("legit", legit))
        if have < MIN_PER_CLASS
    ]
    more = sum(max(0, MIN_PER_CLASS - have) for have in (counterfeit, legit))
    return (
        f"training needs at least {MIN_PER_CLASS} counterfeit and {MIN_PER_CLASS} legit verdicts on a brand's "
        f"listings; have {counterfeit} counterfeit and {legit} legit: record {' and '.join(wanted)} "
        f"(`counterscan review list --to-label {max(more, 10)}` proposes listings of both kinds, "
        "`counterscan review decide` records them)"
    )


@dataclass(frozen=True)
class ModelInfo:
    model_id: int
    created_at: str
    active: bool
    average_precision: float | None
    cold_start_average_precision: float | None
    examples: int | None


def models(store: ModelRegistry) -> list[ModelInfo]:
    return [
        ModelInfo(
            model_id=model_id,
            created_at=created_at,
            active=active,
            average_precision=metrics.get("average_precision"),
            cold_start_average_precision=metrics.get("cold_start_average_precision"),
            examples=metrics.get("examples"),
        )
        for model_id, created_at, active, metrics in store.models()
    ]


def activate(store: ModelRegistry, model_id: int, *, actor: str) -> int:
    """Make model ``model_id`` the one scans score with; the next plain scan re-scores."""
    store.activate_model(model_id, actor=actor)
    return model_id


def rollback(store: ModelRegistry, *, actor: str) -> int | None:
    """Go back to the model before the active one (None: back to the cold-start scorer)."""
    listed = store.models()
    active = next((model_id for model_id, _at, is_active, _m in listed if is_active), None)
    if active is None:
        raise UserError("no model is active: scans already use the cold-start scorer")
    earlier = [model_id for model_id, _at, _active, _m in listed if model_id < active]
    target = max(earlier) if earlier else None
    store.activate_model(target, actor=actor)
    return target


class ModelScorer:
    """Scores listings with a trained ranker; the cold-start scorer still picks brand and best evidence."""

    def __init__(self, model_id: int, model: Ranker) -> None:
        self.model_id = model_id
        self.model = model
        self.name = f"model:{model_id}"

    @classmethod
    def active(cls, store: ActiveModel) -> ModelScorer | None:
        found = store.active_model()
        if found is None:
            return None
        model_id, data, _metrics, features = found
        if tuple(features) != FEATURES:
            return None  # trained on other features: the cold-start scorer ranks until `train` runs again
        return cls(model_id, pickle.loads(data))

    def scores(self, rows: Sequence[tuple[Listing, Sequence[Evidence]]]) -> list[float]:
        if not rows:
            return []
        matrix = np.stack([feature_row(listing, evidence) for listing, evidence in rows])
        return [round(float(p), 6) for p in self.model.predict_proba(matrix)[:, 1]]

    def scores_for_brands(self, rows: Sequence[tuple[Listing, Sequence[Evidence], int]]) -> list[float]:
        """The probability that each listing counterfeits the given brand, from that brand's evidence."""
        if not rows:
            return []
        matrix = np.stack([feature_row(listing, evidence, brand_id=brand_id) for listing, evidence, brand_id in rows])
        return [round(float(p), 6) for p in self.model.predict_proba(matrix)[:, 1]]
