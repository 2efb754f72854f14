"""Takedown cases: read them, move them through their statuses, and write notice packets.

A confirmed counterfeit lands in its (marketplace, seller) case when its verdict is recorded (the
store files it in the same transaction); here are the rules around that: who may read and change a
case, which status may follow which (``records.CASE_TRANSITIONS``), and the notice packet a
marketplace receives (CSV, JSON and an HTML page with the evidence side by side).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from counterscan.errors import NotFoundError, PermissionDeniedError, UserError
from counterscan.records import CASE_STATUSES, CASE_TRANSITIONS, Case, CaseStatus, CaseSummary, Member
from counterscan.review.export import render_csv_rows
from counterscan.review.html_report import evidence_figures, evidence_rows, safe_link, write_page
from counterscan.store import BlobStore
from counterscan.store.protocols import CaseDesk

NOTICE_COLUMNS = (
    "case_id",
    "case_status",
    "marketplace",
    "seller_id",
    "seller_name",
    "listing_id",
    "source",
    "url",
    "title",
    "price",
    "currency",
    "brand",
    "rights_holder",
    "verdict",
    "analyst",
    "decided_at",
    "note",
    "score",
    "reason",
)
"""One row per confirmed counterfeit in a notice packet's CSV."""


def parse_status(status: str) -> CaseStatus:
    for known in CASE_STATUSES:
        if status == known:
            return known
    raise UserError(f"unknown case status {status!r} (one of {', '.join(CASE_STATUSES)})")


def visible_brands(store: CaseDesk, reader: Member | None) -> list[int] | None:
    """The brands whose listings ``reader`` may read in cases: all for an analyst (or a local CLI
    reader, None), a member's own otherwise."""
    if reader is None or reader.is_analyst:
        return None
    return [brand.brand_id for brand in store.brands(member_id=reader.member_id)]


def list_cases(
    store: CaseDesk, *, marketplace: str | None = None, status: str | None = None, reader: Member | None = None
) -> list[CaseSummary]:
    chosen = parse_status(status) if status is not None else None
    return store.cases(marketplace=marketplace, status=chosen, brand_ids=visible_brands(store, reader))


def show_case(store: CaseDesk, case_id: int, *, reader: Member | None = None) -> Case:
    brand_ids = visible_brands(store, reader)
    case = store.case(case_id, brand_ids=brand_ids)
    if brand_ids is not None and not case.listings:
        raise NotFoundError(f"unknown case {case_id}")  # a member never learns of other brands' cases
    return case


def set_status(store: CaseDesk, case_id: int, status: str, *, note: str | None, actor: Member) -> CaseSummary:
    """Move a case on (see ``CASE_TRANSITIONS``). Analysts may change any case; a member only a case
    whose every listing is of its own brands (a notice speaks for every rights holder in it)."""
    target = parse_status(status)
    case = store.case(case_id)
    if not actor.is_analyst:
        own = set(visible_brands(store, actor) or ())
        if not case.listings or any(listing.brand_id not in own for listing in case.listings):
            if not any(listing.brand_id in own for listing in case.listings):
                raise NotFoundError(f"unknown case {case_id}")
            raise PermissionDeniedError(
                f"member {actor.name!r} may not change case {case_id}: it holds listings of other members' brands"
            )
    current = case.summary.status
    allowed = CASE_TRANSITIONS.get(parse_status(current), ())
    if target not in allowed:
        following = ", ".join(allowed) or "nothing"
        raise UserError(f"case {case_id} is {current}: it may go to {following}, not {target}")
    return store.set_case_status(case_id, target, note=(note or "").strip() or None, actor=actor.name)


@dataclass(frozen=True)
class NoticePacket:
    folder: Path
    cases: int
    listings: int
    files: tuple[Path, ...]


def notice_rows(cases: Sequence[Case]) -> list[dict[str, Any]]:
    return [
        {
            "case_id": case.summary.case_id,
            "case_status": case.summary.status,
            "marketplace": case.summary.marketplace,
            "seller_id": case.summary.seller_id,
            "seller_name": case.summary.seller_name or "",
            "listing_id": listing.listing_id,
            "source": listing.source,
            "url": listing.url or "",
            "title": listing.title,
            "price": listing.price if listing.price is not None else "",
            "currency": listing.currency or "",
            "brand": listing.brand,
            "rights_holder": listing.rights_holder,
            "verdict": listing.verdict,
            "analyst": listing.analyst,
            "decided_at": listing.decided_at,
            "note": listing.note or "",
            "score": listing.score if listing.score is not None else "",
            "reason": listing.reason or "",
        }
        for case in cases
        for listing in case.listings
    ]


def export_notices(
    store: CaseDesk,
    blobs: BlobStore,
    *,
    marketplace: str,
    out: Path,
    actor: str,
    statuses: Sequence[str] = (),
) -> NoticePacket:
    """A notice packet for one marketplace: ``notices.csv``, ``notices.json`` and ``index.html`` (each
    listing's link, its photo beside the matched brand asset, the brand and its rights holder, the
    analyst's verdict and note) in ``out``. Default: the cases still to act on (open, reinstated)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: a notice packet is a folder; give a folder path")
    wanted = [parse_status(status) for status in statuses] or ["open", "reinstated"]
    summaries = [found for found in store.cases(marketplace=marketplace) if found.status in wanted]
    if not summaries:
        known = sorted({found.marketplace for found in store.cases()})
        raise NotFoundError(
            f"no {' or '.join(wanted)} cases on marketplace {marketplace!r}"
            + (f" (cases exist on: {', '.join(known)})" if known else " (no cases yet)")
        )
    cases = [store.case(found.case_id) for found in summaries]
    rows = notice_rows(cases)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / "notices.csv", out / "notices.json"
    csv_path.write_text(render_csv_rows(rows, NOTICE_COLUMNS), encoding="utf-8")
    packet = {
        "marketplace": marketplace,
        "cases": [
            asdict(case.summary) | {"listings": [asdict(listing) for listing in case.listings]} for case in cases
        ],
    }
    json_path.write_text(json.dumps(packet, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    page = write_page(out, f"takedown notice: {marketplace}", _notice_body(store, blobs, marketplace, cases, out))
    store.audit_case_export(
        [case.summary.case_id for case in cases], actor=actor, marketplace=marketplace, out=str(out)
    )
    return NoticePacket(out, len(cases), len(rows), (csv_path, json_path, page))


def _notice_body(store: CaseDesk, blobs: BlobStore, marketplace: str, cases: Sequence[Case], out: Path) -> str:
    thumbs = out / "thumbs"
    parts = [
        f"<h1>Takedown notice for {html.escape(marketplace)}</h1>"
        f"<p>{len(cases)} seller{'s' if len(cases) != 1 else ''}, "
        f"{sum(len(case.listings) for case in cases)} listings confirmed counterfeit by an analyst.</p>"
    ]
    for case in cases:
        summary = case.summary
        seller = html.escape(summary.seller_name or summary.seller_id or "unknown")
        if summary.seller_name and summary.seller_id and summary.seller_name != summary.seller_id:
            seller += f" ({html.escape(summary.seller_id)})"
        parts.append(
            f'<h2 id="case-{summary.case_id}">Case {summary.case_id}: seller {seller} · '
            f"{html.escape(summary.status)}</h2>"
        )
        for listing in case.listings:
            detail = store.listing_detail(listing.listing_pk)
            price = f"{listing.price:g} {html.escape(listing.currency or '')}" if listing.price is not None else ""
            note = f" · note: {html.escape(listing.note)}" if listing.note else ""
            parts.append(
                f'<section class="suspect" id="listing-{listing.listing_pk}-{listing.brand_id}">'
                f"<h3>{html.escape(listing.title or listing.listing_id)}</h3>"
                f"<p>{html.escape(listing.source)}/{html.escape(listing.listing_id)} · {price} · "
                f"{safe_link(listing.url) or 'no link'}</p>"
                f"<p>brand <b>{html.escape(listing.brand)}</b> · rights holder "
                f"<b>{html.escape(listing.rights_holder)}</b> · verdict <b>{html.escape(listing.verdict)}</b> by "
                f"{html.escape(listing.analyst)} on {html.escape(listing.decided_at[:10])}{note}</p>"
                + evidence_figures(detail, blobs, listing.listing_id, thumbs, brand=listing.brand)
                + "<table><tr><th>matcher</th><th>brand</th><th>score</th><th>reason</th></tr>"
                + evidence_rows(detail, brand=listing.brand)
                + "</table></section>"
            )
    return "".join(parts)
