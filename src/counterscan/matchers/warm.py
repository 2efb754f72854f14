"""Every matcher's index saved once and loaded by each process, never rebuilt when nothing changed.

Any :class:`~counterscan.matchers.base.ImageMatcher` gets this by implementing ``load_index`` and
``AssetIndex.save``: its index lives at ``HOME/index/<name>-<fingerprint>.npz``, where the
fingerprint names the matcher's version and the settings its results depend on, so two settings
never share a file. Beside it, a small stamp holds the digest of the inputs the file was last saved
from (the asset signals and the brands). A process whose inputs match the stamp only loads the file
(a scan worker, a Dask worker, a server process: under a second); otherwise it asks the matcher to
bring the saved index up to date (``load_index`` reuses what still holds), saves it and stamps it.
The matcher's ``load_index`` checks what it loads on its own too, so a stale stamp beside a newer
file written by another process at the same moment costs a rebuild, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from counterscan.matchers.base import AssetIndex, ImageMatcher
from counterscan.records import AssetSignal, Brand
from counterscan.signals import as_table

LOG = "counterscan.index"


@dataclass(frozen=True)
class WarmIndex:
    index: AssetIndex
    built: bool
    """True when the saved index did not hold these inputs and was brought up to date and saved;
    False when it was only loaded."""


def index_path(folder: Path, name: str, fingerprint: str) -> Path:
    return folder / f"{name}-{fingerprint}.npz"


def inputs_digest(signals: Sequence[AssetSignal], brands: Sequence[Brand]) -> str:
    """A digest of everything an index is built from, read from the signal table's columns (a
    million hash rows digest in milliseconds, not one object at a time)."""
    table = as_table(signals)
    digest = hashlib.sha256()
    for column in (table.asset_ids, table.brand_ids, table.variant_codes, table.offsets, table.data):
        digest.update(column.tobytes())
    digest.update(repr((table.variants, sorted(table.brand_names.items()), sorted(table.origins.items()))).encode())
    digest.update(repr(tuple(brands)).encode())
    return digest.hexdigest()


def warm_index(
    matcher: ImageMatcher[AssetIndex],
    signals: Sequence[AssetSignal],
    brands: Sequence[Brand],
    *,
    folder: Path,
    fingerprint: str,
) -> WarmIndex:
    """``matcher``'s index over ``signals`` and ``brands``: loaded from ``folder`` when saved from
    the same inputs, otherwise brought up to date, saved and stamped there."""
    path = index_path(folder, matcher.name, fingerprint)
    stamp = path.with_name(path.name + ".inputs")
    digest = inputs_digest(signals, brands)
    if path.exists() and _read(stamp) == digest:
        return WarmIndex(matcher.load_index(path, signals, brands), built=False)
    index = matcher.load_index(path, signals, brands)
    index.save(path)
    _write(stamp, digest)
    logging.getLogger(LOG).info("index %s built over %d signals and saved to %s", matcher.name, len(signals), path)
    return WarmIndex(index, built=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    aside.write_text(text, encoding="ascii")
    aside.replace(path)
