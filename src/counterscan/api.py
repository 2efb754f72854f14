"""The members' HTTP API: brands and their assets, scan results, webhooks and real-time checks.

Served by ``counterscan serve``; every ``/v1`` route wants an API key. Members see and change only
their own brands; analysts read everything; marketplace keys check listings. Requests are
authenticated and authorised before an upload body is read, and an upload that is refused as a
whole (401, 403, 411, 413, 415) writes nothing.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

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
from counterscan.review.web.app import ReviewUI
from counterscan.service.dependencies import Service
from counterscan.service.docs import install_docs
from counterscan.service.members_api import members_router
from counterscan.service.routes import (
    CheckBodyCap,
    check_router,
    observe_requests,
    ops_router,
    start_delivery,
    webhooks_router,
)

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


def create_app(settings: Settings, *, deliver_webhooks: bool = False) -> FastAPI:
    service = Service.open(settings)
    app = FastAPI(
        title="counterscan members' API", version=__version__, description=__doc__, docs_url=None, redoc_url=None
    )
    app.state.service = service
    # Inside the request observer (middleware added first runs innermost): the cap's 413 is raised
    # where the route reads the body, so the app's exception handling answers it.
    app.add_middleware(CheckBodyCap, cap=settings.max_upload_bytes)
    app.middleware("http")(observe_requests)
    app.include_router(ops_router)
    app.include_router(members_router)
    app.include_router(webhooks_router)
    app.include_router(check_router)
    review = ReviewUI(settings, service.store, service.blobs)
    review.install(app)
    install_docs(app)
    checker = service.checker
    app.router.on_startup.append(checker.start)  # with the server, not at import: no thread outlives it
    app.router.on_shutdown.append(checker.stop)
    # The check in hand finishes; queued ones stay pending in the store (GET says so).
    app.router.on_shutdown.append(lambda: service.background.shutdown(wait=True, cancel_futures=True))
    if deliver_webhooks:
        start_delivery(app, service)

    @app.exception_handler(CounterscanError)
    async def counterscan_error(request: Request, exc: CounterscanError) -> JSONResponse | HTMLResponse:
        status = _status(exc)
        if request.url.path.startswith("/review"):
            return review.error_page(exc, status)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, RateLimitedError):
            headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=status, headers=headers)

    return app


DELIVER_ENV = "COUNTERSCAN_SERVE_DELIVER_WEBHOOKS"


def from_environment() -> FastAPI:
    """The app factory uvicorn calls in each worker process (``counterscan serve --workers N``).

    Worker processes are started by uvicorn, so they learn their settings from the environment that
    ``serve`` prepared (COUNTERSCAN_HOME, COUNTERSCAN_DB and the rest, as for any command).
    """
    return create_app(Settings.load(), deliver_webhooks=os.environ.get(DELIVER_ENV) == "1")
