"""Schema versions. A fresh database gets the latest tables and is stamped; an older one is stepped up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from counterscan.errors import ExternalError
from counterscan.store.schema import LATEST_VERSION, TS, lock_guard, member_keys, metadata, schema_version

Step = Callable[[sa.Connection], None]


def _member_keys(connection: sa.Connection) -> None:
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


# STEPS[n] upgrades a database at version n to n + 1. Version 1 is the first release's schema.
STEPS: dict[int, Step] = {1: _member_keys}


def current_version(connection: sa.Connection) -> int | None:
    if not sa.inspect(connection).has_table(schema_version.name):
        return None
    return connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar_one_or_none()


def migrate(engine: sa.Engine) -> int:
    """Bring the schema to ``LATEST_VERSION``; return the version found before."""
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
            STEPS[version](connection)
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
