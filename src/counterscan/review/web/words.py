"""Matcher names and reasons as an analyst reads them."""

from __future__ import annotations

import re

MATCHERS = {
    "phash": "copied photo (pHash)",
    "dhash": "copied photo (dHash)",
    "pdq": "copied photo (PDQ)",
    "keypoints": "logo found in photo",
    "embedding": "looks like a product photo",
    "ocr": "brand name read in photo",
    "text": "title or description",
    "title": "product title",
    "context": "price and seller",
    "price": "price",
    "seller": "seller history",
}

_CROP = re.compile(r"\bcrop-(\d+)-(\d+)-(\d+)-(\d+)\b")


def matcher_label(name: str) -> str:
    return MATCHERS.get(name, name.replace("_", " ").replace("-", " "))


def plain_reason(reason: str | None) -> str:
    """The stored reason with code words spelled out and a word said twice in a row said once."""
    if not reason:
        return ""
    text = _CROP.sub(lambda m: f"cropped ({m.group(1)}/{m.group(2)}/{m.group(3)}/{m.group(4)} % off the edges)", reason)
    text = text.replace("hflip", "mirrored").replace("rot90", "turned a quarter").replace("rot180", "upside down")
    return re.sub(r"\b(\w+)(\s+\1\b)+", r"\1", text, flags=re.IGNORECASE)
