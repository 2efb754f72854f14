"""The service's HTTP routes beside the members' API: health, readiness, metrics, webhooks.

Mounted by :func:`counterscan.api.create_app`; the check routes live in ``service/check_routes.py``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from counterscan.config import Settings
from counterscan.errors import PermissionDeniedError
from counterscan.service.auth import Actor
from counterscan.service.ops import Metrics, access_logger, log_request, metrics_permitted
from counterscan.service.webhooks import add_webhook
from counterscan.store import Store


class WebhookIn(BaseModel):
    url: str
    events: list[str] = Field(default_factory=lambda: ["suspect.new"])
    min_score: float = 0.5
    secret: str | None = None


def install_ops(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Request metrics and logs for every route, /healthz and /metrics (/readyz comes with the checker)."""
    logger = access_logger()

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-Id"] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(request.scope.get("route"), "path", None) or "unmatched"
            metrics.requests.labels(method=request.method, route=route, status=str(status)).inc()
            metrics.request_seconds.labels(method=request.method, route=route).observe(elapsed)
            member = getattr(request.state, "member_name", None)
            log_request(
                logger,
                method=request.method,
                route=route,
                path=request.url.path,
                status=status,
                seconds=elapsed,
                client=request.client.host if request.client else None,
                member=member,
                request_id=request_id,
            )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/metrics", include_in_schema=False)
    def metrics_endpoint(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not metrics_permitted(settings.metrics_allow, client):
            return Response("metrics are not served to this address\n", status_code=403, media_type="text/plain")
        for refresh in getattr(app.state, "before_metrics", ()):
            refresh()
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def install_webhooks(app: FastAPI, store: Store, settings: Settings) -> None:
    """Members' endpoints: register, list, remove, and read the delivery log."""

    @app.post("/v1/webhooks", status_code=201)
    def create_webhook(member: Actor, body: Annotated[WebhookIn, Body()]) -> dict[str, Any]:
        hook, secret = add_webhook(
            store, settings, member, url=body.url, events=body.events, min_score=body.min_score, secret=body.secret
        )
        return {**asdict(hook), "secret": secret}

    @app.get("/v1/webhooks")
    def list_webhooks(member: Actor) -> list[dict[str, Any]]:
        scope = None if member.is_analyst else member.member_id
        return [asdict(hook) for hook in store.webhooks(member_id=scope)]

    @app.delete("/v1/webhooks/{webhook_id}")
    def delete_webhook(webhook_id: int, member: Actor) -> dict[str, Any]:
        return asdict(store.remove_webhook(webhook_id, member_id=member.member_id, actor=member.name))

    @app.get("/v1/webhooks/deliveries")
    async def delivery_log(
        member: Actor,
        status: str | None = None,
        webhook_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        if member.is_marketplace:
            raise PermissionDeniedError("marketplace keys have no webhooks")
        scope = None if member.is_analyst else member.member_id
        found = await run_in_threadpool(
            store.deliveries, member_id=scope, webhook_id=webhook_id, status=status, limit=min(limit, 1000)
        )
        return [asdict(item) for item in found]
