"""Product-title matching on real offer pairs: F1 on each test split.

    python scripts/eval_text.py --data ../shared/data/product-matching

For each dataset (shoes, watches, Abt-Buy, Amazon-Google) the similarity is fitted on the
train titles, its threshold chosen on the valid split (best F1), and F1 reported on test:

- ``title``: the product's own ``TitleSimilarity`` (char n-gram TF-IDF cosine, lifted when a
  model code is shared), the function the title and price matchers use;
- ``learned``: what a brand with labelled pairs could do: a logistic regression trained on the
  train split over that similarity, word TF-IDF cosine and overlap, model-code and number
  agreement, the rare words only one side has, each word the two titles share or not (hashed),
  and, where a dataset gives them, the price ratio and the manufacturer's agreement.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.feature_extraction import FeatureHasher
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from counterscan.matchers.title import TitleSimilarity, model_codes
from counterscan.textnorm import plain_tokens, skeleton

DATASETS = ("shoes", "watches", "Abt-Buy", "Amazon-Google")
FIELD = re.compile(r"COL (\S+) VAL (.*?)(?= COL |$)")
NUMBER = re.compile(r"\d+(?:\.\d+)?")
Offer = dict[str, str]


def fields_of(side: str) -> Offer:
    return dict(FIELD.findall(side.strip()))


def title_of(side: str | Offer) -> str:
    fields = fields_of(side) if isinstance(side, str) else side
    return (fields.get("title") or fields.get("name") or "").strip().strip('"')


def load_offers(path: Path) -> tuple[list[Offer], list[Offer], np.ndarray]:
    left, right, labels = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        left.append(fields_of(parts[0]))
        right.append(fields_of(parts[1]))
        labels.append(int(parts[2]))
    return left, right, np.array(labels)


def load(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    left, right, labels = load_offers(path)
    return [title_of(offer) for offer in left], [title_of(offer) for offer in right], labels


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    candidates = np.unique(np.round(scores, 3))
    f1s = [f1_score(labels, scores >= threshold, zero_division=0) for threshold in candidates]
    return float(candidates[int(np.argmax(f1s))])


class PairFeatures:
    """Features of offer pairs, fitted on the train titles."""

    def __init__(self, titles: Sequence[str]) -> None:
        self.similarity = TitleSimilarity(titles)
        self.words = TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\b\w+\b", sublinear_tf=True)
        self.words.fit([skeleton(title) for title in titles])
        self.idf = {word: float(self.words.idf_[column]) for word, column in self.words.vocabulary_.items()}
        self.hasher = FeatureHasher(n_features=2**18, input_type="dict")
        self.scale: tuple[np.ndarray, np.ndarray] | None = None

    def dense(self, left: Sequence[Offer], right: Sequence[Offer]) -> np.ndarray:
        titles_a, titles_b = [title_of(offer) for offer in left], [title_of(offer) for offer in right]
        cosine = self.similarity.pairwise(titles_a, titles_b)
        a, b = (self.words.transform([skeleton(title) for title in titles]) for titles in (titles_a, titles_b))
        word_cosine = np.asarray(a.multiply(b).sum(axis=1)).ravel()
        rows = [self._pair(*pair) for pair in zip(left, right, titles_a, titles_b, strict=True)]
        return np.column_stack([cosine, word_cosine, np.array(rows)])

    def _pair(self, left: Offer, right: Offer, title_a: str, title_b: str) -> list[float]:
        words_a, words_b = set(plain_tokens(title_a)), set(plain_tokens(title_b))
        codes_a, codes_b = model_codes(title_a), model_codes(title_b)
        numbers_a, numbers_b = set(NUMBER.findall(title_a)), set(NUMBER.findall(title_b))
        total = sum(self.idf.get(word, 0.0) for word in words_a | words_b) or 1.0
        only_a = sum(self.idf.get(word, 0.0) for word in words_a - words_b) / total
        only_b = sum(self.idf.get(word, 0.0) for word in words_b - words_a) / total
        return [
            len(words_a & words_b) / max(1, len(words_a | words_b)),
            1.0 if codes_a & codes_b else (-1.0 if codes_a and codes_b else 0.0),
            len(numbers_a & numbers_b) / len(numbers_a | numbers_b) if numbers_a and numbers_b else -1.0,
            1.0 if numbers_a and numbers_b and not numbers_a & numbers_b else 0.0,
            max(only_a, only_b),
            min(only_a, only_b),
            min(len(words_a), len(words_b)) / max(1, len(words_a), len(words_b)),
            *_attributes(left, right, title_b),
        ]

    def matrix(self, left: Sequence[Offer], right: Sequence[Offer]) -> object:
        """The dense features (standardised on the first call, the train split) and the shared and
        different words, hashed into one sparse matrix."""
        dense = self.dense(left, right)
        if self.scale is None:
            self.scale = (dense.mean(axis=0), dense.std(axis=0) + 1e-9)
        mean, spread = self.scale
        rows = _shared_words(left, right)
        for row, values in zip(rows, (dense - mean) / spread, strict=True):
            row.update({f"feature:{column}": float(value) for column, value in enumerate(values)})
        return self.hasher.transform(rows)


def _price(offer: Offer) -> float | None:
    try:
        value = float(offer.get("price", "").split()[0]) if offer.get("price", "").strip() else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def _attributes(left: Offer, right: Offer, title_b: str) -> list[float]:
    """The price ratio and the manufacturer's agreement, when the offers state them."""
    price_a, price_b = _price(left), _price(right)
    maker_a = (left.get("manufacturer") or left.get("brand") or "").strip().lower()
    maker_b = (right.get("manufacturer") or right.get("brand") or "").strip().lower()
    return [
        abs(math.log(price_a / price_b)) if price_a and price_b else -1.0,
        1.0 if maker_a and maker_a == maker_b else (-1.0 if maker_a and maker_b else 0.0),
        1.0 if maker_a and maker_a.split()[0] in title_b.lower() else 0.0,
    ]


def _shared_words(left: Sequence[Offer], right: Sequence[Offer]) -> list[dict[str, float]]:
    """Per pair, each word both titles have and each word only one has: "upgrade" or "mac" on one
    side only is what tells two editions of one product apart."""
    found = []
    for offer_a, offer_b in zip(left, right, strict=True):
        words_a, words_b = set(plain_tokens(title_of(offer_a))), set(plain_tokens(title_of(offer_b)))
        pair = {f"same:{word}": 1.0 for word in words_a & words_b}
        pair.update({f"diff:{word}": 1.0 for word in words_a ^ words_b})
        found.append(pair)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/product-matching"))
    args = parser.parse_args()
    print(f"{'dataset':15} {'pairs':>6} {'title F1':>9} {'learned F1':>11}")
    for name in DATASETS:
        folder = args.data / name
        train, valid, test = (load_offers(folder / f"{split}.txt") for split in ("train", "valid", "test"))
        features = PairFeatures([title_of(offer) for offer in train[0] + train[1]])
        similarity = features.similarity

        def titles(offers: list[Offer]) -> list[str]:
            return [title_of(offer) for offer in offers]

        threshold = best_threshold(similarity.pairwise(titles(valid[0]), titles(valid[1])), valid[2])
        title_f1 = f1_score(test[2], similarity.pairwise(titles(test[0]), titles(test[1])) >= threshold)
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
        model.fit(features.matrix(train[0], train[1]), train[2])
        learned_threshold = best_threshold(model.predict_proba(features.matrix(valid[0], valid[1]))[:, 1], valid[2])
        learned = model.predict_proba(features.matrix(test[0], test[1]))[:, 1] >= learned_threshold
        print(f"{name:15} {len(test[2]):>6} {title_f1:>9.3f} {f1_score(test[2], learned):>11.3f}")


if __name__ == "__main__":
    main()
