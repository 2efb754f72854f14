"""Turning uploaded files into clean images: folders and zip archives opened safely, content checked.

Each file is judged by its content, never its extension. Archives are read entry by entry
with caps on count and size, and entries whose names would escape the archive (``../``,
absolute paths) are refused. Accepted images are re-encoded as PNG from their decoded,
upright pixels: that strips every piece of metadata (EXIF GPS, XMP, comments) and gives
identical pictures identical bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from cairosvg.surface import PNGSurface

from counterscan.errors import ImageDecodeError, ImageError, ImageTooLargeError
from counterscan.imaging.decode import (
    ALLOWED_FORMATS,
    DecodeLimits,
    ImageInfo,
    decode,
    inspect,
    read_capped,
    sha256_hex,
)
from counterscan.imaging.guard import RenderBudget, check_svg

# Logos drawn as SVG are rasterised at this width: enough detail for hashing and keypoints.
SVG_RASTER_WIDTH = 512
MAX_ARCHIVE_ENTRIES = 10_000
ZIP_MAGIC = b"PK\x03\x04"

RejectKind = Literal["too-large", "unsupported", "invalid", "unsafe"]


@dataclass(frozen=True)
class UploadFile:
    name: str
    data: bytes


UPLOAD_FORMATS: tuple[str, ...] = (*ALLOWED_FORMATS, "SVG")
"""What an asset upload accepts: every format the decode path opens, and SVG, drawn to PNG first
(:func:`rasterise_svg`). Refusals list these."""


@dataclass(frozen=True)
class Rejection:
    name: str
    reason: str
    kind: RejectKind


@dataclass(frozen=True)
class CleanImage:
    name: str
    png: bytes
    info: ImageInfo


def is_svg(data: bytes) -> bool:
    head = data[:4096].lstrip().lower()
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:].lstrip()
    return head.startswith(b"<svg") or (head.startswith((b"<?xml", b"<!--", b"<!doctype svg")) and b"<svg" in head)


def rasterise_svg(data: bytes, *, source: str, limits: DecodeLimits | None = None) -> bytes:
    """Render an SVG logo to PNG. External files and entities stay off (cairosvg's safe mode); the
    markup is checked for expansion bombs and oversized embedded pictures first, and rendering
    runs under an element count, canvas size and time budget (imaging.guard)."""
    budget = RenderBudget(max_pixels=(limits or DecodeLimits(len(data), 40_000_000)).max_pixels, source=source)
    try:
        check_svg(data, budget)
    except ImageError:
        raise
    except Exception as exc:  # the XML parser's errors, entities refused by defusedxml
        raise ImageDecodeError(f"SVG could not be read ({type(exc).__name__})", source=source) from exc
    budget.start()
    try:
        png = _guarded_png_surface(budget).convert(bytestring=data, output_width=SVG_RASTER_WIDTH, unsafe=False)
    except ImageError:
        raise
    except Exception as exc:  # cairosvg raises many unrelated types for bad input
        raise ImageDecodeError(f"SVG could not be rendered ({type(exc).__name__})", source=source) from exc
    if not png:
        raise ImageDecodeError("SVG rendered to nothing", source=source)
    return bytes(png)


def _guarded_png_surface(budget: RenderBudget) -> type[PNGSurface]:
    """cairosvg's PNG surface, drawing under ``budget``: one class per call, so no state is shared."""
    from cairosvg.surface import PNGSurface  # Cairo loads in about 0.6 s: only when an SVG is drawn

    class GuardedPNGSurface(PNGSurface):  # type: ignore[misc]
        def _create_surface(self, width: float, height: float) -> Any:
            budget.canvas(width, height)
            return super()._create_surface(width, height)

        def draw(self, node: Any) -> None:
            budget.element()
            super().draw(node)

    return GuardedPNGSurface


def clean_image(upload: UploadFile, limits: DecodeLimits) -> CleanImage:
    """Validate by content and re-encode as metadata-free PNG; raises ImageError."""
    data = rasterise_svg(upload.data, source=upload.name, limits=limits) if is_svg(upload.data) else upload.data
    image = decode(data, limits, source=upload.name, accepted=UPLOAD_FORMATS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=False)
    png = buffer.getvalue()
    return CleanImage(
        name=upload.name,
        png=png,
        info=ImageInfo(sha256=sha256_hex(png), format="PNG", width=image.width, height=image.height),
    )


def rejection(name: str, error: ImageError) -> Rejection:
    kind: RejectKind = "too-large" if isinstance(error, ImageTooLargeError) else "unsupported"
    return Rejection(name=name, reason=error.reason, kind=kind)


def refused_from_headers(paths: Sequence[Path], limits: DecodeLimits) -> list[Rejection] | None:
    """The rejections of ``paths`` when every one is a single picture refused from its header alone
    (too many bytes or pixels, an SVG expansion or embedded bomb); None when any is a folder, an
    archive, or a picture that might pass: the full upload then judges them all.

    Nothing is decoded and nothing but the imaging guards is needed, so the CLI refuses a bomb
    before it opens the store or loads a matcher.
    """
    found: list[Rejection] = []
    for path in paths:
        if not path.is_file():
            return None
        try:
            data = read_capped(path, limits.max_bytes)
            if data.startswith(ZIP_MAGIC):
                return None
            if is_svg(data):
                check_svg(data, RenderBudget(max_pixels=limits.max_pixels, source=str(path)))
            else:
                inspect(data, limits, source=str(path))
        except ImageTooLargeError as exc:
            found.append(rejection(str(path), exc))
            continue
        except Exception:  # anything else is for the full upload to judge and report
            return None
        return None
    return found


def from_paths(paths: Iterable[Path], limits: DecodeLimits, max_archive_bytes: int) -> Iterator[UploadFile | Rejection]:
    """Every file under ``paths`` (folders recursively, zip archives opened), in a stable order."""
    for path in paths:
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            if path.is_dir()
            else [path]
        )
        for file in files:
            cap = max(limits.max_bytes, max_archive_bytes)
            try:
                data = read_capped(file, cap)
            except ImageError as exc:
                yield rejection(str(file), exc)
                continue
            yield from expand(UploadFile(name=str(file), data=data), limits, max_archive_bytes)


def expand(upload: UploadFile, limits: DecodeLimits, max_archive_bytes: int) -> Iterator[UploadFile | Rejection]:
    """The file itself, or each entry of it if it is a zip archive."""
    if not upload.data.startswith(ZIP_MAGIC):
        if len(upload.data) > limits.max_bytes:
            yield Rejection(upload.name, f"{len(upload.data)} bytes, over the cap of {limits.max_bytes}", "too-large")
        else:
            yield upload
        return
    if len(upload.data) > max_archive_bytes:
        yield Rejection(
            upload.name, f"archive of {len(upload.data)} bytes, over the cap of {max_archive_bytes}", "too-large"
        )
        return
    yield from _zip_entries(upload, limits, max_archive_bytes)


def _zip_entries(upload: UploadFile, limits: DecodeLimits, max_archive_bytes: int) -> Iterator[UploadFile | Rejection]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(upload.data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError) as exc:
        yield Rejection(upload.name, f"not a readable zip archive ({exc})", "invalid")
        return
    if len(entries) > MAX_ARCHIVE_ENTRIES:
        yield Rejection(
            upload.name, f"archive has {len(entries)} entries, over the cap of {MAX_ARCHIVE_ENTRIES}", "too-large"
        )
        return
    expanded = 0
    if all(entry.is_dir() for entry in entries):
        what = "only folders" if entries else "nothing"
        yield Rejection(upload.name, f"archive holds no files ({what})", "invalid")
        return
    with archive:
        for entry in entries:
            label = f"{upload.name}:{entry.filename}"
            if entry.is_dir():
                continue
            problem = _unsafe_name(entry.filename)
            if problem:
                yield Rejection(label, problem, "unsafe")
                continue
            if entry.flag_bits & 0x1:
                yield Rejection(label, "encrypted archive entry", "unsupported")
                continue
            if entry.file_size > limits.max_bytes:
                yield Rejection(label, f"{entry.file_size} bytes, over the cap of {limits.max_bytes}", "too-large")
                continue
            expanded += entry.file_size
            if expanded > max_archive_bytes:
                yield Rejection(label, f"archive expands past the cap of {max_archive_bytes} bytes", "too-large")
                return
            try:
                with archive.open(entry) as stream:
                    # Read one byte past the cap: a lying size header cannot make us read more.
                    data = stream.read(limits.max_bytes + 1)
            except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError, EOFError, RuntimeError) as exc:
                yield Rejection(label, f"unreadable archive entry ({exc})", "invalid")
                continue
            if len(data) > limits.max_bytes:
                yield Rejection(label, f"over the cap of {limits.max_bytes} bytes", "too-large")
            elif data.startswith(ZIP_MAGIC):
                yield Rejection(label, "archives inside archives are not accepted", "unsupported")
            else:
                yield UploadFile(name=label, data=data)


def _unsafe_name(name: str) -> str | None:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "unsafe path in archive (absolute)"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "unsafe path in archive (escapes with ..)"
    if "\x00" in name:
        return "unsafe path in archive (NUL byte)"
    return None
