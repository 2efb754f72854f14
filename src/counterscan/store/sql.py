"""Store: narrow methods over SQLAlchemy Core; SQLite by default, PostgreSQL for teams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from counterscan.errors import ExternalError, UserError
from counterscan.store.cases import CaseStore
from counterscan.store.catalogue import CatalogueStore
from counterscan.store.keys import KeyStore
from counterscan.store.listings import ListingStore
from counterscan.store.migrations import EvidenceScorer, migrate
from counterscan.store.review import ReviewStore
from counterscan.store.reviewui import ReviewUIStore
from counterscan.store.scans import ScanStore
from counterscan.store.service import ServiceStore
from counterscan.store.webhooks import WebhookStore


class Store(
    CatalogueStore,
    KeyStore,
    ListingStore,
    ScanStore,
    ReviewStore,
    CaseStore,
    WebhookStore,
    ReviewUIStore,
    ServiceStore,
):
    """All persistent state. Open with :meth:`open`; close when done."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, upgrade_scorer: EvidenceScorer | None = None) -> Store:
        """Open (and create or upgrade) the store at ``url``.

        ``upgrade_scorer`` scores stored evidence when an old store is stepped up (the ranking
        package's ``cold_start_scores``); the edges pass it, a new store never needs it.
        """
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError as exc:
            raise UserError(f"bad database URL {url!r}") from exc
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database or "").parent.mkdir(parents=True, exist_ok=True)
        try:
            engine = sa.create_engine(url)
            if engine.dialect.name == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            migrate(engine, upgrade_scorer)
        except sa.exc.OperationalError as exc:
            shown = parsed.render_as_string(hide_password=True)
            raise ExternalError(f"cannot open database {shown}: {str(exc.orig).strip()}") from exc
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as exc:
            raise UserError(f"bad database URL {url!r}: {exc}") from exc
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
