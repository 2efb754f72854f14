"""Product-title matching on real offer pairs: F1 on each test split.

    python scripts/eval_text.py --data ../shared/data/product-matching

For each dataset (shoes, watches, Abt-Buy, Amazon-Google) the similarity is fitted on the
train titles, its threshold chosen on the valid split (best F1), and F1 reported on test:

- ``title``: the product's own ``TitleSimilarity`` (char n-gram TF-IDF cosine, lifted when a
  model code is shared), the function the title and price matchers use;
- ``learned``: a logistic regression over that similarity, word overlap and code agreement,
  trained on the train split (what a brand with labelled pairs could do).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from counterscan.matchers.title import TitleSimilarity, model_codes
from counterscan.textnorm import plain_tokens

DATASETS = ("shoes", "watches", "Abt-Buy", "Amazon-Google")
FIELD = re.compile(r"COL (\S+) VAL (.*?)(?= COL |$)")


def title_of(side: str) -> str:
    fields = dict(FIELD.findall(side.strip()))
    return (fields.get("title") or fields.get("name") or "").strip().strip('"')


def load(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    left, right, labels = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        left.append(title_of(parts[0]))
        right.append(title_of(parts[1]))
        labels.append(int(parts[2]))
    return left, right, np.array(labels)


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    candidates = np.unique(np.round(scores, 3))
    f1s = [f1_score(labels, scores >= threshold, zero_division=0) for threshold in candidates]
    return float(candidates[int(np.argmax(f1s))])


def features(similarity: TitleSimilarity, left: list[str], right: list[str]) -> np.ndarray:
    cosine = similarity.pairwise(left, right)
    overlap, codes = [], []
    for a, b in zip(left, right, strict=True):
        words_a, words_b = set(plain_tokens(a)), set(plain_tokens(b))
        overlap.append(len(words_a & words_b) / max(1, len(words_a | words_b)))
        code_a, code_b = model_codes(a), model_codes(b)
        codes.append(1.0 if code_a & code_b else (-1.0 if code_a and code_b else 0.0))
    return np.column_stack([cosine, overlap, codes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/product-matching"))
    args = parser.parse_args()
    print(f"{'dataset':15} {'pairs':>6} {'title F1':>9} {'learned F1':>11}")
    for name in DATASETS:
        folder = args.data / name
        train, valid, test = (load(folder / f"{split}.txt") for split in ("train", "valid", "test"))
        similarity = TitleSimilarity(train[0] + train[1])
        threshold = best_threshold(similarity.pairwise(valid[0], valid[1]), valid[2])
        title_f1 = f1_score(test[2], similarity.pairwise(test[0], test[1]) >= threshold)
        model = LogisticRegression(class_weight="balanced", max_iter=1000).fit(
            features(similarity, *train[:2]), train[2]
        )
        learned_threshold = best_threshold(model.predict_proba(features(similarity, *valid[:2]))[:, 1], valid[2])
        learned = model.predict_proba(features(similarity, *test[:2]))[:, 1] >= learned_threshold
        print(f"{name:15} {len(test[2]):>6} {title_f1:>9.3f} {f1_score(test[2], learned):>11.3f}")


if __name__ == "__main__":
    main()
