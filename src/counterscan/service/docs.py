"""/docs served from a local copy of Swagger UI (the swagger-ui-bundle package): no CDN, works offline;
and the OpenAPI document as ``docs/openapi.json`` keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

# Swagger UI sets element styles from its script and draws icons as data: URLs.
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def install_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    assets = Path(swagger_ui_bundle.swagger_ui_path)
    app.mount("/docs/assets", StaticFiles(directory=assets), name="swagger-assets")
    app.mount("/docs/static", StaticFiles(directory=Path(__file__).parent / "static"), name="docs-static")
    title = f"{app.title} - API docs"

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        page = (
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{title}</title>"
            '<link rel="stylesheet" href="/docs/assets/swagger-ui.css">'
            '<script src="/docs/assets/swagger-ui-bundle.js"></script>'
            '<script src="/docs/static/docs.js"></script>'
            f'</head><body data-openapi="{openapi_url}"><div id="swagger-ui"></div></body></html>'
        )
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff"})


def openapi_text(app: FastAPI) -> str:
    """The app's OpenAPI document, written the same way every time: sorted keys, two-space indents."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
