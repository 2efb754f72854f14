"""Schema versions. A fresh database gets the latest tables and is stamped; an older one is stepped up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from counterscan.errors import ExternalError
from counterscan.store.schema import LATEST_VERSION, lock_guard, metadata, schema_version

Step = Callable[[sa.Connection], None]

# STEPS[n] upgrades a database at version n to n + 1. Version 1 is the first release's schema.
STEPS: dict[int, Step] = {}


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
        return found


def _stamp(connection: sa.Connection, version: int) -> None:
    connection.execute(sa.insert(schema_version).values(version=version, applied_at=datetime.now(UTC)))
