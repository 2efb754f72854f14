"""Members' API keys (several per member, expiring, revocable) and the failed-authentication log."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from counterscan.errors import NotFoundError, UserError
from counterscan.records import ApiKeyInfo, Member
from counterscan.store import schema as t
from counterscan.store.base import StoreBase, iso, new_id, now

LEGACY_PREFIX = "(legacy)"
FAILURES_KEPT = timedelta(days=1)
"""Failed authentications older than this are forgotten (the audit keeps them)."""


@dataclass(frozen=True)
class KeyCandidate:
    """A stored key that may be the one presented; the caller compares hashes in constant time."""

    key_id: int
    member: Member
    prefix: str | None
    key_hash: str
    expires_at: datetime | None
    revoked_at: datetime | None


class KeyStore(StoreBase):
    def add_key(
        self,
        member: str,
        *,
        prefix: str,
        key_hash: str,
        expires_at: datetime | None,
        actor: str,
        revoke_others: bool = False,
    ) -> ApiKeyInfo:
        """A new key for ``member``, audited ``key.add``; with ``revoke_others`` it is a rotation
        (``key.rotate``): the member's other keys are revoked in the same transaction, so no moment
        sees both the new key and an old one live, or neither."""
        with self.engine.begin() as conn:
            found = self._member_row(conn, member)
            key_id = self._insert_key(conn, found.member_id, prefix, key_hash, expires_at)
            action = "key.rotate" if revoke_others else "key.add"
            self._audit(conn, actor, action, member, {"prefix": prefix, "expires_at": iso(expires_at)})
            if revoke_others:
                # Expired keys stay "expired" in the listing rather than turning "revoked".
                unexpired = sa.or_(t.member_keys.c.expires_at.is_(None), t.member_keys.c.expires_at > now())
                others = sa.and_(
                    t.member_keys.c.member_id == found.member_id, t.member_keys.c.key_id != key_id, unexpired
                )
                self._revoke(conn, others, actor=actor, reason=f"rotated to {prefix}")
        return self.api_key(key_id)

    @staticmethod
    def _insert_key(
        conn: sa.Connection, member_id: int, prefix: str, key_hash: str, expires_at: datetime | None
    ) -> int:
        return new_id(
            conn.execute(
                sa.insert(t.member_keys).values(
                    member_id=member_id, prefix=prefix, key_hash=key_hash, created_at=now(), expires_at=expires_at
                )
            )
        )

    @staticmethod
    def _member_row(conn: sa.Connection, name: str) -> Any:
        row = conn.execute(sa.select(t.members).where(t.members.c.name == name)).first()
        if row is None:
            raise NotFoundError(f"unknown member {name!r} (add it with `counterscan members add`)")
        return row

    def api_keys(self, member: str | None = None) -> list[ApiKeyInfo]:
        query = (
            sa.select(t.member_keys, t.members.c.name)
            .join(t.members, t.members.c.member_id == t.member_keys.c.member_id)
            .order_by(t.members.c.name, t.member_keys.c.key_id)
        )
        if member is not None:
            query = query.where(t.members.c.name == member)
        with self.engine.connect() as conn:
            return [_key_info(row) for row in conn.execute(query)]

    def api_key(self, key_id: int) -> ApiKeyInfo:
        query = (
            sa.select(t.member_keys, t.members.c.name)
            .join(t.members, t.members.c.member_id == t.member_keys.c.member_id)
            .where(t.member_keys.c.key_id == key_id)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"unknown API key {key_id}")
        return _key_info(row)

    def find_api_key(self, selector: str) -> ApiKeyInfo:
        """A key by its prefix ("cs_1a2b3c4d") or its id (as listed)."""
        matches = [key for key in self.api_keys() if selector in (key.prefix, str(key.key_id))]
        if not matches:
            raise NotFoundError(f"no API key {selector!r} (see `counterscan members keys list`)")
        if len(matches) > 1:
            raise UserError(f"{selector!r} names {len(matches)} keys; give the key id from `members keys list`")
        return matches[0]

    def revoke_api_keys(self, key_ids: list[int], *, actor: str, reason: str) -> int:
        if not key_ids:
            return 0
        with self.engine.begin() as conn:
            return self._revoke(conn, t.member_keys.c.key_id.in_(key_ids), actor=actor, reason=reason)

    def _revoke(self, conn: sa.Connection, which: sa.ColumnElement[bool], *, actor: str, reason: str) -> int:
        """Revoke the keys ``which`` selects that are not revoked yet, each audited ``key.revoke``."""
        rows = conn.execute(
            sa.select(t.member_keys.c.key_id, t.member_keys.c.prefix, t.members.c.name)
            .join(t.members, t.members.c.member_id == t.member_keys.c.member_id)
            .where(which, t.member_keys.c.revoked_at.is_(None))
        ).all()
        conn.execute(
            sa.update(t.member_keys)
            .where(t.member_keys.c.key_id.in_([row.key_id for row in rows]))
            .values(revoked_at=now())
        )
        for row in rows:
            details = {"prefix": row.prefix or LEGACY_PREFIX, "key_id": row.key_id, "reason": reason}
            self._audit(conn, actor, "key.revoke", row.name, details)
        return len(rows)

    def key_candidates(self, prefix: str, key_hash: str) -> list[KeyCandidate]:
        """Keys with this prefix, and prefix-less (legacy) keys with this hash."""
        query = (
            sa.select(t.member_keys, t.members.c.name, t.members.c.role)
            .join(t.members, t.members.c.member_id == t.member_keys.c.member_id)
            .where(
                sa.or_(
                    t.member_keys.c.prefix == prefix,
                    sa.and_(t.member_keys.c.prefix.is_(None), t.member_keys.c.key_hash == key_hash),
                )
            )
        )
        with self.engine.connect() as conn:
            return [
                KeyCandidate(
                    key_id=row.key_id,
                    member=Member(member_id=row.member_id, name=row.name, role=row.role),
                    prefix=row.prefix,
                    key_hash=row.key_hash,
                    expires_at=_aware(row.expires_at),
                    revoked_at=_aware(row.revoked_at),
                )
                for row in conn.execute(query)
            ]

    def member_by_live_key_hash(self, key_hash: str) -> Member | None:
        """The member whose key has this hash, if that key is neither revoked nor expired."""
        moment = now()
        query = (
            sa.select(t.members, t.member_keys.c.expires_at)
            .join(t.member_keys, t.member_keys.c.member_id == t.members.c.member_id)
            .where(t.member_keys.c.key_hash == key_hash, t.member_keys.c.revoked_at.is_(None))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        expires = None if row is None else _aware(row.expires_at)
        if row is None or (expires is not None and expires <= moment):
            return None
        return Member(member_id=row.member_id, name=row.name, role=row.role)

    def record_auth_failure(self, *, client: str, prefix: str, claimed: str, reason: str) -> None:
        """One failed authentication: counted for throttling, and audited (never with the key)."""
        moment = now()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(t.auth_failures).values(client=client[:300], prefix=prefix[:20], at=moment))
            conn.execute(sa.delete(t.auth_failures).where(t.auth_failures.c.at < moment - FAILURES_KEPT))
            details: Mapping[str, Any] = {"client": client[:300], "prefix": prefix, "reason": reason}
            self._audit(conn, claimed[:200] or "anonymous", "auth.failed", prefix or "(no key)", details)

    def auth_failures_since(self, since: datetime, *, client: str, prefix: str) -> tuple[int, int]:
        """Failed authentications since ``since``: (from this client, with this key prefix)."""
        count = sa.select(sa.func.count()).select_from(t.auth_failures).where(t.auth_failures.c.at >= since)
        with self.engine.connect() as conn:
            by_client = int(conn.execute(count.where(t.auth_failures.c.client == client[:300])).scalar_one())
            by_prefix = (
                int(conn.execute(count.where(t.auth_failures.c.prefix == prefix[:20])).scalar_one()) if prefix else 0
            )
        return by_client, by_prefix

    def has_analyst(self) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(t.members.c.member_id).where(t.members.c.role == "analyst").limit(1))
            return found.first() is not None


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time we store is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=now().tzinfo)


def _key_info(row: Any) -> ApiKeyInfo:
    expires, revoked = _aware(row.expires_at), _aware(row.revoked_at)
    status = "revoked" if revoked is not None else "expired" if expires is not None and expires <= now() else "live"
    return ApiKeyInfo(
        key_id=row.key_id,
        member=row.name,
        prefix=row.prefix or LEGACY_PREFIX,
        created_at=iso(row.created_at),
        expires_at=iso(expires),
        revoked_at=iso(revoked),
        status=status,
    )
