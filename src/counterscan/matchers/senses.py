"""In which sense a listing uses a brand word: the brand's goods, an ordinary word, or a reference.

Three things decide it, before any score:

- **How ambiguous a word is**: a single word at least as common as ``COMMON_ZIPF`` on wordfreq's
  Zipf scale in English or across the languages of the reference phrases below ("apple", "galaxy",
  "beats", "shell", but also "samsung": brand names are frequent words of the web) names the
  brand only with corroboration; a rare word ("airpods") or a phrase of several words
  ("Suede Classic") is distinctive.
- **Honest reference use**: a brand word after "compatible with", "for", "fits", "replacement
  for", "works with" (and "kompatibel mit", "für", "compatible con", "para", "compatible avec",
  "pour", "compatibile con", "per", ...) in the same clause names what an accessory fits, as does
  a brand word followed in its clause by an accessory noun ("iPhone 15 case", "Apple Watch band").
- **Clauses**: a reference reaches only to the next comma, colon, bracket, slash or line.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

from counterscan.textnorm import WORD, deleet, skeleton

COMMON_ZIPF = 3.4
"""A word seen about 2.5 times in a million words (Zipf 3.4) or more often has an ordinary sense to be
ruled out ("puma", "jaguar", "dove"); "rolex" (3.35) and "heineken" (3.0) are names."""
REFERENCE_REACH = 6
"""Tokens after a reference phrase that it covers (within its clause)."""
ACCESSORY_REACH = 6
"""Tokens between a brand word and an accessory noun that names what the brand word fits."""

REFERENCE_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "compatible with", "compatible for", "for", "fits", "fit for", "to fit", "replacement for",
        "works with", "designed for", "made for", "suitable for", "for use with", "fits for",
    ),
    "de": ("kompatibel mit", "für", "passend für", "geeignet für", "ersatz für"),
    "es": ("compatible con", "para", "apto para", "repuesto para"),
    "fr": ("compatible avec", "pour", "adapté à", "adapté pour"),
    "it": ("compatibile con", "per", "adatto a", "adatto per"),
    "pt": ("compatível com", "para"),
    "nl": ("compatibel met", "geschikt voor", "voor"),
}  # fmt: skip
ACCESSORY_NOUNS: dict[str, tuple[str, ...]] = {
    "en": (
        "case", "cases", "cover", "covers", "screen protector", "protector", "charger", "cable", "band",
        "bands", "strap", "straps", "skin", "skins", "sleeve", "holder", "mount", "stand", "dock",
        "ear tips", "eartips", "ear pads", "earpads", "cushions", "laces", "mats", "adapter",
        "replacement", "folio", "stylus", "film", "tempered glass", "bumper", "decal", "sticker",
        "stickers", "lanyard", "keychain",
    ),
    "de": ("hülle", "schutzhülle", "ladekabel", "kabel", "ladegerät", "armband", "panzerglas", "schutzfolie"),
    "es": ("funda", "carcasa", "cargador", "correa", "protector de pantalla"),
    "fr": ("coque", "housse", "chargeur", "câble", "bracelet", "protection"),
    "it": ("custodia", "caricatore", "cinturino"),
}  # fmt: skip
JOINERS = frozenset({"with", "and", "mit", "und", "con", "y", "avec", "et", "e", "met", "en", "plus"})
"""Between a brand word and an accessory noun they make the noun part of the brand's goods
("AirPods Pro with charging case")."""
LANGUAGES = ("en", *sorted(REFERENCE_PHRASES.keys() - {"en"}))
CLAUSE_BREAK = re.compile(r"[,;:|()\[\]{}/\n\u2013\u2014]|\s-\s")


def commonness(word: str) -> float:
    """How common a word is as a word: its Zipf frequency in English, or its median over the
    languages above when higher (a word of many languages, "puma"). A brand's home market alone
    does not make its name a word ("heineken" is frequent in Dutch only). wordfreq caches lookups."""
    from wordfreq import zipf_frequency

    frequencies = [float(zipf_frequency(word, language)) for language in LANGUAGES]
    return max(float(zipf_frequency(word, "en")), median(frequencies))


def is_common(phrase: Sequence[str]) -> bool:
    """A one-word term with an ordinary sense; phrases of several words are names."""
    return len(phrase) == 1 and commonness(phrase[0]) >= COMMON_ZIPF


@dataclass(frozen=True)
class Words:
    """A text's words, each in its plain and its skeleton form, with its clause and whether it
    sits where an honest accessory names what it fits."""

    plain: tuple[str, ...]
    shapes: tuple[str, ...]
    clauses: tuple[int, ...]
    referenced: tuple[bool, ...]

    @classmethod
    def of(cls, text: str) -> Words:
        normal = unicodedata.normalize("NFKC", text)
        plain: list[str] = []
        shapes: list[str] = []
        clauses: list[int] = []
        clause, end = 0, 0
        for match in WORD.finditer(normal):
            if CLAUSE_BREAK.search(normal[end : match.start()]):
                clause += 1
            end = match.end()
            token = match.group(0)
            plain.append(token.casefold())
            shapes.append(deleet("".join(WORD.findall(skeleton(token)))))
            clauses.append(clause)
        return cls(tuple(plain), tuple(shapes), tuple(clauses), _references(plain, clauses))

    def find(self, phrase: Sequence[str], *, shapes: bool = False) -> list[int]:
        """Where ``phrase`` starts, as whole words, in the plain (or the skeleton) view."""
        words = self.shapes if shapes else self.plain
        size = len(phrase)
        if size == 0:
            return []
        wanted = list(phrase)
        return [i for i in range(len(words) - size + 1) if list(words[i : i + size]) == wanted]

    def contains(self, phrase: Sequence[str]) -> bool:
        return bool(self.find(phrase))


def _phrases(table: dict[str, tuple[str, ...]]) -> tuple[tuple[str, ...], ...]:
    found = {tuple(WORD.findall(phrase.casefold())) for phrases in table.values() for phrase in phrases}
    return tuple(sorted(found, key=len, reverse=True))


_MARKERS = _phrases(REFERENCE_PHRASES)
_NOUNS = _phrases(ACCESSORY_NOUNS)


def _starts(words: Sequence[str], phrases: Sequence[tuple[str, ...]], at: int) -> int:
    """The length of the longest phrase starting at ``at`` (0 when none)."""
    for phrase in phrases:
        if tuple(words[at : at + len(phrase)]) == phrase:
            return len(phrase)
    return 0


def _references(words: Sequence[str], clauses: Sequence[int]) -> tuple[bool, ...]:
    """Per word: inside the reach of a reference phrase, or before an accessory noun of its clause."""
    referenced = [False] * len(words)
    for at in range(len(words)):
        size = _starts(words, _MARKERS, at)
        if not size:
            continue
        for covered in range(at + size, min(len(words), at + size + REFERENCE_REACH)):
            if clauses[covered] != clauses[at]:
                break
            referenced[covered] = True
    for at in range(len(words)):
        if not _starts(words, _NOUNS, at):
            continue
        # Back from the noun to the clause's start or a joiner: "iPhone 15 Pro case", not
        # "AirPods Pro with charging case".
        for before in range(at - 1, max(-1, at - 1 - ACCESSORY_REACH), -1):
            if clauses[before] != clauses[at] or words[before] in JOINERS:
                break
            referenced[before] = True
    return tuple(referenced)
