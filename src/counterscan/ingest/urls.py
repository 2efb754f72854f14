"""Outbound URLs parsed and their hosts validated once, before any name is looked up.

Every place that connects somewhere a feed, a seller or a member named (feed images, HTTP sources,
the check's ``image_urls``, webhooks) parses the URL here first. A URL that is not plain http(s)
with a well-formed host is refused with a :class:`MalformedURLError` that says why, so that no
malformed host reaches the system resolver and no HTTP library fails on it later with its own
exception. The rules are strict on purpose: a host is a dotted-quad IPv4 address (no octal, hex or
short forms, which resolvers read differently), a bracketed IPv6 address without a zone, or a DNS
name of letters, digits, hyphens and underscores (IDNA names are encoded and must round-trip).

Small API::

    parse_url("https://Bücher.example/a.jpg").host  # "xn--bcher-kva.example"
    parse_url("http://0177.0.0.1/x.jpg")            # MalformedURLError: ... leading zero in '0177' ...
    check_host("LOCALHOST.")                        # MalformedURLError: host 'LOCALHOST.' ends with a dot
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import idna

from counterscan.errors import UserError

MAX_URL_CHARS = 2048
"""Longest outbound URL (browsers' old limit, and under what a PostgreSQL index entry holds: fetched
URLs are remembered in an indexed column)."""
MAX_HOST_CHARS = 253
MAX_LABEL_CHARS = 63
SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_NUMERIC_LABEL = re.compile(r"^(0[xX][0-9A-Fa-f]*|[0-9]+)$")
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_AUTHORITY_FORBIDDEN = re.compile(r"[\s\\]")


class MalformedURLError(UserError):
    """A URL or host that cannot be connected to as written; the message is one line with the reason."""


@dataclass(frozen=True)
class OutboundURL:
    """A URL that passed :func:`parse_url`: its host in ASCII (IDNA) form, without brackets."""

    url: str
    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def url_scheme(text: str) -> str:
    """The lower-cased scheme ``text`` starts with, or "" (never raises, unlike urlsplit on a bad host)."""
    found = _SCHEME.match(text)
    return found.group(1).lower() if found else ""


def is_web_url(text: str) -> bool:
    """Whether ``text`` names an http(s) URL (well-formed or not: :func:`parse_url` judges that)."""
    return url_scheme(text) in SCHEMES


def _shown(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def parse_url(url: str) -> OutboundURL:
    """``url`` parsed and checked for an outbound request; raises MalformedURLError saying why."""
    if not isinstance(url, str):
        raise MalformedURLError(f"a {type(url).__name__} where a URL was expected")
    if len(url) > MAX_URL_CHARS:
        raise MalformedURLError(f"URL of {len(url):,} characters (at most {MAX_URL_CHARS:,})")
    scheme = url_scheme(url)
    if scheme not in SCHEMES:
        shown = scheme or "(none)"
        raise MalformedURLError(f"URL {_shown(url)}: unsupported URL scheme {shown!r} (only http and https)")
    bad = _CONTROL.search(url)
    if bad is not None:
        raise MalformedURLError(f"URL {_shown(url)}: holds the control character {bad.group()!r}")
    rest = url[len(scheme) + 1 :]
    if not rest.startswith("//"):
        raise MalformedURLError(f"URL {_shown(url)}: no '//' after the scheme")
    authority = re.split(r"[/?#]", rest[2:], maxsplit=1)[0]
    bad = _AUTHORITY_FORBIDDEN.search(authority)
    if bad is not None:
        raise MalformedURLError(f"URL {_shown(url)}: the host part holds {bad.group()!r} (no spaces or backslashes)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise MalformedURLError(f"URL {_shown(url)}: {_reason(exc)}") from None
    netloc = parts.netloc
    hostport = netloc.rpartition("@")[2]
    if netloc.count("@") > 1:
        raise MalformedURLError(f"URL {_shown(url)}: more than one '@' before the host")
    host_text, port_text = _split_port(url, hostport)
    port = _port(url, port_text, scheme)
    if not host_text:
        raise MalformedURLError(f"URL {_shown(url)} has no host")
    host = _host(host_text)
    _same_for_httpx(url, host)
    return OutboundURL(url=url, scheme=scheme, host=host, port=port)


def _same_for_httpx(url: str, host: str) -> None:
    """Refuse a URL that the HTTP client would read differently from us (or not at all)."""
    try:
        theirs = httpx.URL(url).raw_host.decode("ascii").lower()
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise MalformedURLError(f"URL {_shown(url)}: {exc}") from None
    if theirs == host or _same_address(theirs, host):
        return
    raise MalformedURLError(f"URL {_shown(url)}: the host is ambiguous ({_shown(host, 40)} or {_shown(theirs, 40)})")


def _same_address(one: str, other: str) -> bool:
    try:
        return ipaddress.ip_address(one) == ipaddress.ip_address(other)
    except ValueError:
        return False


def _reason(exc: ValueError) -> str:
    text = str(exc)
    if text == "Invalid IPv6 URL":
        return "unbalanced '[' or ']' around the host"
    if "does not appear to be an IPv4 or IPv6 address" in text:
        return "the bracketed host is not a valid IPv6 address"
    return text


def _split_port(url: str, hostport: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise MalformedURLError(f"URL {_shown(url)}: unbalanced '[' or ']' around the host")
        rest = hostport[close + 1 :]
        if rest and not rest.startswith(":"):
            raise MalformedURLError(f"URL {_shown(url)}: text after the bracketed host")
        return hostport[: close + 1], rest[1:] if rest else None
    if "[" in hostport or "]" in hostport:
        raise MalformedURLError(f"URL {_shown(url)}: unbalanced '[' or ']' around the host")
    host, colon, port = hostport.partition(":")
    return host, port if colon else None


def _port(url: str, text: str | None, scheme: str) -> int:
    if text is None or text == "":
        return DEFAULT_PORTS[scheme]
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise MalformedURLError(f"URL {_shown(url)}: port {_shown(text, 20)} is not a number from 1 to 65535")
    port = int(text)
    if not 1 <= port <= 65535:
        raise MalformedURLError(f"URL {_shown(url)}: port {port} is not a number from 1 to 65535")
    return port


def check_host(host: str) -> str:
    """The ASCII form of ``host`` (a URL's host, brackets allowed around IPv6); raises
    MalformedURLError when it is not a dotted-quad IPv4 address, an IPv6 address or a DNS name."""
    return _host(host)


def _host(text: str) -> str:
    if not text:
        raise MalformedURLError("empty host")
    if text.startswith("["):
        return _ipv6(text)
    if "%" in text:
        raise MalformedURLError(f"host {_shown(text)}: percent-encoded characters are not allowed in a host")
    if text.endswith("."):
        raise MalformedURLError(f"host {_shown(text)} ends with a dot")
    labels = text.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        return _ipv4(text)
    if not text.isascii() or any(label.lower().startswith("xn--") for label in labels):
        ascii_host = _idna(text)
    else:
        ascii_host = text.lower()
    if len(ascii_host) > MAX_HOST_CHARS:
        raise MalformedURLError(f"host of {len(ascii_host)} characters (at most {MAX_HOST_CHARS})")
    for label in ascii_host.split("."):
        if not label:
            raise MalformedURLError(f"host {_shown(text)} has an empty label ('..' or a leading dot)")
        if len(label) > MAX_LABEL_CHARS:
            raise MalformedURLError(
                f"host {_shown(text)} has a label of {len(label)} characters (at most {MAX_LABEL_CHARS})"
            )
        if not _LABEL.match(label):
            raise MalformedURLError(
                f"host {_shown(text)}: label {_shown(label, 40)} is not letters, digits and inner hyphens"
            )
    return ascii_host


def _ipv4(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError as exc:
        raise MalformedURLError(
            f"host {_shown(text)} is not a valid IPv4 address ({_ipv4_reason(text, exc)})"
        ) from None


def _ipv4_reason(text: str, exc: ValueError) -> str:
    parts = text.split(".")
    if len(parts) != 4:
        return f"{len(parts)} parts, an address has 4"
    for part in parts:
        if part.lower().startswith("0x"):
            return f"hexadecimal part {part!r}"
        if not part.isdigit():
            return f"part {part!r} is not a number"
        if len(part) > 1 and part.startswith("0"):
            return f"leading zero in {part!r} (octal forms are ambiguous)"
        if int(part) > 255:
            return f"part {part} is over 255"
    return str(exc)


def _ipv6(text: str) -> str:
    inner = text[1:-1]
    if "%" in inner:
        raise MalformedURLError(f"host {_shown(text)}: IPv6 zone ids are not allowed")
    try:
        return ipaddress.IPv6Address(inner).compressed
    except ValueError:
        raise MalformedURLError(f"host {_shown(text)} is not a valid IPv6 address") from None


def _idna(text: str) -> str:
    try:
        encoded = idna.encode(text, uts46=True).decode("ascii")
        idna.decode(encoded)  # an "xn--" label must also decode back
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise MalformedURLError(f"host {_shown(text)} is not a valid international name ({exc})") from None
    return encoded.lower()


__all__ = ["MalformedURLError", "OutboundURL", "check_host", "is_web_url", "parse_url", "url_scheme"]
