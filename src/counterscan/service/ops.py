"""Operations: Prometheus metrics, structured request logs, who may read /metrics.

Several worker processes (``counterscan serve --workers N``) each count their own requests; with
``PROMETHEUS_MULTIPROC_DIR`` set (``serve`` sets it when it starts more than one worker) every
worker writes its numbers there and any worker's /metrics adds them up.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from counterscan.store.protocols import OperationsReader

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCESS_LOGGER = "counterscan.access"


class Metrics:
    """The service's instruments, in a registry of their own (never the process-global one)."""

    def __init__(self, store: OperationsReader) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        # In multiprocess mode the values live in files; the registry is assembled at scrape time.
        target = None if self.multiprocess else self.registry
        self.requests = Counter(
            "counterscan_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=target,
        )
        self.request_seconds = Histogram(
            "counterscan_http_request_seconds",
            "HTTP request latency by route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=target,
        )
        self.check_seconds = Histogram(
            "counterscan_check_seconds",
            "Whole check latency (decode, match, score)",
            buckets=LATENCY_BUCKETS,
            registry=target,
        )
        self.matcher_seconds = Histogram(
            "counterscan_check_matcher_seconds",
            "Check latency per matcher (encode and query)",
            ["matcher"],
            buckets=LATENCY_BUCKETS,
            registry=target,
        )
        self.checks = Counter("counterscan_checks", "Checks by outcome", ["outcome"], registry=target)
        self.index_signals = Gauge(
            "counterscan_index_signals",
            "Signals in each warm matcher index",
            ["matcher"],
            multiprocess_mode="livemax",
            registry=target,
        )
        self.index_loaded = Gauge(
            "counterscan_index_loaded_timestamp_seconds",
            "When the warm indexes were last (re)built; age = now - this",
            multiprocess_mode="livemin",
            registry=target,
        )
        self.index_ready = Gauge(
            "counterscan_index_ready",
            "1 when indexes are loaded and current",
            multiprocess_mode="livemin",
            registry=target,
        )
        self.webhook_deliveries = Counter(
            "counterscan_webhook_deliveries", "Webhook delivery attempts by result", ["result"], registry=target
        )
        self.webhook_seconds = Histogram(
            "counterscan_webhook_delivery_seconds", "Webhook delivery latency", buckets=LATENCY_BUCKETS, registry=target
        )
        self._store_collector = StoreCollector(store)
        if not self.multiprocess:
            self.registry.register(self._store_collector)

    def observe_delivery(self, result: str, seconds: float) -> None:
        self.webhook_deliveries.labels(result=result).inc()
        self.webhook_seconds.observe(seconds)

    def render(self) -> bytes:
        if not self.multiprocess:
            return bytes(generate_latest(self.registry))
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        registry.register(self._store_collector)
        return bytes(generate_latest(registry))


class StoreCollector(Collector):
    """Scan, ingest and webhook counters read from the store at scrape time (they happen in other
    processes: CLI scans, ingest jobs, delivery workers)."""

    def __init__(self, store: OperationsReader) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        counts = self.store.operational_counts()
        runs = CounterMetricFamily("counterscan_scans", "Scans run, by final status", labels=["status"])
        for status, count in counts.scans_by_status.items():
            runs.add_metric([status], float(count))
        yield runs
        yield CounterMetricFamily(
            "counterscan_listings_scanned", "Listings scanned by all scans", value=float(counts.listings_scanned)
        )
        yield CounterMetricFamily(
            "counterscan_listings_ingested", "Listings in the store", value=float(counts.listings)
        )
        yield CounterMetricFamily(
            "counterscan_quarantined", "Records and images quarantined", value=float(counts.quarantined)
        )
        box = GaugeMetricFamily("counterscan_webhook_outbox", "Webhook deliveries by status", labels=["status"])
        for status, count in counts.outbox_by_status.items():
            box.add_metric([status], float(count))
        yield box


def metrics_permitted(setting: str, client: str | None) -> bool:
    """Whether a client address may read /metrics under the ``metrics_allow`` setting."""
    text = setting.strip()
    if not text:
        return True
    if text == "off" or client is None:
        return False
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    for item in (part.strip() for part in text.split(",")):
        try:
            if item and address in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the record's ``fields`` become members."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def access_logger() -> logging.Logger:
    """The request log, JSON lines on stderr unless the host application configured it."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def log_request(
    logger: logging.Logger,
    *,
    method: str,
    route: str,
    path: str,
    status: int,
    seconds: float,
    client: str | None,
    member: str | None,
    request_id: str | None,
) -> None:
    # Only these fields: never headers (keys travel in Authorization), bodies or query strings.
    logger.info(
        "request",
        extra={
            "fields": {
                "method": method,
                "route": route,
                "path": path,
                "status": status,
                "duration_ms": round(seconds * 1000, 2),
                "client": client,
                "member": member,
                "request_id": request_id,
                "pid": os.getpid(),
            }
        },
    )
