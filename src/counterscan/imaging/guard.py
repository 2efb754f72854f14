"""Refusing decompression bombs before they cost anything.

A few kilobytes of PNG can declare 59 million rows or two billion columns, and an SVG can
expand one element into billions through nested ``<use>`` or embed a 20,000 x 20,000 picture
as a data: URL. Every decode path reads the declared size first and calls :func:`check_size`
before a single pixel is allocated; SVG rendering runs under :class:`RenderBudget`, which
bounds the elements drawn (``<use>`` expansion included), the embedded raster pictures, the
canvas size and the time spent. Every refusal is an ``ImageTooLargeError`` naming the cap.
"""

from __future__ import annotations

import io
import re
import time
import urllib.request
import warnings
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from PIL import Image

from counterscan.errors import ImageTooLargeError

# Long side over short side beyond which a picture is refused: a real product photo or logo
# is never a 1 x 59,000,000 strip, and decoders pay per row as well as per pixel.
DEFAULT_MAX_ASPECT = 50.0
# Any one side: decoders allocate row buffers from the width before checking anything else.
DEFAULT_MAX_SIDE = 16_384


def check_size(
    width: int,
    height: int,
    *,
    max_pixels: int,
    max_side: int = DEFAULT_MAX_SIDE,
    max_aspect: float = DEFAULT_MAX_ASPECT,
    source: str | None = None,
    what: str = "",
) -> None:
    """Refuse a declared size over the pixel cap, a side over the side cap, or an extreme aspect ratio."""
    label = f"{what}{width}x{height}"
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label} pixels, over the cap of {max_pixels} (setting max_image_pixels; decompression bomb guard)",
            source=source,
        )
    if max(width, height) > max_side:
        raise ImageTooLargeError(
            f"{label} pixels: a side over the cap of {max_side} (setting max_image_side)", source=source
        )
    if min(width, height) > 0 and max(width, height) / min(width, height) > max_aspect:
        raise ImageTooLargeError(
            f"{label} pixels: aspect ratio over {max_aspect:g}:1 (setting max_image_aspect)", source=source
        )


# SVG rendering. A traced logo draws a few thousand elements; a <use> bomb draws billions. The
# output is 512 px wide, so embedded pictures beyond 16 MP only cost time.
SVG_MAX_ELEMENTS = 20_000
SVG_MAX_DEPTH = 256
SVG_MAX_EMBEDDED_IMAGES = 16
SVG_MAX_IMAGE_PIXELS = 16_000_000
SVG_TIME_LIMIT_SECONDS = 5.0
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_URL_REF = re.compile(r"url\(\s*['\"]?#([^)'\"\s]+)")


@dataclass
class RenderBudget:
    """What one SVG may cost; counted as it is checked and drawn, refused the moment it is spent."""

    max_pixels: int
    source: str | None = None
    max_elements: int = SVG_MAX_ELEMENTS
    max_images: int = SVG_MAX_EMBEDDED_IMAGES
    max_image_pixels: int = SVG_MAX_IMAGE_PIXELS
    time_limit: float = SVG_TIME_LIMIT_SECONDS
    drawn: int = 0
    images: int = 0
    image_pixels: int = 0
    deadline: float = field(default=0.0)

    def refuse(self, reason: str) -> ImageTooLargeError:
        return ImageTooLargeError(reason, source=self.source)

    def start(self) -> None:
        self.deadline = time.monotonic() + self.time_limit

    def element(self) -> None:
        """One element drawn: counted against the element cap, and the clock checked."""
        self.drawn += 1
        if self.drawn > self.max_elements:
            raise self.refuse(f"SVG draws more than {self.max_elements} elements (<use> expansion included): refused")
        if self.deadline and time.monotonic() > self.deadline:
            raise self.refuse(f"SVG took over {self.time_limit:g}s to render: refused")

    def image(self, width: int, height: int) -> None:
        """An embedded raster picture: counted, each and all together held to the embedded-pixel cap."""
        self.images += 1
        if self.images > self.max_images:
            raise self.refuse(f"SVG embeds more than {self.max_images} pictures: refused")
        cap = min(self.max_pixels, self.max_image_pixels)
        check_size(width, height, max_pixels=cap, source=self.source, what="embedded picture of ")
        self.image_pixels += width * height
        if self.image_pixels > cap:
            raise self.refuse(f"SVG's embedded pictures hold over {cap} pixels together: refused")

    def canvas(self, width: float, height: float) -> None:
        side = (max(1, round(width)), max(1, round(height)))
        check_size(*side, max_pixels=self.max_pixels, source=self.source, what="SVG canvas of ")


def check_svg(data: bytes, budget: RenderBudget, *, nested: int = 0) -> None:
    """Refuse an SVG whose drawing would expand past the element cap (``<use>`` and ``url(#id)``
    references counted as often as they are drawn), nest too deeply, or embed pictures past the
    caps, all judged from the markup before rendering. XML entities are refused by the parser."""
    root = ElementTree.fromstring(data)
    depth = _max_depth(root)
    if depth > SVG_MAX_DEPTH:
        raise budget.refuse(f"SVG nests elements {depth} deep, over the cap of {SVG_MAX_DEPTH}: refused")
    elements = list(root.iter())
    if len(elements) > budget.max_elements:
        raise budget.refuse(f"SVG has {len(elements)} elements, over the cap of {budget.max_elements}: refused")
    by_id = {element.get("id"): element for element in elements if element.get("id")}
    memo: dict[int, int] = {}

    def expanded(element: Element, chain: tuple[int, ...]) -> int:
        key = id(element)
        if key in memo:
            return memo[key]
        if key in chain or len(chain) > 2 * SVG_MAX_DEPTH:
            raise budget.refuse("SVG references form a cycle or a chain too long to draw: refused")
        total = 1
        tag = element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""
        href = element.get(_XLINK_HREF) or element.get("href") or ""
        targets = [name for value in element.attrib.values() for name in _URL_REF.findall(value)]
        if tag in ("use", "tref", "textPath") and href:
            if not href.startswith("#"):
                raise budget.refuse(f"SVG <{tag}> of an outside document: refused")
            targets.append(href[1:])
        if tag in ("image", "feImage") and href.startswith("data:"):
            _check_embedded(href, budget, nested)
        for name in targets:
            target = by_id.get(name)
            if target is not None:
                total += expanded(target, (*chain, key))
        for child in element:
            total += expanded(child, (*chain, key))
            if total > budget.max_elements:
                break
        if total > budget.max_elements:
            raise budget.refuse(
                f"SVG would draw more than {budget.max_elements} elements (<use> expansion included): refused"
            )
        memo[key] = total
        return total

    expanded(root, ())


def _max_depth(root: Element) -> int:
    deepest = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > SVG_MAX_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in element)
    return deepest


def _check_embedded(href: str, budget: RenderBudget, nested: int) -> None:
    try:
        with urllib.request.urlopen(href) as response:  # data: URLs only; nothing else reaches here
            payload = response.read(budget.max_pixels)
    except (ValueError, OSError):
        return  # undecodable: the renderer draws nothing for it
    if payload.startswith(b"\x1f\x8b"):
        raise budget.refuse("SVG embeds a compressed (gzip) document: refused")
    head = payload[:4096].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<!--")):
        if nested >= 1:
            raise budget.refuse("SVG embeds SVG inside embedded SVG: refused")
        check_svg(payload, budget, nested=nested + 1)
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            width, height = Image.open(io.BytesIO(payload)).size
    except Image.DecompressionBombError as exc:
        raise budget.refuse(f"SVG embeds a decompression bomb ({exc})") from exc
    except (OSError, ValueError, SyntaxError, EOFError):
        return
    budget.image(width, height)
