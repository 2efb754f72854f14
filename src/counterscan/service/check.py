"""A real-time check of one listing: its images (sent, fetched or pre-hashed), the scan's own
matchers and ranker against the warm indexes, and what the caller may see of the result."""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from counterscan.config import Settings
from counterscan.errors import DataError, UserError
from counterscan.ingest.http_client import FetchError, PoliteClient, RefusedAddressError, RetryPolicy
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.ingest.urls import MalformedURLError, parse_url
from counterscan.ingest.validate import listing_problem
from counterscan.matchers.facts import MATCHER_FACTS
from counterscan.records import ImageOutcome, IngestedListing, Listing, Member, ScanResult
from counterscan.scan.partition import Assessment
from counterscan.service.schemas import CheckAnswerOut, CheckEvidenceOut, CheckSuspectOut, StoredCheckOut
from counterscan.store import BlobStore
from counterscan.store.protocols import CheckRecorder

CHECK_SOURCE = "check"
HASH_BITS = {name: facts.hash_bits for name, facts in MATCHER_FACTS.items() if facts.hash_bits is not None}
"""Matchers whose listing signal a partner can send as hex, and their hash width in bits."""


@dataclass(frozen=True)
class CheckInput:
    listing: Listing
    images: tuple[tuple[str, bytes], ...] = ()
    """(sha256, bytes) of each sent or fetched image."""
    signals: tuple[Mapping[str, bytes], ...] = ()
    """Pre-computed signals per image: matcher name -> signal bytes."""
    store: bool = False


def _number(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"check: {name} {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise UserError(f"check: {name} {str(value)[:40]!r} is not a non-negative number")
    return number


def listing_from_fields(fields: Mapping[str, Any], member: Member) -> Listing:
    """The listing a check describes; it lands under the source ``check:MEMBER`` when stored. Its
    fields are held to the limits a feed row is held to (a field over them is refused, 422)."""
    text = {
        key: str(fields[key]) if fields.get(key) is not None else None
        for key in ("title", "description", "currency", "seller_id", "seller_name", "url", "marketplace")
    }
    listing_id = str(fields.get("listing_id") or uuid.uuid4().hex)
    if len(listing_id) > 200:
        raise UserError("check: listing_id is longer than 200 characters")
    currency = (text["currency"] or "").strip().upper() or None
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise UserError(f"check: currency {currency!r} is not an ISO 4217 code")
    listing = Listing(
        source=f"{CHECK_SOURCE}:{member.name}",
        listing_id=listing_id,
        title=text["title"] or "",
        description=text["description"] or "",
        price=_number(fields.get("price"), "price"),
        currency=currency,
        seller_id=text["seller_id"],
        seller_name=text["seller_name"],
        url=text["url"],
        marketplace=text["marketplace"] or (member.name if member.is_marketplace else None),
    )
    problem = listing_problem(listing)
    if problem:
        raise DataError(f"check: {problem}")
    return listing


def image_urls(value: object) -> list[str]:
    """The check's ``image_urls`` (a list, or one string of ';'-separated URLs), each parsed before
    anything is fetched; a malformed one fails the check (422) naming it and why."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(";") if part.strip()]
    if not isinstance(value, list):
        raise DataError("check: image_urls must be a list of URLs (or one string of ';'-separated URLs)")
    for number, url in enumerate(value):
        if not isinstance(url, str):
            raise DataError(f"check: image_urls[{number}] is a {type(url).__name__}, not a URL")
        try:
            parse_url(url)
        except MalformedURLError as exc:
            raise DataError(f"check: image_urls[{number}]: {exc}") from None
    return value


def fetch_images(settings: Settings, urls: Sequence[str]) -> list[tuple[str, bytes]]:
    """Download image URLs through the outbound address policy; one bad URL fails the check (422)."""
    found: list[tuple[str, bytes]] = []
    policy = RetryPolicy(max_retries=1, timeout_seconds=10.0, max_redirects=3)
    with PoliteClient(policy, network=NetPolicy.from_settings(settings)) as client:
        for url in urls:
            try:
                data, _headers, _final = client.get(str(url), max_bytes=settings.max_image_bytes)
            except RefusedAddressError as exc:
                raise DataError(f"image {url}: address refused: {exc}") from None
            except FetchError as exc:
                raise DataError(f"image {url}: download failed: {exc}") from None
            found.append((hashlib.sha256(data).hexdigest(), data))
    return found


def parse_signals(images: Sequence[Mapping[str, Any]], enabled: Sequence[str]) -> list[dict[str, bytes]]:
    """Hex hashes per image -> signal bytes per matcher; hashes of matchers this server runs only."""
    parsed: list[dict[str, bytes]] = []
    for number, image in enumerate(images, start=1):
        if not isinstance(image, Mapping):
            raise UserError(f"check: signals image {number} is not an object of hex hashes")
        signals: dict[str, bytes] = {}
        for name, value in image.items():
            if name not in HASH_BITS:
                raise UserError(f"check: unknown hash {name!r} (one of {', '.join(HASH_BITS)})")
            width = HASH_BITS[name] // 4
            text = str(value).strip().lower()
            if not text or len(text) % width or any(c not in "0123456789abcdef" for c in text):
                raise UserError(f"check: image {number}: {name} must be hex, {width} digits per hash")
            if name in enabled:
                signals[name] = bytes.fromhex(text)
        parsed.append(signals)
    return parsed


def visible(
    assessment: Assessment, member: Member, owned: set[int], *, scorer: str, item: CheckInput
) -> CheckAnswerOut:
    """The answer to ``item`` as ``member`` may see it: a marketplace key gets brands and scores only,
    a member the evidence of its own brands, an analyst everything."""
    suspects = []
    for brand in assessment.brands:
        if member.is_analyst or (not member.is_marketplace and brand.brand_id in owned):
            evidence = [CheckEvidenceOut.of(found) for found in brand.evidence]
            suspects.append(
                CheckSuspectOut(brand=brand.brand, score=brand.score, evidence=evidence, features=dict(brand.features))
            )
        else:
            suspects.append(CheckSuspectOut(brand=brand.brand, score=brand.score))
    top = assessment.brands[0] if assessment.brands else None
    listing = item.listing
    # Given only when stored: the answer leaves out what was not given (the route excludes unset fields).
    stored: dict[str, Any] = (
        {"stored": StoredCheckOut(source=listing.source, listing_id=listing.listing_id)} if item.store else {}
    )
    return CheckAnswerOut(
        score=assessment.score,
        brand=top.brand if top is not None and assessment.score > 0 else None,
        suspects=suspects,
        scorer=scorer,
        listing_id=listing.listing_id,
        images=[sha256 for sha256, _data in item.images],
        **stored,
    )


def store_check(
    store: CheckRecorder, blobs: BlobStore, item: CheckInput, assessment: Assessment, *, scorer: str
) -> int:
    """Keep a checked listing with its images, evidence and score, so it joins the review queue (and
    fires "suspect.new" webhooks in the same transaction as any batch result would)."""
    outcomes = tuple(
        ImageOutcome(ref=f"check-image-{n}", sha256=blobs.put(data)) for n, (_sha, data) in enumerate(item.images)
    )
    source = item.listing.source
    store.commit_ingest_batch(source, [IngestedListing(item.listing, outcomes)], [], None)
    listing_pk = store.find_listing(f"{source}/{item.listing.listing_id}")
    scan_id = store.start_scan(scope=f"check:{source}")
    result = ScanResult(
        listing_pk=listing_pk,
        score=assessment.score,
        brand_id=assessment.brand_id,
        evidence=assessment.evidence,
        best=assessment.best,
    )
    store.write_results(scan_id, [result], scorer=scorer)
    store.finish_scan(scan_id, status="done", listings_scanned=1)
    return listing_pk
