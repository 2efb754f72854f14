"""What the routes of one app share: made once by ``api.create_app``, kept on ``app.state.service``,
and handed to each route as a FastAPI dependency (so a test may override any one of them)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from counterscan.config import Settings
from counterscan.matchers import AssetIndex, ImageMatcher, image_matchers
from counterscan.ranking.ranker import cold_start_scores
from counterscan.registry.assets import UploadLimits, upload_limits
from counterscan.registry.members import AuthPolicy
from counterscan.service.checker import Checker
from counterscan.service.ops import Metrics, access_logger
from counterscan.store import BlobStore, Store

BACKGROUND_CHECKS = 4
"""Checks a server process finishes in the background at most at once (queued or running)."""


@dataclass(frozen=True)
class Service:
    """One server process's store, settings, indexes and instruments."""

    settings: Settings
    store: Store
    blobs: BlobStore
    matchers: Sequence[ImageMatcher[AssetIndex]]
    upload_limits: UploadLimits
    auth_policy: AuthPolicy
    metrics: Metrics
    checker: Checker
    """Each server process keeps its own warm indexes, loaded in the background (see /readyz)."""
    access_log: logging.Logger
    background: ThreadPoolExecutor
    """Where checks' costly matchers finish after the answer (one thread: they use the cores)."""
    background_slots: threading.BoundedSemaphore
    """Checks that may wait for the background at once; past that a check runs its costly matchers
    before answering (the caller waits: backpressure, not an ever-growing queue)."""

    @classmethod
    def open(cls, settings: Settings) -> Service:
        store = Store.open(settings.database_url, upgrade_scorer=cold_start_scores)
        metrics = Metrics(store)
        return cls(
            settings=settings,
            store=store,
            blobs=BlobStore(settings.blob_dir),
            matchers=image_matchers(settings),
            upload_limits=upload_limits(settings),
            auth_policy=AuthPolicy.of(settings),
            metrics=metrics,
            checker=Checker(store, settings, metrics),
            access_log=access_logger(),
            background=ThreadPoolExecutor(max_workers=1, thread_name_prefix="counterscan-check"),
            background_slots=threading.BoundedSemaphore(BACKGROUND_CHECKS),
        )


def current_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _settings(request: Request) -> Settings:
    return current_service(request).settings


def _store(request: Request) -> Store:
    return current_service(request).store


def _blobs(request: Request) -> BlobStore:
    return current_service(request).blobs


def _metrics(request: Request) -> Metrics:
    return current_service(request).metrics


def _checker(request: Request) -> Checker:
    return current_service(request).checker


ServiceDep = Annotated[Service, Depends(current_service)]
SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[Store, Depends(_store)]
BlobsDep = Annotated[BlobStore, Depends(_blobs)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
CheckerDep = Annotated[Checker, Depends(_checker)]
