"""Ingestion jobs: feeds to listings, images to the content-addressed cache, bad records to quarantine.

A job reads a source from its stored checkpoint, and commits listings, quarantined records and
the checkpoint that covers them in one transaction per batch: a crash loses nothing that was
acknowledged, and the next run goes on from there.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from counterscan.errors import UserError
from counterscan.imaging.decode import DecodeLimits
from counterscan.ingest.base import KNOWN_COLUMNS, Checkpoint, FeedListing, Source
from counterscan.ingest.files import FileSource, FolderSource
from counterscan.ingest.http_source import HttpJsonSource, default_name
from counterscan.ingest.images import FetchOptions, ImageCollector, feed_folder, resolve_ref
from counterscan.ingest.mapping import SourceMapping, load_mapping, parse_mapped, parse_mapping
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.ingest.urls import is_web_url
from counterscan.records import ImageOutcome, IngestedListing, Rejected
from counterscan.store import BlobStore
from counterscan.store.holders import holder_is_dead, this_holder
from counterscan.store.listings import listing_content_hash
from counterscan.store.protocols import ListingWriter

BATCH = 2000
MAX_IMAGE_ATTEMPTS = 5
"""Failed images are fetched again by each later run of their source, up to this many tries."""
UNLIMITED = 2**31 - 1
MAX_UNKNOWN_SHOWN = 20
STALE_INGEST_LOCK = timedelta(hours=2)
"""An ingest lock whose holder is on another host and silent this long is taken over."""
Progress = Callable[[int], None]


@dataclass(frozen=True)
class IngestSummary:
    source: str
    read: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    images_fetched: int = 0
    images_failed: int = 0
    images_retried_ok: int = 0
    problems: tuple[Rejected, ...] = field(default=(), repr=False)
    """The first few rejected records and images, for display."""
    unknown_columns: tuple[str, ...] = ()
    """Columns that are none of ours (kept as attributes), in the order first met."""

    def line(self) -> str:
        return (
            f"{self.source}: read {self.read}, new {self.new}, updated {self.updated}, "
            f"unchanged {self.unchanged}, quarantined {self.quarantined}, "
            f"images fetched {self.images_fetched}, images failed {self.images_failed}"
            + (f", earlier failures recovered {self.images_retried_ok}" if self.images_retried_ok else "")
            + (f"; unknown columns (kept as attributes): {self.unknown_line()}" if self.unknown_columns else "")
        )

    def unknown_line(self) -> str:
        """The unknown columns, each with the known column it is probably a misspelling of."""
        shown = []
        for name in self.unknown_columns:
            near = closest_column(name)
            shown.append(f"{name} (did you mean {near}?)" if near else name)
        return ", ".join(shown)


def closest_column(name: str) -> str | None:
    """The known column ``name`` is most likely a misspelling of (case, separators, a letter or
    two), or None when it is not close to any."""
    folded = _folded(name)
    if not folded or (folded in _FOLDED_KNOWN and _FOLDED_KNOWN[folded] == name):
        return None
    if folded in _FOLDED_KNOWN:
        return _FOLDED_KNOWN[folded]
    found = difflib.get_close_matches(folded, list(_FOLDED_KNOWN), n=1, cutoff=0.8)
    return _FOLDED_KNOWN[found[0]] if found else None


def _folded(name: str) -> str:
    return "".join(char for char in name.lower() if char.isalnum())


_FOLDED_KNOWN = {_folded(name): name for name in KNOWN_COLUMNS}


def open_source(
    location: str,
    *,
    name: str | None = None,
    mapping: SourceMapping | Path | None = None,
    network: NetPolicy | None = None,
) -> Source:
    """A source for a feed file, a folder of feed files, or an http(s) URL (fetched under ``network``)."""
    resolved = mapping if isinstance(mapping, SourceMapping) else load_mapping(mapping)
    if is_web_url(location):
        return HttpJsonSource(
            location, name=name or resolved.name or default_name(location), mapping=resolved, network=network
        )
    path = Path(location)
    if not path.exists():
        raise UserError(f"{location}: no such file or folder")
    label = name or resolved.name
    if path.is_dir():
        return FolderSource(path, name=label or path.name, mapping=resolved)
    return FileSource(path, name=label or path.name.split(".")[0], mapping=resolved)


def _mapping_of(source: Source) -> SourceMapping:
    mapping = getattr(source, "mapping", None)
    return mapping if isinstance(mapping, SourceMapping) else SourceMapping()


class _Job:
    def __init__(
        self, store: ListingWriter, collector: ImageCollector, source: Source, progress: Progress | None, keep: int
    ) -> None:
        self.store = store
        self.collector = collector
        self.source = source
        self.progress = progress
        self.keep = keep
        self.counts: dict[str, int] = dict.fromkeys(
            ("read", "new", "updated", "unchanged", "quarantined", "images_fetched", "images_failed"), 0
        )
        self.problems: list[Rejected] = []
        self.batch: list[FeedListing] = []
        self.rejected: list[Rejected] = []
        self.seen: dict[str, str] = {}
        self.unknown: dict[str, None] = {}
        self.folder = feed_folder(source.kind, source.location)

    def take(self, item: FeedListing | Rejected) -> None:
        self.counts["read"] += 1
        if self.progress is not None:
            self.progress(1)
        if isinstance(item, Rejected):
            self._reject(item)
        elif item.listing.listing_id in self.seen:
            first = self.seen[item.listing.listing_id]
            self._reject(
                Rejected(
                    self.source.name,
                    item.record,
                    f"duplicate listing_id (first seen at {first})",
                    {"row": {"listing_id": item.listing.listing_id}},
                )
            )
        else:
            self.seen[item.listing.listing_id] = item.record
            self.batch.append(item)
            if len(self.unknown) < MAX_UNKNOWN_SHOWN:
                self.unknown.update(dict.fromkeys(item.listing.attributes))

    def _reject(self, item: Rejected) -> None:
        self.counts["quarantined" if item.kind == "record" else "images_failed"] += 1
        self.rejected.append(item)
        if len(self.problems) < self.keep:
            self.problems.append(item)

    def flush(self, checkpoint: Checkpoint | None) -> None:
        known = self.store.listing_hashes(self.source.name, [item.listing.listing_id for item in self.batch])
        hashed = []
        for item in self.batch:
            try:
                hashed.append((item, listing_content_hash(item.listing)))
            except Exception as exc:  # the row boundary: one listing's failure is its own
                reason = f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
                self._reject(Rejected(self.source.name, item.record, reason, {"row": {"line": ""}}))
        # Images are fetched only for new or changed listings: re-running a feed costs no downloads.
        changed = [(item, digest) for item, digest in hashed if known.get(item.listing.listing_id) != digest]
        self.counts["unchanged"] += len(self.batch) - len(changed)
        refs = [resolve_ref(ref, item.base_dir) for item, _digest in changed for ref in item.listing.image_refs]
        outcomes = self.collector.collect(refs, folder=self.folder)
        ingested = [self._with_images(item, digest, outcomes) for item, digest in changed]

        counts = self.store.commit_ingest_batch(
            self.source.name, ingested, self.rejected, None if checkpoint is None else checkpoint.state
        )
        self.counts["new"] += counts.new
        self.counts["updated"] += counts.updated
        self.counts["unchanged"] += counts.unchanged
        self.batch.clear()
        self.rejected.clear()

    def _with_images(self, item: FeedListing, digest: str, outcomes: dict[str, ImageOutcome]) -> IngestedListing:
        images = []
        for position, ref in enumerate(item.listing.image_refs, start=1):
            outcome = outcomes[resolve_ref(ref, item.base_dir)]
            images.append(outcome)
            if outcome.error is None:
                self.counts["images_fetched"] += 1
                continue
            self._reject(
                Rejected(
                    self.source.name,
                    f"{item.record} image {position}",
                    f"{ref}: {outcome.error}",
                    {"listing_id": item.listing.listing_id, "image": outcome.ref},
                    kind="image",
                )
            )
        return IngestedListing(listing=item.listing, images=tuple(images), content_hash=digest)

    def summary(self, retried_ok: int) -> IngestSummary:
        return IngestSummary(
            source=self.source.name,
            images_retried_ok=retried_ok,
            problems=tuple(self.problems),
            unknown_columns=tuple(self.unknown)[:MAX_UNKNOWN_SHOWN],
            **self.counts,
        )


def ingest(
    store: ListingWriter,
    blobs: BlobStore,
    limits: DecodeLimits,
    source: Source,
    *,
    fetch: FetchOptions | None = None,
    progress: Progress | None = None,
    keep_problems: int = 50,
) -> IngestSummary:
    """Read ``source`` from its checkpoint; land the good records and quarantine the rest.

    One ingest of a source at a time: a second one ends with LockHeldError (exit 12).
    """
    lock = f"ingest:{source.name}"
    holder = this_holder()
    store.acquire_lock(lock, holder, conflicts=(), stale_after=STALE_INGEST_LOCK, dead=holder_is_dead, what="ingest")
    try:
        beat = lambda: store.heartbeat(lock, holder)  # noqa: E731
        return _ingest(
            store, blobs, limits, source, fetch=fetch, progress=progress, keep_problems=keep_problems, beat=beat
        )
    finally:
        store.release_lock(lock, holder)


def _ingest(
    store: ListingWriter,
    blobs: BlobStore,
    limits: DecodeLimits,
    source: Source,
    *,
    fetch: FetchOptions | None,
    progress: Progress | None,
    keep_problems: int,
    beat: Callable[[], None],
) -> IngestSummary:
    store.record_source(source.name, kind=source.kind, location=source.location, mapping=_mapping_of(source).as_dict())
    state = store.source_state(source.name)
    checkpoint = state[3] if state else None
    with ImageCollector(store, blobs, limits, fetch or FetchOptions()) as collector:
        retried_ok = _retry_images(store, collector, source.name, feed_folder(source.kind, source.location))
        job = _Job(store, collector, source, progress, keep_problems)
        covered: Checkpoint | None = None
        reading = True
        try:
            for item in source.read(checkpoint):
                if isinstance(item, Checkpoint):
                    covered = item
                    if len(job.batch) + len(job.rejected) >= BATCH:
                        reading = False
                        job.flush(covered)
                        beat()
                        reading = True
                else:
                    job.take(item)
        except BaseException:
            # The source failed (network, bad file, interrupt): keep what was read. The checkpoint
            # saved with it is the last one the source vouched for, so rows after it are read
            # again next time, and cost nothing then because they are unchanged.
            if reading:
                job.flush(covered)
            raise
        job.flush(covered)
    return job.summary(retried_ok)


def _retry_images(
    store: ListingWriter,
    collector: ImageCollector,
    source: str,
    folder: Path | None,
    max_attempts: int = MAX_IMAGE_ATTEMPTS,
) -> int:
    failed = store.failed_images(source, max_attempts=max_attempts)
    if not failed:
        return 0
    outcomes = collector.collect([image.ref for image in failed], folder=folder)
    return store.update_images([(image, outcomes[image.ref]) for image in failed])


@dataclass(frozen=True)
class RetrySummary:
    resolved: int
    still_failing: int

    def line(self) -> str:
        return f"quarantine retry: {self.resolved} resolved, {self.still_failing} still failing"


def retry_quarantine(
    store: ListingWriter,
    blobs: BlobStore,
    limits: DecodeLimits,
    *,
    source: str | None = None,
    fetch: FetchOptions | None = None,
) -> RetrySummary:
    """Parse quarantined records again (with the source's current mapping) and fetch failed images again."""
    resolved: list[int] = []
    failing = 0
    with ImageCollector(store, blobs, limits, fetch or FetchOptions()) as collector:
        for name in sorted({entry.source for entry, _raw in store.quarantine_records(source)}):
            state = store.source_state(name)
            folder = feed_folder(state[0], state[1]) if state else None
            _retry_images(store, collector, name, folder, max_attempts=UNLIMITED)
            mapping = parse_mapping(state[2]) if state and state[2] else SourceMapping()
            still_failing = {image.ref for image in store.failed_images(name, max_attempts=UNLIMITED)}
            for entry, raw in store.quarantine_records(name):
                if entry.kind == "image":
                    if raw.get("image") not in still_failing:
                        resolved.append(entry.entry_id)
                    else:
                        failing += 1
                        store.bump_quarantine(entry.entry_id, entry.reason)
                    continue
                outcome = _reparse(name, entry.record, raw, mapping)
                if isinstance(outcome, Rejected):
                    failing += 1
                    store.bump_quarantine(entry.entry_id, outcome.reason)
                    continue
                refs = [resolve_ref(ref, outcome.base_dir) for ref in outcome.listing.image_refs]
                images = collector.collect(refs, folder=folder)
                listing = IngestedListing(outcome.listing, tuple(images[ref] for ref in refs))
                store.commit_ingest_batch(name, [listing], [], None)
                resolved.append(entry.entry_id)
    store.resolve_quarantine(resolved)
    return RetrySummary(resolved=len(resolved), still_failing=failing)


def _reparse(source: str, record: str, raw: dict[str, Any], mapping: SourceMapping) -> FeedListing | Rejected:
    row = raw.get("row")
    if not isinstance(row, dict) or ("line" in row and len(row) == 1):
        return Rejected(source, record, "the original record could not be kept; fix it in the feed and ingest again")
    base_dir = Path(raw["base_dir"]) if raw.get("base_dir") else None
    return parse_mapped(source, record, row, mapping.columns, base_dir)


__all__ = ["FetchOptions", "IngestSummary", "Source", "ingest", "open_source", "retry_quarantine"]
