"""Words read in listing photos, matched with the same logic as titles.

Every listing photo is read once (``ocr_engine.TextReader``); the signal stored for it is the text
itself: each recognised line with its confidence and its box in the photo. Matching happens at
query time against the brands in scope, through :meth:`TextMatcher.hits` (brand names and aliases,
disguised and look-alike spellings, trademark words, the multilingual counterfeit vocabulary), so
a brand registered later is matched against text read before, without reading the photo again.

Evidence names the words that gave each signal, the confidence of their reading and their boxes
(``details["read"]``, ``details["regions"]``) for the report. A word read in a photo weighs more
than the same word in a title: printed on the product or the picture, it is a wordmark.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from counterscan.imaging.decode import Picture
from counterscan.matchers.index import load_derived, save_derived
from counterscan.matchers.ocr_engine import Quad, ReaderOptions, TextLine, TextReader
from counterscan.matchers.text import TextHit, TextMatcher
from counterscan.records import AssetKind, AssetSignal, Brand, Evidence
from counterscan.textnorm import plain, skeleton, skeleton_tokens

READ_SIDE = 800
"""The decoded size text is read from: the keypoint matcher's, so the two share one decode."""

# A signal read in a photo, scaled by how sure the reading is (mean confidence of its lines).
PHOTO_SCORES = {
    "brand-mention": 0.45,
    "disguised-brand": 0.5,
    "lookalike": 0.5,
    "counterfeit-term": 0.65,
    "ambiguous-mention": 0.1,
    "accessory-mention": 0.05,
}
SURE_READING = 0.9
"""Recognition confidence at which a one-letter misspelling is taken as written, not misread."""
PHOTO_REASONS = {
    "brand-mention": "photo reads the brand name",
    "disguised-brand": "photo reads a disguised brand name",
    "lookalike": "photo reads a look-alike spelling",
    "counterfeit-term": "photo reads counterfeit vocabulary",
    "ambiguous-mention": "photo reads an everyday word that is also a brand name",
    "accessory-mention": "photo reads the brand as what an accessory fits",
}


@dataclass(frozen=True)
class ReadText:
    """What was read in one photo: the stored signal."""

    reader: str
    size: tuple[int, int]
    lines: tuple[TextLine, ...]

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def to_bytes(self) -> bytes:
        lines = [{"text": line.text, "confidence": line.confidence, "box": line.box} for line in self.lines]
        payload = {"reader": self.reader, "size": list(self.size), "lines": lines}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReadText:
        payload = json.loads(data)
        lines = tuple(
            TextLine(str(line["text"]), float(line["confidence"]), tuple(tuple(point) for point in line["box"]))  # type: ignore[arg-type]
            for line in payload["lines"]
        )
        width, height = payload["size"]
        return cls(str(payload["reader"]), (int(width), int(height)), lines)


def read_picture(reader: TextReader, image: Image.Image, full_size: tuple[int, int]) -> ReadText:
    """Read ``image`` (a possibly reduced decode of a picture ``full_size`` px big)."""
    rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
    lines = reader.read(rgb, scale=full_size[0] / max(1, image.width))
    return ReadText(reader.options.key(), full_size, tuple(lines))


class BrandWords:
    """The OCR matcher's index: the brands in scope (their words are compiled by the text logic)."""

    def __init__(self, matcher: OcrMatcher, brands: Sequence[Brand], vocabulary: frozenset[str] | None = None) -> None:
        """``vocabulary``: the one these very brands gave before, which need not be compiled again."""
        self.matcher = matcher
        self.brands = tuple(brands)
        self.vocabulary = matcher.words.vocabulary(self.brands) if vocabulary is None else vocabulary
        """The words the text logic looks for, to split words the reader ran together."""

    def __len__(self) -> int:
        return len(self.brands)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        return [self.matcher.match_text(self, sha256, ReadText.from_bytes(signal)) for sha256, signal in signals]

    def save(self, path: Path) -> None:
        save_derived(
            path, self.matcher.brands_digest(self.brands), vocabulary=np.array(sorted(self.vocabulary), dtype=np.str_)
        )


MIN_PIECE = 2
WORD_RUN = re.compile(r"\w+")
GLUED_MIN_LENGTH = 6
"""Shorter runs are read as written: too few letters to hold two words and a brand's name."""
ORDINARY_PIECE = 3
ORDINARY_ZIPF = 3.0
"""Beside a looked-for word, a piece of a run may be an ordinary word at least this common
(wordfreq's Zipf scale) and this long: "APPLEORIGINAL" -> apple, original."""


def _cover(token: str, known: Callable[[str], bool]) -> list[str] | None:
    """``token`` as the fewest pieces that are each ``known``, or None when it is not wholly made of them."""
    best: list[list[str] | None] = [None] * (len(token) + 1)
    best[0] = []
    for start in range(len(token)):
        done = best[start]
        if done is None:
            continue
        for end in range(start + MIN_PIECE, len(token) + 1):
            if known(token[start:end]):
                found = best[end]
                if found is None or len(done) + 1 < len(found):
                    best[end] = [*done, token[start:end]]
    return best[len(token)]


def _ordinary(word: str) -> bool:
    from wordfreq import zipf_frequency

    return len(word) >= ORDINARY_PIECE and zipf_frequency(word, "en") >= ORDINARY_ZIPF


def split_run_together(token: str, vocabulary: frozenset[str]) -> list[str] | None:
    """``token`` as two or more words written together, fewest pieces first, or None when it is
    not wholly made of them: the reader often drops the space between printed words. Either every
    piece is a word the text logic looks for ("aaareplica" -> aaa, replica; "cocacola" -> coca,
    cola), or the run is no word itself and holds such a word beside ordinary words
    ("appleoriginal" -> apple, original). "oxford" stays whole: it is a word, and "ox" is not
    looked for."""
    found = _cover(token, vocabulary.__contains__)
    if found is None and len(token) >= GLUED_MIN_LENGTH and not _ordinary(token):
        found = _cover(token, lambda piece: piece in vocabulary or _ordinary(piece))
        if found is not None and not any(piece in vocabulary for piece in found):
            found = None
    return found if found is not None and len(found) >= 2 else None


def spaced(text: str, vocabulary: frozenset[str]) -> str:
    """``text`` with run-together words of ``vocabulary`` split apart, the rest as read."""

    def split(match: re.Match[str]) -> str:
        pieces = split_run_together(plain(match.group(0)), vocabulary)
        return match.group(0) if pieces is None else " ".join(pieces)

    return WORD_RUN.sub(split, text)


def _span(haystack: str, needle: str) -> tuple[int, int] | None:
    start = haystack.find(needle)
    return None if start < 0 or not needle else (start, start + len(needle))


def word_box(line: TextLine, word: str) -> Quad:
    """The part of a line's box that holds ``word``, by its place among the line's characters
    (the whole line when the word is not found as such, e.g. a disguised spelling)."""
    text = line.text
    span = (
        _span(plain(text), plain(word))
        or _span(plain(text), plain(word).replace(" ", ""))  # read run together: "REDBULL"
        or _span(skeleton(text), " ".join(skeleton_tokens(word)))
    )
    if span is None or len(text) == 0 or len(plain(text)) != len(text):
        return line.box
    start, end = span[0] / len(text), span[1] / len(text)
    top_left, top_right, bottom_right, bottom_left = (np.array(point, np.float64) for point in line.box)

    def along(a: np.ndarray, b: np.ndarray, t: float) -> tuple[float, float]:
        point = a + (b - a) * t
        return round(float(point[0]), 1), round(float(point[1]), 1)

    return (
        along(top_left, top_right, start),
        along(top_left, top_right, end),
        along(bottom_left, bottom_right, end),
        along(bottom_left, bottom_right, start),
    )


def _sure_misspellings(brand: Brand, lines: list[tuple[TextLine, list[str]]]) -> list[tuple[TextLine, list[str]]]:
    """A word one letter from the brand's name is a seller's look-alike only when read surely: a
    reader's own slip ("HEINEKCN" on a real can) comes with a lower confidence. Registered
    look-alikes count at any confidence."""
    registered = {" ".join(skeleton_tokens(word)) for word in brand.lookalikes}
    kept = [
        (line, [word for word in words if word in registered or line.confidence >= SURE_READING])
        for line, words in lines
    ]
    return [(line, words) for line, words in kept if words]


class OcrMatcher:
    """Brand names and counterfeit vocabulary read in listing photos."""

    name = "ocr"
    asset_kinds: tuple[AssetKind, ...] = ()
    """No assets: brands' names, aliases and trademark words are what it looks for."""

    def __init__(self, reader: TextReader | None = None, words: TextMatcher | None = None) -> None:
        self.reader = reader or TextReader(ReaderOptions())
        self.words = words or TextMatcher()

    def encode(self, picture: Picture) -> bytes:
        return read_picture(self.reader, picture.reduced(READ_SIDE), picture.size).to_bytes()

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        return []

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> BrandWords:
        """The brands themselves: this matcher has no asset signals."""
        return BrandWords(self, brands)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> BrandWords:
        saved = load_derived(path, self.brands_digest(brands), "vocabulary")
        return BrandWords(self, brands, None if saved is None else frozenset(str(word) for word in saved["vocabulary"]))

    def brands_digest(self, brands: Sequence[Brand]) -> str:
        """A digest of what the brands' vocabulary is compiled from: the brands and the text logic's own words."""
        compiled = repr((tuple(brands), sorted(self.words.vocabulary(()))))
        return hashlib.sha256(compiled.encode()).hexdigest()

    def match_text(self, index: BrandWords, sha256: str | None, read: ReadText) -> list[Evidence]:
        if not read.lines or not index.brands:
            return []
        spaced_lines = [(line, spaced(line.text, index.vocabulary)) for line in read.lines]
        found = []
        hits = self.words.hits("\n".join(text for _line, text in spaced_lines), index.brands)
        # Each line alone, against the same brands (the text logic keeps one index per brand list).
        per_line = [self.words.hits(text, index.brands) for _line, text in spaced_lines] if hits else []
        named = {hit.brand.brand_id for hit in hits if hit.signal in ("brand-mention", "disguised-brand")}
        for hit in self._slips_as_names(hits, spaced_lines, per_line, named):
            lines = self._lines_of(hit, spaced_lines, per_line)
            if hit.signal == "lookalike":
                lines = _sure_misspellings(hit.brand, lines)
            if not lines:
                continue
            confidence = float(np.mean([line.confidence for line, _words in lines]))
            shown = [
                {"text": word, "line": line.text, "confidence": line.confidence, "box": word_box(line, word)}
                for line, words in lines
                for word in words
            ]
            quoted = ", ".join(repr(item["text"]) for item in shown)
            found.append(
                Evidence(
                    matcher=self.name,
                    brand_id=hit.brand.brand_id,
                    brand=hit.brand.name,
                    score=round(PHOTO_SCORES[hit.signal] * confidence, 4),
                    reason=f"{PHOTO_REASONS[hit.signal]} {quoted} ({hit.brand.name}; reading confidence "
                    f"{confidence:.2f})",
                    image_sha256=sha256,
                    details={
                        "signal": hit.signal,
                        **hit.details,
                        "read": shown,
                        "regions": [item["box"] for item in shown],
                    },
                )
            )
        return sorted(found, key=lambda item: -item.score)

    def vocabulary_beside(self, brands: Sequence[Brand], sha256: str, read: ReadText) -> list[Evidence]:
        """Counterfeit vocabulary read in a photo ("AAA replica" printed on it) of a listing whose
        other evidence already names ``brands`` (its title, a logo): a title and the words on its
        photos are one listing's text, as a title and its description are."""
        vocabulary = self.words.vocabulary(brands)
        lines = [(line, self.words.counterfeit_terms(spaced(line.text, vocabulary))) for line in read.lines]
        lines = [(line, terms) for line, terms in lines if terms]
        if not lines:
            return []
        confidence = float(np.mean([line.confidence for line, _terms in lines]))
        shown = [
            {"text": term, "line": line.text, "confidence": line.confidence, "box": word_box(line, term)}
            for line, terms in lines
            for term in terms
        ]
        terms = sorted({str(item["text"]) for item in shown})
        return [
            Evidence(
                matcher=self.name,
                brand_id=brand.brand_id,
                brand=brand.name,
                score=round(PHOTO_SCORES["counterfeit-term"] * confidence, 4),
                reason=f"{PHOTO_REASONS['counterfeit-term']} {', '.join(map(repr, terms))} in a {brand.name} "
                f"listing (reading confidence {confidence:.2f})",
                image_sha256=sha256,
                details={
                    "signal": "counterfeit-term",
                    "terms": terms,
                    "read": shown,
                    "regions": [item["box"] for item in shown],
                },
            )
            for brand in brands
        ]

    def _slips_as_names(
        self,
        hits: Sequence[TextHit],
        lines: Sequence[tuple[TextLine, str]],
        per_line: Sequence[Sequence[TextHit]],
        named: set[int],
    ) -> list[TextHit]:
        """``hits``, plus the brand's name read for a one-letter misspelling read unsurely (the
        reader's slip on the real mark, "Ferrarr"): the photo shows the name, not a look-alike."""
        extra = []
        for hit in hits:
            if hit.signal != "lookalike" or hit.brand.brand_id in named:
                continue
            lines_of = self._lines_of(hit, lines, per_line)
            sure = _sure_misspellings(hit.brand, lines_of)
            slips = sorted({word for line, words in lines_of if (line, words) not in sure for word in words})
            if slips:
                extra.append(TextHit(hit.brand, "brand-mention", hit.score, hit.reason, {"words": slips}))
        return [*hits, *extra]

    def _lines_of(
        self, hit: TextHit, lines: Sequence[tuple[TextLine, str]], per_line: Sequence[Sequence[TextHit]]
    ) -> list[tuple[TextLine, list[str]]]:
        """The lines that carry a hit's words, each with the words it carries; ``lines`` pairs each
        line read with its text (run-together words split), ``per_line`` has each line's own hits."""
        wanted = [str(word) for word in hit.details.get("words", hit.details.get("terms", []))]  # type: ignore[attr-defined]
        found: list[tuple[TextLine, list[str]]] = []
        for (line, text), alone in zip(lines, per_line, strict=True):
            if hit.signal == "counterfeit-term":
                words = self.words.counterfeit_terms(text)
            else:
                words = [
                    str(word)
                    for other in alone
                    if other.signal == hit.signal and other.brand.brand_id == hit.brand.brand_id
                    for word in other.details.get("words", [])  # type: ignore[attr-defined]
                ]
            if words:
                found.append((line, words))
        if found:
            return found
        # A name split over two lines ("coca" / "cola"): the lines holding any of its words.
        tokens = {token for word in wanted for token in skeleton_tokens(word)}
        return [
            (line, [token for token in skeleton_tokens(text) if token in tokens])
            for line, text in lines
            if tokens & set(skeleton_tokens(text))
        ]
