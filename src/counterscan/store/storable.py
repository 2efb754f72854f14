"""Text and JSON every database takes: checks and clean copies for values that come from outside.

PostgreSQL refuses NUL bytes and ``Infinity`` in JSON; no database driver encodes a lone
surrogate; Python itself fails on nesting deeper than its recursion limit. These checks find
such values without recursing, so callers can refuse or clean them before writing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_FIELD_CHARS = 131_072
"""Longest text field (title, description, url, an attribute): Python's CSV default field limit."""
MAX_DEPTH = 32
"""Deepest nesting of lists and objects in a JSON value."""
MAX_VALUE_CHARS = 4 * 1024 * 1024
"""Largest JSON value, roughly as serialised."""
MAX_INTEGER = 2**63
"""Integers beyond a signed 64-bit one are refused: some JSON readers cannot hold them."""
MAX_REASON_CHARS = 1000


def text_problem(value: str, limit: int = MAX_FIELD_CHARS) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if len(value) > limit:
        return f"{len(value):,} characters (at most {limit:,})"
    if "\x00" in value:
        return "holds a NUL byte"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ord(value[exc.start])
            if 0xDC80 <= bad <= 0xDCFF:
                # What the surrogateescape error handler makes of a byte that is not UTF-8.
                return (
                    f"byte 0x{bad - 0xDC00:02X} is not UTF-8 (declare the feed's encoding in the mapping file: "
                    '[source] encoding = "latin-1")'
                )
            return f"holds a lone surrogate (U+{bad:04X}), not valid Unicode"
    return None


def value_problem(value: Any, *, depth: int = 0, max_chars: int = MAX_VALUE_CHARS) -> str | None:
    """Why a JSON-like value (an attribute) cannot be stored, or None; never recurses past MAX_DEPTH."""
    stack: list[tuple[Any, int]] = [(value, depth)]
    size = 0
    while stack:
        item, level = stack.pop()
        size += 8
        if isinstance(item, str):
            size += len(item)
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_INTEGER <= item < MAX_INTEGER:
                return "holds an integer beyond 64 bits"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"holds {item!r}, not a finite number"
        elif isinstance(item, Mapping | list | tuple):
            if level >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, Mapping):
                for key in item:
                    if not isinstance(key, str):
                        return f"has a key of type {type(key).__name__}"
                    stack.append((key, level + 1))
                stack.extend((child, level + 1) for child in item.values())
            else:
                stack.extend((child, level + 1) for child in item)
        else:
            return f"holds a value of type {type(item).__name__}"
        if size > max_chars:
            return f"over {max_chars:,} characters in all"
    return None


def safe_text(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` and made storable: NUL bytes and lone surrogates become U+FFFD."""
    cut = value[:limit]
    if "\x00" in cut:
        cut = cut.replace("\x00", "\ufffd")
    if not cut.isascii():
        cut = cut.encode("utf-8", "replace").decode("utf-8")
    return cut


def safe_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The quarantine's copy of a bad record: kept as it was when storable, else an excerpt.

    An excerpt has the shape ``{"row": {"line": ...}}`` that a retry reads as "the original
    record could not be kept" (fix it in the feed), rather than a silently altered row.
    """
    if value_problem(raw) is None:
        return dict(raw)
    return {"row": {"line": _excerpt(raw)}, "base_dir": _base_dir(raw)}


def _excerpt(raw: Mapping[str, Any]) -> str:
    row = raw.get("row")
    if isinstance(row, Mapping) and isinstance(row.get("line"), str) and len(row) == 1:
        return safe_text(row["line"], 2000)
    parts: list[str] = []
    size = 0
    for key, value in row.items() if isinstance(row, Mapping) else []:
        shown = value if isinstance(value, str) else type(value).__name__
        part = f"{safe_text(str(key), 60)}={safe_text(shown, 200)}"
        parts.append(part)
        size += len(part)
        if size > 2000:
            break
    return "; ".join(parts)[:2000]


def _base_dir(raw: Mapping[str, Any]) -> str | None:
    base = raw.get("base_dir")
    return base if isinstance(base, str) and text_problem(base) is None else None
