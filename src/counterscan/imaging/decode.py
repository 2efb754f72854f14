"""The one safe decode path shared by assets and listings.

Every image the product looks at comes through here: byte and pixel caps are
checked from the header before any pixel is decoded (decompression bombs), JPEGs are
decoded at reduced scale when the caller needs only a small picture (draft mode is the
single biggest speed-up for hashing), EXIF orientation is applied, and alpha is
flattened onto white so that a transparent logo and the same logo on a white product
page look alike.

A scan decodes each image once into a :class:`Picture` and hands it to every matcher: the
picture keeps each form a matcher asked for (a reduced JPEG decode, grey, full resolution),
so two matchers wanting the same form share one decode.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from counterscan.errors import ImageDecodeError, ImageTooLargeError
from counterscan.imaging.guard import DEFAULT_MAX_ASPECT, DEFAULT_MAX_SIDE, check_size

if TYPE_CHECKING:
    from counterscan.config import Settings

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
OutputMode = Literal["RGB", "L"]
T = TypeVar("T")

# pHash works on a 32x32 thumbnail; a JPEG drafted to at least 128 px keeps it within about
# one bit of a full decode (measured, see DESIGN.md) at about twice the speed.
HASH_DRAFT_SIDE = 128
HASH_DRAFT_SIZE = (HASH_DRAFT_SIDE, HASH_DRAFT_SIDE)

_EXIF_ORIENTATION = 0x0112
_TURNED = (5, 6, 7, 8)
"""EXIF orientations that turn the picture a quarter (transpose, 90, transverse, 270)."""


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int
    max_pixels: int
    max_side: int = DEFAULT_MAX_SIDE
    max_aspect: float = DEFAULT_MAX_ASPECT

    @classmethod
    def from_settings(cls, settings: Settings) -> DecodeLimits:
        return cls(
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.max_image_side,
            max_aspect=settings.max_image_aspect,
        )


@dataclass(frozen=True)
class ImageInfo:
    """What is known about an accepted image without keeping its pixels."""

    sha256: str
    format: str
    width: int
    height: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_capped(path: Path, max_bytes: int) -> bytes:
    """Read a regular file, refusing one larger than ``max_bytes`` without reading it all.

    Opened without blocking and checked on the open handle: a FIFO or a device (which could
    hang the reader or never end) is refused, even if it replaced a file after a check by name.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError as exc:
        raise ImageDecodeError("file not found", source=str(path)) from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError("is a folder, not an image file", source=str(path)) from exc
    except PermissionError as exc:
        raise ImageDecodeError("permission denied", source=str(path)) from exc
    except OSError as exc:
        raise ImageDecodeError(f"cannot be opened ({exc.strerror})", source=str(path)) from exc
    # Checked on the descriptor before it becomes a file object: os.fdopen itself raises
    # IsADirectoryError for a folder (which os.open opens read-only without complaint).
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise ImageDecodeError("is a folder, not an image file", source=str(path))
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError("not a regular file (a pipe, socket or device): refused", source=str(path))
    except BaseException:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as handle:
        if info.st_size > max_bytes:
            raise ImageTooLargeError(f"file is {info.st_size} bytes, over the cap of {max_bytes}", source=str(path))
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageDecodeError(f"unreadable ({exc.strerror})", source=str(path)) from exc
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"file is over the cap of {max_bytes} bytes", source=str(path))
    return data


def _open_header(
    data: bytes, limits: DecodeLimits, source: str | None, accepted: Sequence[str] = ALLOWED_FORMATS
) -> Image.Image:
    if not data:
        raise ImageDecodeError("empty file", source=source)
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"{len(data)} bytes, over the cap of {limits.max_bytes}", source=source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"decompression bomb refused ({exc})", source=source) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError("not a recognised image (accepted: " + ", ".join(accepted) + ")", source=source) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageDecodeError(f"truncated or unreadable image header ({exc})", source=source) from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"invalid dimensions {width}x{height}", source=source)
    check_size(
        width,
        height,
        max_pixels=limits.max_pixels,
        max_side=limits.max_side,
        max_aspect=limits.max_aspect,
        source=source,
    )
    return image


def inspect(data: bytes, limits: DecodeLimits, *, source: str | None = None) -> ImageInfo:
    """Validate ``data`` fully (header, caps and a complete decode) and describe it."""
    image, image_format = _decode(data, limits, draft_size=None, mode="RGB", source=source)
    return ImageInfo(sha256=sha256_hex(data), format=image_format, width=image.width, height=image.height)


def decode(
    data: bytes,
    limits: DecodeLimits,
    *,
    draft_size: tuple[int, int] | None = None,
    mode: OutputMode = "RGB",
    source: str | None = None,
    accepted: Sequence[str] = ALLOWED_FORMATS,
) -> Image.Image:
    """Decode ``data`` into an upright ``mode`` image with no alpha.

    ``draft_size`` lets a JPEG decoder skip detail: the result is at least that big (or the
    original size if smaller) on both axes, never smaller. ``accepted`` names the formats the
    caller takes, for the refusal of data that is no image (an upload also takes SVG, drawn before).
    """
    return _decode(data, limits, draft_size=draft_size, mode=mode, source=source, accepted=accepted)[0]


def _decode(
    data: bytes,
    limits: DecodeLimits,
    *,
    draft_size: tuple[int, int] | None,
    mode: OutputMode,
    source: str | None,
    accepted: Sequence[str] = ALLOWED_FORMATS,
) -> tuple[Image.Image, str]:
    image = _open_header(data, limits, source, accepted)
    if draft_size is not None and image.format == "JPEG":
        image.draft(mode, draft_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            upright = ImageOps.exif_transpose(image)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"corrupt or truncated {image.format} data ({exc})", source=source) from exc
    return _normalise(upright if upright is not None else image, mode), str(image.format)


def _normalise(image: Image.Image, mode: OutputMode) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        image = canvas
    if image.mode != mode:
        image = image.convert(mode)
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    span = high - low or 1.0
    return Image.fromarray(((values - low) * (255.0 / span)).astype(np.uint8), mode="L")


FormKey = tuple[Any, ...]


@dataclass(frozen=True, eq=False)
class Picture:
    """One image, its header checked, decoded lazily into the forms matchers ask for, each once.

    The forms are shared between matchers: a caller must never modify an image it gets from a
    picture (PIL's ``convert``, ``resize``, ``crop`` and ``transpose`` return new images; ``thumbnail``
    and ``paste`` do not, so copy first). A picture is meant for one image's matching and then
    dropped: it holds every decoded form until then.
    """

    data: bytes
    limits: DecodeLimits
    source: str | None
    format: str
    size: tuple[int, int]
    """Width and height at full resolution, upright (after EXIF orientation)."""
    stored_size: tuple[int, int] = field(repr=False)
    """Width and height as stored, before orientation."""
    _forms: dict[FormKey, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, data: bytes, limits: DecodeLimits, *, source: str | None = None) -> Picture:
        """Check the header and the caps (raises ImageError); no pixel is decoded yet."""
        header = _open_header(data, limits, source)
        width, height = header.size
        try:
            orientation = header.getexif().get(_EXIF_ORIENTATION)
        except (OSError, ValueError, SyntaxError, EOFError):
            orientation = None  # unreadable EXIF: decoding ignores it as well
        size = (height, width) if orientation in _TURNED else (width, height)
        return cls(data, limits, source, str(header.format), size, (width, height))

    def full(self, mode: OutputMode = "RGB") -> Image.Image:
        """The whole picture at full resolution (what PDQ and the logo assets need)."""
        return self._image(("full", mode), lambda: decode(self.data, self.limits, mode=mode, source=self.source))

    def reduced(self, side: int, mode: OutputMode = "RGB") -> Image.Image:
        """The picture at least ``side`` px on both axes (or its full size if smaller), decoded as
        :func:`decode` with ``draft_size=(side, side)`` does: a JPEG is decoded at a reduced scale.
        Requests that land on the same JPEG scale share one decode."""
        return self._image(
            self._draft_key(side, mode),
            lambda: decode(self.data, self.limits, draft_size=(side, side), mode=mode, source=self.source),
        )

    def grey(self, side: int | None = None) -> Image.Image:
        """The colour decode (:meth:`reduced`, or :meth:`full` without ``side``) converted to grey:
        the luminance that keypoint, embedding and text readers share. Not :meth:`reduced` with
        mode "L", where the JPEG decoder itself gives the grey (what the hashes are defined on)."""
        colour_key = ("full", "RGB") if side is None else self._draft_key(side, "RGB")
        colour = self.full() if side is None else self.reduced(side)
        return self._image(("grey", *colour_key), lambda: colour.convert("L"))

    def derived(self, key: FormKey, make: Callable[[], T]) -> T:
        """A form a matcher derives and wants to share with others: ``make()`` runs once per key."""
        if key not in self._forms:
            self._forms[key] = make()
        value: T = self._forms[key]
        return value

    def _image(self, key: FormKey, make: Callable[[], Image.Image]) -> Image.Image:
        return self.derived(key, make)

    def _draft_key(self, side: int, mode: OutputMode) -> FormKey:
        return self.derived(("draft-key", side, mode), lambda: self._scale_of(side, mode))

    def _scale_of(self, side: int, mode: OutputMode) -> FormKey:
        if self.format != "JPEG":
            return ("full", mode)  # only JPEG decoders reduce while decoding
        # Ask Pillow which scale it would pick (reading the header only), so that the key is
        # exactly the decode that would happen.
        header = Image.open(io.BytesIO(self.data), formats=("JPEG",))
        header.draft(mode, (side, side))
        if mode == "RGB" and header.mode == "RGB" and header.size == self.stored_size:
            return ("full", mode)  # a colour draft at scale 1 decodes exactly as a full decode
        # A grey draft has the JPEG decoder output grey directly: not the same pixels as a colour
        # decode converted, so it is keyed apart from "full" even at scale 1.
        return ("draft", header.size, header.mode, mode)
