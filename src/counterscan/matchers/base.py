"""The matcher interfaces (after python-threatexchange's SignalType).

An image matcher never decodes bytes itself: it is handed a :class:`~counterscan.imaging.decode.Picture`
that the scan (or the asset upload) opened once and shares with every other matcher, and asks it
for the forms it needs (a reduced decode, grey, full resolution). Decode errors surface as
ImageError from the picture, the first time a form is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from counterscan.imaging.decode import Picture
from counterscan.records import AssetKind, AssetSignal, Brand, Evidence, Listing


class ImageMatcher(Protocol):
    """Compares listing images with brand assets through a serialisable signal."""

    name: str
    asset_kinds: tuple[AssetKind, ...]
    """The asset kinds this matcher indexes (a logo matcher has no use for product photos)."""

    def encode(self, picture: Picture) -> bytes:
        """The signal of one listing image (raises ImageError on bad input)."""
        ...

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        """Signals of an asset: (variant name, signal) pairs, the original first."""
        ...

    def build_index(self, signals: Sequence[AssetSignal]) -> Any: ...

    def query(self, index: Any, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        """Evidence for each (image sha256, signal) pair, best first per image."""
        ...


class ListingMatcher(Protocol):
    """Looks at a listing's words and numbers against brand profiles."""

    name: str

    def match(self, listing: Listing, brands: Sequence[Brand]) -> list[Evidence]: ...
