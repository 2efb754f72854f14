"""The members' HTTP API: brands, asset uploads and deletions, scan results. API-key auth.

Served by ``counterscan serve``. Members see and change only their own brands; analysts read
everything. Requests are authenticated and authorised before an upload body is read, and an
upload that is refused as a whole (401, 403, 411, 413, 415) writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from counterscan import __version__
from counterscan.config import Settings
from counterscan.errors import (
    AuthenticationError,
    CounterscanError,
    DataError,
    ExternalError,
    ImageDecodeError,
    ImageTooLargeError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from counterscan.matchers import image_matchers
from counterscan.ranking.ranker import cold_start_scores
from counterscan.records import Brand, Member
from counterscan.registry.assets import UploadReport, add_upload_bytes, remove_asset, upload_limits
from counterscan.registry.members import AuthPolicy, require_owner, require_reader
from counterscan.registry.uploads import UploadFile
from counterscan.review.web.app import ReviewUI
from counterscan.service.auth import Actor
from counterscan.service.checker import Checker
from counterscan.service.docs import install_docs
from counterscan.service.ops import Metrics
from counterscan.service.routes import install_check, install_ops, install_webhooks, start_delivery
from counterscan.store import BlobStore, Store

MAX_FILES_PER_REQUEST = 1000
MAX_ID = 2**63 - 1

STATUS_BY_ERROR: tuple[tuple[type[CounterscanError], int], ...] = (
    (RateLimitedError, 429),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (NotFoundError, 404),
    (ImageTooLargeError, 413),
    (ImageDecodeError, 415),
    (DataError, 422),
    (ExternalError, 503),
    (CounterscanError, 400),
)


def _status(error: CounterscanError) -> int:
    return next(status for kind, status in STATUS_BY_ERROR if isinstance(error, kind))


def _report(report: UploadReport) -> dict[str, Any]:
    return {
        "added": [asdict(asset) for asset in report.added],
        "already_present": [asdict(asset) for asset in report.already_present],
        "rejected": [asdict(item) for item in report.rejected],
    }


def create_app(settings: Settings, *, deliver_webhooks: bool = False) -> FastAPI:
    store = Store.open(settings.database_url, upgrade_scorer=cold_start_scores)
    blobs = BlobStore(settings.blob_dir)
    matchers = image_matchers(settings)
    limits = upload_limits(settings)
    app = FastAPI(
        title="counterscan members' API", version=__version__, description=__doc__, docs_url=None, redoc_url=None
    )
    app.state.store = store
    metrics = Metrics(store)
    app.state.metrics = metrics
    install_ops(app, settings, metrics)
    install_webhooks(app, store, settings)
    app.state.auth_policy = AuthPolicy.of(settings)
    review = ReviewUI(settings, store, blobs)
    review.install(app)
    install_docs(app)
    # Each server process keeps its own warm indexes, loaded in the background (see /readyz).
    checker = Checker(store, settings, metrics)
    app.state.checker = checker
    app.state.before_metrics = [checker.update_gauges]
    install_check(app, store, settings, checker)
    app.router.on_startup.append(checker.start)  # with the server, not at import: no thread outlives it
    app.router.on_shutdown.append(checker.stop)
    if deliver_webhooks:
        start_delivery(app, store, settings, metrics)

    @app.exception_handler(CounterscanError)
    async def counterscan_error(request: Request, exc: CounterscanError) -> JSONResponse | HTMLResponse:
        status = _status(exc)
        if request.url.path.startswith("/review"):
            return review.error_page(exc, status)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    def readable(member: Member) -> Callable[[Brand], bool]:
        return lambda brand: member.is_analyst or brand.member == member.name

    @app.get("/v1/me")
    def me(member: Actor) -> dict[str, Any]:
        return asdict(member)

    @app.get("/v1/brands")
    def list_brands(member: Actor) -> list[dict[str, Any]]:
        return [asdict(brand) for brand in store.brands() if readable(member)(brand)]

    @app.get("/v1/brands/{brand}")
    def show_brand(brand: str, member: Actor) -> dict[str, Any]:
        found = store.brand(brand)
        require_reader(member, found)
        return asdict(found)

    @app.get("/v1/brands/{brand}/assets")
    def list_assets(brand: str, member: Actor, history: bool = False) -> list[dict[str, Any]]:
        require_reader(member, store.brand(brand))
        return [asdict(asset) for asset in store.assets(brand, include_removed=history)]

    @app.post("/v1/brands/{brand}/assets", status_code=201)
    async def upload_assets(brand: str, request: Request, member: Actor) -> dict[str, Any]:
        """Multipart upload: one or more ``files`` (images or zip archives) and a ``kind`` field."""
        target = await run_in_threadpool(store.brand, brand)
        require_owner(member, target)
        declared = request.headers.get("content-length")
        if declared is None or not declared.isdigit():
            raise HTTPException(411, "an upload needs a Content-Length")
        if int(declared) > settings.max_upload_bytes:
            raise HTTPException(413, f"upload of {declared} bytes is over the cap of {settings.max_upload_bytes}")
        form = await request.form(max_files=MAX_FILES_PER_REQUEST, max_fields=10)
        kind = str(form.get("kind") or "product")
        files = [
            UploadFile(name=item.filename or "upload", data=await item.read())
            for item in form.getlist("files")
            if isinstance(item, StarletteUpload)
        ]
        await form.close()
        if not files:
            raise HTTPException(400, "no files: send them as multipart field 'files'")
        report = await run_in_threadpool(
            add_upload_bytes, store, blobs, limits, matchers, member, brand=target.name, kind=kind, files=files
        )
        if not report.accepted_any:
            status = 413 if any(item.kind == "too-large" for item in report.rejected) else 415
            raise HTTPException(status, detail=_report(report))
        return _report(report)

    @app.delete("/v1/assets/{asset_id}")
    def delete_asset(asset_id: int, member: Actor) -> dict[str, Any]:
        if not 0 < asset_id <= MAX_ID:  # the store's ids are 64-bit: anything past them cannot exist
            raise NotFoundError(f"no asset {asset_id}")
        return asdict(remove_asset(store, member, asset_id))

    @app.get("/v1/results")
    def results(
        member: Actor,
        brand: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """Ranked suspects for the member's own brands (analysts: all brands)."""
        visible = [found for found in store.brands() if readable(member)(found)]
        if brand is not None:
            chosen = store.brand(brand)
            require_reader(member, chosen)
            visible = [chosen]
        suspects = store.suspects(limit=limit, brand_ids=[found.brand_id for found in visible])
        return [asdict(suspect) for suspect in suspects]

    return app


DELIVER_ENV = "COUNTERSCAN_SERVE_DELIVER_WEBHOOKS"


def from_environment() -> FastAPI:
    """The app factory uvicorn calls in each worker process (``counterscan serve --workers N``).

    Worker processes are started by uvicorn, so they learn their settings from the environment that
    ``serve`` prepared (COUNTERSCAN_HOME, COUNTERSCAN_DB and the rest, as for any command).
    """
    return create_app(Settings.load(), deliver_webhooks=os.environ.get(DELIVER_ENV) == "1")
