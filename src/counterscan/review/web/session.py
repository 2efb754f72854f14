"""Signed session cookies and CSRF tokens for the review UI.

The cookie holds the member's name, the hash of the API key they signed in with, a CSRF token and
an expiry, signed with HMAC-SHA256. It never holds the key. Each request re-checks the key hash
through ``members``, so a revoked key or a removed member ends the session at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

COOKIE = "counterscan_session"
LOGIN_COOKIE = "counterscan_login"
LIFETIME_S = 12 * 3600


@dataclass(frozen=True)
class Session:
    member: str
    key_hash: str
    csrf: str
    expires: int


def session_secret(configured: str, home: Path) -> bytes:
    """The configured secret, else one kept in ``HOME/session.key`` (made on first use, owner-only)."""
    if configured:
        return configured.encode("utf-8")
    path = home / "session.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode("ascii")
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server process made it first
        return path.read_bytes()
    with os.fdopen(handle, "wb") as stream:
        stream.write(secret)
    return secret


def _sign(secret: bytes, payload: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, payload, hashlib.sha256).digest()).decode("ascii").rstrip("=")


def seal(secret: bytes, values: dict[str, object]) -> str:
    # No "=" padding: a cookie value with "=" gets quoted by some clients.
    raw = json.dumps(values, separators=(",", ":")).encode("utf-8")
    payload = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
    return f"{payload}.{_sign(secret, payload.encode('ascii'))}"


def unseal(secret: bytes, token: str | None) -> dict[str, object] | None:
    """The signed values, or None for a missing, tampered or malformed token."""
    if not token or "." not in token:
        return None
    payload, _, signature = token.rpartition(".")
    if not hmac.compare_digest(_sign(secret, payload.encode("ascii", "replace")), signature):
        return None
    try:
        values = json.loads(base64.urlsafe_b64decode(payload.encode("ascii") + b"=" * (-len(payload) % 4)))
    except ValueError:
        return None
    return values if isinstance(values, dict) else None


def new_session(member: str, key_hash: str) -> Session:
    return Session(
        member=member, key_hash=key_hash, csrf=secrets.token_urlsafe(24), expires=int(time.time()) + LIFETIME_S
    )


def encode_session(secret: bytes, session: Session) -> str:
    return seal(secret, {"m": session.member, "k": session.key_hash, "c": session.csrf, "e": session.expires})


def decode_session(secret: bytes, token: str | None) -> Session | None:
    values = unseal(secret, token)
    if values is None:
        return None
    member, key_hash, csrf, expires = values.get("m"), values.get("k"), values.get("c"), values.get("e")
    if not (
        isinstance(member, str) and isinstance(key_hash, str) and isinstance(csrf, str) and isinstance(expires, int)
    ):
        return None
    if expires < time.time():
        return None
    return Session(member=member, key_hash=key_hash, csrf=csrf, expires=expires)


def csrf_matches(expected: str | None, given: object) -> bool:
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected or "", given)
