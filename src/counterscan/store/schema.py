"""Tables (SQLAlchemy Core) and the ordered list of migrations that build them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

TS = sa.DateTime(timezone=True)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", TS, nullable=False),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("member_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

member_keys = sa.Table(
    "member_keys",
    metadata,
    sa.Column("key_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.member_id"), nullable=False, index=True),
    # The key's public first characters ("cs_" + 8 hex): shown in lists, used to find the key.
    # NULL for keys made before keys had prefixes (found by their hash).
    sa.Column("prefix", sa.String(20), nullable=True, index=True),
    sa.Column("key_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("revoked_at", TS, nullable=True),
)

auth_failures = sa.Table(
    "auth_failures",
    metadata,
    sa.Column("failure_id", sa.Integer, primary_key=True, autoincrement=True),
    # Who tried: "http:ADDRESS" for the API, "cli:USER@HOST" for the command line.
    sa.Column("client", sa.String(300), nullable=False, index=True),
    sa.Column("prefix", sa.String(20), nullable=False, index=True),
    sa.Column("at", TS, nullable=False, index=True),
)

brands = sa.Table(
    "brands",
    metadata,
    sa.Column("brand_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("name_key", sa.String(200), nullable=False, unique=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.member_id"), nullable=False),
    sa.Column("aliases", sa.JSON, nullable=False),
    sa.Column("lookalikes", sa.JSON, nullable=False),
    sa.Column("msrp", sa.Float, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("authorised_sellers", sa.JSON, nullable=False),
    sa.Column("categories", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

brand_products = sa.Table(
    "brand_products",
    metadata,
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), primary_key=True),
    sa.Column("name_key", sa.String(300), primary_key=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("msrp", sa.Float, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
)

assets = sa.Table(
    "assets",
    metadata,
    sa.Column("asset_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("original_name", sa.String(500), nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("removed_at", TS, nullable=True),
    sa.Column("removed_by", sa.String(200), nullable=True),
    sa.Column("replaces_asset_id", sa.Integer, nullable=True),
    # Unique only among live assets: a removed asset's content may be uploaded again.
    sa.Column("live_key", sa.String(80), nullable=True, unique=True),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("audit_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.String(300), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
    sa.Column("at", TS, nullable=False),
)

asset_signals = sa.Table(
    "asset_signals",
    metadata,
    sa.Column("asset_id", sa.Integer, sa.ForeignKey("assets.asset_id"), primary_key=True),
    sa.Column("matcher", sa.String(40), primary_key=True),
    sa.Column("variant", sa.String(40), primary_key=True),
    sa.Column("signal", sa.LargeBinary, nullable=False),
)

asset_origins = sa.Table(
    "asset_origins",
    metadata,
    # Hash-only assets imported from another member's or a partner's signal file: no picture is
    # stored for them, only their signals (registry/exchange.py).
    sa.Column("asset_id", sa.Integer, sa.ForeignKey("assets.asset_id"), primary_key=True),
    sa.Column("bank", sa.String(200), nullable=False),
    sa.Column("external_id", sa.String(420), nullable=False),
    sa.Column("origin", sa.String(500), nullable=False),
    sa.Column("imported_at", TS, nullable=False),
    sa.UniqueConstraint("bank", "external_id", name="uq_asset_origins_bank_external"),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("location", sa.Text, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("mapping", sa.JSON, nullable=True),
    sa.Column("checkpoint", sa.JSON, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)

listings = sa.Table(
    "listings",
    metadata,
    sa.Column("listing_pk", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("listing_id", sa.String(200), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("seller_id", sa.String(200), nullable=True),
    sa.Column("seller_name", sa.String(500), nullable=True),
    sa.Column("url", sa.Text, nullable=True),
    sa.Column("marketplace", sa.String(200), nullable=True),
    sa.Column("observed_at", sa.String(40), nullable=True),
    sa.Column("attributes", sa.JSON, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("ingested_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("scanned_at", TS, nullable=True),
    # When a feed last delivered the listing, changed or not (NULL: as updated_at); for takedown evidence.
    sa.Column("last_seen_at", TS, nullable=True),
    sa.UniqueConstraint("source", "listing_id", name="uq_listings_source_id"),
)

listing_versions = sa.Table(
    "listing_versions",
    metadata,
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("currency", sa.String(3), nullable=True),
    sa.Column("observed_at", sa.String(40), nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("recorded_at", TS, nullable=False),
)

listing_images = sa.Table(
    "listing_images",
    metadata,
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("ref", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
)

# The review UI's seller filter and seller pages look listings up by seller. (Not by marketplace: with
# a few marketplaces, walking the queue in score order finds a page sooner than that index would.)
sa.Index("ix_listings_seller_id", listings.c.seller_id)
# Pictures shared across listings and sellers (suspect and seller pages, bulk verdicts by picture).
sa.Index("ix_listing_images_sha256", listing_images.c.sha256)

url_cache = sa.Table(
    "url_cache",
    metadata,
    sa.Column("url", sa.Text, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("fetched_at", TS, nullable=False),
)

image_signals = sa.Table(
    "image_signals",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("matcher", sa.String(40), primary_key=True),
    sa.Column("signal", sa.LargeBinary, nullable=False),
)

image_text = sa.Table(
    "image_text",
    metadata,
    # Text read in an image (the "ocr" image matcher's signal), per content hash: a picture shared
    # by many listings is read once, and brands registered later are matched against it unread.
    sa.Column("sha256", sa.String(64), primary_key=True),
    # The reader and its settings (``ReaderOptions.key()``).
    sa.Column("reader", sa.String(250), nullable=False),
    # The lines read, one per line: for people and SQL searches; ``lines`` adds confidences and boxes.
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("lines", sa.JSON, nullable=False),
    sa.Column("width", sa.Integer, nullable=False),
    sa.Column("height", sa.Integer, nullable=False),
    sa.Column("read_at", TS, nullable=False),
)

scans = sa.Table(
    "scans",
    metadata,
    sa.Column("scan_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("started_at", TS, nullable=False),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("listings_scanned", sa.Integer, nullable=False),
    sa.Column("scope", sa.String(250), nullable=False, server_default="all"),
    # What the scan set out to do (brands to re-scan and their fingerprints), to resume it.
    sa.Column("plan", sa.JSON, nullable=True),
    # The highest listing key of the last committed batch of the re-scan phase.
    sa.Column("cursor", sa.Integer, nullable=False, server_default="0"),
    sa.Column("holder", sa.String(250), nullable=True),
)

brand_scan_state = sa.Table(
    "brand_scan_state",
    metadata,
    # "*" for scans of every source, else the source a scan was limited to.
    sa.Column("scope", sa.String(250), primary_key=True),
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("scan_id", sa.Integer, nullable=False),
)

scan_state = sa.Table(
    "scan_state",
    metadata,
    # What the listings of a scope were last scanned and scored with, besides brands: the image
    # matchers and their settings ("matchers"), the scorer ("scorer"), progress of a re-scan.
    # "*" for scans of every source, else the source a scan was limited to.
    sa.Column("scope", sa.String(250), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
    sa.Column("scan_id", sa.Integer, nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(250), primary_key=True),
    sa.Column("holder", sa.String(250), nullable=False),
    sa.Column("acquired_at", TS, nullable=False),
    sa.Column("heartbeat_at", TS, nullable=False),
)

lock_guard = sa.Table(
    "lock_guard",
    metadata,
    sa.Column("guard_id", sa.Integer, primary_key=True),
    sa.Column("touched_at", TS, nullable=True),
)
"""One row, updated first by every lock change, so that lock changes take turns on any database."""


evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("evidence_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("scan_id", sa.Integer, sa.ForeignKey("scans.scan_id"), nullable=False),
    sa.Column("matcher", sa.String(40), nullable=False),
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), nullable=False),
    sa.Column("asset_id", sa.Integer, sa.ForeignKey("assets.asset_id"), nullable=True),
    sa.Column("image_sha256", sa.String(64), nullable=True),
    sa.Column("distance", sa.Float, nullable=True),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)

scores = sa.Table(
    "scores",
    metadata,
    # One row per listing and brand it has evidence for: a listing is a suspect of each such brand.
    # A listing without evidence has no row (its listings.scanned_at says it was scanned).
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), primary_key=True),
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), primary_key=True, index=True),
    sa.Column("score", sa.Float, nullable=False, index=True),
    sa.Column("best_position", sa.Integer, nullable=True),
    # "cold-start" or "model:N": which scorer gave the score, so a scan can tell stale scores.
    sa.Column("scorer", sa.String(40), nullable=False),
    sa.Column("scan_id", sa.Integer, sa.ForeignKey("scans.scan_id"), nullable=False),
    sa.Column("scored_at", TS, nullable=False),
)

verdicts = sa.Table(
    "verdicts",
    metadata,
    sa.Column("verdict_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), nullable=False, index=True),
    # The brand the verdict is about: a listing may be a counterfeit of one brand and innocent of another.
    # NULL only for verdicts carried over from version 1 whose listing had no scored brand.
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), nullable=True, index=True),
    sa.Column("verdict", sa.String(20), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("analyst", sa.String(200), nullable=False),
    sa.Column("decided_at", TS, nullable=False),
)

quarantine = sa.Table(
    "quarantine",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False, index=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("record", sa.String(500), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("raw", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("resolved_at", TS, nullable=True),
)

models = sa.Table(
    "models",
    metadata,
    sa.Column("model_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("metrics", sa.JSON, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)

checks = sa.Table(
    "checks",
    metadata,
    # A real-time check whose costly matchers finish after the answer: what GET /v1/check/{id} reads.
    sa.Column("check_id", sa.String(32), primary_key=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.member_id"), nullable=False),
    # pending (the costly matchers still running) -> complete, or failed.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("answer", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("completed_at", TS, nullable=True),
)

# -- webhooks: members' endpoints, the outbox written with each event, and every delivery attempt --

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("webhook_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("member_id", sa.Integer, sa.ForeignKey("members.member_id"), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    # "suspect.new" fires only for suspects scored at or over this.
    sa.Column("min_score", sa.Float, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("delivery_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("webhook_id", sa.Integer, sa.ForeignKey("webhooks.webhook_id"), nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    # pending -> delivered, or failed once the attempts are spent.
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", TS, nullable=False, index=True),
    # A worker's claim on a delivery; a claim that outlives its lease (the worker died) lapses.
    sa.Column("claimed_by", sa.String(250), nullable=True),
    sa.Column("claimed_until", TS, nullable=True),
    sa.Column("delivered_at", TS, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("attempt_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("delivery_id", sa.Integer, sa.ForeignKey("webhook_outbox.delivery_id"), nullable=False, index=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
)

# -- takedown cases: confirmed counterfeits grouped per (marketplace, seller), followed to removal --

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("case_id", sa.Integer, primary_key=True, autoincrement=True),
    # The listing's marketplace, or its source when the feed names none.
    sa.Column("marketplace", sa.String(200), nullable=False),
    # "" when the feed names no seller: such listings share one case per marketplace.
    sa.Column("seller_id", sa.String(200), nullable=False),
    sa.Column("seller_name", sa.String(500), nullable=True),
    # open -> reported -> removed | rejected; removed -> reinstated; see records.CASE_TRANSITIONS.
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("opened_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.UniqueConstraint("marketplace", "seller_id", name="uq_cases_marketplace_seller"),
)

case_listings = sa.Table(
    "case_listings",
    metadata,
    # A (listing, brand) whose latest verdict is counterfeit is in exactly one case; another verdict takes it out.
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), primary_key=True),
    sa.Column("brand_id", sa.Integer, sa.ForeignKey("brands.brand_id"), primary_key=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.case_id"), nullable=False, index=True),
    # The verdict that confirmed it: its analyst, note and time go into notices.
    sa.Column("verdict_id", sa.Integer, sa.ForeignKey("verdicts.verdict_id"), nullable=False),
    sa.Column("added_at", TS, nullable=False),
)

case_events = sa.Table(
    "case_events",
    metadata,
    sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("case_id", sa.Integer, sa.ForeignKey("cases.case_id"), nullable=False, index=True),
    sa.Column("at", TS, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    # opened, status, listing-added, listing-withdrawn
    sa.Column("action", sa.String(40), nullable=False),
    # The case's status after the event.
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("listing_pk", sa.Integer, sa.ForeignKey("listings.listing_pk"), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
)

LATEST_VERSION = 4

"""Version 1 was the first release; 2 moved API keys to ``member_keys``; 3 keys scores and verdicts by
(listing, brand); 4 adds takedown cases, filled from the counterfeit verdicts so far. The steps are in
``migrations.py``."""
