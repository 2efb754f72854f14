"""What the service asks the store: has the catalogue changed (for its warm indexes), and the
counters of work other processes did (for /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from counterscan.store import schema as t
from counterscan.store.base import StoreBase

# Audit actions that change nothing a check matches against.
_NOT_CATALOGUE = ("verdict", "member.add", "webhook.add", "webhook.remove")


@dataclass(frozen=True)
class OperationalCounts:
    """Work done by every process sharing the store, read at scrape time."""

    scans_by_status: dict[str, int]
    listings_scanned: int
    """By all scans, summed."""
    listings: int
    quarantined: int
    """Records and images."""
    outbox_by_status: dict[str, int]
    """Webhook deliveries."""


class ServiceStore(StoreBase):
    def catalogue_version(self) -> tuple[int, int]:
        """(newest catalogue change, newest verdict): every brand, asset and model change writes an
        audit row, so two indexed MAX lookups tell a server whether its indexes are current."""
        with self.engine.connect() as conn:
            changed = conn.execute(
                sa.select(sa.func.coalesce(sa.func.max(t.audit.c.audit_id), 0)).where(
                    t.audit.c.action.not_in(_NOT_CATALOGUE)
                )
            ).scalar_one()
            verdict = conn.execute(sa.select(sa.func.coalesce(sa.func.max(t.verdicts.c.verdict_id), 0))).scalar_one()
        return int(changed), int(verdict)

    def operational_counts(self) -> OperationalCounts:
        with self.engine.connect() as conn:
            scans = conn.execute(sa.select(t.scans.c.status, sa.func.count()).group_by(t.scans.c.status)).all()
            scanned = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.scans.c.listings_scanned), 0))).scalar_one()
            listings = conn.execute(sa.select(sa.func.count()).select_from(t.listings)).scalar_one()
            quarantined = conn.execute(sa.select(sa.func.count()).select_from(t.quarantine)).scalar_one()
            outbox = conn.execute(
                sa.select(t.webhook_outbox.c.status, sa.func.count()).group_by(t.webhook_outbox.c.status)
            ).all()
        return OperationalCounts(
            scans_by_status={str(status): int(count) for status, count in scans},
            listings_scanned=int(scanned),
            listings=int(listings),
            quarantined=int(quarantined),
            outbox_by_status={str(status): int(count) for status, count in outbox},
        )
