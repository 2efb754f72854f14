"""Hash exchange: a brand's image signals written to, and read from, a versioned file.

Members share what they know without sharing pictures: the export holds each asset's perceptual
hashes (every indexed variant) and a little metadata; the import turns them into a hash-only
bank of assets on one of the importer's brands, matched like any asset, with evidence that says
which bank they came from. The format, one JSON object per line (optionally gzip-compressed):

    {"format": "counterscan-signals", "version": 1, "exported_at": "...", "exporter": "acme-group",
     "brands": ["Acme"]}
    {"brand": "Acme", "asset": "12", "kind": "product", "sha256": "<the picture's SHA-256>",
     "width": 800, "height": 600, "name": "shoe.png", "matcher": "phash", "variant": "original",
     "hash": "<hex of the hash bits, most significant first>"}

Hashes are pHash and dHash (64 bits, imagehash's definitions and hex) and PDQ (256 bits).
Readers accept any version up to their own and refuse newer ones.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from counterscan.errors import DataError, UserError
from counterscan.records import IMAGE_ASSET_KINDS, BankAsset, Member, SharedSignal
from counterscan.registry.members import require_owner, require_reader
from counterscan.store.protocols import CatalogueWriter

FORMAT = "counterscan-signals"
VERSION = 1
HASH_BITS = {"phash": 64, "dhash": 64, "pdq": 256}
"""The signals that travel: fixed-size perceptual hashes, the same in every installation."""
MAX_LINE_CHARS = 10_000
BATCH_ASSETS = 200


@dataclass(frozen=True)
class ExportReport:
    assets: int
    signals: int


@dataclass(frozen=True)
class ImportReport:
    bank: str
    added: int
    already_present: int
    signals: int
    rejected: tuple[str, ...]


def open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.GzipFile(path, mode + "b"), encoding="utf-8")
    return path.open(mode, encoding="utf-8")


def export_signals(store: CatalogueWriter, actor: Member, brands: Sequence[str], out: Path) -> ExportReport:
    """Write the hashes of the brands' live image assets; members export their own brands, analysts any."""
    if not brands:
        raise UserError("name at least one brand to export")
    resolved = [store.brand(name) for name in brands]
    for brand in resolved:
        require_reader(actor, brand)
    rows = store.shareable_signals([brand.brand_id for brand in resolved], tuple(HASH_BITS))
    header = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exporter": actor.name,
        "brands": [brand.name for brand in resolved],
    }
    with open_text(out, "w") as handle:
        handle.write(json.dumps(header) + "\n")
        for row in rows:
            handle.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
    return ExportReport(assets=len({row.asset for row in rows}), signals=len(rows))


def read_signals(lines: Iterable[str], source: str) -> tuple[dict[str, Any], Iterator[SharedSignal | str]]:
    """The file's header, then each line as a signal or a one-line reason it was refused."""
    iterator = iter(enumerate(lines, start=1))
    try:
        _, first = next(iterator)
        header = json.loads(first)
    except StopIteration:
        raise DataError(f"{source}: empty file, not a counterscan signals file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{source}: line 1 is not JSON ({exc.msg}); not a counterscan signals file") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DataError(f"{source}: line 1 does not say format {FORMAT!r}; not a counterscan signals file")
    version = header.get("version")
    if not isinstance(version, int) or not 1 <= version <= VERSION:
        raise DataError(f"{source}: format version {version!r} is not one this counterscan reads (1..{VERSION})")

    def records() -> Iterator[SharedSignal | str]:
        for number, line in iterator:
            if not line.strip():
                continue
            try:
                yield _signal(line)
            except (ValueError, TypeError, KeyError) as exc:
                yield f"{source} line {number}: {exc}"

    return header, records()


def _signal(line: str) -> SharedSignal:
    if len(line) > MAX_LINE_CHARS:
        raise ValueError(f"line over {MAX_LINE_CHARS} characters")
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    matcher = str(item["matcher"])
    if matcher not in HASH_BITS:
        raise ValueError(f"unknown hash {matcher!r} (one of {', '.join(HASH_BITS)})")
    text = str(item["hash"])
    if len(text) * 4 != HASH_BITS[matcher]:
        raise ValueError(f"a {matcher} hash has {HASH_BITS[matcher] // 4} hex digits, not {len(text)}")
    signal = bytes.fromhex(text)
    kind = str(item["kind"])
    if kind not in IMAGE_ASSET_KINDS:
        raise ValueError(f"asset kind {kind!r} is not an image kind ({', '.join(IMAGE_ASSET_KINDS)})")
    sha256 = str(item["sha256"]).lower()
    if len(sha256) != 64 or any(char not in "0123456789abcdef" for char in sha256):
        raise ValueError("sha256 is not 64 hex digits")
    return SharedSignal(
        brand=_short(item["brand"], "brand"),
        asset=_short(item["asset"], "asset"),
        kind=kind,  # checked against IMAGE_ASSET_KINDS above
        sha256=sha256,
        width=_size(item.get("width", 0)),
        height=_size(item.get("height", 0)),
        name=_short(item.get("name", ""), "name", limit=300),
        matcher=matcher,
        variant=_short(item.get("variant", "original"), "variant", limit=40),
        signal=signal,
    )


def _short(value: Any, field: str, *, limit: int = 200) -> str:
    text = str(value)
    if len(text) > limit:
        raise ValueError(f"{field} over {limit} characters")
    return text


def _size(value: Any) -> int:
    number = int(value)
    if not 0 <= number <= 1_000_000:
        raise ValueError(f"picture size {number} out of range")
    return number


def import_signals(
    store: CatalogueWriter, actor: Member, *, brand: str, path: Path, bank: str | None = None
) -> ImportReport:
    """Add the file's assets to ``brand`` as a hash-only bank; importing the same file again adds nothing.

    Assets are written in batches, each in one transaction with its signals, so an import that
    stops part-way keeps what it wrote and a re-run adds only the rest.
    """
    target = store.brand(brand)
    require_owner(actor, target)
    rejected: list[str] = []
    with open_text(path, "r") as handle:
        header, records = read_signals(handle, str(path))
        bank_name = bank or f"{header.get('exporter', 'unknown')}:{path.name}"
        if len(bank_name) > 200:
            raise UserError("bank name over 200 characters")
        grouped: dict[str, BankAsset] = {}
        for record in records:
            if isinstance(record, str):
                rejected.append(record)
                continue
            key = f"{record.brand}/{record.asset}"
            found = grouped.get(key)
            if found is None:
                found = grouped[key] = BankAsset(
                    external_id=key,
                    kind=record.kind,
                    sha256=record.sha256,
                    width=record.width,
                    height=record.height,
                    name=record.name,
                    signals={},
                )
            found.signals.setdefault(record.matcher, []).append((record.variant, record.signal))
    added = present = signals = 0
    items = list(grouped.values())
    origin = f"bank {bank_name} (exported by {header.get('exporter', 'unknown')})"
    for start in range(0, len(items), BATCH_ASSETS):
        batch = items[start : start + BATCH_ASSETS]
        written = store.add_bank_assets(
            brand_id=target.brand_id, bank=bank_name, origin=origin, assets=batch, actor=actor.name
        )
        for item, was_added in zip(batch, written, strict=True):
            if was_added:
                added += 1
                signals += sum(len(variants) for variants in item.signals.values())
            else:
                present += 1
    return ImportReport(bank=bank_name, added=added, already_present=present, signals=signals, rejected=tuple(rejected))
