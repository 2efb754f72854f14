"""What the HTTP API takes and answers, as Pydantic models: the source of ``/openapi.json``.

Most answers are one frozen record (or a list of them) as ``dataclasses.asdict`` would write it; their
models are :class:`RecordModel` subclasses made with ``Model.of(record)``. Each names its record, and
tests/test_openapi.py holds every one to its record's fields, in order, so a record cannot gain a field
that the API silently drops or shows without a decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema

from counterscan.records import (
    Asset,
    AssetKind,
    Brand,
    Evidence,
    Member,
    Product,
    Role,
    Suspect,
    Webhook,
    WebhookDelivery,
)
from counterscan.registry.assets import UploadReport
from counterscan.registry.uploads import Rejection, RejectKind

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


class ApiModel(BaseModel):
    # The attributes' docstrings describe the fields in /openapi.json.
    model_config = ConfigDict(use_attribute_docstrings=True)


# -- requests ------------------------------------------------------------------------------------


class WebhookIn(ApiModel):
    """An endpoint to register for events about the member's brands."""

    url: str
    """Where deliveries are POSTed: a public address (or one of the server's allowed private networks)."""
    events: list[str] = Field(default_factory=lambda: ["suspect.new"])
    """Any of ``suspect.new``, ``verdict.recorded``, ``case.status``, ``check.completed``."""
    min_score: float = 0.5
    """``suspect.new`` only for suspects scoring at least this (0 to 1)."""
    secret: str | None = None
    """The signing secret; made up when not given. Answered once, when registered."""


class SignalsIn(ApiModel):
    """A listing whose images come as pre-computed hashes (hex), for partners who never send images."""

    title: str = ""
    description: str = ""
    price: float | None = None
    currency: str | None = None
    seller_id: str | None = None
    seller_name: str | None = None
    url: str | None = None
    marketplace: str | None = None
    listing_id: str | None = None
    images: list[dict[str, str]] = Field(default_factory=list)
    """One object per image: {"phash": hex, "dhash": hex, "pdq": hex}, any of them."""
    store: bool = False


# -- answers made of records ---------------------------------------------------------------------


class RecordModel(ApiModel):
    """An answer that is one record, field for field."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    record_type: ClassVar[type[DataclassInstance]]
    """The frozen dataclass this model shows."""
    hidden_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields of the record the API does not show."""
    extra_fields: ClassVar[tuple[str, ...]] = ()
    """Fields the API shows after the record's own."""

    @classmethod
    def of(cls, record: DataclassInstance) -> Self:
        return cls.model_validate(record, from_attributes=True)


class MemberOut(RecordModel):
    """The member an API key belongs to."""

    record_type = Member

    member_id: int
    name: str
    role: Role
    """A ``marketplace`` key checks listings and sees brands and scores only."""


class ProductOut(RecordModel):
    """A product of a brand with its manufacturer's suggested retail price."""

    record_type = Product

    name: str
    msrp: float
    currency: str


class BrandOut(RecordModel):
    """A registered brand and what its matchers look for."""

    record_type = Brand

    brand_id: int
    name: str
    member: str
    """The member that owns the brand."""
    keywords: list[str]
    """Trademark words: the brand's live ``text`` assets."""
    aliases: list[str]
    lookalikes: list[str]
    """Misspellings the owner wants caught (``Adidaas``)."""
    msrp: float | None
    currency: str | None
    authorised_sellers: list[str]
    categories: list[str]
    products: list[ProductOut]


class AssetOut(RecordModel):
    """A brand's logo, product photo or trademark word."""

    record_type = Asset

    asset_id: int
    brand: str
    kind: AssetKind
    sha256: str
    original_name: str
    """The uploaded file's name; for a ``text`` asset, the word itself."""
    width: int
    height: int
    created_by: str
    removed: bool
    """Taken out of future scans (listed with ``history=true``)."""
    replaces_asset_id: int | None


class RejectionOut(RecordModel):
    """An uploaded file that did not become an asset, and why."""

    record_type = Rejection

    name: str
    reason: str
    kind: RejectKind


class UploadReportOut(RecordModel):
    """What an upload did with each file."""

    record_type = UploadReport

    added: list[AssetOut]
    already_present: list[AssetOut]
    rejected: list[RejectionOut]


class SuspectOut(RecordModel):
    """A listing scored for one brand, with its strongest evidence, best first."""

    record_type = Suspect

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
    """``new`` (no verdict yet) or the latest verdict for this brand."""
    brand_id: int | None
    seller_id: str | None
    seller_name: str | None
    marketplace: str | None
    first_seen: str | None
    """When counterscan first ingested the listing (ISO 8601)."""
    last_seen: str | None
    """When a feed last delivered the listing (ISO 8601)."""
    analyst: str | None
    decided_at: str | None
    """Who recorded the latest verdict, and when."""
    scorer: str | None
    """``cold-start`` or ``model:N``: what gave the score."""


class WebhookOut(RecordModel):
    """A member's endpoint for events about its brands."""

    record_type = Webhook

    webhook_id: int
    member: str
    url: str
    events: list[str]
    min_score: float
    active: bool


class NewWebhookOut(WebhookOut):
    """A webhook just registered, with its signing secret: shown this once."""

    extra_fields = ("secret",)

    secret: str

    @classmethod
    def registered(cls, hook: Webhook, secret: str) -> Self:
        return cls.model_validate({**asdict(hook), "secret": secret})


class WebhookDeliveryOut(RecordModel):
    """One event on its way to one endpoint, and how its attempts went."""

    record_type = WebhookDelivery

    delivery_id: int
    webhook_id: int
    event: str
    payload: dict[str, JsonValue]
    """The event's own fields, as delivered beside ``delivery_id`` and ``event``."""
    status: str
    attempts: int
    created_at: str
    next_attempt_at: str
    delivered_at: str | None
    last_error: str | None


# -- the real-time check -------------------------------------------------------------------------


def _absent_when_unset(schema: JsonDict) -> None:
    """For a field the answer leaves out (never null) when it does not apply: the check routes answer
    with ``response_model_exclude_unset``, so the schema shows it optional, without a null default."""
    schema.pop("default", None)


class CheckEvidenceOut(RecordModel):
    """One matcher's finding for a suspected brand."""

    record_type = Evidence
    hidden_fields = frozenset({"brand_id", "brand", "details"})

    matcher: str
    score: float
    reason: str
    asset_id: int | None
    image_sha256: str | None
    """The checked image's SHA-256; ``signals-N`` for the N-th pre-hashed image."""
    distance: float | None


class CheckSuspectOut(ApiModel):
    """A brand the listing points at, with its score."""

    brand: str
    score: float
    evidence: list[CheckEvidenceOut] | SkipJsonSchema[None] = Field(
        default=None, description="Why: for the brand's owner and analysts only.", json_schema_extra=_absent_when_unset
    )
    features: dict[str, float] | SkipJsonSchema[None] = Field(
        default=None,
        description="The ranker's inputs: for the brand's owner and analysts only.",
        json_schema_extra=_absent_when_unset,
    )


class StoredCheckOut(ApiModel):
    """Where a stored check landed: a listing of the review queue."""

    source: str
    listing_id: str


class CheckAnswerOut(ApiModel):
    """A checked listing's score, its headline brand and every suspected brand, best first."""

    score: float
    brand: str | None
    """The best brand when the score is above 0."""
    suspects: list[CheckSuspectOut]
    scorer: str
    """``cold-start`` or ``model:N``: what gave the scores."""
    listing_id: str
    images: list[str]
    """SHA-256 of each image sent or fetched."""
    check_id: str = ""
    """The check's id: ``GET /v1/check/{check_id}`` answers its latest (complete) state."""
    status: Literal["complete", "pending", "failed"] = "complete"
    """``pending``: the costly matchers (``pending``) are still looking; their complete answer comes
    at ``GET /v1/check/{check_id}`` and in a ``check.completed`` webhook."""
    pending: list[str] = Field(default_factory=list)
    """The image matchers still running for a pending answer."""
    stored: StoredCheckOut | SkipJsonSchema[None] = Field(
        default=None, description="Only when the check was stored.", json_schema_extra=_absent_when_unset
    )


# -- refusals ------------------------------------------------------------------------------------


class ErrorOut(ApiModel):
    """Why a request was refused."""

    detail: str


class UploadRefusedOut(ApiModel):
    """A refused upload: why, or, when every file was refused, what became of each."""

    detail: UploadReportOut | str


class ValidationIssueOut(ApiModel):
    loc: list[str | int]
    msg: str
    type: str


class UnprocessableOut(ApiModel):
    """A request whose fields do not validate (a list of issues), or whose content cannot be used."""

    detail: list[ValidationIssueOut] | str


REFUSALS: Mapping[int, tuple[type[BaseModel], str]] = {
    400: (ErrorOut, "The request is malformed or asks for something invalid."),
    401: (ErrorOut, "No API key, or not a live one."),
    403: (ErrorOut, "The key's member may not read or change this."),
    404: (ErrorOut, "No such brand, asset or webhook."),
    411: (ErrorOut, "An upload without a Content-Length."),
    413: (ErrorOut, "Over a size cap."),
    415: (ErrorOut, "Not a content type or image format the API takes."),
    422: (UnprocessableOut, "Fields that do not validate, or an image that cannot be fetched."),
    429: (ErrorOut, "Too many failed keys from this client: retry after Retry-After seconds."),
    503: (ErrorOut, "The check indexes are still loading: retry shortly."),
}


def refusals(*statuses: int, bodies: Mapping[int, type[BaseModel]] | None = None) -> dict[int | str, dict[str, object]]:
    """A route's ``responses=`` for these error statuses; ``bodies`` replaces the body of some."""
    return {
        status: {"model": (bodies or {}).get(status, REFUSALS[status][0]), "description": REFUSALS[status][1]}
        for status in statuses
    }
