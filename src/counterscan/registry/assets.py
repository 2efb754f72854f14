"""Reference assets: upload (images and trademark words), list, remove and replace, with ownership checks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from counterscan.config import Settings
from counterscan.errors import ImageError, UserError
from counterscan.imaging.decode import DecodeLimits, ImageInfo, Picture, sha256_hex
from counterscan.records import ASSET_KINDS, IMAGE_ASSET_KINDS, Asset, AssetKind, Member
from counterscan.registry.members import require_owner
from counterscan.store import BlobStore
from counterscan.store.protocols import CatalogueWriter
from counterscan.textnorm import plain

if TYPE_CHECKING:
    from counterscan.matchers import AssetIndex, ImageMatcher

from counterscan.registry.uploads import Rejection, UploadFile, clean_image, expand, from_paths, rejection


@dataclass(frozen=True)
class UploadLimits:
    image: DecodeLimits
    max_archive_bytes: int


def upload_limits(settings: Settings) -> UploadLimits:
    from counterscan.matchers import decode_limits

    return UploadLimits(image=decode_limits(settings), max_archive_bytes=settings.max_upload_bytes)


class MatchersOnFirstUse(Sequence["ImageMatcher[AssetIndex]"]):
    """The settings' image matchers, built when first read: a refused upload (a bomb, a wrong file type)
    never pays for loading OpenCV, FAISS and the OCR models."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._built: list[ImageMatcher[AssetIndex]] | None = None

    def _all(self) -> list[ImageMatcher[AssetIndex]]:
        if self._built is None:
            from counterscan.matchers import image_matchers

            self._built = image_matchers(self._settings)
        return self._built

    def __len__(self) -> int:
        return len(self._all())

    @overload
    def __getitem__(self, index: int) -> ImageMatcher[AssetIndex]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[ImageMatcher[AssetIndex]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self._all()[index]


@dataclass(frozen=True)
class UploadReport:
    added: tuple[Asset, ...]
    already_present: tuple[Asset, ...]
    rejected: tuple[Rejection, ...]

    @property
    def accepted_any(self) -> bool:
        return bool(self.added or self.already_present)


def parse_kind(kind: str) -> AssetKind:
    for known in ASSET_KINDS:
        if kind == known:
            return known
    raise UserError(f"unknown asset kind {kind!r} (one of {', '.join(ASSET_KINDS)})")


def add_asset_files(
    store: CatalogueWriter,
    blobs: BlobStore,
    limits: UploadLimits,
    matchers: Sequence[ImageMatcher[AssetIndex]],
    actor: Member,
    *,
    brand: str,
    kind: str,
    paths: Sequence[Path],
    replaces: int | None = None,
) -> UploadReport:
    """Upload image files, folders or zip archives from disk."""
    missing = [str(path) for path in paths if not path.exists()]
    if missing:
        raise UserError(f"no such file or folder: {', '.join(missing)}")
    uploads = from_paths(paths, limits.image, limits.max_archive_bytes)
    return add_uploads(
        store, blobs, limits, matchers, actor, brand=brand, kind=kind, uploads=uploads, replaces=replaces
    )


def add_upload_bytes(
    store: CatalogueWriter,
    blobs: BlobStore,
    limits: UploadLimits,
    matchers: Sequence[ImageMatcher[AssetIndex]],
    actor: Member,
    *,
    brand: str,
    kind: str,
    files: Sequence[UploadFile],
) -> UploadReport:
    """Upload files received over the network (zip archives are opened too)."""
    uploads = (item for upload in files for item in expand(upload, limits.image, limits.max_archive_bytes))
    return add_uploads(store, blobs, limits, matchers, actor, brand=brand, kind=kind, uploads=uploads)


def add_uploads(
    store: CatalogueWriter,
    blobs: BlobStore,
    limits: UploadLimits,
    matchers: Sequence[ImageMatcher[AssetIndex]],
    actor: Member,
    *,
    brand: str,
    kind: str,
    uploads: Iterable[UploadFile | Rejection],
    replaces: int | None = None,
) -> UploadReport:
    """Every good image lands (one transaction each: asset, signals, audit); every bad one is reported."""
    asset_kind = parse_kind(kind)
    if asset_kind not in IMAGE_ASSET_KINDS:
        raise UserError("text assets are words, not files: use `assets add --kind text WORD...`")
    target = store.brand(brand)
    require_owner(actor, target)
    if replaces is not None:
        _check_replaceable(store, target.brand_id, replaces)
    added: list[Asset] = []
    present: list[Asset] = []
    rejected: list[Rejection] = []
    for upload in uploads:
        if isinstance(upload, Rejection):
            rejected.append(upload)
            continue
        try:
            image = clean_image(upload, limits.image)
            picture = Picture.open(image.png, limits.image, source=upload.name)
            signals = {
                matcher.name: matcher.encode_asset(picture) for matcher in matchers if asset_kind in matcher.asset_kinds
            }
        except ImageError as exc:
            rejected.append(rejection(upload.name, exc))
            continue
        new_blob = image.info.sha256 not in blobs
        blobs.put(image.png)
        try:
            asset, created = store.add_asset(
                brand_id=target.brand_id,
                kind=asset_kind,
                info=image.info,
                original_name=stored_name(upload.name),
                signals=signals,
                actor=actor.name,
                replaces=replaces if replaces is not None and not added else None,
            )
        except BaseException:
            if new_blob:  # no row will ever point at it
                blobs.path(image.info.sha256).unlink(missing_ok=True)
            raise
        (added if created else present).append(asset)
    return UploadReport(added=tuple(added), already_present=tuple(present), rejected=tuple(rejected))


MAX_NAME_CHARS = 500
"""The store's limit on an asset's original file name."""


def stored_name(upload_name: str) -> str:
    """The file name kept with an asset: the last path part, control characters dropped, and
    shortened in the middle (keeping the extension) to fit the store's column."""
    name = Path(upload_name.rsplit(":", 1)[-1]).name
    name = "".join(char for char in name if char.isprintable()) or "upload"
    if len(name) > MAX_NAME_CHARS:
        name = name[: MAX_NAME_CHARS - 101] + "…" + name[-100:]
    return name


def add_text_assets(store: CatalogueWriter, actor: Member, *, brand: str, words: Sequence[str]) -> UploadReport:
    """Trademark words; the same word (ignoring case, width and spacing) is stored once."""
    target = store.brand(brand)
    require_owner(actor, target)
    added: list[Asset] = []
    present: list[Asset] = []
    rejected: list[Rejection] = []
    for word in words:
        cleaned = " ".join(word.split())
        if not cleaned:
            rejected.append(Rejection(repr(word), "empty word", "invalid"))
            continue
        if len(cleaned) > 200:
            rejected.append(Rejection(cleaned[:40], "longer than 200 characters", "invalid"))
            continue
        info = ImageInfo(sha256=sha256_hex(plain(cleaned).encode("utf-8")), format="TEXT", width=0, height=0)
        asset, created = store.add_asset(
            brand_id=target.brand_id, kind="text", info=info, original_name=cleaned, signals={}, actor=actor.name
        )
        (added if created else present).append(asset)
    return UploadReport(added=tuple(added), already_present=tuple(present), rejected=tuple(rejected))


def _check_replaceable(store: CatalogueWriter, brand_id: int, asset_id: int) -> None:
    asset = store.asset(asset_id)
    if store.asset_brand_id(asset_id) != brand_id:
        raise UserError(f"asset {asset_id} belongs to brand {asset.brand!r}, not this one")
    if asset.removed:
        raise UserError(f"asset {asset_id} was already removed")


def remove_asset(store: CatalogueWriter, actor: Member, asset_id: int) -> Asset:
    """Take an asset out of future scans; its history stays."""
    asset = store.asset(asset_id)
    require_owner(actor, store.brand(asset.brand))
    if asset.removed:
        raise UserError(f"asset {asset_id} was already removed")
    return store.remove_asset(asset_id, actor=actor.name)
