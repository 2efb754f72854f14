"""The review web UI: routes under /review, server-rendered with Jinja2, beside the members' API.

Sign-in takes an API key and gives a signed, HttpOnly, SameSite=Strict session cookie; every form
carries the session's CSRF token. Members see and judge only their own brands' suspects; analysts
see everything. Every verdict, single or bulk, is audited with the signed-in name.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from PIL import Image, UnidentifiedImageError
from starlette.concurrency import run_in_threadpool

from counterscan.config import Settings
from counterscan.errors import (
    AuthenticationError,
    CounterscanError,
    DataError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from counterscan.records import (
    CASE_STATUSES,
    CASE_TRANSITIONS,
    SUSPECT_STATUSES,
    VERDICTS,
    Brand,
    Member,
    VerdictLabel,
)
from counterscan.registry.members import AuthPolicy, authenticate_key, authenticate_key_hash, hash_api_key
from counterscan.review import cases
from counterscan.review.links import web_link
from counterscan.review.to_label import to_label
from counterscan.review.web import session as sessions
from counterscan.review.web.words import matcher_label, plain_reason
from counterscan.store import BlobStore
from counterscan.store.protocols import ReviewSite
from counterscan.store.queue import QUEUE_SORTS, QueueFilter, QueueSort, SuspectKey
from counterscan.store.reviewui import QueueRow

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 50
FLASH_NAMES = 5
"""A verdict's confirmation names up to this many listings."""
TO_LABEL_DEFAULT, TO_LABEL_MAX = 20, 200
MARKETPLACES_TTL_S = 60.0
THUMB_PX = 160
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SignInNeededError(Exception):
    """No valid session: pages send the browser to the sign-in form."""


@dataclass(frozen=True)
class Reader:
    member: Member
    session: sessions.Session
    brands: tuple[Brand, ...]
    """The brands this reader may see: their own, or every brand for an analyst."""

    @property
    def brand_ids(self) -> tuple[int, ...] | None:
        return None if self.member.is_analyst else tuple(brand.brand_id for brand in self.brands)

    def may_see(self, brand_id: int) -> bool:
        return any(brand.brand_id == brand_id for brand in self.brands)


def _parse_key(text: str) -> SuspectKey:
    listing, _, brand = text.partition(":")
    try:
        return int(listing), int(brand)
    except ValueError:
        raise DataError(f"bad suspect key {text!r} (LISTING:BRAND)") from None


def _parse_float(name: str, value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        number = float(value)
    except ValueError:
        raise DataError(f"filter {name}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise DataError(f"filter {name}: {value!r} is not a finite number")
    return number


def _parse_date(name: str, value: str | None) -> date | None:
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise DataError(f"filter {name}: {value!r} is not a date (YYYY-MM-DD)") from None


def _safe_back(target: str | None, default: str = "/review/") -> str:
    # Only our own pages: an open redirect would let a link bounce the analyst anywhere.
    if target and target.startswith("/review") and not target.startswith("//"):
        return target
    return default


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time()).astimezone()


def _fmt_price(value: float | None, currency: str | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.2f} {currency or ''}".strip()


def _day(value: str) -> str:
    return value[:10] if value else ""


def _moment(value: str) -> str:
    return value[:16].replace("T", " ") if value else ""


def _score_class(score: float) -> str:
    return "high" if score >= 0.8 else "mid" if score >= 0.5 else "low"


class ReviewUI:
    """The review UI's pages over one store; attach to an app with :meth:`install`."""

    def __init__(self, settings: Settings, store: ReviewSite, blobs: BlobStore) -> None:
        self.settings = settings
        self.store = store
        self.blobs = blobs
        self.secret = sessions.session_secret(settings.session_secret, settings.home)
        self.thumbs = settings.home / "thumbs"
        self.templates = Environment(
            loader=PackageLoader("counterscan.review.web", "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters.update(
            price=_fmt_price,
            day=_day,
            moment=_moment,
            score_class=_score_class,
            matcher=matcher_label,
            web_link=web_link,
        )
        self.templates.globals.update(plain_reason=plain_reason, statuses=SUSPECT_STATUSES, verdicts=VERDICTS)
        self._sizes: dict[str, tuple[int, int] | None] = {}
        self._marketplaces: tuple[float, list[str]] = (0.0, [])

    # -- plumbing ------------------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        app.mount("/review/static", StaticFiles(directory=STATIC), name="review-static")
        app.include_router(self.router())

        @app.exception_handler(SignInNeededError)
        async def sign_in(request: Request, _exc: SignInNeededError) -> Response:
            if request.method == "GET":
                return RedirectResponse("/review/login?" + urlencode({"next": request.url.path}), status_code=303)
            return self.render("error.html", {"status": 401, "message": "sign in first"}, status=401)

    def render(self, name: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
        body = self.templates.get_template(name).render(**context)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)

    def error_page(self, error: CounterscanError, status: int) -> HTMLResponse:
        return self.render("error.html", {"status": status, "message": str(error)}, status=status)

    def reader(self, request: Request) -> Reader:
        found = sessions.decode_session(self.secret, request.cookies.get(sessions.COOKIE))
        if found is None:
            raise SignInNeededError
        try:
            member = authenticate_key_hash(self.store, found.member, found.key_hash)
        except AuthenticationError:
            raise SignInNeededError from None
        brands = self.store.brands() if member.is_analyst else self.store.brands(member_id=member.member_id)
        return Reader(member=member, session=found, brands=tuple(brands))

    def base(self, reader: Reader, request: Request, **values: Any) -> dict[str, Any]:
        return {
            "reader": reader,
            "csrf": reader.session.csrf,
            "path": request.url.path,
            "done_listings": request.query_params.get("listings"),
            "done": request.query_params.get("done"),
            "done_verdict": request.query_params.get("verdict"),
            **values,
        }

    async def form(self, request: Request, reader: Reader) -> Any:
        form = await request.form(max_fields=20_000)
        if not sessions.csrf_matches(reader.session.csrf, form.get("csrf")):
            raise PermissionDeniedError("the form's CSRF token is missing or wrong; reload the page and try again")
        return form

    def marketplaces(self) -> list[str]:
        """The marketplace filter's choices, read at most once a minute: listing every distinct
        marketplace scans the listings table (about 0.3 s at 100k listings on SQLite)."""
        read_at, names = self._marketplaces
        if time.monotonic() - read_at > MARKETPLACES_TTL_S:
            names = self.store.marketplaces()
            self._marketplaces = (time.monotonic(), names)
        return names

    def picture_size(self, sha256: str) -> tuple[int, int] | None:
        if sha256 not in self._sizes:
            try:
                with Image.open(self.blobs.path(sha256)) as image:
                    self._sizes[sha256] = image.size
            except (OSError, UnidentifiedImageError):
                self._sizes[sha256] = None
        return self._sizes[sha256]

    # -- the queue -----------------------------------------------------------------------------

    def queue_filter(self, reader: Reader, params: Any) -> tuple[QueueFilter, dict[str, str]]:
        shown = {
            name: str(params.get(name) or "").strip()
            for name in ("brand", "marketplace", "seller", "status", "min_score", "max_score", "since", "until", "sort")
        }
        brand_id = None
        if shown["brand"]:
            try:
                brand_id = int(shown["brand"])
            except ValueError:
                raise DataError(f"filter brand: {shown['brand']!r} is not a brand id") from None
            if not reader.may_see(brand_id):
                raise PermissionDeniedError(f"member {reader.member.name!r} may not read brand {brand_id}")
        if shown["status"] and shown["status"] not in SUSPECT_STATUSES:
            raise DataError(f"filter status: {shown['status']!r} is not one of {', '.join(SUSPECT_STATUSES)}")
        sort: QueueSort = "score"
        for known in QUEUE_SORTS:
            if shown["sort"] == known:
                sort = known
        since = _parse_date("since", shown["since"])
        until = _parse_date("until", shown["until"])
        spec = QueueFilter(
            brand_ids=reader.brand_ids,
            brand_id=brand_id,
            marketplace=shown["marketplace"] or None,
            seller_id=shown["seller"] or None,
            statuses=(shown["status"],) if shown["status"] else (),
            min_score=_parse_float("min_score", shown["min_score"]),
            max_score=_parse_float("max_score", shown["max_score"]),
            since=None if since is None else datetime.combine(since, datetime.min.time()).astimezone(),
            until=None
            if until is None
            else datetime.combine(until + timedelta(days=1), datetime.min.time()).astimezone(),
            sort=sort,
        )
        return spec, {name: value for name, value in shown.items() if value}

    def queue(self, request: Request) -> HTMLResponse:
        reader = self.reader(request)
        spec, shown = self.queue_filter(reader, request.query_params)
        after = request.query_params.get("after") or None
        page = self.store.queue_page(spec, after=after, limit=PAGE_SIZE)
        query = urlencode(shown)
        next_url = None
        if page.next_cursor:
            next_url = "/review/?" + urlencode({**shown, "after": page.next_cursor})
        here = "/review/?" + urlencode({**shown, **({"after": after} if after else {})})
        return self.render(
            "queue.html",
            self.base(
                reader,
                request,
                page=page,
                filters=shown,
                query=query,
                next_url=next_url,
                first_url="/review/?" + query if after else None,
                here=here,
                marketplaces=self.marketplaces(),
                sorts=QUEUE_SORTS,
                focus=request.query_params.get("focus", "0"),
            ),
        )

    # -- one suspect ---------------------------------------------------------------------------

    def suspect(self, request: Request, listing_pk: int, brand_id: int) -> HTMLResponse:
        reader = self.reader(request)
        key = (listing_pk, brand_id)
        if not reader.may_see(brand_id):
            raise PermissionDeniedError(f"member {reader.member.name!r} may not read brand {brand_id}")
        row = self.store.suspect_row(key)
        if row is None:
            raise NotFoundError(f"listing {listing_pk} is no suspect for brand {brand_id}")
        brand = next(found for found in reader.brands if found.brand_id == brand_id)
        detail = self.store.listing_detail(listing_pk)
        evidence = [item for item in detail["evidence"] if item["brand"] == brand.name]
        spec, shown = self.queue_filter(reader, request.query_params)
        before, after = self.store.queue_neighbours(spec, key)
        query = urlencode(shown)

        def link(target: SuspectKey | None) -> str | None:
            return None if target is None else f"/review/suspects/{target[0]}/{target[1]}?{query}"

        pictures = [image["sha256"] for image in detail["images"] if image["sha256"]]
        seller_suspects: Sequence[QueueRow] = ()
        if row.seller_id:
            others = self.store.queue_page(QueueFilter(brand_ids=reader.brand_ids, seller_id=row.seller_id), limit=21)
            seller_suspects = [other for other in others.rows if other.key != key][:20]
        shared = self.store.shared_pictures(pictures, other_than_seller=row.seller_id, limit=50)
        shared = [item for item in shared if item.listing_pk != listing_pk]
        if reader.brand_ids is not None:
            shared = self._visible_shared(reader, shared)  # members never read other brands' listings
        return self.render(
            "suspect.html",
            self.base(
                reader,
                request,
                row=row,
                brand=brand,
                detail=detail,
                comparisons=self.comparisons(evidence, pictures),
                evidence=evidence,
                prices=self.price_history(detail["price_history"], brand),
                seller_suspects=seller_suspects,
                shared=shared,
                history=self.store.verdict_history(key),
                prev_url=link(before),
                next_url=link(after),
                queue_url="/review/?" + query,
                here=f"/review/suspects/{listing_pk}/{brand_id}?{query}",
            ),
        )

    def _visible_shared(self, reader: Reader, shared: list[Any]) -> list[Any]:
        keys = {(item.listing_pk, brand.brand_id) for item in shared for brand in reader.brands}
        allowed = {pk for pk, _ in self.store.existing_suspects(keys)}
        return [item for item in shared if item.listing_pk in allowed]

    def comparisons(self, evidence: Sequence[dict[str, Any]], pictures: Sequence[str]) -> list[dict[str, Any]]:
        """Listing photo beside matched asset, with every drawn region and text box, one pair per photo."""
        by_picture: dict[str, dict[str, Any]] = {}
        for item in evidence:
            picture = item.get("image_sha256")
            if not picture:
                continue
            pair = by_picture.setdefault(picture, {"picture": picture, "assets": [], "shapes": []})
            if item.get("asset_sha256") and item["asset_sha256"] not in {a["sha256"] for a in pair["assets"]}:
                pair["assets"].append({"sha256": item["asset_sha256"], "asset_id": item["asset_id"]})
            pair["shapes"].extend(_shapes(item))
        if not by_picture and pictures:
            by_picture[pictures[0]] = {"picture": pictures[0], "assets": [], "shapes": []}
        pairs = []
        for pair in by_picture.values():
            size = self.picture_size(pair["picture"])
            pair["size"] = size
            pair["shapes"] = [shape for shape in pair["shapes"] if size is not None]
            pairs.append(pair)
        return pairs

    @staticmethod
    def price_history(history: Sequence[dict[str, Any]], brand: Brand) -> dict[str, Any]:
        rows = []
        for entry in history:
            price = entry.get("price")
            ratio = None
            if price is not None and brand.msrp and (entry.get("currency") or brand.currency) == brand.currency:
                ratio = price / brand.msrp
            rows.append({**entry, "ratio": ratio})
        points = [row["price"] for row in rows if row["price"] is not None]
        chart = None
        if points and brand.msrp:
            top = max([*points, brand.msrp]) * 1.1
            width, height = 320, 90
            step = width / max(len(points) - 1, 1)
            line = " ".join(
                f"{index * step:.1f},{height - price / top * height:.1f}" for index, price in enumerate(points)
            )
            chart = {
                "width": width,
                "height": height,
                "line": line,
                "single": len(points) == 1,
                "first_y": height - points[0] / top * height,
                "msrp_y": height - brand.msrp / top * height,
            }
        return {"rows": rows, "chart": chart, "msrp": brand.msrp, "currency": brand.currency}

    # -- sellers -------------------------------------------------------------------------------

    def seller(self, request: Request, seller_id: str) -> HTMLResponse:
        reader = self.reader(request)
        listings = self.store.seller_listings(seller_id, reader.brand_ids)
        suspects = [item for item in listings if item["brand_id"] is not None]
        if not reader.member.is_analyst:
            if not suspects:
                raise NotFoundError(f"no suspects of your brands from seller {seller_id!r}")
            listings = suspects  # a member reads a seller through their own brands' suspects only
        if not listings:
            raise NotFoundError(f"unknown seller {seller_id!r}")
        pictures = self.store.listing_pictures([item["listing_pk"] for item in listings])
        shared = self.store.shared_pictures(
            {sha for shas in pictures.values() for sha in shas}, other_than_seller=seller_id, limit=200
        )
        if reader.brand_ids is not None:
            shared = self._visible_shared(reader, shared)
        return self.render(
            "seller.html",
            self.base(
                reader,
                request,
                seller_id=seller_id,
                seller_name=next((item["seller_name"] for item in listings if item["seller_name"]), seller_id),
                listings=listings,
                suspects=suspects,
                counts={status: sum(1 for item in suspects if item["status"] == status) for status in SUSPECT_STATUSES},
                shared=shared,
                here=f"/review/sellers/{seller_id}",
            ),
        )

    # -- verdicts ------------------------------------------------------------------------------

    async def verdicts(self, request: Request) -> Response:
        reader = await run_in_threadpool(self.reader, request)
        form = await self.form(request, reader)
        verdict = str(form.get("verdict") or "")
        scope = str(form.get("scope") or "one")
        picked = [str(value) for value in form.getlist("key")]
        if form.get("pick"):  # a row's own button: "VERDICT|LISTING:BRAND", whatever else is ticked
            verdict, _, key = str(form.get("pick")).partition("|")
            scope, picked = "one", [key]
        chosen: VerdictLabel | None = next((label for label in VERDICTS if label == verdict), None)
        if chosen is None:
            raise DataError(f"unknown verdict {verdict!r} (one of {', '.join(VERDICTS)})")
        note = str(form.get("note") or "").strip() or None
        if scope in ("one", "selection"):
            keys = sorted({_parse_key(value) for value in picked})
            if not keys:
                raise DataError("no suspects chosen: tick at least one row")
            refused = sorted({brand for _, brand in keys if not reader.may_see(brand)})
            if refused:
                raise PermissionDeniedError(
                    f"member {reader.member.name!r} may not judge suspects of brand(s) {', '.join(map(str, refused))}"
                )
            if reader.member.is_analyst:  # an analyst may judge a clean listing for a brand (to label)
                missing = set(keys) - set(await run_in_threadpool(self.store.suspect_names, keys))
            else:
                missing = set(keys) - await run_in_threadpool(self.store.existing_suspects, keys)
            if missing:
                shown = ", ".join(f"{pk}:{brand}" for pk, brand in sorted(missing))
                raise NotFoundError(f"no such suspect(s): {shown}")
        elif scope == "seller":
            seller = str(form.get("seller") or "")
            if not seller:
                raise DataError("a seller verdict needs the seller's id")
            keys = await run_in_threadpool(
                self.store.queue_keys, QueueFilter(brand_ids=reader.brand_ids, seller_id=seller)
            )
        elif scope == "picture":
            picture = str(form.get("picture") or "")
            if not picture:
                raise DataError("a picture verdict needs the picture's sha256")
            keys = await run_in_threadpool(
                self.store.queue_keys, QueueFilter(brand_ids=reader.brand_ids, image_sha256=picture)
            )
        else:
            raise DataError(f"unknown scope {scope!r} (one, selection, seller or picture)")
        if not keys:
            raise NotFoundError("no suspects you may judge matched that choice")
        analyst = reader.member.name
        count = await run_in_threadpool(
            lambda: len(self.store.record_suspect_verdicts(keys, verdict=chosen, note=note, analyst=analyst, via=scope))
        )
        names = sorted((await run_in_threadpool(self.store.suspect_names, keys[: FLASH_NAMES + 1])).values())
        shown = ", ".join(names[:FLASH_NAMES]) + (f" and {count - FLASH_NAMES} more" if count > FLASH_NAMES else "")
        back = _safe_back(str(form.get("back") or ""))
        separator = "&" if "?" in back else "?"
        extra = {"done": str(count), "verdict": chosen, "listings": shown}
        if form.get("focus"):
            extra["focus"] = str(form.get("focus"))
        return RedirectResponse(back + separator + urlencode(extra), status_code=303)

    # -- to label: the verdicts that teach the ranker most ---------------------------------------

    def to_label(self, request: Request) -> HTMLResponse:
        reader = self.reader(request)
        if not reader.member.is_analyst:
            raise PermissionDeniedError("only analysts train the ranker: the listings to label are theirs to judge")
        count = int(_parse_float("n", request.query_params.get("n")) or TO_LABEL_DEFAULT)
        count = max(1, min(count, TO_LABEL_MAX))
        brand_id = request.query_params.get("brand") or ""
        brand = next((found for found in reader.brands if str(found.brand_id) == brand_id), None)
        requests = to_label(self.store, count, brand=brand.name if brand else None)
        pictures = self.store.listing_pictures([request.suspect.listing_pk for request in requests])
        shown = {"n": str(count), **({"brand": str(brand.brand_id)} if brand else {})}
        return self.render(
            "to_label.html",
            self.base(
                reader,
                request,
                requests=requests,
                pictures={pk: shas[0] for pk, shas in pictures.items() if shas},
                count=count,
                chosen_brand=brand,
                here="/review/to-label?" + urlencode(shown),
            ),
        )

    # -- takedown cases ------------------------------------------------------------------------

    def cases_page(self, request: Request) -> HTMLResponse:
        reader = self.reader(request)
        status = request.query_params.get("status") or None
        marketplace = request.query_params.get("marketplace") or None
        found = cases.list_cases(self.store, marketplace=marketplace, status=status, reader=reader.member)
        return self.render(
            "cases.html",
            self.base(
                reader,
                request,
                cases=found,
                case_statuses=CASE_STATUSES,
                filters={"status": status or "", "marketplace": marketplace or ""},
                marketplaces=sorted({case.marketplace for case in cases.list_cases(self.store, reader=reader.member)}),
            ),
        )

    def case_page(self, request: Request, case_id: int) -> HTMLResponse:
        reader = self.reader(request)
        case = cases.show_case(self.store, case_id, reader=reader.member)
        status = case.summary.status
        return self.render(
            "case.html",
            self.base(
                reader,
                request,
                case=case,
                next_statuses=CASE_TRANSITIONS.get(cases.parse_status(status), ()),
                changed=request.query_params.get("changed"),
            ),
        )

    async def case_status(self, request: Request, case_id: int) -> Response:
        reader = await run_in_threadpool(self.reader, request)
        form = await self.form(request, reader)
        status = str(form.get("status") or "")
        note = str(form.get("note") or "")
        summary = await run_in_threadpool(
            lambda: cases.set_status(self.store, case_id, status, note=note, actor=reader.member)
        )
        return RedirectResponse(f"/review/cases/{case_id}?" + urlencode({"changed": summary.status}), status_code=303)

    # -- sign-in -------------------------------------------------------------------------------

    def login_form(self, request: Request, *, message: str | None = None, status: int = 200) -> HTMLResponse:
        token = sessions.new_session("", "").csrf
        response = self.render(
            "login.html",
            {"csrf": token, "next": _safe_back(request.query_params.get("next")), "message": message, "reader": None},
            status=status,
        )
        response.set_cookie(
            sessions.LOGIN_COOKIE,
            sessions.seal(self.secret, {"c": token}),
            max_age=1800,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/review",
        )
        return response

    async def login(self, request: Request) -> Response:
        form = await request.form(max_fields=10)
        pending = sessions.unseal(self.secret, request.cookies.get(sessions.LOGIN_COOKIE)) or {}
        if not sessions.csrf_matches(str(pending.get("c") or ""), form.get("csrf")):
            return self.login_form(request, message="the sign-in form expired; try again", status=403)
        key = str(form.get("api_key") or "").strip()
        try:
            client = f"http:{request.client.host}" if request.client else "http:unknown"
            policy = AuthPolicy.of(self.settings)
            member = await run_in_threadpool(authenticate_key, self.store, key, client=client, policy=policy)
        except AuthenticationError as exc:
            # Throttled, revoked and expired keys say so; anything else is just unknown.
            message = str(exc) if isinstance(exc, RateLimitedError) or "API key cs_" in str(exc) else "unknown API key"
            return self.login_form(request, message=message, status=429 if isinstance(exc, RateLimitedError) else 401)
        found = sessions.new_session(member.name, hash_api_key(key))
        response = RedirectResponse(_safe_back(str(form.get("next") or "")), status_code=303)
        response.set_cookie(
            sessions.COOKIE,
            sessions.encode_session(self.secret, found),
            max_age=sessions.LIFETIME_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        response.delete_cookie(sessions.LOGIN_COOKIE, path="/review")
        return response

    async def logout(self, request: Request) -> Response:
        reader = await run_in_threadpool(self.reader, request)
        await self.form(request, reader)
        response = RedirectResponse("/review/login", status_code=303)
        response.delete_cookie(sessions.COOKIE, path="/")
        return response

    # -- pictures ------------------------------------------------------------------------------

    def picture(self, request: Request, sha256: str, size: str) -> Response:
        reader = self.reader(request)
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFoundError("no such picture")
        if reader.brand_ids is not None and not self.store.picture_visible(sha256, reader.brand_ids):
            raise PermissionDeniedError("that picture belongs to no suspect or asset of your brands")
        if sha256 not in self.blobs:
            raise NotFoundError("picture not in the image cache")
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if size != "thumb":
            data = self.blobs.get(sha256)
            kind = _image_type(data)
            return Response(data, media_type=kind, headers=headers)
        target = self.thumbs / sha256[:2] / f"{sha256}.jpg"
        if not target.exists():
            try:
                with Image.open(io.BytesIO(self.blobs.get(sha256))) as image:
                    image.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
                    small = image.convert("RGB")
                    small.thumbnail((THUMB_PX, THUMB_PX))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    partial = target.with_suffix(".part")
                    small.save(partial, "JPEG", quality=82)
                    partial.replace(target)
            except (OSError, UnidentifiedImageError):
                raise NotFoundError("the picture cannot be decoded") from None
        return Response(target.read_bytes(), media_type="image/jpeg", headers=headers)

    # -- routes --------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        router = APIRouter(prefix="/review", include_in_schema=False)

        @router.get("/login")
        def login_page(request: Request) -> HTMLResponse:
            return self.login_form(request)

        @router.post("/login")
        async def login(request: Request) -> Response:
            return await self.login(request)

        @router.post("/logout")
        async def logout(request: Request) -> Response:
            return await self.logout(request)

        @router.get("/")
        def queue(request: Request) -> HTMLResponse:
            return self.queue(request)

        @router.get("/suspects/{listing_pk}/{brand_id}")
        def suspect(request: Request, listing_pk: int, brand_id: int) -> HTMLResponse:
            return self.suspect(request, listing_pk, brand_id)

        @router.get("/sellers/{seller_id:path}")
        def seller(request: Request, seller_id: str) -> HTMLResponse:
            return self.seller(request, seller_id)

        @router.get("/to-label")
        def to_label_page(request: Request) -> HTMLResponse:
            return self.to_label(request)

        @router.get("/cases")
        def cases_page(request: Request) -> HTMLResponse:
            return self.cases_page(request)

        @router.get("/cases/{case_id}")
        def case_page(request: Request, case_id: int) -> HTMLResponse:
            return self.case_page(request, case_id)

        @router.post("/cases/{case_id}/status")
        async def case_status(request: Request, case_id: int) -> Response:
            return await self.case_status(request, case_id)

        @router.post("/verdicts")
        async def verdicts(request: Request) -> Response:
            return await self.verdicts(request)

        @router.get("/pictures/{sha256}")
        def picture(request: Request, sha256: str, size: str = "full") -> Response:
            return self.picture(request, sha256, size)

        return router


def _shapes(item: dict[str, Any]) -> list[dict[str, Any]]:
    """Every region a matcher drew (a quadrilateral) and every text box (a rectangle or polygon)."""
    details = item.get("details") or {}
    shapes: list[dict[str, Any]] = []
    label = matcher_label(str(item.get("matcher") or ""))
    kind = "text" if "ocr" in str(item.get("matcher")) else "region"
    candidates: list[Any] = []
    if details.get("region"):
        candidates.append(details["region"])
    for name in ("box", "bbox"):
        if details.get(name):
            candidates.append(details[name])
    for name in ("boxes", "regions"):
        value = details.get(name)
        if isinstance(value, list):
            candidates.extend(entry.get("box") if isinstance(entry, dict) else entry for entry in value)
    for candidate in candidates:
        points = _points(candidate)
        if points:
            shapes.append({"points": " ".join(f"{x:.1f},{y:.1f}" for x, y in points), "kind": kind, "label": label})
    return shapes


def _points(value: Any) -> list[tuple[float, float]] | None:
    try:
        if isinstance(value, list | tuple) and len(value) == 4 and all(isinstance(v, int | float) for v in value):
            x0, y0, x1, y1 = (float(v) for v in value)
            return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        if isinstance(value, list | tuple) and len(value) >= 3:
            return [(float(point[0]), float(point[1])) for point in value]
    except (TypeError, ValueError, IndexError):
        return None
    return None


def _image_type(data: bytes) -> str:
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:3] == b"GIF":
        return "image/gif"
    return "application/octet-stream"
