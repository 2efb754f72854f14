"""Warm indexes for real-time checks, rebuilt in the background when the catalogue changes.

Each server process holds one :class:`Checker`. A background thread loads the matcher indexes at
start and looks every ``check_refresh_seconds`` for a change to assets, brands or the ranker (the
audit log's newest entry is the catalogue's version). While it rebuilds, checks keep being served
from the indexes in hand, and /readyz answers 503 so a load balancer prefers a current worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from counterscan.config import Settings
from counterscan.errors import ExternalError, ImageError
from counterscan.matchers import image_matchers, is_costly, matcher_names, with_matchers
from counterscan.matchers.context import SellerMatcher, seller_history
from counterscan.ranking.training import ModelScorer
from counterscan.records import AssetKind, Brand, Listing
from counterscan.scan.batch import backfill_asset_signals
from counterscan.scan.executors import limit_native_threads
from counterscan.scan.partition import Assessment, MatchContext, Prepared, assess_listing, encode_images, prepare
from counterscan.service.ops import Metrics
from counterscan.store.protocols import CheckCatalogue

LOG = "counterscan.service"


@dataclass(frozen=True)
class Warm:
    """One consistent generation of everything a check reads."""

    version: tuple[int, int]
    context: MatchContext
    prepared: Prepared
    model: ModelScorer | None
    brands: tuple[Brand, ...]
    sizes: dict[str, int]
    loaded_at: float


class Checker:
    def __init__(self, store: CheckCatalogue, settings: Settings, metrics: Metrics | None = None) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self._warm: Warm | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reloading = False
        self._error: str | None = None
        self.log = logging.getLogger(LOG)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        # A check's searches are small: native thread pools per request only contend for the cores
        # with the other requests and worker processes (as in scan workers).
        limit_native_threads(self.settings.scan_worker_threads)
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="counterscan-index-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
                self._error = None
            except Exception as exc:  # the server stays up; readiness says why it is not ready
                self._error = f"{type(exc).__name__}: {exc}"
                self.log.exception("index refresh failed")
            self._stop.wait(self.settings.check_refresh_seconds)

    def refresh(self) -> bool:
        """Rebuild when the catalogue changed since the last load; True when it did."""
        version = self.store.catalogue_version()
        current = self._warm
        if current is not None and current.version == version:
            return False
        if current is not None and current.version[0] == version[0]:
            # Only verdicts changed: sellers' history is refreshed, the indexes stay.
            sellers = seller_history(self.store.confirmed_counterfeits())
            context = replace(current.context, sellers=sellers, key=f"check:{version}")
            prepared = replace(current.prepared, seller=SellerMatcher(sellers))
            with self._lock:
                self._warm = replace(current, version=version, context=context, prepared=prepared)
            return True
        self._reloading = True
        try:
            warm = self._load(version)
        finally:
            self._reloading = False
        with self._lock:
            self._warm = warm
        self.update_gauges()
        return True

    def _load(self, version: tuple[int, int]) -> Warm:
        try:
            backfill_asset_signals(self.store, self.settings)
        except Exception:  # another worker backfilling the same asset at once; its rows serve us too
            self.log.info("asset signal backfill raced another process", exc_info=True)
        brands = tuple(self.store.brands())
        # The matchers a scan of every brand would run now (the same choice as run_scan makes).
        kinds = cast(set[AssetKind], self.store.live_asset_kinds())
        settings = with_matchers(self.settings, matcher_names(self.settings, kinds, brands=bool(brands)))
        signals = {matcher.name: self.store.asset_signals(matcher.name) for matcher in image_matchers(settings)}
        context = MatchContext(
            key=f"check:{version}",
            settings=settings,
            brands=brands,
            asset_signals=signals,
            blob_root=self.settings.blob_dir,
            sellers=seller_history(self.store.confirmed_counterfeits()),
        )
        return Warm(
            version=version,
            context=context,
            prepared=prepare(context),
            model=ModelScorer.active(self.store),
            brands=brands,
            sizes={name: len(found) for name, found in signals.items()},
            loaded_at=time.time(),
        )

    # -- state ------------------------------------------------------------------------------

    def warm(self) -> Warm | None:
        with self._lock:
            return self._warm

    def readiness(self) -> dict[str, Any]:
        warm = self.warm()
        if warm is None:
            return {"ready": False, "reason": self._error or "indexes loading"}
        stale = self.store.catalogue_version()[0] != warm.version[0]
        state: dict[str, Any] = {
            "ready": not stale,
            "index_age_seconds": round(time.time() - warm.loaded_at, 3),
            "signals": warm.sizes,
            # Per matcher, whether this process loaded its saved index or had to build it.
            "indexes": {
                matcher.name: "built" if matcher.name in warm.prepared.built else "loaded"
                for matcher, _index in warm.prepared.image
            },
        }
        if stale:
            state["reason"] = "assets changed; indexes reloading"
        return state

    def update_gauges(self) -> None:
        warm = self.warm()
        if self.metrics is None or warm is None:
            return
        for name, size in warm.sizes.items():
            self.metrics.index_signals.labels(matcher=name).set(size)
        self.metrics.index_loaded.set(warm.loaded_at)
        self.metrics.index_ready.set(1 if not self._reloading else 0)

    def wait_ready(self, timeout: float) -> Warm:
        deadline = time.monotonic() + timeout
        while (warm := self.warm()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(self._error or "indexes did not load in time")
            time.sleep(0.05)
        return warm

    # -- checking ---------------------------------------------------------------------------

    def check(
        self,
        listing: Listing,
        images: Sequence[tuple[str, bytes]] = (),
        signals: Sequence[tuple[str, Mapping[str, bytes]]] = (),
        *,
        costly: bool = True,
    ) -> tuple[Assessment, str]:
        """Evidence and scores for one listing, its images ((sha256, bytes)) and any pre-computed
        signals ((key, signal per matcher)); returns the assessment and the scorer's name.
        ``costly`` False: from the cheap matchers alone (see :meth:`costly_matchers`)."""
        warm = self.warm()
        if warm is None:
            raise NotReadyError("indexes are still loading; retry shortly")
        started = time.perf_counter()
        encoded: list[tuple[str, Mapping[str, bytes]]] = []
        for number, image in enumerate(images, start=1):
            try:
                encoded.extend(
                    encode_images(warm.prepared, warm.context, [image], observe=self._observe, costly=costly)
                )
            except ImageError as exc:  # kept typed: a bomb is 413, a non-image 415
                raise type(exc)(exc.reason, source=f"image {number}") from None
        encoded.extend(signals)
        assessed = assess_listing(
            warm.prepared, warm.context, listing, encoded, model=warm.model, observe=self._observe, costly=costly
        )
        if self.metrics is not None:
            self.metrics.check_seconds.observe(time.perf_counter() - started)
        return assessed, "cold-start" if warm.model is None else warm.model.name

    def costly_matchers(self) -> list[str]:
        """The costly image matchers the warm indexes run (what a check may finish in the background)."""
        warm = self.warm()
        return (
            [] if warm is None else [matcher.name for matcher, _index in warm.prepared.image if is_costly(matcher.name)]
        )

    def _observe(self, matcher: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.matcher_seconds.labels(matcher=matcher).observe(seconds)


class NotReadyError(ExternalError):
    """Checks before the first index load (HTTP 503)."""
