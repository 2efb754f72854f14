"""What the service asks the store for its warm indexes: has the catalogue changed?"""

from __future__ import annotations

import sqlalchemy as sa

from counterscan.store import schema as t
from counterscan.store.base import StoreBase

# Audit actions that change nothing a check matches against.
_NOT_CATALOGUE = ("verdict", "member.add", "webhook.add", "webhook.remove")


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
