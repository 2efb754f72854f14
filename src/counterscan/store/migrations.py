"""Schema versions. A fresh database gets the latest tables and is stamped; an older one is stepped up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa

from counterscan.errors import ExternalError
from counterscan.records import Evidence
from counterscan.store import cases
from counterscan.store import schema as t
from counterscan.store.schema import LATEST_VERSION, TS, lock_guard, member_keys, metadata, schema_version


class ScoredBrand(Protocol):
    """One brand's score from a listing's evidence, as the ranking package's cold-start scorer gives it."""

    @property
    def score(self) -> float: ...
    @property
    def brand_id(self) -> int | None: ...
    @property
    def best(self) -> int | None:
        """Index of the strongest evidence for the brand."""


EvidenceScorer = Callable[[Sequence[Evidence]], Sequence[ScoredBrand]]
"""Scores stored evidence per brand. The store never imports the ranker (it sits below it): the one
upgrade step that scores evidence is handed the scorer by whoever opens the store."""

Step = Callable[[sa.Connection, EvidenceScorer | None], None]


def _member_keys(connection: sa.Connection, _scorer: EvidenceScorer | None) -> None:
    """1 -> 2: each member's one key moves to ``member_keys`` (several keys per member, expiry, revocation)."""
    member_keys.create(connection, checkfirst=True)
    members = sa.table(
        "members", sa.column("member_id", sa.Integer), sa.column("key_hash", sa.String), sa.column("created_at", TS)
    )
    connection.execute(
        sa.insert(member_keys).from_select(
            ["member_id", "key_hash", "created_at"],
            sa.select(members.c.member_id, members.c.key_hash, members.c.created_at),
        )
    )
    connection.execute(sa.text("ALTER TABLE members DROP COLUMN key_hash"))


def _scores_per_brand(connection: sa.Connection, scorer: EvidenceScorer | None) -> None:
    """2 -> 3: scores and verdicts are keyed by (listing, brand).

    Versions 1 and 2 kept one score per listing, for its strongest brand. That row is kept; the listing's
    other brands with stored evidence get their cold-start score from that evidence (no matching
    again). A verdict is about the brand its listing was scored for. Listings also gain
    ``last_seen_at`` (when a feed last delivered them).
    """
    connection.execute(sa.text("ALTER TABLE listings ADD COLUMN last_seen_at " + _timestamp(connection)))
    connection.execute(sa.text("CREATE TABLE scores_v1 AS SELECT * FROM scores"))
    connection.execute(sa.text("ALTER TABLE verdicts ADD COLUMN brand_id INTEGER REFERENCES brands (brand_id)"))
    for index in t.verdicts.indexes:
        if "brand_id" in index.columns:
            index.create(connection)
    connection.execute(
        sa.text(
            "UPDATE verdicts SET brand_id = "
            "(SELECT scores_v1.brand_id FROM scores_v1 WHERE scores_v1.listing_pk = verdicts.listing_pk)"
        )
    )
    connection.execute(sa.text("DROP TABLE scores"))
    t.scores.create(connection)
    connection.execute(
        sa.text(
            "INSERT INTO scores (listing_pk, brand_id, score, best_position, scorer, scan_id, scored_at) "
            "SELECT listing_pk, brand_id, score, best_position, scorer, scan_id, scored_at FROM scores_v1 "
            "WHERE brand_id IS NOT NULL"
        )
    )
    _score_other_brands(connection, scorer)
    connection.execute(sa.text("DROP TABLE scores_v1"))


def _timestamp(connection: sa.Connection) -> str:
    return t.TS.compile(dialect=connection.dialect)


def _score_other_brands(connection: sa.Connection, cold_start_scores: EvidenceScorer | None) -> None:
    old = sa.table(
        "scores_v1", sa.column("listing_pk", sa.Integer), sa.column("scan_id", sa.Integer), sa.column("scored_at", t.TS)
    )
    missing = (
        sa.select(t.evidence, old.c.scan_id.label("listing_scan_id"), old.c.scored_at.label("at"))
        .join(old, old.c.listing_pk == t.evidence.c.listing_pk)
        .order_by(t.evidence.c.listing_pk, t.evidence.c.position)
    )
    per_listing: dict[int, list[Any]] = {}
    for row in connection.execute(missing):
        per_listing.setdefault(row.listing_pk, []).append(row)
    if not per_listing:
        return
    if cold_start_scores is None:
        raise ExternalError(
            "this store's upgrade to schema version 3 scores its stored evidence: "
            "open it with counterscan's CLI or API, or pass upgrade_scorer to Store.open"
        )
    scored = {(row.listing_pk, row.brand_id) for row in connection.execute(sa.select(t.scores))}
    added = []
    for listing_pk, rows in per_listing.items():
        ordered = sorted(rows, key=lambda row: row.position)
        evidence = [
            Evidence(
                matcher=row.matcher,
                brand_id=row.brand_id,
                brand="",
                score=row.score,
                reason=row.reason,
                details=row.details or {},
            )
            for row in ordered
        ]
        for found in cold_start_scores(evidence):
            if (listing_pk, found.brand_id) in scored or found.brand_id is None:
                continue
            added.append(
                {
                    "listing_pk": listing_pk,
                    "brand_id": found.brand_id,
                    "score": found.score,
                    "best_position": None if found.best is None else ordered[found.best].position,
                    "scorer": "cold-start",
                    "scan_id": ordered[0].listing_scan_id,
                    "scored_at": ordered[0].at,
                }
            )
    if added:
        connection.execute(sa.insert(t.scores), added)


def _takedown_cases(connection: sa.Connection, _scorer: EvidenceScorer | None) -> None:
    """3 -> 4: takedown cases. Every (listing, brand) whose latest verdict is counterfeit is filed into
    its (marketplace, seller) case, as a verdict recorded from now on is."""
    for table in (t.cases, t.case_listings, t.case_events):
        table.create(connection, checkfirst=True)
    cases.backfill(connection)


# STEPS[n] upgrades a database at version n to n + 1. Version 1 is the first release's schema.
STEPS: dict[int, Step] = {1: _member_keys, 2: _scores_per_brand, 3: _takedown_cases}


def current_version(connection: sa.Connection) -> int | None:
    if not sa.inspect(connection).has_table(schema_version.name):
        return None
    return connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one_or_none()


def migrate(engine: sa.Engine, upgrade_scorer: EvidenceScorer | None = None) -> int:
    """Bring the schema to ``LATEST_VERSION``; return the version found before.

    ``upgrade_scorer`` is needed only to step up a version-2 store (see :func:`_scores_per_brand`).
    """
    with engine.begin() as connection:
        found = current_version(connection)
        if found is None:
            metadata.create_all(connection)
            connection.execute(sa.insert(lock_guard).values(guard_id=1))
            _stamp(connection, LATEST_VERSION)
            return 0
        if found > LATEST_VERSION:
            raise ExternalError(
                f"database schema is version {found}, newer than this counterscan understands "
                f"({LATEST_VERSION}); upgrade counterscan"
            )
        for version in range(found, LATEST_VERSION):
            STEPS[version](connection, upgrade_scorer)
            _stamp(connection, version + 1)
        # Tables that are new since the store was made need no step of their own: creating what is
        # missing is idempotent. Changes to existing tables still need a numbered step.
        metadata.create_all(connection, checkfirst=True)
        _create_missing_indexes(connection)
        return found


def _create_missing_indexes(connection: sa.Connection) -> None:
    """Indexes declared since the store was made: like new tables, adding one changes no data."""
    tables = [table for table in metadata.sorted_tables if table.indexes]
    # One reflection query for the tables that declare indexes, not one per table: this runs on every open.
    reflected = sa.inspect(connection).get_multi_indexes(filter_names=[table.name for table in tables])
    present = {index["name"] for indexes in reflected.values() for index in indexes}
    for table in tables:
        for index in table.indexes:
            if index.name not in present:
                index.create(connection)


def _stamp(connection: sa.Connection, version: int) -> None:
    connection.execute(sa.insert(schema_version).values(version=version, applied_at=datetime.now(UTC)))
