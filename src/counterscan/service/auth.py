"""Who is calling: the API key from ``Authorization: Bearer KEY`` (or ``X-API-Key``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from counterscan.records import Member
from counterscan.registry.members import AuthPolicy, authenticate_key
from counterscan.store import Store


def api_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def current_member(
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Member:
    """The member whose key came as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    store: Store = request.app.state.store
    client = f"http:{request.client.host}" if request.client else "http:unknown"
    policy: AuthPolicy = request.app.state.auth_policy
    # Failed tries are throttled per client address and per key prefix, and audited (never the key).
    member = authenticate_key(store, api_key(authorization, x_api_key), client=client, policy=policy)
    request.state.member_name = member.name  # for the request log: the name, never the key
    return member


Actor = Annotated[Member, Depends(current_member)]
