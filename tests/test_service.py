"""The service on a real uvicorn server on 127.0.0.1: health, metrics, request logs, webhooks API."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.service.ops import ACCESS_LOGGER, JsonFormatter
from counterscan.store import Store


@dataclass(frozen=True)
class Running:
    url: str
    settings: Settings
    owner_key: str
    market_key: str
    analyst_key: str


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def make_server(tmp_path: Path, db_url: str) -> Iterator[object]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**changes: object) -> Running:
        settings = replace(Settings.load(home=tmp_path / "home", db_url=db_url, environ={}), **changes)  # type: ignore[arg-type]
        store = Store.open(settings.database_url)
        if not store.members():
            owner = add_member(store, "acme-group")
            market = add_member(store, "bazaar", role="marketplace")
            analyst = add_member(store, "inspector", role="analyst")
            add_brand(store, owner.member, "Acme", keywords=["Roadrunner"])
            keys = (owner.api_key, market.api_key, analyst.api_key)
        store.close()
        port = _free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        servers.append((server, thread))
        return Running(f"http://127.0.0.1:{port}", settings, *keys)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=15)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def test_health_metrics_and_request_logs_without_keys(make_server) -> None:  # type: ignore[no-untyped-def]
    running: Running = make_server()
    collect = _Collect()
    logging.getLogger(ACCESS_LOGGER).addHandler(collect)
    try:
        assert httpx.get(f"{running.url}/healthz").json() == {"status": "alive"}
        headers = {"Authorization": f"Bearer {running.owner_key}"}
        assert httpx.get(f"{running.url}/v1/brands", headers=headers).status_code == 200
        assert httpx.get(f"{running.url}/v1/brands", headers={"Authorization": "Bearer nope"}).status_code == 401
        text = httpx.get(f"{running.url}/metrics").text
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(collect)
    assert 'counterscan_http_requests_total{method="GET",route="/v1/brands",status="200"} 1.0' in text
    assert 'counterscan_http_requests_total{method="GET",route="/v1/brands",status="401"} 1.0' in text
    assert "counterscan_http_request_seconds_bucket" in text
    assert "counterscan_listings_ingested_total 0.0" in text and "# TYPE counterscan_scans_total counter" in text
    entries = [json.loads(line) for line in collect.lines]
    brands = [entry for entry in entries if entry["route"] == "/v1/brands"]
    assert [(entry["status"], entry["member"]) for entry in brands] == [(200, "acme-group"), (401, None)]
    assert all(running.owner_key not in line and "nope" not in line for line in collect.lines)


def test_metrics_can_be_restricted(make_server) -> None:  # type: ignore[no-untyped-def]
    running: Running = make_server(metrics_allow="10.0.0.0/8")
    assert httpx.get(f"{running.url}/metrics").status_code == 403
    assert httpx.get(f"{running.url}/healthz").status_code == 200


def test_webhooks_api_register_list_log(make_server) -> None:  # type: ignore[no-untyped-def]
    running: Running = make_server(allowed_private_networks=("127.0.0.1/32",))
    owner = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {running.owner_key}"})
    market = httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {running.market_key}"})
    with owner, market:
        refused = owner.post("/v1/webhooks", json={"url": "http://169.254.169.254/x", "events": ["suspect.new"]})
        assert refused.status_code == 400 and "refused" in refused.json()["detail"]
        made = owner.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["verdict.recorded"]})
        assert made.status_code == 201, made.text
        assert made.json()["secret"].startswith("whsec_")
        listed = owner.get("/v1/webhooks").json()
        assert [hook["url"] for hook in listed] == ["http://127.0.0.1:9/h"] and "secret" not in listed[0]
        assert owner.get("/v1/webhooks/deliveries").json() == []
        assert market.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h"}).status_code == 400
        assert market.get("/v1/webhooks/deliveries").status_code == 403
        assert owner.delete(f"/v1/webhooks/{made.json()['webhook_id']}").status_code == 200
        assert owner.get("/v1/webhooks").json() == []
