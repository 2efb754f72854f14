"""One batch scan: safe to schedule, resumable, incremental, and able to run on many workers.

A scan takes a lock in the store (so two scans never overlap, on one machine or many), then:

1. re-scans listings already scanned, against the brands whose assets or profile changed since
   they were last scanned (and only those brands; other brands' evidence is kept), and
2. scans listings that are new or changed since the last scan, against every brand.

Work goes out in batches; each batch's evidence, scores and progress cursor are committed in
one transaction, so a crash or kill -9 resumes without redoing finished batches and without
duplicating evidence. ``max_minutes`` ends a scan cleanly after the batch in hand.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Any, cast

from counterscan.config import Settings
from counterscan.errors import ImageError
from counterscan.imaging.decode import Picture
from counterscan.matchers import (
    AssetIndex,
    ImageMatcher,
    decode_limits,
    image_matchers,
    is_stored,
    matcher_fingerprints,
    matcher_names,
    with_matchers,
)
from counterscan.matchers.context import seller_history
from counterscan.ranking.training import ModelScorer
from counterscan.records import AssetKind, Brand, BrandScore, Evidence, ListingToScan, ScanResult
from counterscan.scan.executors import Executor, InlineExecutor, Partition
from counterscan.scan.partition import Assessment, MatchContext, PartitionResult, assess_many
from counterscan.store import BlobStore
from counterscan.store.holders import holder_is_dead, this_holder
from counterscan.store.protocols import ScanLedger, SignalBackfill

PER_WORKER_BATCH = 128
MIN_PARTITION = 32

CPU_HISTOGRAM_CAP = 10_000
STALE_LOCK = timedelta(minutes=30)
ALL = "all"


class ScanStatus(Enum):
    DONE = "done"
    NOTHING_TO_DO = "nothing-to-do"
    PARTIAL = "partial"


@dataclass(frozen=True)
class MatcherChange:
    """How the image matchers of a scan differ from those the listings were last scanned with."""

    added: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    """Same matcher, other settings (or a new version of it)."""
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def words(self) -> str:
        parts = [f"{', '.join(self.added)} added"] if self.added else []
        parts += [f"{', '.join(self.changed)} settings changed"] if self.changed else []
        parts += [f"{', '.join(self.removed)} removed"] if self.removed else []
        return "; ".join(parts)


@dataclass(frozen=True)
class ScanSummary:
    scan_id: int | None
    status: ScanStatus
    scanned: int
    rescanned: int
    suspects: int
    images_unreadable: int
    remaining: int
    full_rescan: bool = False
    matchers: tuple[str, ...] = ()
    """The image matchers the scan ran."""
    matcher_change: MatcherChange = MatcherChange()
    rescanned_for_matchers: int = 0
    """Listings re-scanned because the matchers changed (their images go through the changed ones)."""
    rescored: int = 0
    """Listings whose stored evidence was scored again because the active scorer changed."""
    scorer: str = "cold-start"
    images_encoded: Mapping[str, int] = field(default_factory=dict)
    """Per image matcher, the images it encoded: a photo shared by many listings is encoded once,
    and one whose signal the store keeps (every matcher but keypoints) never again."""
    indexes_built: tuple[str, ...] = ()
    """One name per index a worker built rather than loaded (none when the catalogue is unchanged)."""
    stages_skipped: Mapping[str, int] = field(default_factory=dict)
    """Per costly matcher, the images it was spared: every brand scanned was settled before it."""
    image_cpu_ms: Mapping[int, int] = field(default_factory=dict)
    """How many images took each whole number of CPU milliseconds in the workers (decode, encode
    and search; CPU_HISTOGRAM_CAP and over counted at the cap): the benchmark's per-photo cost."""

    def line(self) -> str:
        if self.status is ScanStatus.NOTHING_TO_DO:
            return "scan: nothing to do (no new listings, no changed assets, matchers or model)"
        rescans = []
        if self.rescanned:
            why = "every listing, --all" if self.full_rescan else "their brands' assets changed"
            rescans.append(f"{self.rescanned} listings re-scanned ({why})")
        if self.rescanned_for_matchers or self.matcher_change:
            rescans.append(
                f"{self.rescanned_for_matchers} listings re-scanned for changed image matchers "
                f"({self.matcher_change.words()})"
            )
        # Say what was re-scanned first, so "0 new" reads as news, not as "nothing happened".
        work = (
            f"{', '.join(rescans)}, {self.scanned} new or changed"
            if rescans
            else f"{self.scanned} new or changed listings scanned"
        )
        text = (
            f"scan {self.scan_id}: {work}, {self.suspects} with evidence"
            + (f", {self.rescored} re-scored with the {self.scorer} scorer" if self.rescored else "")
            + (f", {self.images_unreadable} images unreadable" if self.images_unreadable else "")
            + f"; image matchers: {', '.join(self.matchers) or 'none'}"
        )
        if self.status is ScanStatus.PARTIAL:
            text += f"; time budget reached, {self.remaining} listings left for the next run"
        return text


def _scope(source: str | None) -> tuple[str, list[str]]:
    """The lock name of a scan and the lock names it conflicts with."""
    if source is None:
        return "scan:all", ["scan:"]
    return f"scan:source:{source}", ["scan:all"]


def _context_key(settings: Settings, fingerprints: dict[int, str]) -> str:
    payload = json.dumps([repr(settings), sorted(fingerprints.items())])
    return hashlib.sha256(payload.encode()).hexdigest()


def backfill_asset_signals(store: SignalBackfill, settings: Settings) -> int:
    """Signals for assets uploaded before a matcher was turned on; returns how many assets gained some."""
    blobs = BlobStore(settings.blob_dir)
    limits = decode_limits(settings)
    missing: dict[int, tuple[str, list[ImageMatcher[AssetIndex]]]] = {}
    for matcher in image_matchers(settings):
        for asset_id, sha256 in store.assets_without_signals(matcher.name, matcher.asset_kinds):
            missing.setdefault(asset_id, (sha256, []))[1].append(matcher)
    filled = 0
    for asset_id, (sha256, matchers) in sorted(missing.items()):
        # Assets go through the same one-decode path as listing images.
        try:
            picture = Picture.open(blobs.get(sha256), limits, source=f"asset {asset_id}")
            signals = {matcher.name: matcher.encode_asset(picture) for matcher in matchers}
        except (ImageError, FileNotFoundError):
            continue  # validated at upload; a missing blob stays unmatched rather than stopping scans
        for name, variants in signals.items():
            store.add_asset_signals(asset_id, name, variants)
        filled += 1
    return filled


def _context(store: ScanLedger, settings: Settings, brands: Sequence[Brand], key: str) -> MatchContext:
    # Every brand's signals, even when only some brands are scanned: the indexes persisted under
    # HOME/index then stay the same from one scan to the next; evidence is filtered by brand.
    signals = {matcher.name: store.asset_signals(matcher.name) for matcher in image_matchers(settings)}
    sellers = store.counterfeit_sellers()
    key += hashlib.sha256(json.dumps(sorted((k, sorted(v.items())) for k, v in sellers.items())).encode()).hexdigest()
    return MatchContext(
        key=key,
        settings=settings,
        brands=tuple(brands),
        asset_signals=signals,
        blob_root=settings.blob_dir,
        sellers=seller_history(store.confirmed_counterfeits()),
    )


def score_listing(
    item: ListingToScan, evidence: Sequence[Evidence], brands: Sequence[Brand], model: ModelScorer | None = None
) -> ScanResult:
    """A listing's stored result, scored by the one scoring path a real-time check uses too."""
    (assessed,) = assess_many([(item.listing, evidence)], brands, model)
    return _result(item.listing_pk, assessed)


def _result(listing_pk: int, assessed: Assessment) -> ScanResult:
    return ScanResult(
        listing_pk=listing_pk,
        score=assessed.score,
        brand_id=assessed.brand_id,
        evidence=assessed.evidence,
        best=assessed.best,
        # A suspect per brand with evidence: each brand's owner reviews the listing under its brand.
        brand_scores=tuple(
            BrandScore(found.brand_id, found.score, found.best) for found in assessed.brands if found.score > 0
        ),
    )


def _sharing_images_together(batch: Sequence[ListingToScan], step: int) -> list[list[ListingToScan]]:
    """The batch cut into partitions of about ``step`` listings, listings that share an image in
    the same one: a photo in fifty listings is decoded and encoded once, by one worker."""
    group_of: dict[str, int] = {}
    groups: dict[int, list[ListingToScan]] = {}
    for number, item in enumerate(batch):
        joined = sorted({group_of[sha256] for sha256 in item.image_sha256s if sha256 in group_of})
        group = joined[0] if joined else number
        members = groups.setdefault(group, [])
        for other in joined[1:]:
            members.extend(groups.pop(other))
        members.append(item)
        for member in members if joined[1:] else [item]:
            for sha256 in member.image_sha256s:
                group_of[sha256] = group
    parts: list[list[ListingToScan]] = [[]]
    for members in groups.values():
        if parts[-1] and len(parts[-1]) + len(members) > step:
            parts.append([])
        parts[-1].extend(members)
    # Listings in key order within a partition, as they were (evidence order does not depend on it).
    return [sorted(part, key=lambda item: item.listing_pk) for part in parts if part]


class _Scan:
    def __init__(
        self,
        store: ScanLedger,
        settings: Settings,
        executor: Executor,
        *,
        source: str | None,
        deadline: float | None,
        progress: Callable[[int], None] | None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.executor = executor
        self.source = source
        self.deadline = deadline
        self.progress = progress
        self.holder = this_holder()
        self.lock_name, _ = _scope(source)
        self.suspects = 0
        self.unreadable = 0
        self.encoded: dict[str, int] = {}
        self.indexes_built: list[str] = []
        self.skipped: dict[str, int] = {}
        self.cpu_ms: dict[int, int] = {}
        self.out_of_time = False
        self.model = ModelScorer.active(store)
        self.brands: Sequence[Brand] = ()

    def batches(
        self,
        *,
        unscanned: bool,
        after: int,
        skip: Collection[int] = (),
        select: Callable[[Sequence[ListingToScan]], list[ListingToScan]] | None = None,
    ) -> Iterator[Sequence[ListingToScan]]:
        """Batches in key order until none is left or the time budget is spent; ``skip`` leaves
        listings out, ``select`` keeps those of a batch that it returns."""
        size = PER_WORKER_BATCH * max(1, self.executor.workers)
        while not self.out_of_budget():
            batch = self.store.next_listings(after=after, limit=size, unscanned=unscanned, source=self.source)
            if not batch:
                return
            after = batch[-1].listing_pk
            kept = [item for item in batch if item.listing_pk not in skip]
            kept = select(kept) if select is not None and kept else kept
            if kept:
                yield kept

    def matched(
        self, batches: Iterator[Sequence[ListingToScan]]
    ) -> Iterator[tuple[Sequence[ListingToScan], dict[int, tuple[Evidence, ...]]]]:
        """Evidence per batch, keeping the next batch at the workers while this one is written."""
        pending: tuple[Sequence[ListingToScan], Any] | None = None
        for batch in batches:
            handle = self.executor.submit(self._partitions(batch))
            if pending is not None:
                yield pending[0], self._collect(pending[1])
            pending = (batch, handle)
        if pending is not None:
            yield pending[0], self._collect(pending[1])

    def _partitions(self, batch: Sequence[ListingToScan]) -> list[Partition]:
        workers = max(1, self.executor.workers)
        # Signals the store does not keep (too large for every photo) are computed again where needed.
        names = [name for name in matcher_names(self.settings) if is_stored(name)]
        sha256s = sorted({sha256 for item in batch for sha256 in item.image_sha256s})
        cached = {name: self.store.cached_signals(name, sha256s) for name in names}
        # Shipping listings to workers pays off only for images still to decode and hash; searching
        # cached signals is cheaper here than the trip.
        uncached = sum(1 for sha256 in sha256s if any(sha256 not in cached[name] for name in names))
        uncached = uncached if len(names) == len(matcher_names(self.settings)) else len(sha256s)
        step = len(batch) if uncached < MIN_PARTITION else max(MIN_PARTITION, -(-len(batch) // workers))
        partitions: list[Partition] = []
        for part in _sharing_images_together(batch, step):
            wanted = {sha256 for item in part for sha256 in item.image_sha256s}
            partitions.append((part, {name: {k: v for k, v in cached[name].items() if k in wanted} for name in names}))
        return partitions

    def _collect(self, handle: Any) -> dict[int, tuple[Evidence, ...]]:
        evidence: dict[int, tuple[Evidence, ...]] = {}
        results: list[PartitionResult] = self.executor.gather(handle)
        for result in results:
            evidence.update(result.evidence)
            self.unreadable += result.unreadable
            self.indexes_built.extend(result.indexes_built)
            for name, count in result.skipped.items():
                self.skipped[name] = self.skipped.get(name, 0) + count
            for spent in result.cpu_ms:
                bucket = min(int(spent), CPU_HISTOGRAM_CAP)
                self.cpu_ms[bucket] = self.cpu_ms.get(bucket, 0) + 1
            for name, count in result.encoded.items():
                self.encoded[name] = self.encoded.get(name, 0) + count
            for name, fresh in result.new_signals.items():
                self.store.save_signals(name, fresh)
        return evidence

    def scored(self, batch: Sequence[ListingToScan], evidence: Sequence[Sequence[Evidence]]) -> list[ScanResult]:
        rows = [(item.listing, found) for item, found in zip(batch, evidence, strict=True)]
        assessed = assess_many(rows, self.brands, self.model)
        return [_result(item.listing_pk, found) for item, found in zip(batch, assessed, strict=True)]

    def out_of_budget(self) -> bool:
        self.out_of_time = self.deadline is not None and time.monotonic() >= self.deadline
        return self.out_of_time

    def commit(
        self,
        scan_id: int,
        results: list[ScanResult],
        *,
        cursor: int | None,
        mark_scanned: bool,
        count_suspects: bool = True,
    ) -> None:
        scorer = "cold-start" if self.model is None else self.model.name
        self.store.write_results(scan_id, results, cursor=cursor, mark_scanned=mark_scanned, scorer=scorer)
        self.store.heartbeat(self.lock_name, self.holder)
        if count_suspects:
            self.suspects += sum(1 for result in results if result.evidence)
        if self.progress is not None:
            self.progress(len(results))


def run_scan(
    store: ScanLedger,
    settings: Settings,
    *,
    executor: Executor | None = None,
    rescan_all: bool = False,
    source: str | None = None,
    max_minutes: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScanSummary:
    """Scan what is new or changed (``rescan_all``: everything), under the store's scan lock."""
    executor = executor or InlineExecutor()
    lock_name, conflicts = _scope(source)
    holder = this_holder()
    store.acquire_lock(lock_name, holder, conflicts=conflicts, stale_after=STALE_LOCK, dead=holder_is_dead)
    try:
        deadline = time.monotonic() + max_minutes * 60 if max_minutes is not None else None
        scan = _Scan(store, settings, executor, source=source, deadline=deadline, progress=progress)
        return _run(store, settings, scan, rescan_all=rescan_all, scope=ALL if source is None else f"source:{source}")
    finally:
        store.release_lock(lock_name, holder)


MATCHERS_STATE = "matchers"
"""scan_state: fingerprints of the image matchers the listings in scope were last scanned with."""
MATCHERS_PENDING = "matchers-pending"
"""scan_state: a re-scan for changed matchers under way (its target fingerprints and cursor)."""


def matcher_change(saved: dict[str, str] | None, now: dict[str, str]) -> MatcherChange:
    if saved is None:
        return MatcherChange(added=tuple(now))
    return MatcherChange(
        added=tuple(name for name in now if name not in saved),
        changed=tuple(name for name in now if name in saved and saved[name] != now[name]),
        removed=tuple(name for name in saved if name not in now),
    )


def _run(store: ScanLedger, settings: Settings, scan: _Scan, *, rescan_all: bool, scope: str) -> ScanSummary:
    brands = store.brands()
    scan.brands = brands
    # The matchers follow what the brands registered, unless image_matchers names them; workers
    # get settings that name them, so every process runs the same set.
    names = matcher_names(settings, cast(set[AssetKind], store.live_asset_kinds()), brands=bool(brands))
    settings = scan.settings = with_matchers(settings, names)
    backfill_asset_signals(store, settings)
    fingerprints = store.brand_fingerprints()
    state = store.scan_state(scan.source)
    matcher_fps = matcher_fingerprints(settings, names)
    scanned_before = store.count_listings(unscanned=False, source=scan.source)
    change = (
        matcher_change(state.get(MATCHERS_STATE), matcher_fps) if scanned_before and not rescan_all else MatcherChange()
    )
    scorer = scan.model.name if scan.model is not None else "cold-start"

    seen = store.scanned_fingerprints(scan.source)
    changed = sorted(brand_id for brand_id, fp in fingerprints.items() if rescan_all or seen.get(brand_id) != fp)
    plan = {"rescan_brands": {str(brand_id): fingerprints[brand_id] for brand_id in changed}}
    pending_new = store.count_listings(unscanned=True, source=scan.source)
    pending_old = scanned_before if changed else 0
    to_rescore = bool(store.listings_scored_otherwise(scorer, after=0, limit=1, source=scan.source))
    if not pending_new and not pending_old and not change and not to_rescore:
        if changed:
            store.save_fingerprints(0, {brand_id: fingerprints[brand_id] for brand_id in changed}, scan.source)
        store.save_scan_state(0, {MATCHERS_STATE: matcher_fps, MATCHERS_PENDING: None}, scan.source)
        return ScanSummary(None, ScanStatus.NOTHING_TO_DO, 0, 0, 0, 0, 0, matchers=names)

    resumed = store.unfinished_scan(scope, plan) if changed else None
    if resumed is not None:
        scan_id, cursor = resumed
        store.resume_scan(scan_id, scan.holder)
    else:
        scan_id, cursor = store.start_scan(scope=scope, plan=plan, holder=scan.holder), 0
    scanned = rescanned = for_matchers = rescored = 0
    matchers_done = not change
    try:
        # Phase 0: listings scanned before whose images the changed matchers look at (or that hold
        # evidence of a removed one), matched again in full; unchanged matchers reuse cached signals.
        done_here: set[int] = set()
        if change:
            for_matchers, matchers_done = _rescan_for_matchers(
                store, settings, scan, scan_id, brands, fingerprints, change, matcher_fps, done_here
            )
        # Phase 1: listings scanned before, against the brands that changed since.
        if changed:
            changed_set = set(changed)
            rescan_brands = [brand for brand in brands if brand.brand_id in changed_set]
            scan.executor.start(
                _context(store, settings, rescan_brands, _context_key(settings, fingerprints) + ":rescan")
            )
            for batch, fresh in scan.matched(scan.batches(unscanned=False, after=cursor, skip=done_here)):
                kept = store.evidence_of([item.listing_pk for item in batch], except_brands=changed_set)
                results = scan.scored(
                    batch, [[*kept.get(item.listing_pk, ()), *fresh[item.listing_pk]] for item in batch]
                )
                cursor = batch[-1].listing_pk
                scan.commit(scan_id, results, cursor=cursor, mark_scanned=False)
                rescanned += len(batch)
            if not scan.out_of_time:
                store.save_fingerprints(
                    scan_id, {brand_id: fingerprints[brand_id] for brand_id in changed}, scan.source
                )
        # Phase 2: new and changed listings, against every brand.
        scan.executor.start(_context(store, settings, brands, _context_key(settings, fingerprints)))

        for batch, fresh in scan.matched(scan.batches(unscanned=True, after=0)):
            scan.commit(
                scan_id,
                scan.scored(batch, [fresh[item.listing_pk] for item in batch]),
                cursor=None,
                mark_scanned=True,
            )
            scanned += len(batch)
        # Phase 3: the active model changed (trained, activated, rolled back): stored evidence is
        # scored again, nothing is matched.
        rescored = _rescore(store, scan, scan_id, brands, scorer)
        if rescan_all and not scan.out_of_time:
            matchers_done = True
        if matchers_done:
            store.save_scan_state(scan_id, {MATCHERS_STATE: matcher_fps, MATCHERS_PENDING: None}, scan.source)
    except BaseException:
        store.finish_scan(scan_id, status="failed", listings_scanned=scanned + rescanned + for_matchers)
        raise
    finally:
        scan.executor.close()
    remaining = store.count_listings(unscanned=True, source=scan.source)
    left_to_rescore = bool(store.listings_scored_otherwise(scorer, after=0, limit=1, source=scan.source))
    unfinished = remaining or (changed and rescanned < pending_old) or not matchers_done or left_to_rescore
    status = ScanStatus.PARTIAL if scan.out_of_time and unfinished else ScanStatus.DONE
    store.finish_scan(
        scan_id,
        status="partial" if status is ScanStatus.PARTIAL else "done",
        listings_scanned=scanned + rescanned + for_matchers,
    )
    return ScanSummary(
        scan_id,
        status,
        scanned,
        rescanned,
        scan.suspects,
        scan.unreadable,
        remaining,
        rescan_all,
        matchers=names,
        matcher_change=change,
        rescanned_for_matchers=for_matchers,
        rescored=rescored,
        scorer=scorer,
        images_encoded=dict(scan.encoded),
        stages_skipped=dict(scan.skipped),
        image_cpu_ms=dict(sorted(scan.cpu_ms.items())),
        indexes_built=tuple(scan.indexes_built),
    )


def _rescan_for_matchers(
    store: ScanLedger,
    settings: Settings,
    scan: _Scan,
    scan_id: int,
    brands: Sequence[Brand],
    fingerprints: dict[int, str],
    change: MatcherChange,
    matcher_fps: dict[str, str],
    done: set[int],
) -> tuple[int, bool]:
    """Re-scan the listings a matcher change affects; returns how many, and whether all were done.
    Progress is kept in the store after every batch, so a scan cut short resumes where it stopped."""
    pending = store.scan_state(scan.source).get(MATCHERS_PENDING) or {}
    after = int(pending.get("cursor", 0)) if pending.get("fingerprints") == matcher_fps else 0
    looks_at_images = bool(change.added or change.changed)
    removed = set(change.removed)
    scan.executor.start(_context(store, settings, brands, _context_key(settings, fingerprints)))
    count = 0

    def affected(batch: Sequence[ListingToScan]) -> list[ListingToScan]:
        holding = store.evidence_of([item.listing_pk for item in batch], except_brands=()) if removed else {}
        return [
            item
            for item in batch
            if (looks_at_images and item.image_sha256s)
            or any(found.matcher in removed for found in holding.get(item.listing_pk, ()))
        ]

    for batch, fresh in scan.matched(scan.batches(unscanned=False, after=after, select=affected)):
        results = scan.scored(batch, [fresh[item.listing_pk] for item in batch])
        scan.commit(scan_id, results, cursor=None, mark_scanned=False)
        done.update(item.listing_pk for item in batch)
        count += len(batch)
        pending = {"fingerprints": matcher_fps, "cursor": batch[-1].listing_pk}
        store.save_scan_state(scan_id, {MATCHERS_PENDING: pending}, scan.source)
    return count, not scan.out_of_time


def _rescore(store: ScanLedger, scan: _Scan, scan_id: int, brands: Sequence[Brand], scorer: str) -> int:
    """Score again, with the active scorer, the listings with evidence that another scorer scored."""
    count, after = 0, 0
    while not scan.out_of_budget():
        pks = store.listings_scored_otherwise(scorer, after=after, limit=PER_WORKER_BATCH * 4, source=scan.source)
        if not pks:
            break
        listings = store.listings_by_pk(pks)
        evidence = store.evidence_of(pks, except_brands=())
        items = [ListingToScan(pk, listings[pk], ()) for pk in pks if pk in listings]
        results = scan.scored(items, [evidence.get(item.listing_pk, []) for item in items])
        scan.commit(scan_id, results, cursor=None, mark_scanned=False, count_suspects=False)
        count += len(results)
        after = pks[-1]
    return count
