"""Text normalisation for brand matching: case, width, accents, homoglyphs and leetspeak.

Two views of a text: ``plain`` (NFKC, case-folded, accents kept) for honest mentions, and
``skeleton`` (accents stripped, look-alike letters from other scripts and leetspeak digits mapped
to the Latin letters they imitate) for disguised ones: ``N1ke``, ``Nіke`` (Cyrillic і), ``ΝΙΚΕ``.
"""

from __future__ import annotations

import re
import unicodedata

# Letters from other scripts that render like Latin ones (after case-folding), from Unicode's
# confusables list, limited to the ones seen in marketplace spam.
HOMOGLYPHS = {
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g", "ɑ": "a", "ο": "o", "α": "a", "ε": "e",
    "ι": "i", "κ": "k", "ν": "v", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "η": "n", "β": "b",
    "μ": "u", "ω": "w", "ı": "i",
}  # fmt: skip
# Capitals first: a Greek capital Ν looks like N, but its lower case ν looks like v.
CAPITAL_HOMOGLYPHS = {
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n", "Ο": "o",
    "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x", "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h",
    "О": "o", "Р": "p", "С": "c", "Т": "t", "Х": "x", "І": "i", "Ј": "j", "Ѕ": "s",
}  # fmt: skip
LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s", "!": "i", "|": "l"}
WORD = re.compile(r"[\w@$!|]+", re.UNICODE)


def plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _strip_accents(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))


def skeleton(text: str) -> str:
    """What a text looks like: homoglyphs, leetspeak and accents folded away."""
    capitals = "".join(CAPITAL_HOMOGLYPHS.get(ch, ch) for ch in unicodedata.normalize("NFKC", text))
    folded = _strip_accents(capitals.casefold())
    return "".join(HOMOGLYPHS.get(ch, ch) for ch in folded)


def deleet(token: str) -> str:
    """Leetspeak digits to letters, only inside tokens that also have letters ("N1ke", not "2024")."""
    if not any(ch.isalpha() for ch in token):
        return token
    return "".join(LEET.get(ch, ch) for ch in token)


def tokens(text: str) -> list[str]:
    return WORD.findall(text)


def skeleton_tokens(text: str) -> list[str]:
    return [deleet(token) for token in tokens(skeleton(text))]


def plain_tokens(text: str) -> list[str]:
    return tokens(plain(text))
