"""What each stage asks of the store: narrow protocols over the one SQL implementation.

:class:`~counterscan.store.sql.Store` has every method; a library function names the protocol of
the concern it works on, so its signature says what it reads and writes, and a test double or a
second implementation needs only those methods. mypy checks that ``Store`` satisfies each one
(``tests/test_store_protocols.py``). Nothing here imports SQLAlchemy: the types the methods speak
of are imported for the type checker only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence
    from datetime import datetime, timedelta

    from counterscan.imaging.decode import ImageInfo
    from counterscan.records import (
        ApiKeyInfo,
        Asset,
        AssetKind,
        BankAsset,
        Brand,
        Case,
        CaseStatus,
        CaseSummary,
        Confirmed,
        Evidence,
        ImageOutcome,
        IngestedListing,
        Listing,
        ListingToScan,
        Member,
        Product,
        QuarantineEntry,
        Rejected,
        Role,
        ScanResult,
        SharedSignal,
        Suspect,
        UpsertCounts,
        VerdictLabel,
        Webhook,
    )
    from counterscan.signals import SignalTable
    from counterscan.store.keys import KeyCandidate
    from counterscan.store.listings import FailedImage
    from counterscan.store.queue import QueueFilter, SuspectKey
    from counterscan.store.reviewui import QueuePage, QueueRow, SharedPicture, VerdictEntry
    from counterscan.store.service import OperationalCounts
    from counterscan.store.webhooks import ClaimedDelivery


class CatalogueReader(Protocol):
    """Brands and their assets' signals, as matching reads them (scan, real-time check, review)."""

    def brand(self, name: str) -> Brand: ...

    def brands(self, *, member_id: int | None = None) -> list[Brand]: ...

    def live_asset_kinds(self) -> set[str]: ...

    def asset_signals(self, matcher: str) -> SignalTable: ...


class CatalogueWriter(CatalogueReader, Protocol):
    """The registry's side of the catalogue: members' brands, products and assets."""

    def add_brand(
        self,
        name: str,
        *,
        member_id: int,
        actor: str,
        aliases: Sequence[str] = (),
        lookalikes: Sequence[str] = (),
        msrp: float | None = None,
        currency: str | None = None,
        authorised_sellers: Sequence[str] = (),
        categories: Sequence[str] = (),
    ) -> int: ...

    def update_brand(self, brand_id: int, *, actor: str, changes: Mapping[str, object]) -> None: ...

    def set_product(self, brand_id: int, product: Product, *, actor: str) -> None: ...

    def remove_product(self, brand_id: int, name: str, *, actor: str) -> None: ...

    def asset(self, asset_id: int) -> Asset: ...

    def asset_brand_id(self, asset_id: int) -> int: ...

    def add_asset(
        self,
        *,
        brand_id: int,
        kind: AssetKind,
        info: ImageInfo,
        original_name: str,
        signals: dict[str, list[tuple[str, bytes]]],
        actor: str,
        replaces: int | None = None,
    ) -> tuple[Asset, bool]: ...

    def remove_asset(self, asset_id: int, *, actor: str) -> Asset: ...

    def shareable_signals(self, brand_ids: Sequence[int], matchers: Sequence[str]) -> list[SharedSignal]: ...

    def add_bank_assets(
        self, *, brand_id: int, bank: str, origin: str, assets: Sequence[BankAsset], actor: str
    ) -> list[bool]: ...


class MemberDirectory(Protocol):
    """Members and their API keys, and the failed sign-ins that slow down a guesser."""

    def add_member(
        self,
        name: str,
        *,
        role: Role,
        key_hash: str,
        actor: str,
        prefix: str | None = None,
        expires_at: datetime | None = None,
    ) -> Member: ...

    def has_analyst(self) -> bool: ...

    def add_key(
        self,
        member: str,
        *,
        prefix: str,
        key_hash: str,
        expires_at: datetime | None,
        actor: str,
        revoke_others: bool = False,
    ) -> ApiKeyInfo: ...

    def api_key(self, key_id: int) -> ApiKeyInfo: ...

    def find_api_key(self, selector: str) -> ApiKeyInfo: ...

    def revoke_api_keys(self, key_ids: list[int], *, actor: str, reason: str) -> int: ...

    def key_candidates(self, prefix: str, key_hash: str) -> list[KeyCandidate]: ...

    def member_by_live_key_hash(self, key_hash: str) -> Member | None: ...

    def record_auth_failure(self, *, client: str, prefix: str, claimed: str, reason: str) -> None: ...

    def auth_failures_since(self, since: datetime, *, client: str, prefix: str) -> tuple[int, int]: ...


class Locks(Protocol):
    """Named locks that keep two ingests of a source, or two scans, from overlapping."""

    def acquire_lock(
        self,
        name: str,
        holder: str,
        *,
        conflicts: Sequence[str],
        stale_after: timedelta,
        dead: Callable[[str], bool] | None = None,
        what: str = "scan",
    ) -> None: ...

    def heartbeat(self, name: str, holder: str) -> None: ...

    def release_lock(self, name: str, holder: str) -> None: ...


class BatchCommitter(Protocol):
    """Listings, their rejects and the source's checkpoint, committed together."""

    def commit_ingest_batch(
        self,
        source: str,
        items: Sequence[IngestedListing],
        rejected: Sequence[Rejected],
        checkpoint: Mapping[str, object] | None,
    ) -> UpsertCounts: ...


class ScanRecorder(Protocol):
    """A scan's start, its results and scores, and its end."""

    def start_scan(self, *, scope: str = "all", plan: Mapping[str, object] | None = None, holder: str = "") -> int: ...

    def write_results(
        self,
        scan_id: int,
        results: Sequence[ScanResult],
        *,
        scorer: str = "cold-start",
        cursor: int | None = None,
        mark_scanned: bool = True,
    ) -> None: ...

    def finish_scan(self, scan_id: int, *, status: str, listings_scanned: int) -> None: ...


class ListingWriter(Locks, BatchCommitter, Protocol):
    """Ingestion: listing upserts, quarantine, source checkpoints, image outcomes and the URL cache."""

    def listing_hashes(self, source: str, listing_ids: Sequence[str]) -> dict[str, str]: ...

    def record_source(self, name: str, *, kind: str, location: str, mapping: Mapping[str, object] | None) -> None: ...

    def source_state(self, name: str) -> tuple[str, str, dict[str, Any], dict[str, Any] | None] | None: ...

    def quarantine_records(self, source: str | None = None) -> list[tuple[QuarantineEntry, dict[str, Any]]]: ...

    def resolve_quarantine(self, entry_ids: Sequence[int]) -> None: ...

    def bump_quarantine(self, entry_id: int, reason: str) -> None: ...

    def failed_images(self, source: str, *, max_attempts: int) -> list[FailedImage]: ...

    def update_images(self, results: Sequence[tuple[FailedImage, ImageOutcome]]) -> int: ...

    def cached_urls(self, urls: Sequence[str]) -> dict[str, str]: ...

    def remember_urls(self, fetched: Mapping[str, str]) -> None: ...


class EvidenceReader(Protocol):
    def evidence_of(
        self, listing_pks: Sequence[int], *, except_brands: Collection[int]
    ) -> dict[int, list[Evidence]]: ...


class ConfirmedVerdicts(Protocol):
    """Analysts' counterfeit verdicts, as sellers' history for matching and ranking."""

    def confirmed_counterfeits(self) -> list[Confirmed]: ...

    def counterfeit_sellers(self) -> dict[str, dict[int, int]]: ...


class ActiveModel(Protocol):
    def active_model(self) -> tuple[int, bytes, dict[str, Any], list[str]] | None: ...


class ModelRegistry(ActiveModel, Protocol):
    """Trained rankers: saved, listed, one of them (or none: the cold-start scorer) active."""

    def save_model(self, data: bytes, *, features: Sequence[str], metrics: Mapping[str, object], actor: str) -> int: ...

    def models(self) -> list[tuple[int, str, bool, dict[str, Any]]]: ...

    def activate_model(self, model_id: int | None, *, actor: str) -> None: ...


class TrainingSource(CatalogueReader, EvidenceReader, ConfirmedVerdicts, Protocol):
    """What a ranker learns from: verdicts with their listings' evidence, as of when first seen."""

    def labelled(self) -> list[tuple[int, int, Listing, int]]: ...

    def first_seen(self, listing_pks: Sequence[int]) -> dict[int, datetime]: ...


class TrainingStore(TrainingSource, ModelRegistry, Protocol):
    """Training: read the labelled set, save the model it makes."""


class SignalBackfill(Protocol):
    """Assets that a matcher has not encoded yet (it was switched on after they were uploaded)."""

    def assets_without_signals(self, matcher: str, kinds: Sequence[str]) -> list[tuple[int, str]]: ...

    def add_asset_signals(self, asset_id: int, matcher: str, variants: Sequence[tuple[str, bytes]]) -> None: ...


class ScanLedger(
    CatalogueReader, EvidenceReader, ConfirmedVerdicts, ActiveModel, Locks, SignalBackfill, ScanRecorder, Protocol
):
    """A batch scan: what to scan, its progress and state, signals, results and scores."""

    def brand_fingerprints(self) -> dict[int, str]: ...

    def scanned_fingerprints(self, source: str | None) -> dict[int, str]: ...

    def save_fingerprints(self, scan_id: int, fingerprints: Mapping[int, str], source: str | None) -> None: ...

    def scan_state(self, source: str | None) -> dict[str, Any]: ...

    def save_scan_state(self, scan_id: int, values: Mapping[str, object], source: str | None) -> None: ...

    def unfinished_scan(self, scope: str, plan: Mapping[str, object]) -> tuple[int, int] | None: ...

    def resume_scan(self, scan_id: int, holder: str) -> None: ...

    def count_listings(self, *, unscanned: bool, source: str | None = None) -> int: ...

    def next_listings(
        self, *, after: int, limit: int, unscanned: bool, source: str | None = None
    ) -> list[ListingToScan]: ...

    def listings_by_pk(self, pks: Sequence[int]) -> dict[int, Listing]: ...

    def listings_scored_otherwise(
        self, scorer: str, *, after: int, limit: int, source: str | None = None
    ) -> list[int]: ...

    def cached_signals(self, matcher: str, sha256s: Sequence[str]) -> dict[str, bytes]: ...

    def save_signals(self, matcher: str, signals: dict[str, bytes]) -> None: ...


class ReviewDesk(CatalogueReader, EvidenceReader, Protocol):
    """The analysts' queue, what they read about a listing, their verdicts, and exports."""

    def suspects(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        min_score: float = 0.0,
        include_clean: bool = False,
        brand_ids: Sequence[int] | None = None,
        brand: str | None = None,
        status: str | Sequence[str] | None = None,
        marketplace: str | None = None,
        seller_id: str | None = None,
        since: datetime | None = None,
        listing_pks: Sequence[int] | None = None,
    ) -> list[Suspect]: ...

    def find_listing(self, reference: str) -> int: ...

    def listing_detail(self, listing_pk: int) -> dict[str, Any]: ...

    def verdict_tally(self) -> dict[tuple[int, str], int]: ...

    def unjudged_clean(self, *, limit: int) -> list[Suspect]: ...

    def unjudged_nearest(self, score: float, *, limit: int, brand: str | None = None) -> list[Suspect]: ...

    def record_suspect_verdicts(
        self,
        targets: Sequence[tuple[int, int | None]],
        *,
        verdict: VerdictLabel,
        note: str | None,
        analyst: str,
        via: str | None = None,
    ) -> list[tuple[int, int]]: ...


class CaseDesk(ReviewDesk, Protocol):
    """Takedown cases: read, moved through their statuses, exported as notice packets."""

    def cases(
        self,
        *,
        marketplace: str | None = None,
        status: str | None = None,
        brand_ids: Sequence[int] | None = None,
        case_ids: Sequence[int] | None = None,
    ) -> list[CaseSummary]: ...

    def case(self, case_id: int, *, brand_ids: Sequence[int] | None = None) -> Case: ...

    def set_case_status(self, case_id: int, status: CaseStatus, *, note: str | None, actor: str) -> CaseSummary: ...

    def audit_case_export(self, case_ids: Sequence[int], *, actor: str, marketplace: str, out: str) -> None: ...


class ReviewSite(CaseDesk, MemberDirectory, Protocol):
    """The review web UI: the desk, keyset-paged, with sellers and shared pictures; signs members in."""

    def queue_page(self, spec: QueueFilter, *, after: str | None = None, limit: int = 50) -> QueuePage: ...

    def queue_neighbours(self, spec: QueueFilter, key: SuspectKey) -> tuple[SuspectKey | None, SuspectKey | None]: ...

    def queue_keys(self, spec: QueueFilter, *, limit: int = 10_000) -> list[SuspectKey]: ...

    def suspect_row(self, key: SuspectKey) -> QueueRow | None: ...

    def existing_suspects(self, keys: Collection[SuspectKey]) -> set[SuspectKey]: ...

    def suspect_names(self, keys: Collection[SuspectKey]) -> dict[SuspectKey, str]: ...

    def marketplaces(self) -> list[str]: ...

    def verdict_history(self, key: SuspectKey) -> list[VerdictEntry]: ...

    def seller_listings(self, seller_id: str, brand_ids: Sequence[int] | None) -> list[dict[str, Any]]: ...

    def listing_pictures(self, listing_pks: Collection[int]) -> dict[int, list[str]]: ...

    def shared_pictures(
        self, sha256s: Collection[str], *, other_than_seller: str | None, limit: int = 200
    ) -> list[SharedPicture]: ...

    def picture_visible(self, sha256: str, brand_ids: Sequence[int]) -> bool: ...


# -- the service -----------------------------------------------------------------------------------


class CheckCatalogue(CatalogueReader, ConfirmedVerdicts, ActiveModel, SignalBackfill, Protocol):
    """What a server's warm indexes are built from, and how it knows they are stale."""

    def catalogue_version(self) -> tuple[int, int]: ...


class CheckRecorder(BatchCommitter, ScanRecorder, Protocol):
    """A stored check: the listing ingested and its result written as a one-listing scan."""

    def find_listing(self, reference: str) -> int: ...


class WebhookOutbox(Protocol):
    """Members' endpoints and the outbox their deliveries are claimed from."""

    def add_webhook(
        self, member_id: int, *, url: str, secret: str, events: Sequence[str], min_score: float, actor: str
    ) -> Webhook: ...

    def claim_deliveries(
        self, holder: str, *, limit: int, lease: timedelta, at: datetime | None = None
    ) -> list[ClaimedDelivery]: ...

    def finish_attempt(
        self,
        delivery_id: int,
        holder: str,
        *,
        delivered: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        retry_at: datetime | None,
    ) -> None: ...


class OperationsReader(Protocol):
    """Counters of work done in other processes (scans, ingest jobs, deliveries), for /metrics."""

    def operational_counts(self) -> OperationalCounts: ...
