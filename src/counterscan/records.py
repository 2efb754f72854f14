"""Frozen records passed between the library's parts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

AssetKind = Literal["logo", "product", "text"]
ASSET_KINDS: tuple[AssetKind, ...] = ("logo", "product", "text")
IMAGE_ASSET_KINDS: tuple[AssetKind, ...] = ("logo", "product")

# A "marketplace" key may check listings (POST /v1/check) and sees brand names and scores, no evidence.
Role = Literal["member", "analyst", "marketplace"]
ROLES: tuple[Role, ...] = ("member", "analyst", "marketplace")

VerdictLabel = Literal["counterfeit", "legit", "unsure"]
VERDICTS: tuple[VerdictLabel, ...] = ("counterfeit", "legit", "unsure")
SUSPECT_STATUSES: tuple[str, ...] = ("new", *VERDICTS)
CaseStatus = Literal["open", "reported", "removed", "rejected", "reinstated"]
CASE_STATUSES: tuple[CaseStatus, ...] = ("open", "reported", "removed", "rejected", "reinstated")
CASE_TRANSITIONS: dict[CaseStatus, tuple[CaseStatus, ...]] = {
    "open": ("reported",),
    "reported": ("removed", "rejected", "open"),
    "removed": ("reinstated",),
    "rejected": ("reported", "open"),
    "reinstated": ("reported", "removed"),
}
"""Where a takedown case may go from each status: reported to the marketplace, which removes the
listings or rejects the notice; a removed listing may be reinstated and reported again."""
"""A suspect is new until an analyst's verdict on it becomes its status."""


@dataclass(frozen=True)
class Listing:
    """One marketplace listing as read from a feed."""

    source: str
    listing_id: str
    title: str = ""
    description: str = ""
    price: float | None = None
    currency: str | None = None
    seller_id: str | None = None
    seller_name: str | None = None
    url: str | None = None
    marketplace: str | None = None
    observed_at: str | None = None
    image_refs: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected:
    """A feed record that could not become a listing; it goes to the quarantine."""

    source: str
    record: str
    reason: str
    raw: Mapping[str, Any] = field(default_factory=dict)
    kind: Literal["record", "image"] = "record"


@dataclass(frozen=True)
class Member:
    member_id: int
    name: str
    role: Role

    @property
    def is_analyst(self) -> bool:
        return self.role == "analyst"

    @property
    def is_marketplace(self) -> bool:
        return self.role == "marketplace"


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown of an API key: never the key, only its public prefix."""

    key_id: int
    member: str
    prefix: str
    """"cs_" and 8 hex digits; "(legacy)" for a key made before keys had prefixes."""
    created_at: str
    expires_at: str
    revoked_at: str
    status: str
    """live, expired or revoked."""


@dataclass(frozen=True)
class Product:
    """A product of a brand with its manufacturer's suggested retail price."""

    name: str
    msrp: float
    currency: str


@dataclass(frozen=True)
class Brand:
    brand_id: int
    name: str
    member: str
    keywords: tuple[str, ...] = ()
    """Trademark words: the brand's live ``text`` assets."""
    aliases: tuple[str, ...] = ()
    lookalikes: tuple[str, ...] = ()
    """Misspellings the owner wants caught (``Adidaas``)."""
    msrp: float | None = None
    currency: str | None = None
    authorised_sellers: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    products: tuple[Product, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class Asset:
    asset_id: int
    brand: str
    kind: AssetKind
    sha256: str
    original_name: str
    """The uploaded file's name; for a ``text`` asset, the word itself."""
    width: int
    height: int
    created_by: str = ""
    removed: bool = False
    replaces_asset_id: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    audit_id: int
    actor: str
    action: str
    target: str
    details: Mapping[str, Any]
    at: str


@dataclass(frozen=True)
class AssetSignal:
    """A matcher's encoding of one asset, ready to be indexed."""

    asset_id: int
    brand_id: int
    brand: str
    signal: bytes
    variant: str = "original"
    origin: str = ""
    """Where a hash-only asset came from (an imported bank); empty for uploaded pictures."""


@dataclass(frozen=True)
class SharedSignal:
    """One hash of one variant of one asset, as members exchange them (registry/exchange.py)."""

    brand: str
    asset: str
    kind: AssetKind
    sha256: str
    width: int
    height: int
    name: str
    matcher: str
    variant: str
    signal: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "brand": self.brand,
            "asset": self.asset,
            "kind": self.kind,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "name": self.name,
            "matcher": self.matcher,
            "variant": self.variant,
            "hash": self.signal.hex(),
        }


@dataclass(frozen=True)
class BankAsset:
    """An asset known only by its hashes, as an import writes it."""

    external_id: str
    kind: AssetKind
    sha256: str
    width: int
    height: int
    name: str
    signals: dict[str, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class ListingImage:
    listing_pk: int
    position: int
    sha256: str


@dataclass(frozen=True)
class Evidence:
    """Why a listing looks like a brand's: one matcher's finding."""

    matcher: str
    brand_id: int
    brand: str
    score: float
    reason: str
    asset_id: int | None = None
    image_sha256: str | None = None
    distance: float | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suspect:
    """One row of the review queue: a listing scored for one brand, and its strongest evidence for it.

    A listing with evidence for two brands is two suspects, reviewed under each brand.
    """

    rank: int
    listing_pk: int
    source: str
    listing_id: str
    score: float
    brand: str | None
    asset_id: int | None
    matcher: str | None
    reason: str | None
    title: str
    price: float | None
    currency: str | None
    url: str | None
    status: str
    brand_id: int | None = None
    seller_id: str | None = None
    seller_name: str | None = None
    marketplace: str | None = None
    first_seen: str | None = None
    """When counterscan first ingested the listing (ISO 8601)."""
    last_seen: str | None = None
    """When a feed last delivered the listing (ISO 8601)."""
    analyst: str | None = None
    decided_at: str | None = None
    """Who recorded the latest verdict (``status``) for this brand, and when."""
    scorer: str | None = None
    """``cold-start`` or ``model:N``: what gave the score."""


@dataclass(frozen=True)
class CaseSummary:
    """A takedown case: one seller's confirmed counterfeits on one marketplace, and where its notice stands."""

    case_id: int
    marketplace: str
    seller_id: str
    """"" when the feed named no seller."""
    seller_name: str | None
    status: str
    listings: int
    brands: tuple[str, ...]
    opened_at: str
    updated_at: str


@dataclass(frozen=True)
class CaseListing:
    """A confirmed counterfeit in a case: the listing, the brand and its rights holder, the verdict, the evidence."""

    listing_pk: int
    brand_id: int
    source: str
    listing_id: str
    title: str
    price: float | None
    currency: str | None
    url: str | None
    brand: str
    rights_holder: str
    """The member owning the brand."""
    verdict: str
    note: str | None
    analyst: str
    decided_at: str
    added_at: str
    score: float | None
    reason: str | None
    picture: str | None
    """SHA-256 of the listing photo the evidence is about (else its first photo)."""
    asset_sha256: str | None
    """SHA-256 of the brand's asset that photo matched, when a picture matcher found it."""


@dataclass(frozen=True)
class CaseEvent:
    """One line of a case's history: opened, a listing added or withdrawn, a status change."""

    at: str
    actor: str
    action: str
    status: str
    """The case's status after the event."""
    listing_id: str | None
    note: str | None


@dataclass(frozen=True)
class Case:
    summary: CaseSummary
    listings: tuple[CaseListing, ...]
    events: tuple[CaseEvent, ...]


@dataclass(frozen=True)
class Confirmed:
    """A listing an analyst confirmed as a counterfeit of a brand (its latest verdict for that brand)."""

    seller_id: str
    listing_pk: int
    source: str
    listing_id: str
    brand_id: int
    decided_at: datetime


@dataclass(frozen=True)
class QuarantineEntry:
    entry_id: int
    source: str
    kind: str
    record: str
    reason: str
    attempts: int
    created_at: str


@dataclass(frozen=True)
class ImageOutcome:
    """What became of one image reference of a listing at ingestion."""

    ref: str
    sha256: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class IngestedListing:
    listing: Listing
    images: tuple[ImageOutcome, ...] = ()
    content_hash: str | None = None
    """The listing's content hash when the caller already computed it."""


@dataclass(frozen=True)
class UpsertCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class ListingToScan:
    listing_pk: int
    listing: Listing
    image_sha256s: tuple[str, ...]


@dataclass(frozen=True)
class BrandScore:
    """A listing's score as a suspect of one brand."""

    brand_id: int
    score: float
    best: int | None
    """Index into the listing's evidence of the strongest finding for this brand."""


@dataclass(frozen=True)
class ScanResult:
    listing_pk: int
    score: float
    brand_id: int | None
    evidence: tuple[Evidence, ...]
    best: int | None
    """Index into ``evidence`` of the strongest finding, shown first in the queue."""
    brand_scores: tuple[BrandScore, ...] = ()
    """A score per brand with evidence, best first (``score``/``brand_id``/``best`` repeat the first).

    Empty means: only the top brand's score is known (written as the one suspect of the listing).
    """

    def per_brand(self) -> tuple[BrandScore, ...]:
        if self.brand_scores:
            return self.brand_scores
        if self.brand_id is None:
            return ()
        return (BrandScore(self.brand_id, self.score, self.best),)


WebhookEvent = Literal["suspect.new", "verdict.recorded", "case.status", "check.completed"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = ("suspect.new", "verdict.recorded", "case.status", "check.completed")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
"""A webhook delivery is pending until sent, or failed once its attempts are spent."""


@dataclass(frozen=True)
class Webhook:
    """A member's endpoint for events about its brands."""

    webhook_id: int
    member: str
    url: str
    events: tuple[str, ...]
    min_score: float
    active: bool = True


@dataclass(frozen=True)
class WebhookDelivery:
    """One event on its way to one endpoint (a row of the outbox)."""

    delivery_id: int
    webhook_id: int
    event: str
    payload: Mapping[str, Any]
    status: str
    attempts: int
    created_at: str
    next_attempt_at: str
    delivered_at: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class DeliveryAttempt:
    delivery_id: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: float
