"""The members' routes: who a key is, brands, asset uploads and deletions, scan results.

Members see and change only their own brands; analysts read everything. Requests are authenticated
and authorised before an upload body is read, and an upload that is refused as a whole (401, 403,
411, 413, 415) writes nothing.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUpload

from counterscan.errors import NotFoundError
from counterscan.records import Brand, Member
from counterscan.registry.assets import add_upload_bytes, remove_asset
from counterscan.registry.members import require_owner, require_reader
from counterscan.registry.uploads import UploadFile
from counterscan.service.auth import Actor
from counterscan.service.dependencies import ServiceDep, StoreDep
from counterscan.service.schemas import (
    AssetOut,
    BrandOut,
    MemberOut,
    SuspectOut,
    UploadRefusedOut,
    UploadReportOut,
    refusals,
)

MAX_FILES_PER_REQUEST = 1000
MAX_ID = 2**63 - 1

members_router = APIRouter(prefix="/v1", tags=["members"], responses=refusals(401, 429))


def _readable(member: Member, brand: Brand) -> bool:
    return member.is_analyst or brand.member == member.name


@members_router.get("/me")
def me(member: Actor) -> MemberOut:
    return MemberOut.of(member)


@members_router.get("/brands")
def list_brands(member: Actor, store: StoreDep) -> list[BrandOut]:
    return [BrandOut.of(brand) for brand in store.brands() if _readable(member, brand)]


@members_router.get("/brands/{brand}", responses=refusals(403, 404))
def show_brand(brand: str, member: Actor, store: StoreDep) -> BrandOut:
    found = store.brand(brand)
    require_reader(member, found)
    return BrandOut.of(found)


@members_router.get("/brands/{brand}/assets", responses=refusals(403, 404))
def list_assets(brand: str, member: Actor, store: StoreDep, history: bool = False) -> list[AssetOut]:
    require_reader(member, store.brand(brand))
    return [AssetOut.of(asset) for asset in store.assets(brand, include_removed=history)]


@members_router.post(
    "/brands/{brand}/assets",
    status_code=201,
    responses=refusals(400, 403, 404, 411, 413, 415, bodies={413: UploadRefusedOut, 415: UploadRefusedOut}),
)
async def upload_assets(brand: str, request: Request, member: Actor, service: ServiceDep) -> UploadReportOut:
    """Multipart upload: one or more ``files`` (images or zip archives) and a ``kind`` field."""
    store, settings = service.store, service.settings
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
        add_upload_bytes,
        store,
        service.blobs,
        service.upload_limits,
        service.matchers,
        member,
        brand=target.name,
        kind=kind,
        files=files,
    )
    answer = UploadReportOut.of(report)
    if not report.accepted_any:
        status = 413 if any(item.kind == "too-large" for item in report.rejected) else 415
        raise HTTPException(status, detail=answer.model_dump(mode="json"))
    return answer


@members_router.delete("/assets/{asset_id}", responses=refusals(403, 404))
def delete_asset(asset_id: int, member: Actor, store: StoreDep) -> AssetOut:
    if not 0 < asset_id <= MAX_ID:  # the store's ids are 64-bit: anything past them cannot exist
        raise NotFoundError(f"no asset {asset_id}")
    return AssetOut.of(remove_asset(store, member, asset_id))


@members_router.get("/results", responses=refusals(403, 404))
def results(
    member: Actor,
    store: StoreDep,
    brand: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[SuspectOut]:
    """Ranked suspects for the member's own brands (analysts: all brands)."""
    visible = [found for found in store.brands() if _readable(member, found)]
    if brand is not None:
        chosen = store.brand(brand)
        require_reader(member, chosen)
        visible = [chosen]
    suspects = store.suspects(limit=limit, brand_ids=[found.brand_id for found in visible])
    return [SuspectOut.of(suspect) for suspect in suspects]
