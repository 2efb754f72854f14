"""What every part of the store shares: the engine, time, batching, audit rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from counterscan.store import schema as t

BATCH = 500
T = TypeVar("T")


def now() -> datetime:
    return datetime.now(UTC)


def chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None, "INSERT returned no primary key"
    return int(key[0])


def name_key(name: str) -> str:
    """Names compare case- and space-insensitively: 'Acme  Corp' is 'acme corp'."""
    return " ".join(name.split()).casefold()


def iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


class StoreBase:
    engine: sa.Engine

    @staticmethod
    def _audit(conn: sa.Connection, actor: str, action: str, target: str, details: Mapping[str, Any]) -> None:
        conn.execute(
            sa.insert(t.audit).values(actor=actor, action=action, target=target, details=dict(details), at=now())
        )
