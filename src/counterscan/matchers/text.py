"""Words in a listing: brand names (honest, disguised or misspelt) and counterfeit vocabulary.

Signals, per brand, each with its own confidence for the cold-start scorer:

- ``brand-mention``: the brand's name, an alias or a trademark word, as whole words, used as the
  brand's own (not only as what an accessory fits).
- ``disguised-brand``: the same only after folding homoglyphs, leetspeak and accents
  (``N1ke``, ``Nіke`` with a Cyrillic і): sellers hide names from keyword filters. Folding comes
  before every match, whatever other words of the brand the text has.
- ``lookalike``: a misspelling the brand owner registered, or one edit away from a name of five
  letters or more (``Adidaas``).
- ``counterfeit-term``: vocabulary of fakes ("replica", "1:1", "mirror quality", in several
  languages) in a listing that also names the brand.
- ``ambiguous-mention`` and ``accessory-mention`` (quiet, ``AMBIGUOUS_SCORE`` and
  ``ACCESSORY_SCORE``): an everyday word among the brand's names with nothing to confirm it
  ("galaxy" in a star projector), or the brand named only as what an accessory fits ("case
  compatible with Galaxy S23"). Shown to analysts; they bring in no price evidence.

Which words are everyday words and which phrases are references is :mod:`counterscan.matchers.senses`.
An everyday word is the brand's name beside another of its names, one of its categories, strong
counterfeit vocabulary ("replica", not "fake": fake plants are honest), a disguise or a look-alike
of it; the brand's picture, one of its products in the title, or the word read in a photo too
confirm it later (:func:`counterscan.matchers.context.corroborate`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

from counterscan.matchers.senses import Words, is_common
from counterscan.records import Brand, Evidence, Listing
from counterscan.textnorm import plain, plain_tokens, skeleton_tokens

BRAND_MENTION_SCORE = 0.2
AMBIGUOUS_SCORE = 0.05
"""An everyday brand word with nothing else naming the brand: shown, not suspected."""
ACCESSORY_SCORE = 0.05
"""A brand named only as what an accessory fits: shown, not suspected."""
DISGUISED_SCORE = 0.45
LOOKALIKE_SCORE = 0.45
COUNTERFEIT_TERM_SCORE = 0.6
FUZZY_MIN_LENGTH = 5
# A word one edit from a brand name is a look-alike only if it is rare itself ("Rolexx", not "guest").
FUZZY_MAX_ZIPF = 3.0

# Phrases of fakes, by language. Matched on the plain text as whole words; regexes allowed.
COUNTERFEIT_TERMS: dict[str, tuple[str, ...]] = {
    "en": (
        "replica", "replicas", "1:1", "aaa", "aaa+", "mirror quality", "mirror copy", "super clone",
        "superclone", "knockoff", "knock off", "knock-off", "fake", "inspired by", "same as original",
        "high copy", "top copy", "oem quality", r"unbranded\b.{0,40}\bstyle", "designer inspired",
        "dupe", "not original", "non original",
    ),
    "de": ("replik", "nachbildung", "fälschung", "nicht original", "kopie"),
    "fr": ("réplique", "contrefaçon", "copie", "qualité miroir", "imitation"),
    "es": ("réplica", "imitación", "falso", "falsa", "copia", "calidad espejo"),
    "it": ("imitazione", "falso", "copia", "qualità specchio"),
    "pt": ("réplica", "imitação", "falsificado", "cópia", "primeira linha"),
    "nl": ("namaak", "replica"),
    "pl": ("podróbka", "replika"),
    "ru": ("реплика", "копия", "подделка", "люкс копия"),
    "zh": ("高仿", "复刻", "仿品", "a货", "原单"),
}  # fmt: skip
WEAK_COUNTERFEIT_TERMS = frozenset(
    {"fake", "inspired by", "dupe", "kopie", "copie", "imitation", "copia", "falso", "falsa", "cópia"}
)
"""Words with honest uses too (fake plants, an apple-shaped dupe): they count beside a brand's name
but do not by themselves make an everyday word the brand's."""


def _term_pattern(term: str) -> re.Pattern[str]:
    body = term if "\\" in term else re.escape(plain(term))
    if re.search(r"[\u4e00-\u9fff]", term):
        return re.compile(body)  # no word edges in Chinese
    return re.compile(r"(?<![\w])" + body + r"(?![\w+])")


def _phrase_in(phrase: Sequence[str], words: Sequence[str]) -> bool:
    size = len(phrase)
    return size > 0 and any(list(words[i : i + size]) == list(phrase) for i in range(len(words) - size + 1))


@dataclass(frozen=True)
class _BrandTerms:
    brand: Brand
    names: tuple[tuple[str, ...], ...]
    """Names, aliases and trademark words as token sequences (plain view)."""
    skeletons: tuple[tuple[str, ...], ...]
    lookalikes: tuple[tuple[str, ...], ...]
    categories: tuple[tuple[str, ...], ...]
    """The goods the brand sells ("headphones"), singular and plural: they confirm an everyday word."""
    common: frozenset[tuple[str, ...]]
    """The names that are everyday words (``senses.is_common``), decided once per brand."""


def _terms(brand: Brand) -> _BrandTerms:
    words = [brand.name, *brand.aliases, *brand.keywords]
    categories = {tuple(plain_tokens(word)) for word in brand.categories}
    # "sneakers" registered, "sneaker" written (and the other way round).
    categories |= {(*kind[:-1], kind[-1][:-1]) for kind in categories if kind and kind[-1].endswith("s")}
    categories |= {(*kind[:-1], kind[-1] + "s") for kind in categories if kind and not kind[-1].endswith("s")}
    names = tuple(dict.fromkeys(tuple(plain_tokens(word)) for word in words if plain_tokens(word)))
    return _BrandTerms(
        brand=brand,
        names=names,
        skeletons=tuple(dict.fromkeys(tuple(skeleton_tokens(word)) for word in words if skeleton_tokens(word))),
        lookalikes=tuple(tuple(skeleton_tokens(word)) for word in brand.lookalikes if skeleton_tokens(word)),
        categories=tuple(sorted(kind for kind in categories if kind and kind[-1])),
        common=frozenset(name for name in names if is_common(name)),
    )


@dataclass(frozen=True)
class BrandUsage:
    """How one text uses one brand's words, before any score."""

    brand: Brand
    distinctive: tuple[str, ...]
    """Distinctive names (rare words, phrases) used as the brand's own."""
    common: tuple[tuple[str, int], ...]
    """Everyday words among its names used in their place, with where they start."""
    referenced: tuple[str, ...]
    """Names in an honest reference ("case compatible with Galaxy S23", "iPhone 15 case")."""
    disguised: tuple[str, ...]
    lookalikes: tuple[str, ...]
    category: bool
    """A word of the brand's categories is present."""

    @property
    def named(self) -> bool:
        """The text is about the brand's own goods by its words alone: a distinctive name, a
        disguise, a look-alike, or an everyday name beside a category word or another name."""
        return bool(
            self.distinctive
            or self.disguised
            or self.lookalikes
            or (self.common and (self.category or len({word for word, _start in self.common}) >= 2))
        )

    @property
    def mentioned(self) -> bool:
        """A name of the brand is used in its place (not only in a reference), whatever its sense."""
        return bool(self.distinctive or self.common or self.disguised or self.lookalikes)


@dataclass(frozen=True)
class TextHit:
    """One signal a text gives about one brand, before it becomes a matcher's evidence."""

    brand: Brand
    signal: str
    score: float
    reason: str
    details: dict[str, object]
    """The words that gave the signal: ``words`` (brand names as found) or ``terms`` (counterfeit vocabulary)."""


class TextMatcher:
    """Brand words in their honest, disguised and misspelt forms, and counterfeit vocabulary."""

    name = "text"

    def __init__(self, counterfeit_terms: dict[str, tuple[str, ...]] | None = None) -> None:
        vocabulary = counterfeit_terms if counterfeit_terms is not None else COUNTERFEIT_TERMS
        self._terms = [(term, _term_pattern(term)) for terms in vocabulary.values() for term in terms]
        self._brands: dict[int, tuple[Brand, _BrandTerms]] = {}
        self._index: tuple[tuple[Brand, ...], tuple[dict[str, list[int]], dict[str, list[int]]]] | None = None

    def _brand_terms(self, brand: Brand) -> _BrandTerms:
        cached = self._brands.get(brand.brand_id)
        if cached is None or cached[0] != brand:
            cached = (brand, _terms(brand))
            self._brands[brand.brand_id] = cached
        return cached[1]

    def vocabulary(self, brands: Sequence[Brand]) -> frozenset[str]:
        """Every single word this logic looks for (plain view): the brands' names, aliases, trademark
        words and look-alikes, and the counterfeit vocabulary's words."""
        words = {token for term, _pattern in self._terms if "\\" not in term for token in plain_tokens(term)}
        for brand in brands:
            for name in (brand.name, *brand.aliases, *brand.keywords, *brand.lookalikes):
                words.update(plain_tokens(name))
        return frozenset(words)

    def counterfeit_terms(self, text: str) -> list[str]:
        folded = plain(text)
        return [term for term, pattern in self._terms if pattern.search(folded)]

    def match(self, listing: Listing, brands: Sequence[Brand]) -> list[Evidence]:
        return [
            Evidence(
                matcher=self.name,
                brand_id=hit.brand.brand_id,
                brand=hit.brand.name,
                score=hit.score,
                reason=hit.reason,
                details={"signal": hit.signal, **hit.details},
            )
            for hit in self.hits(f"{listing.title}\n{listing.description}", brands)
        ]

    def usage(self, text: str, brands: Sequence[Brand]) -> dict[int, BrandUsage]:
        """How ``text`` uses each brand's words (only brands with a word found): the sense analysis
        the title and price logic share with :meth:`hits`."""
        words = Words.of(text)
        return {usage.brand.brand_id: usage for usage in self._usages(words, brands)}

    def _usages(self, words: Words, brands: Sequence[Brand]) -> list[BrandUsage]:
        found = []
        for brand in self._candidates(brands, set(words.plain), set(words.shapes)):
            terms = self._brand_terms(brand)
            direct: list[tuple[tuple[str, ...], int]] = []
            referenced: list[str] = []
            for name in terms.names:
                for start in words.find(name):
                    if any(words.referenced[start : start + len(name)]):
                        referenced.append(" ".join(name))
                    else:
                        direct.append((name, start))
            # Folded before every match: a disguised word counts whatever else the text names.
            names = set(terms.names)
            disguised = [
                " ".join(shape)
                for shape in terms.skeletons
                for start in words.find(shape, shapes=True)
                if words.plain[start : start + len(shape)] != shape
                and tuple(words.plain[start : start + len(shape)]) not in names
            ]
            lookalikes = self._lookalikes(terms, words.shapes)
            if direct or referenced or disguised or lookalikes:
                found.append(
                    BrandUsage(
                        brand=brand,
                        distinctive=tuple(
                            dict.fromkeys(" ".join(name) for name, _ in direct if name not in terms.common)
                        ),
                        common=tuple(
                            dict.fromkeys((" ".join(name), start) for name, start in direct if name in terms.common)
                        ),
                        referenced=tuple(dict.fromkeys(referenced)),
                        disguised=tuple(dict.fromkeys(disguised)),
                        lookalikes=tuple(lookalikes),
                        category=any(words.contains(category) for category in terms.categories),
                    )
                )
        return found

    def hits(self, text: str, brands: Sequence[Brand]) -> list[TextHit]:
        """What ``text`` says about each brand: the one logic for titles and words read in photos."""
        words = Words.of(text)
        fakes = self.counterfeit_terms(text)
        strong = [term for term in fakes if term not in WEAK_COUNTERFEIT_TERMS]
        found: list[TextHit] = []
        for usage in self._usages(words, brands):
            brand = usage.brand
            evidence_of_fake = bool(usage.disguised or usage.lookalikes)
            corroborated = bool(strong) or usage.named
            named = [*usage.distinctive, *(word for word, _start in usage.common)] if corroborated else []
            # Counterfeit vocabulary overrides a reference: "replica case for iPhone" names iPhone.
            if strong and not named:
                named = list(usage.referenced)
            signals: list[TextHit] = []
            if named:
                signals.append(
                    TextHit(brand, "brand-mention", BRAND_MENTION_SCORE, "mentions " + _quoted(named), {"words": named})
                )
            elif usage.common:
                common = [word for word, _start in usage.common]
                signals.append(
                    TextHit(
                        brand,
                        "ambiguous-mention",
                        AMBIGUOUS_SCORE,
                        f"mentions {_quoted(common)}, an everyday word, with nothing else naming {brand.name}",
                        {"words": common},
                    )
                )
            elif usage.referenced and not evidence_of_fake:
                signals.append(
                    TextHit(
                        brand,
                        "accessory-mention",
                        ACCESSORY_SCORE,
                        f"names {_quoted(usage.referenced)} as what it fits (accessory)",
                        {"words": list(usage.referenced)},
                    )
                )
            if usage.disguised:
                signals.append(
                    TextHit(
                        brand,
                        "disguised-brand",
                        DISGUISED_SCORE,
                        "disguised brand name " + _quoted(usage.disguised),
                        {"words": list(usage.disguised)},
                    )
                )
            if usage.lookalikes:
                signals.append(
                    TextHit(
                        brand,
                        "lookalike",
                        LOOKALIKE_SCORE,
                        "look-alike spelling " + _quoted(usage.lookalikes),
                        {"words": list(usage.lookalikes)},
                    )
                )
            counts = strong if not (named or evidence_of_fake) else fakes
            if (named or evidence_of_fake) and counts:
                signals.append(
                    TextHit(
                        brand,
                        "counterfeit-term",
                        COUNTERFEIT_TERM_SCORE,
                        f"{brand.name} listing uses counterfeit vocabulary: {_quoted(counts)}",
                        {"terms": counts},
                    )
                )
            found.extend(signals)
        return found

    def _candidates(self, brands: Sequence[Brand], words: set[str], shapes: set[str]) -> list[Brand]:
        """The brands that can give a signal for these words, in the order given: a phrase needs its
        first token present, a one-edit look-alike shares a one-deletion form with the name. The
        full checks follow; this only spares a real-time check a loop over every brand."""
        key = tuple(brands)
        if self._index is None or self._index[0] != key:
            self._index = (key, _word_index(key, self._brand_terms))
        exact, fuzzy = self._index[1]
        chosen: set[int] = set()
        for token in words | shapes:
            chosen.update(exact.get(token, ()))
        for token in shapes:
            if len(token) >= FUZZY_MIN_LENGTH - 1:
                for form in _deletions(token):
                    chosen.update(fuzzy.get(form, ()))
        return [brands[number] for number in sorted(chosen)]

    def _lookalikes(self, terms: _BrandTerms, shapes: Sequence[str]) -> list[str]:
        hits = [" ".join(name) for name in terms.lookalikes if _phrase_in(name, shapes)]
        real = {token for name in terms.skeletons for token in name}
        for name in terms.skeletons:
            if len(name) != 1 or len(name[0]) < FUZZY_MIN_LENGTH:
                continue
            for token in set(shapes):
                if (
                    token not in real
                    and abs(len(token) - len(name[0])) <= 1
                    and Levenshtein.distance(token, name[0]) == 1
                    and _zipf(token) < FUZZY_MAX_ZIPF
                ):
                    hits.append(token)
        return sorted(set(hits))


def _deletions(token: str) -> set[str]:
    return {token} | {token[:i] + token[i + 1 :] for i in range(len(token))}


def _word_index(
    brands: Sequence[Brand], terms_of: Callable[[Brand], _BrandTerms]
) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """First tokens of every brand phrase, and one-deletion forms of fuzzy-matchable names -> brands."""
    exact: dict[str, list[int]] = {}
    fuzzy: dict[str, list[int]] = {}
    for number, brand in enumerate(brands):
        terms = terms_of(brand)
        for phrase in (*terms.names, *terms.skeletons, *terms.lookalikes):
            exact.setdefault(phrase[0], []).append(number)
        for name in terms.skeletons:
            if len(name) == 1 and len(name[0]) >= FUZZY_MIN_LENGTH:
                for form in _deletions(name[0]):
                    fuzzy.setdefault(form, []).append(number)
    return exact, fuzzy


def _quoted(words: Sequence[str]) -> str:
    """The words for a reason, each once (a title that says "replica" twice is read once)."""
    return ", ".join(repr(word) for word in dict.fromkeys(words))


def _zipf(word: str) -> float:
    """How common an English word is (wordfreq's Zipf scale); wordfreq loads its tables on first use."""
    from wordfreq import zipf_frequency

    return float(zipf_frequency(word, "en"))
