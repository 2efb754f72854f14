"""The service's HTTP routes beside the members' API: health, readiness, metrics, webhooks.

Mounted by :func:`counterscan.api.create_app`; the check routes live in ``service/check_routes.py``.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import Body, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from counterscan.config import Settings
from counterscan.errors import PermissionDeniedError
from counterscan.records import Member
from counterscan.service.auth import Actor
from counterscan.service.check import (
    HASH_MATCHERS,
    CheckInput,
    fetch_images,
    listing_from_fields,
    parse_signals,
    store_check,
    visible,
)
from counterscan.service.checker import Checker
from counterscan.service.ops import Metrics, access_logger, log_request, metrics_permitted
from counterscan.service.webhooks import Deliverer, add_webhook
from counterscan.store import BlobStore, Store


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


class SignalsIn(BaseModel):
    """A listing whose images come as pre-computed hashes (hex), for partners who never send images."""

    title: str = ""
    description: str = ""
    price: float | None = None
    currency: str | None = None
    seller_id: str | None = None
    seller_name: str | None = None
    url: str | None = None
    marketplace: str | None = None
    listing_id: str | None = None
    images: list[dict[str, str]] = Field(default_factory=list)
    """One object per image: {"phash": hex, "dhash": hex, "pdq": hex}, any of them."""
    store: bool = False


def install_check(app: FastAPI, store: Store, settings: Settings, checker: Checker) -> None:
    """/readyz and the real-time check endpoints."""
    blobs = BlobStore(settings.blob_dir)

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        state = checker.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    def owned(member: Member) -> set[int]:
        return {brand.brand_id for brand in store.brands(member_id=member.member_id)}

    def run(member: Member, item: CheckInput) -> dict[str, Any]:
        assessed, scorer = checker.check(
            item.listing, item.images, [(f"signals-{n}", found) for n, found in enumerate(item.signals, 1)]
        )
        answer = visible(assessed, member, owned(member), scorer=scorer)
        answer["listing_id"] = item.listing.listing_id
        answer["images"] = [sha256 for sha256, _data in item.images]
        if item.store:
            store_check(store, blobs, item, assessed, scorer=scorer)
            answer["stored"] = {"source": item.listing.source, "listing_id": item.listing.listing_id}
        return answer

    @app.post("/v1/check")
    async def check(request: Request, member: Actor, store_it: Annotated[bool, Query(alias="store")] = False) -> Any:
        """One listing as multipart/form-data (title, description, price, currency, seller_id and one or
        more ``images`` file parts) or as JSON with ``image_urls``; answers each suspected brand with
        its score (and, for the brand's owner or an analyst, the evidence)."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > settings.max_upload_bytes:
            raise HTTPException(413, f"check of {declared} bytes is over the cap of {settings.max_upload_bytes}")
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise HTTPException(400, "check: the body is not JSON") from None
            if not isinstance(body, dict):
                raise HTTPException(400, "check: the JSON body must be an object")
            urls = body.get("image_urls") or []
            if isinstance(urls, str):
                urls = [part for part in urls.split(";") if part.strip()]
            if len(urls) > settings.check_max_images:
                raise HTTPException(413, f"check: more than {settings.check_max_images} images")
            listing = listing_from_fields(body, member)
            images = await run_in_threadpool(fetch_images, settings, [str(url) for url in urls])
            item = CheckInput(listing, tuple(images), store=store_it or bool(body.get("store")))
        elif kind == "multipart/form-data":
            form = await request.form(max_files=settings.check_max_images, max_fields=20)
            try:
                fields = {key: value for key, value in form.items() if isinstance(value, str)}
                parts = [part for part in form.getlist("images") if isinstance(part, StarletteUpload)]
                images = []
                for part in parts:
                    data = await part.read(settings.max_image_bytes + 1)
                    if len(data) > settings.max_image_bytes:
                        raise HTTPException(413, f"image {part.filename!r} is over {settings.max_image_bytes} bytes")
                    images.append((hashlib.sha256(data).hexdigest(), data))
            finally:
                await form.close()
            wanted = store_it or fields.get("store", "").lower() in ("1", "true", "yes")
            item = CheckInput(listing_from_fields(fields, member), tuple(images), store=wanted)
        else:
            raise HTTPException(415, "check: send multipart/form-data or application/json")
        return await run_in_threadpool(run, member, item)

    @app.post("/v1/check/signals")
    async def check_signals(member: Actor, body: Annotated[SignalsIn, Body()]) -> Any:
        """A listing with pre-computed image hashes (pHash, dHash, PDQ as hex) instead of images."""
        if len(body.images) > settings.check_max_images:
            raise HTTPException(413, f"check: more than {settings.check_max_images} images")
        listing = listing_from_fields(body.model_dump(exclude={"images", "store"}), member)
        signals = parse_signals(body.images, list(HASH_MATCHERS))  # matchers not running ignore theirs
        return await run_in_threadpool(run, member, CheckInput(listing, signals=tuple(signals), store=body.store))


def start_delivery(app: FastAPI, store: Store, settings: Settings, metrics: Metrics) -> None:
    """Send webhook deliveries from a thread of this server process (``serve --deliver-webhooks``)."""
    deliverer = Deliverer(store, settings, observe=metrics.observe_delivery)
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), name="counterscan-webhooks", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=30)
        deliverer.close()

    app.router.on_shutdown.append(halt)
