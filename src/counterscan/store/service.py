"""What the service asks the store: has the catalogue changed (for its warm indexes), and the
counters of work other processes did (for /metrics)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from counterscan.store import schema as t
from counterscan.store.base import StoreBase, now
from counterscan.store.webhooks import enqueue_member_event

CHECK_COMPLETED = "check.completed"

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

    def start_check(self, check_id: str, member_id: int, answer: Mapping[str, object], *, status: str) -> None:
        """Keep a check's answer (``pending`` while its costly matchers run on, or ``complete``)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(t.checks).values(
                    check_id=check_id,
                    member_id=member_id,
                    status=status,
                    answer=dict(answer),
                    created_at=now(),
                    completed_at=now() if status != "pending" else None,
                )
            )

    def complete_check(self, check_id: str, answer: Mapping[str, object], *, status: str = "complete") -> int:
        """The complete answer of a pending check, and its "check.completed" deliveries to the asking
        member's endpoints, in one transaction; returns how many deliveries were written (none when
        the check was not pending: it completes once)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(t.checks.c.member_id).where(t.checks.c.check_id == check_id, t.checks.c.status == "pending")
            ).first()
            if row is None:
                return 0
            conn.execute(
                sa.update(t.checks)
                .where(t.checks.c.check_id == check_id)
                .values(status=status, answer=dict(answer), completed_at=now())
            )
            payload = {"check_id": check_id, "status": status, "answer": dict(answer)}
            return enqueue_member_event(conn, CHECK_COMPLETED, member_id=int(row.member_id), payload=payload)

    def check_answer(self, check_id: str, member_id: int | None) -> tuple[str, dict[str, Any]] | None:
        """(status, answer) of a check asked by ``member_id`` (None: by anyone); None when unknown."""
        query = sa.select(t.checks.c.status, t.checks.c.answer).where(t.checks.c.check_id == check_id)
        if member_id is not None:
            query = query.where(t.checks.c.member_id == member_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (str(row.status), dict(row.answer))

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
