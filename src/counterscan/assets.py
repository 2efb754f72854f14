"""Members, brands and reference assets."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cairosvg

from counterscan.errors import ImageDecodeError, ImageError, UserError
from counterscan.imaging import DecodeLimits, inspect, read_capped
from counterscan.matchers import ImageMatcher
from counterscan.records import ASSET_KINDS, Asset, AssetKind, Brand, Member
from counterscan.store import BlobStore, Store

# Logos drawn as SVG are rasterised at this width: enough detail for hashing and keypoints.
SVG_RASTER_WIDTH = 512
ROLE_MEMBER = "member"


@dataclass(frozen=True)
class NewMember:
    member: Member
    api_key: str
    """Shown once; only its hash is stored."""


@dataclass(frozen=True)
class UploadReport:
    added: tuple[Asset, ...]
    already_present: tuple[Asset, ...]
    rejected: tuple[tuple[str, str], ...]
    """(file, reason) for each file that was not accepted."""


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def add_member(store: Store, name: str, *, role: str = ROLE_MEMBER) -> NewMember:
    name = name.strip()
    if not name:
        raise UserError("member name must not be empty")
    key = "cs_" + secrets.token_urlsafe(32)
    return NewMember(member=store.add_member(name, role=role, key_hash=hash_api_key(key)), api_key=key)


def add_brand(
    store: Store,
    name: str,
    *,
    member: str,
    keywords: Sequence[str] = (),
    msrp: float | None = None,
    currency: str | None = None,
    authorised_sellers: Sequence[str] = (),
) -> Brand:
    name = name.strip()
    if not name:
        raise UserError("brand name must not be empty")
    if msrp is not None and msrp <= 0:
        raise UserError(f"MSRP must be positive, not {msrp}")
    if (msrp is None) != (currency is None):
        raise UserError("give --msrp and --currency together")
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise UserError(f"currency {currency!r} is not an ISO 4217 code such as USD")
    owner = store.member(member)
    return store.add_brand(
        name,
        member_id=owner.member_id,
        keywords=[word.strip() for word in keywords if word.strip()],
        msrp=msrp,
        currency=currency.upper() if currency else None,
        authorised_sellers=[seller.strip() for seller in authorised_sellers if seller.strip()],
    )


def _asset_kind(kind: str) -> AssetKind:
    for known in ASSET_KINDS:
        if kind == known:
            return known
    raise UserError(f"unknown asset kind {kind!r} (one of {', '.join(ASSET_KINDS)})")


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(child for child in path.rglob("*") if child.is_file() and not child.name.startswith("."))
        else:
            yield path


def is_svg(data: bytes) -> bool:
    head = data[:2048].lstrip().lower()
    return (
        head.startswith(b"<svg")
        or (head.startswith(b"<?xml") and b"<svg" in head)
        or (head.startswith(b"<!--") and b"<svg" in data[:8192].lower())
    )


def rasterise_svg(data: bytes, *, source: str) -> bytes:
    """Render an SVG logo to PNG. External files and entities stay off (cairosvg's safe mode)."""
    try:
        png = cairosvg.svg2png(bytestring=data, output_width=SVG_RASTER_WIDTH, unsafe=False)
    except Exception as exc:  # cairosvg raises many unrelated types for bad input
        raise ImageDecodeError(f"SVG could not be rendered ({type(exc).__name__}: {exc})", source=source) from exc
    if not png:
        raise ImageDecodeError("SVG rendered to nothing", source=source)
    return bytes(png)


def add_assets(
    store: Store,
    blobs: BlobStore,
    limits: DecodeLimits,
    matchers: Sequence[ImageMatcher],
    *,
    brand: str,
    kind: str,
    paths: Sequence[Path],
) -> UploadReport:
    """Register every image file under ``paths``; each bad file is reported, the good ones land."""
    asset_kind = _asset_kind(kind)
    target = store.brand(brand)
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    added: list[Asset] = []
    present: list[Asset] = []
    rejected: list[tuple[str, str]] = []
    for path in _files(paths):
        try:
            data = read_capped(path, limits.max_bytes)
            if is_svg(data):
                data = rasterise_svg(data, source=str(path))
            info = inspect(data, limits, source=str(path))
            signals = {matcher.name: matcher.encode_asset(data, source=str(path)) for matcher in matchers}
        except ImageError as exc:
            rejected.append((str(path), exc.reason))
            continue
        blobs.put(data)
        asset, created = store.add_asset(
            brand_id=target.brand_id, kind=asset_kind, info=info, original_name=path.name, signals=signals
        )
        (added if created else present).append(asset)
    return UploadReport(added=tuple(added), already_present=tuple(present), rejected=tuple(rejected))
