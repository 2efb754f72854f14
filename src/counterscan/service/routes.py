"""The service's HTTP routes beside the members' API (``service/members_api.py``): health, readiness
and metrics, webhooks, and the real-time check. Each concern is a router; ``api.create_app`` mounts them.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Body, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from counterscan.errors import PermissionDeniedError
from counterscan.records import Member
from counterscan.service.auth import Actor
from counterscan.service.check import (
    HASH_BITS,
    CheckInput,
    fetch_images,
    image_urls,
    listing_from_fields,
    parse_signals,
    store_check,
    visible,
)
from counterscan.service.dependencies import (
    CheckerDep,
    MetricsDep,
    Service,
    ServiceDep,
    SettingsDep,
    StoreDep,
    current_service,
)
from counterscan.service.ops import log_request, metrics_permitted
from counterscan.service.schemas import (
    CheckAnswerOut,
    NewWebhookOut,
    SignalsIn,
    WebhookDeliveryOut,
    WebhookIn,
    WebhookOut,
    refusals,
)
from counterscan.service.webhooks import Deliverer, add_webhook


async def observe_requests(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """The middleware that counts, times and logs every request (the app's ``service`` holds the metrics)."""
    service = current_service(request)
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
        service.metrics.requests.labels(method=request.method, route=route, status=str(status)).inc()
        service.metrics.request_seconds.labels(method=request.method, route=route).observe(elapsed)
        member = getattr(request.state, "member_name", None)
        log_request(
            service.access_log,
            method=request.method,
            route=route,
            path=request.url.path,
            status=status,
            seconds=elapsed,
            client=request.client.host if request.client else None,
            member=member,
            request_id=request_id,
        )


ops_router = APIRouter(include_in_schema=False)
"""Health, readiness and metrics: for load balancers and Prometheus, no key needed."""


@ops_router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "alive"}


@ops_router.get("/readyz")
def readyz(checker: CheckerDep) -> JSONResponse:
    state = checker.readiness()
    return JSONResponse(state, status_code=200 if state["ready"] else 503)


@ops_router.get("/metrics")
def metrics_endpoint(request: Request, settings: SettingsDep, metrics: MetricsDep, checker: CheckerDep) -> Response:
    client = request.client.host if request.client else None
    if not metrics_permitted(settings.metrics_allow, client):
        return Response("metrics are not served to this address\n", status_code=403, media_type="text/plain")
    checker.update_gauges()
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


webhooks_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=refusals(401, 429))
"""Members' endpoints: register, list, remove, and read the delivery log."""


@webhooks_router.post("", status_code=201, responses=refusals(400))
def create_webhook(
    member: Actor, body: Annotated[WebhookIn, Body()], store: StoreDep, settings: SettingsDep
) -> NewWebhookOut:
    hook, secret = add_webhook(
        store, settings, member, url=body.url, events=body.events, min_score=body.min_score, secret=body.secret
    )
    return NewWebhookOut.registered(hook, secret)


@webhooks_router.get("")
def list_webhooks(member: Actor, store: StoreDep) -> list[WebhookOut]:
    scope = None if member.is_analyst else member.member_id
    return [WebhookOut.of(hook) for hook in store.webhooks(member_id=scope)]


@webhooks_router.delete("/{webhook_id}", responses=refusals(403, 404))
def delete_webhook(webhook_id: int, member: Actor, store: StoreDep) -> WebhookOut:
    return WebhookOut.of(store.remove_webhook(webhook_id, member_id=member.member_id, actor=member.name))


@webhooks_router.get("/deliveries", responses=refusals(403))
async def delivery_log(
    member: Actor,
    store: StoreDep,
    status: str | None = None,
    webhook_id: int | None = None,
    limit: int = 100,
) -> list[WebhookDeliveryOut]:
    if member.is_marketplace:
        raise PermissionDeniedError("marketplace keys have no webhooks")
    scope = None if member.is_analyst else member.member_id
    found = await run_in_threadpool(
        store.deliveries, member_id=scope, webhook_id=webhook_id, status=status, limit=min(limit, 1000)
    )
    return [WebhookDeliveryOut.of(item) for item in found]


class CheckBodyCap:
    """ASGI middleware: the body of every ``/v1/check`` request is counted as it streams, and past
    ``cap`` bytes reading it ends in a 413, whether or not a Content-Length was sent (a chunked
    body declares none). Counted below the routes, so it holds for bodies FastAPI parses itself."""

    def __init__(self, app: ASGIApp, cap: int) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not str(scope.get("path", "")).startswith(check_router.prefix):
            await self.app(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.cap:
                    raise HTTPException(413, f"check: the body is over the cap of {self.cap} bytes")
            return message

        await self.app(scope, counted, send)


check_router = APIRouter(prefix="/v1/check", tags=["check"], responses=refusals(400, 401, 413, 422, 429, 503))
"""Real-time checks against the warm indexes of this server process."""


def _answer(service: Service, member: Member, item: CheckInput) -> CheckAnswerOut:
    """The answer from every matcher; or, when costly image matchers run on the check's images and
    ``check_costly_in_background`` is on, from the cheap ones at once (``pending``), the costly
    ones finishing on the service's background thread."""
    check_id = uuid.uuid4().hex
    costly = service.checker.costly_matchers() if item.images else []
    # A stored check joins the review queue at once, scored on all its evidence.
    later = bool(costly) and service.settings.check_costly_in_background and not item.store
    # A slot for the background, or the costly matchers run now: the queue never outgrows the cores.
    later = later and service.background_slots.acquire(blocking=False)
    answer = _assess(service, member, item, costly=not later, store_it=item.store)
    answer = answer.model_copy(update={"check_id": check_id, "status": "pending" if later else "complete"})
    if later:
        answer = answer.model_copy(update={"pending": costly})
    try:
        service.store.start_check(check_id, member.member_id, _stored(answer), status=answer.status)
        if later:
            service.background.submit(_complete, service, member, item, check_id)
    except BaseException:
        if later:
            service.background_slots.release()
        raise
    return answer


def _assess(service: Service, member: Member, item: CheckInput, *, costly: bool, store_it: bool) -> CheckAnswerOut:
    assessed, scorer = service.checker.check(
        item.listing, item.images, [(f"signals-{n}", found) for n, found in enumerate(item.signals, 1)], costly=costly
    )
    owned = {brand.brand_id for brand in service.store.brands(member_id=member.member_id)}
    if store_it:
        store_check(service.store, service.blobs, item, assessed, scorer=scorer)
    return visible(assessed, member, owned, scorer=scorer, item=item)


def _stored(answer: CheckAnswerOut) -> dict[str, object]:
    # As the route answers it: what does not apply is left out (exclude_unset), never null.
    return answer.model_dump(mode="json", exclude_unset=True)


def _complete(service: Service, member: Member, item: CheckInput, check_id: str) -> None:
    """A pending check's costly matchers, then its complete answer kept and announced (once)."""
    try:
        answer = _assess(service, member, item, costly=True, store_it=False)
    except Exception as exc:  # kept as the check's state: the asker reads why at GET /v1/check/{id}
        service.access_log.exception("check %s failed in the background", check_id)
        service.store.complete_check(check_id, {"check_id": check_id, "detail": str(exc)}, status="failed")
        return
    finally:
        service.background_slots.release()
    service.store.complete_check(check_id, _stored(answer.model_copy(update={"check_id": check_id})))


# The answers leave out (never null) what does not apply: evidence the key may not see, and "stored"
# when the check was not stored.
@check_router.post("", response_model_exclude_unset=True, responses=refusals(415))
async def check(
    request: Request,
    member: Actor,
    service: ServiceDep,
    store_it: Annotated[bool, Query(alias="store")] = False,
) -> CheckAnswerOut:
    """One listing as multipart/form-data (title, description, price, currency, seller_id and one or
    more ``images`` file parts) or as JSON with ``image_urls``; answers each suspected brand with
    its score (and, for the brand's owner or an analyst, the evidence)."""
    settings = service.settings
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
        urls = image_urls(body.get("image_urls"))
        if len(urls) > settings.check_max_images:
            raise HTTPException(413, f"check: more than {settings.check_max_images} images")
        listing = listing_from_fields(body, member)
        images = await run_in_threadpool(fetch_images, settings, urls)
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
    return await run_in_threadpool(_answer, service, member, item)


@check_router.get("/{check_id}", response_model_exclude_unset=True, responses=refusals(404))
async def check_state(check_id: str, member: Actor, service: ServiceDep) -> CheckAnswerOut:
    """A check's latest answer: ``pending`` while its costly matchers run, then ``complete``. Each
    key reads its own checks (an analyst every check)."""
    found = await run_in_threadpool(
        service.store.check_answer, check_id, None if member.is_analyst else member.member_id
    )
    if found is None:
        raise HTTPException(404, f"no check {check_id!r} of this key's member")
    status, answer = found
    if status == "failed":
        raise HTTPException(500, f"check {check_id} failed: {answer.get('detail', '')}")
    return CheckAnswerOut.model_validate(answer | {"status": status})


@check_router.post("/signals", response_model_exclude_unset=True)
async def check_signals(member: Actor, body: Annotated[SignalsIn, Body()], service: ServiceDep) -> CheckAnswerOut:
    """A listing with pre-computed image hashes (pHash, dHash, PDQ as hex) instead of images."""
    if len(body.images) > service.settings.check_max_images:
        raise HTTPException(413, f"check: more than {service.settings.check_max_images} images")
    listing = listing_from_fields(body.model_dump(exclude={"images", "store"}), member)
    signals = parse_signals(body.images, list(HASH_BITS))  # matchers not running ignore theirs
    item = CheckInput(listing, signals=tuple(signals), store=body.store)
    return await run_in_threadpool(_answer, service, member, item)


def start_delivery(app: FastAPI, service: Service) -> None:
    """Send webhook deliveries from a thread of this server process (``serve --deliver-webhooks``)."""
    deliverer = Deliverer(service.store, service.settings, observe=service.metrics.observe_delivery)
    stop = threading.Event()
    thread = threading.Thread(target=deliverer.run, args=(stop,), name="counterscan-webhooks", daemon=True)
    thread.start()

    def halt() -> None:
        stop.set()
        thread.join(timeout=30)
        deliverer.close()

    app.router.on_shutdown.append(halt)
