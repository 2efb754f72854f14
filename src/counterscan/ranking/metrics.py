"""Pure ranking metrics over (score, label) lists, and per-brand tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    if not any(labels):
        return 0.0
    return float(average_precision_score(np.asarray(labels), np.asarray(scores)))


def precision_at_k(scores: Sequence[float], labels: Sequence[int], k: int) -> float:
    order = np.argsort(-np.asarray(scores), kind="stable")[:k]
    return float(np.asarray(labels)[order].mean()) if len(order) else 0.0


def per_brand(
    scores: Sequence[float], labels: Sequence[int], brands: Sequence[str], *, k: int = 10
) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for brand in sorted(set(brands)):
        chosen = [i for i, name in enumerate(brands) if name == brand]
        s = [scores[i] for i in chosen]
        y = [labels[i] for i in chosen]
        table[brand] = {
            "listings": float(len(chosen)),
            "counterfeit": float(sum(y)),
            "average_precision": average_precision(s, y),
            f"precision@{k}": precision_at_k(s, y, k),
        }
    return table
