"""The matcher interfaces (after python-threatexchange's SignalType and SignalTypeIndex).

An image matcher never decodes bytes itself: it is handed a :class:`~counterscan.imaging.decode.Picture`
that the scan (or the asset upload) opened once and shares with every other matcher, and asks it
for the forms it needs (a reduced decode, grey, full resolution). Decode errors surface as
ImageError from the picture, the first time a form is asked for.

Each image matcher builds its own kind of :class:`AssetIndex` over the brands' asset signals, and
the index answers queries with evidence. Callers that hold matchers of every kind hold them as
``ImageMatcher[AssetIndex]``; one matcher's own index type stays exact (``HashMatcher`` is an
``ImageMatcher[HashIndex]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from counterscan.records import AssetKind, AssetSignal, Brand, Evidence, Listing

if TYPE_CHECKING:
    from counterscan.imaging.decode import Picture


class AssetIndex(Protocol):
    """A matcher's index over asset signals, answering with evidence for listing images' signals."""

    def __len__(self) -> int: ...

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        """Evidence for each (image sha256, signal) pair, best first per image."""
        ...

    def save(self, path: Path) -> None:
        """Write the index to one file, aside and renamed (a reader never sees half of it), for
        :meth:`ImageMatcher.load_index` to bring back up."""
        ...


IndexT_co = TypeVar("IndexT_co", bound=AssetIndex, covariant=True)


class ImageMatcher(Protocol[IndexT_co]):
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

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> IndexT_co:
        """The index over ``signals`` (this matcher's), for the brands in scope (a matcher that
        looks for the brands themselves, such as their names read in photos, indexes those)."""
        ...

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> IndexT_co:
        """The index saved at ``path`` brought up to date with ``signals`` and ``brands``: what it
        saved is reused where it still holds, the rest is built (a missing, damaged or foreign
        file is no error: the index is built afresh)."""
        ...


class ListingMatcher(Protocol):
    """Looks at a listing's words and numbers against brand profiles."""

    name: str

    def match(self, listing: Listing, brands: Sequence[Brand]) -> list[Evidence]: ...


def asset_evidence(
    matcher: str,
    asset: AssetSignal,
    image_sha256: str,
    *,
    distance: float,
    score: float,
    reason: str,
    details: Mapping[str, object],
) -> Evidence:
    """Evidence that a listing image shows one brand asset."""
    return Evidence(
        matcher=matcher,
        brand_id=asset.brand_id,
        brand=asset.brand,
        asset_id=asset.asset_id,
        image_sha256=image_sha256,
        distance=distance,
        score=score,
        reason=reason,
        details=details,
    )
