"""Who is calling: the API key from ``Authorization: Bearer KEY`` (or ``X-API-Key``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from counterscan.records import Member
from counterscan.registry.members import authenticate_key
from counterscan.service.dependencies import ServiceDep


def api_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def current_member(
    request: Request,
    service: ServiceDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> Member:
    """The member whose key came as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    client = f"http:{request.client.host}" if request.client else "http:unknown"
    # Failed tries are throttled per client address and per key prefix, and audited (never the key).
    key = api_key(authorization, x_api_key)
    member = authenticate_key(service.store, key, client=client, policy=service.auth_policy)
    request.state.member_name = member.name  # for the request log: the name, never the key
    return member


Actor = Annotated[Member, Depends(current_member)]
