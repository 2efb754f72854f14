"""Alliance members and analysts: API keys, authentication, and who may touch what.

Keys: several per member, each with an optional expiry, revocable and rotatable; stored as
hashes with a public prefix to find them by. Failed authentications are counted in the store
per client and per key prefix and throttled (see AuthPolicy), and audited; keys are never logged.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
import re
import secrets
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from counterscan.config import Settings
from counterscan.errors import AuthenticationError, PermissionDeniedError, RateLimitedError, UserError
from counterscan.records import ROLES, ApiKeyInfo, Brand, Member, Role
from counterscan.store.keys import LEGACY_PREFIX
from counterscan.store.protocols import MemberDirectory

OPERATOR = "operator"
"""The actor recorded for changes made by whoever runs the CLI on the store directly."""


KEY_PREFIX = re.compile(r"^cs_[0-9a-f]{8}_")
PREFIX_LENGTH = 11
"""Keys look like ``cs_1a2b3c4d_SECRET``: the first 11 characters are public, the rest is 256 random bits."""


@dataclass(frozen=True)
class AuthPolicy:
    """How many failed authentications are allowed in a window before further tries are refused.

    Counted in the store, so the limits hold across API workers and CLI runs alike. While a
    client or a key prefix is over its limit, every try from it (right key or not) is refused
    unchecked until the window has passed; each failure is audited.
    """

    max_failures_per_client: int = 20
    max_failures_per_key: int = 10
    window: timedelta = timedelta(minutes=5)

    @classmethod
    def of(cls, settings: Settings) -> AuthPolicy:
        return cls(
            max_failures_per_client=settings.auth_max_failures_per_client,
            max_failures_per_key=settings.auth_max_failures_per_key,
            window=timedelta(seconds=settings.auth_failure_window_seconds),
        )


@dataclass(frozen=True)
class NewMember:
    member: Member
    api_key: str
    """Shown once; only its hash is stored."""


@dataclass(frozen=True)
class NewKey:
    info: ApiKeyInfo
    api_key: str
    """Shown once; only its hash is stored."""


def hash_api_key(key: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_prefix(key: str) -> str:
    """The public part of a presented key, as stored and throttled ("" when there is no key)."""
    return key[:PREFIX_LENGTH].encode("ascii", "replace").decode("ascii")


@dataclass(frozen=True)
class _MintedKey:
    """A fresh key: the secret shown once, and what the store keeps of it."""

    api_key: str
    prefix: str
    key_hash: str
    expires_at: datetime | None


def _mint_key(expires_in: timedelta | None) -> _MintedKey:
    prefix = "cs_" + secrets.token_hex(4)
    key = prefix + "_" + secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC) + expires_in if expires_in is not None else None
    return _MintedKey(api_key=key, prefix=prefix, key_hash=hash_api_key(key), expires_at=expires_at)


def cli_client() -> str:
    """Who runs the CLI, for throttling failed authentications: the OS user on this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}@{socket.gethostname()}"


def parse_duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``2w`` (a bare number is days)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise UserError(f"bad duration {text!r} (e.g. 90d, 12h, 30m, 2w)")
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks", "": "days"}
    amount = float(match.group(1))
    if amount <= 0:
        raise UserError(f"duration {text!r} must be positive")
    try:
        return timedelta(**{units[match.group(2)]: amount})
    except OverflowError:
        raise UserError(f"duration {text!r} is too long") from None


def parse_role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise UserError(f"unknown role {role!r} (one of {', '.join(ROLES)})")


def add_member(
    store: MemberDirectory,
    name: str,
    *,
    role: str = "member",
    actor: str = OPERATOR,
    expires_in: timedelta | None = None,
) -> NewMember:
    name = name.strip()
    if not name:
        raise UserError("member name must not be empty")
    minted = _mint_key(expires_in)
    member = store.add_member(
        name,
        role=parse_role(role),
        key_hash=minted.key_hash,
        actor=actor,
        prefix=minted.prefix,
        expires_at=minted.expires_at,
    )
    return NewMember(member=member, api_key=minted.api_key)


def may_add_analyst(store: MemberDirectory, actor: Member | None) -> None:
    """An analyst is added by an authenticated analyst; only the first analyst of a store needs none."""
    if not store.has_analyst():
        return
    if actor is None:
        raise AuthenticationError("adding an analyst needs an existing analyst's key (--as ANALYST --key KEY)")
    require_analyst(actor)


def require_key_manager(actor: Member, member: str) -> None:
    """A member manages its own keys; analysts manage everyone's."""
    if actor.name != member and not actor.is_analyst:
        raise PermissionDeniedError(f"{actor.name!r} may not manage the keys of {member!r}")


def issue_key(
    store: MemberDirectory,
    actor: Member,
    member: str,
    *,
    expires_in: timedelta | None = None,
    revoke_others: bool = False,
) -> NewKey:
    """Another key for ``member``; its earlier keys stay valid unless ``revoke_others`` (a rotation):
    then each of them is revoked in the same store transaction that adds the new key."""
    require_key_manager(actor, member)
    minted = _mint_key(expires_in)
    info = store.add_key(
        member,
        prefix=minted.prefix,
        key_hash=minted.key_hash,
        expires_at=minted.expires_at,
        actor=actor.name,
        revoke_others=revoke_others,
    )
    return NewKey(info=info, api_key=minted.api_key)


def revoke_key(store: MemberDirectory, actor: Member, selector: str) -> ApiKeyInfo:
    """Revoke the key with this prefix (or key id); it is refused from the next request on."""
    found = store.find_api_key(selector)
    require_key_manager(actor, found.member)
    if found.status == "revoked":
        raise UserError(f"API key {found.prefix} of {found.member!r} is already revoked")
    store.revoke_api_keys([found.key_id], actor=actor.name, reason="revoked")
    return store.api_key(found.key_id)


def authenticate(
    store: MemberDirectory, name: str, key: str | None, *, client: str | None = None, policy: AuthPolicy | None = None
) -> Member:
    """The member ``name``, if ``key`` is a live key of it."""
    if not key:
        raise AuthenticationError(f"acting as {name!r} needs its API key (--key or COUNTERSCAN_API_KEY)")
    member = _verify(store, key, client or cli_client(), policy or AuthPolicy(), claimed=name)
    if member is not None and member.name != name:
        _fail(store, key, client or cli_client(), claimed=name, reason="another member's key")
        # A live key of someone else: say so (its holder knows it is live), never whose it is.
        raise AuthenticationError(f"this API key does not belong to member {name!r} (use that member's own key)")
    if member is None:
        raise AuthenticationError(f"unknown member {name!r} or wrong API key")
    return member


def authenticate_key(
    store: MemberDirectory, key: str | None, *, client: str | None = None, policy: AuthPolicy | None = None
) -> Member:
    """The member whose key this is (the HTTP API has only the key)."""
    member = _verify(store, key or "", client or cli_client(), policy or AuthPolicy(), claimed="")
    if member is None:
        raise AuthenticationError("missing or unknown API key")
    return member


def authenticate_key_hash(store: MemberDirectory, name: str, key_hash: str) -> Member:
    """The member ``name``, while the key whose hash a web session carries still belongs to it."""
    # Only while that key is live: revoking or expiring it ends the web sessions made with it.
    member = store.member_by_live_key_hash(key_hash) if key_hash else None
    if member is None or member.name != name:
        raise AuthenticationError("the session's API key is no longer valid; sign in again")
    return member


def _verify(store: MemberDirectory, key: str, client: str, policy: AuthPolicy, *, claimed: str) -> Member | None:
    prefix = key_prefix(key)
    since = datetime.now(UTC) - policy.window
    by_client, by_prefix = store.auth_failures_since(since, client=client, prefix=prefix)
    if by_client >= policy.max_failures_per_client or by_prefix >= policy.max_failures_per_key:
        # Refused unchecked: while throttled, trying keys teaches nothing.
        raise RateLimitedError(
            f"too many failed authentications from this client or for key {prefix or '(none)'}; "
            f"try again in {int(policy.window.total_seconds())} s",
            retry_after=int(policy.window.total_seconds()),
        )
    if not key:
        _fail(store, key, client, claimed=claimed, reason="no key")
        return None
    presented = hash_api_key(key)
    match = None
    for candidate in store.key_candidates(prefix, presented):
        # Every candidate is compared, in constant time, so timing tells nothing of the hash.
        if hmac.compare_digest(candidate.key_hash.encode(), presented.encode()):
            match = candidate
    if match is None:
        _fail(store, key, client, claimed=claimed, reason="unknown key")
        return None
    moment = datetime.now(UTC)
    shown = match.prefix or LEGACY_PREFIX
    if match.revoked_at is not None:
        _fail(store, key, client, claimed=claimed, reason="revoked key")
        raise AuthenticationError(f"API key {shown} of {match.member.name!r} was revoked")
    if match.expires_at is not None and match.expires_at <= moment:
        _fail(store, key, client, claimed=claimed, reason="expired key")
        raise AuthenticationError(
            f"API key {shown} of {match.member.name!r} expired at {match.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return match.member


def _fail(store: MemberDirectory, key: str, client: str, *, claimed: str, reason: str) -> None:
    store.record_auth_failure(client=client, prefix=key_prefix(key), claimed=claimed, reason=reason)


def require_owner(actor: Member, brand: Brand) -> None:
    if actor.name != brand.member:
        raise PermissionDeniedError(f"member {actor.name!r} may not change brand {brand.name!r}")


def require_reader(actor: Member, brand: Brand) -> None:
    if not actor.is_analyst and actor.name != brand.member:
        raise PermissionDeniedError(f"member {actor.name!r} may not read brand {brand.name!r}")


def require_analyst(actor: Member) -> None:
    if not actor.is_analyst:
        raise PermissionDeniedError(f"{actor.name!r} is not an analyst; only analysts record verdicts")
