"""What every part of the store shares: the engine, time, batching, audit rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
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


def rows_in(
    conn: sa.Connection, query: sa.Select[Any], column: sa.ColumnElement[Any], keys: Iterable[Any]
) -> Iterator[Any]:
    """The rows of ``query`` whose ``column`` is one of ``keys``, asked in batches (bound-parameter limits)."""
    for chunk in chunks(list(keys)):
        yield from conn.execute(query.where(column.in_(chunk)))


def new_id(result: sa.CursorResult[Any]) -> int:
    key = result.inserted_primary_key
    assert key is not None, "INSERT returned no primary key"
    return int(key[0])


def name_key(name: str) -> str:
    """Names compare case- and space-insensitively: 'Acme  Corp' is 'acme corp'."""
    return " ".join(name.split()).casefold()


def iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT many rows through the driver's executemany, converting values once per column.

    SQLAlchemy's own executemany builds a parameter set per row through the compiler; for the
    hot ingestion path that costs more than SQLite's insert itself.
    """
    if not rows:
        return
    names = list(rows[0])
    columns = [table.c[name] for name in names]
    statement = sa.insert(table).compile(dialect=conn.dialect, column_keys=names)
    converters = [_Converter(column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)) for column in columns]
    if statement.positional:
        order = [names.index(name) for name in statement.positiontup or ()]
        params: list[Any] = [tuple(converters[i](row[names[i]]) for i in order) for row in rows]
    else:
        params = [{name: convert(row[name]) for name, convert in zip(names, converters, strict=True)} for row in rows]
    conn.exec_driver_sql(str(statement), params)


class _Converter:
    """A column's bind processor, remembering the last value: batches repeat their timestamp."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.last: Any = None
        self.result: Any = None

    def __call__(self, value: Any) -> Any:
        if self.processor is None or value is None:
            return value
        if value is not self.last:
            self.last, self.result = value, self.processor(value)
        return self.result


class StoreBase:
    engine: sa.Engine

    @staticmethod
    def _audit(conn: sa.Connection, actor: str, action: str, target: str, details: Mapping[str, Any]) -> None:
        conn.execute(
            sa.insert(t.audit).values(actor=actor, action=action, target=target, details=dict(details), at=now())
        )


def driver_chunks(conn: sa.Connection, query: sa.Select[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The query's rows as the database driver returns them, ``size`` at a time.

    Ten million rows through SQLAlchemy's row objects cost minutes; plain tuples from the
    driver's own cursor, turned into columns a chunk at a time, cost seconds.
    """
    compiled = query.compile(dialect=conn.dialect)
    params: Any = (
        [compiled.params[name] for name in compiled.positiontup or ()] if conn.dialect.positional else compiled.params
    )
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        while chunk := cursor.fetchmany(size):
            yield list(chunk)
    finally:
        cursor.close()
