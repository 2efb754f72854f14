"""A self-contained HTML evidence report: one folder, thumbnails beside it, no network.

Per suspect: the listing's photo beside the matched asset (the matched region drawn when a
matcher gave one, in red; the boxes of words read in the photo, in blue), every reason, and the
price against the brand's MSRP.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from counterscan.errors import UserError
from counterscan.records import Suspect
from counterscan.review.links import web_link
from counterscan.store import BlobStore
from counterscan.store.protocols import ReviewDesk

THUMB = 320
STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;background:#fafafa}
h1{font-size:1.4rem} .suspect{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem;margin:1rem 0}
.pair{display:flex;gap:1rem;flex-wrap:wrap} figure{margin:0} figcaption{font-size:.8rem;color:#555}
img{max-width:320px;border:1px solid #ccc} .score{font-weight:bold;color:#b00}
table{border-collapse:collapse;font-size:.85rem} td,th{border-bottom:1px solid #eee;padding:.2rem .5rem;text-align:left}
"""


# Marks the page once every picture has loaded, so a browser check can tell (no network used).
LOAD_SCRIPT = (
    "window.addEventListener('load',()=>{document.body.dataset.images="
    "[...document.images].every(i=>i.complete&&i.naturalWidth>0)?'loaded':'broken'})"
)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


# Listings' text and URLs come from sellers: the page runs only its own script and style (by
# hash), loads only its own thumbnails, and cannot post or be re-based anywhere.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; img-src 'self' file: data:; style-src {_csp_hash(STYLE)}; "
    f"script-src {_csp_hash(LOAD_SCRIPT)}; base-uri 'none'; form-action 'none'"
)


def safe_link(url: str | None) -> str:
    """A link for an http(s) URL; any other scheme (javascript:, data:, file:) stays plain text."""
    if not url:
        return ""
    link = web_link(url)
    if link is None:
        return f'<span class="url">{html.escape(url)}</span>'
    return f'<a href="{html.escape(link)}" rel="noopener noreferrer nofollow">{html.escape(url)}</a>'


LOGO_COLOUR = (255, 0, 0)
WORD_COLOUR = (0, 90, 255)


def _outlines(evidence: Sequence[dict[str, Any]], sha256: str, best: dict[str, Any] | None) -> list[tuple[Any, Any]]:
    """Shapes to draw on a listing photo: the best evidence's matched region, and the boxes of
    every word read in this photo (OCR), each with its colour."""
    shapes: list[tuple[Any, Any]] = []
    region = (best or {}).get("details", {}).get("region")
    if region and (best or {}).get("image_sha256") in (None, sha256):
        shapes.append((region, LOGO_COLOUR))
    for item in evidence:
        if item.get("image_sha256") == sha256:
            shapes.extend((box, WORD_COLOUR) for box in item.get("details", {}).get("regions", []))
    return shapes


def _thumbnail(blobs: BlobStore, sha256: str, target: Path, shapes: Sequence[tuple[Any, Any]] = ()) -> str | None:
    try:
        image = Image.open(io.BytesIO(blobs.get(sha256))).convert("RGB")
    except (OSError, ValueError):
        return None
    draw = ImageDraw.Draw(image)
    for region, colour in shapes:
        points = [(float(x), float(y)) for x, y in region]
        if len(points) >= 2:
            draw.line([*points, points[0]], fill=colour, width=max(2, image.width // 150))
    image.thumbnail((THUMB, THUMB))
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, "JPEG", quality=85)
    return f"{target.parent.name}/{target.name}"


def _figure(path: str | None, caption: str) -> str:
    if path is None:
        return f"<figure><figcaption>{html.escape(caption)} (image unavailable)</figcaption></figure>"
    label = html.escape(caption)
    return f'<figure><img src="{html.escape(path)}" alt="{label}"><figcaption>{label}</figcaption></figure>'


def evidence_figures(
    detail: dict[str, Any], blobs: BlobStore, label: str, thumbs: Path, *, brand: str | None = None
) -> str:
    """The listing's photo (matched region and read words drawn) beside the brand asset it matched,
    as a ``<div class="pair">``; thumbnails written under ``thumbs``. ``detail`` is the store's
    ``listing_detail``; with ``brand``, that brand's evidence only."""
    listing_pk = detail["listing_pk"]
    evidence = [item for item in detail["evidence"] if brand is None or item["brand"] == brand]
    best = evidence[0] if evidence else None
    listing_sha = (best or {}).get("image_sha256") or next(
        (image["sha256"] for image in detail["images"] if image["sha256"]), None
    )
    figures = []
    if listing_sha:
        shapes = _outlines(evidence, listing_sha, best)
        path = _thumbnail(blobs, listing_sha, thumbs / f"listing-{listing_pk}.jpg", shapes)
        figures.append(_figure(path, f"listing {label}"))
    if best and best.get("asset_sha256"):
        path = _thumbnail(blobs, best["asset_sha256"], thumbs / f"asset-{best['asset_id']}.jpg")
        figures.append(_figure(path, f"{best['brand']} asset #{best['asset_id']}"))
    return f'<div class="pair">{"".join(figures)}</div>'


def evidence_rows(detail: dict[str, Any], *, brand: str | None = None) -> str:
    """Every reason of a listing (one brand's when given) as table rows."""
    return "".join(
        f"<tr><td>{html.escape(item['matcher'])}</td><td>{html.escape(item['brand'])}</td>"
        f"<td>{item['score']:.2f}</td><td>{html.escape(item['reason'])}</td></tr>"
        for item in detail["evidence"]
        if brand is None or item["brand"] == brand
    )


def write_page(out: Path, title: str, body: str) -> Path:
    """``out/index.html``: a page with the report's style, policy and load marker around ``body``."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>" + body + f"<script>{LOAD_SCRIPT}</script>" + "</body></html>",
        encoding="utf-8",
    )
    return page


def write_html(store: ReviewDesk, blobs: BlobStore, suspects: Sequence[Suspect], out: Path) -> Path:
    """Write ``out/index.html`` and ``out/thumbs/``; returns the page's path."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: the HTML report is a folder; give a folder path")
    thumbs = out / "thumbs"
    brands = {brand.name: brand for brand in store.brands()}
    sections = []

    for suspect in suspects:
        detail = store.listing_detail(suspect.listing_pk)
        pair = evidence_figures(detail, blobs, suspect.listing_id, thumbs)
        rows = evidence_rows(detail)
        price = f"{suspect.price:g} {html.escape(suspect.currency or '')}" if suspect.price is not None else "no price"
        profile = brands.get(suspect.brand or "")
        if profile is not None and profile.msrp is not None:
            price += f" (MSRP {profile.msrp:g} {html.escape(profile.currency or '')})"
        link = safe_link(suspect.url)
        sections.append(
            f'<section class="suspect" id="listing-{suspect.listing_pk}">'
            f"<h2>#{suspect.rank} {html.escape(suspect.title or suspect.listing_id)}</h2>"
            f'<p><span class="score">score {suspect.score:.2f}</span> · brand {html.escape(suspect.brand or "-")} · '
            f"{html.escape(suspect.source)}/{html.escape(suspect.listing_id)} · {price} · "
            f"status {suspect.status} {link}</p>"
            f"{pair}"
            f"<table><tr><th>matcher</th><th>brand</th><th>score</th><th>reason</th></tr>{rows}</table></section>"
        )
    return write_page(
        out,
        "counterscan evidence report",
        f"<h1>counterscan evidence report: {len(suspects)} suspects</h1>" + "".join(sections),
    )
