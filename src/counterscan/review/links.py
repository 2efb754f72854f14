"""Links to a listing's page, as the review's pages write them: http(s) only.

A listing's URL comes from a feed, so it may be ``javascript:``, ``data:`` or ``file:``. The HTML
report and the review UI both ask :func:`web_link` before writing a URL into ``href``; anything it
refuses is shown as plain text.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def web_link(url: str | None) -> str | None:
    """``url`` as it may go into ``href`` when it is an http(s) URL with a host; None otherwise."""
    if not url:
        return None
    # Browsers drop tabs and newlines inside URLs and spaces around them: so must the check.
    cleaned = "".join(char for char in url.strip() if char not in "\t\r\n")
    try:
        parts = urlsplit(cleaned)
    except ValueError:  # a malformed host ("http://[::1") is no link
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return cleaned
