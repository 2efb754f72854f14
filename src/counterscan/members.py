"""Alliance members and analysts: API keys, authentication, and who may touch what."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from counterscan.errors import AuthenticationError, NotFoundError, PermissionDeniedError, UserError
from counterscan.records import ROLES, Brand, Member, Role
from counterscan.store import Store

OPERATOR = "operator"
"""The actor recorded for changes made by whoever runs the CLI on the store directly."""


@dataclass(frozen=True)
class NewMember:
    member: Member
    api_key: str
    """Shown once; only its hash is stored."""


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")


def add_member(store: Store, name: str, *, role: str = "member", actor: str = OPERATOR) -> NewMember:
    name = name.strip()
    if not name:
        raise UserError("member name must not be empty")
    key = "cs_" + secrets.token_urlsafe(32)
    member = store.add_member(name, role=parse_role(role), key_hash=hash_api_key(key), actor=actor)
    return NewMember(member=member, api_key=key)


def authenticate(store: Store, name: str, key: str | None) -> Member:
    """The member ``name``, if ``key`` is its key."""
    if not key:
        raise AuthenticationError(f"acting as {name!r} needs its API key (--key or COUNTERSCAN_API_KEY)")
    try:
        member = store.member(name)
    except NotFoundError:
        raise AuthenticationError(f"unknown member {name!r} or wrong API key") from None
    stored = store.member_key_hash(name) or ""
    if not hmac.compare_digest(stored, hash_api_key(key)):
        raise AuthenticationError(f"unknown member {name!r} or wrong API key")
    return member


def authenticate_key(store: Store, key: str | None) -> Member:
    """The member whose key this is (the HTTP API has only the key)."""
    member = store.member_by_key_hash(hash_api_key(key)) if key else None
    if member is None:
        raise AuthenticationError("missing or unknown API key")
    return member


def authenticate_key_hash(store: Store, name: str, key_hash: str) -> Member:
    """The member ``name``, while the key whose hash a web session carries still belongs to it."""
    member = store.member_by_key_hash(key_hash) if key_hash else None
    if member is None or member.name != name:
        raise AuthenticationError("the session's API key is no longer valid; sign in again")
    return member


def require_owner(actor: Member, brand: Brand) -> None:
    if actor.name != brand.member:
        raise PermissionDeniedError(f"member {actor.name!r} may not change brand {brand.name!r}")


def require_reader(actor: Member, brand: Brand) -> None:
    if not actor.is_analyst and actor.name != brand.member:
        raise PermissionDeniedError(f"member {actor.name!r} may not read brand {brand.name!r}")


def require_analyst(actor: Member) -> None:
    if not actor.is_analyst:
        raise PermissionDeniedError(f"{actor.name!r} is not an analyst; only analysts record verdicts")
