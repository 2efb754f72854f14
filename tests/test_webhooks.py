"""Webhooks: outbox rows written with their events, signed deliveries to a real local receiver,
retries after a 500, refused private destinations, and a delivery worker killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from counterscan.config import Settings
from counterscan.errors import UserError
from counterscan.ingest import ingest, open_source
from counterscan.matchers import decode_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import NewMember, add_member
from counterscan.scan.batch import run_scan
from counterscan.service.webhooks import Deliverer, add_webhook, signature, verify
from counterscan.store import BlobStore, Store
from counterscan.store.base import now as utc_now
from tests.webhook_receiver import receiver


def _catalogue(store: Store, settings: Settings, tmp_path: Path, titles: list[str]) -> NewMember:
    owner = add_member(store, "acme-group")
    add_brand(store, owner.member, "Acme", keywords=["Roadrunner"])
    feed = tmp_path / "feed.jsonl"
    feed.write_text("".join(f'{{"listing_id": "l{i}", "title": "{title}"}}\n' for i, title in enumerate(titles)))
    ingest(store, BlobStore(settings.blob_dir), decode_limits(settings), open_source(str(feed)))
    return owner


def _local(settings: Settings, **changes: object) -> Settings:
    return replace(settings, allowed_private_networks=("127.0.0.1/32",), webhook_retry_seconds=0.2, **changes)  # type: ignore[arg-type]


def test_new_suspects_and_verdicts_are_delivered_signed(store: Store, settings: Settings, tmp_path: Path) -> None:
    settings = _local(settings)
    owner = _catalogue(store, settings, tmp_path, ["Roadrunner replica bag", "plain blue mug"])
    with receiver() as hook:
        registered, secret = add_webhook(
            store, settings, owner.member, url=hook.url, events=["suspect.new", "verdict.recorded"], min_score=0.3
        )
        hook.secret = secret
        run_scan(store, settings)
        pending = store.deliveries(status="pending")
        assert [(item.event, item.payload["listing"]["listing_id"]) for item in pending] == [("suspect.new", "l0")]
        # A re-scan that changes nothing is not news.
        run_scan(store, settings, rescan_all=True)
        assert len(store.deliveries()) == 1

        store.record_verdict(store.find_listing("l0"), verdict="counterfeit", note=None, analyst="inspector")
        deliverer = Deliverer(store, settings)
        try:
            outcome = deliverer.send_due()
        finally:
            deliverer.close()
        assert outcome.delivered == 2
    assert [item.event for item in hook.received] == ["suspect.new", "verdict.recorded"]
    assert all(item.signature_ok for item in hook.received)
    assert hook.received[0].body["brand"] == "Acme" and hook.received[0].body["score"] >= 0.3
    assert hook.received[1].body["verdict"] == "counterfeit"
    assert {item.status for item in store.deliveries(webhook_id=registered.webhook_id)} == {"delivered"}


def test_a_500_is_retried_with_backoff_and_logged(store: Store, settings: Settings, tmp_path: Path) -> None:
    settings = _local(settings)
    owner = _catalogue(store, settings, tmp_path, ["Roadrunner replica bag"])
    with receiver(statuses=[500]) as hook:
        _registered, hook.secret = add_webhook(store, settings, owner.member, url=hook.url, events=["suspect.new"])
        run_scan(store, settings)
        # A clock of the test's own: the backoff is judged by it, not by how fast this machine runs.
        moment = [utc_now()]
        deliverer = Deliverer(store, replace(settings, webhook_retry_seconds=60.0), clock=lambda: moment[0])
        try:
            first = deliverer.send_due()
            assert (first.delivered, first.retrying) == (0, 1)
            moment[0] += timedelta(seconds=59)
            assert deliverer.send_due().delivered == 0  # not due yet: the backoff holds it back
            moment[0] += timedelta(seconds=2)
            assert deliverer.send_due().delivered == 1
        finally:
            deliverer.close()
    (delivery,) = store.deliveries()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [attempt.status_code for attempt in store.delivery_attempts(delivery.delivery_id)] == [500, 200]
    assert [item.answered for item in hook.received] == [500, 200]
    assert hook.received[0].delivery_id == hook.received[1].delivery_id  # receivers can dedupe


def test_private_destinations_are_refused_unless_allow_listed(store: Store, settings: Settings) -> None:
    owner = add_member(store, "acme-group")
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://10.1.2.3/x", "http://[::1]/x"):
        with pytest.raises(UserError, match="refused"):
            add_webhook(store, settings, owner.member, url=url, events=["suspect.new"])
    with pytest.raises(UserError, match="unknown webhook event"):
        add_webhook(store, _local(settings), owner.member, url="http://127.0.0.1:9/", events=["everything"])
    assert add_webhook(store, _local(settings), owner.member, url="http://127.0.0.1:9/", events=["case.status"])


def test_signature_checks() -> None:
    body = b'{"event":"suspect.new"}'
    now = str(int(time.time()))
    headers = {"X-Counterscan-Timestamp": now, "X-Counterscan-Signature": signature("s3cret", now, body)}
    assert verify("s3cret", headers, body)
    assert not verify("other", headers, body)
    assert not verify("s3cret", headers, body + b" ")
    old = str(int(time.time()) - 3600)
    assert not verify(
        "s3cret",
        {**headers, "X-Counterscan-Timestamp": old, "X-Counterscan-Signature": signature("s3cret", old, body)},
        body,
    )


@pytest.mark.slow
def test_kill_9_of_the_delivery_worker_loses_nothing(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "home"
    settings = _local(Settings.load(home=home, db_url=db_url, environ={}))
    store = Store.open(settings.database_url)
    try:
        owner = _catalogue(store, settings, tmp_path, [f"Roadrunner replica no {i}" for i in range(12)])
        with receiver(delay=0.3) as hook:
            _registered, hook.secret = add_webhook(store, settings, owner.member, url=hook.url, events=["suspect.new"])
            run_scan(store, settings)
            expected = {item.delivery_id for item in store.deliveries(limit=1000)}
            assert len(expected) == 12
            env = {
                **os.environ,
                "COUNTERSCAN_ALLOWED_PRIVATE_NETWORKS": "127.0.0.1/32",
                "COUNTERSCAN_WEBHOOK_LEASE_SECONDS": "2",
                "COUNTERSCAN_WEBHOOK_RETRY_SECONDS": "0.2",
            }
            command = [str(Path(sys.executable).parent / "counterscan"), "--home", str(home), "--db", db_url]
            worker = subprocess.Popen([*command, "webhooks", "deliver", "--idle-seconds", "0.1"], env=env)
            try:
                hook.wait_for(3)
            finally:
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
            assert worker.returncode == -signal.SIGKILL
            arrived = hook.accepted_ids()
            assert 3 <= len(arrived) < 12, "the worker should have died mid-way"
            # A fresh worker takes over once the dead one's claims lapse.
            restarted = subprocess.Popen([*command, "webhooks", "deliver", "--idle-seconds", "0.1"], env=env)
            try:
                hook.wait_for(12, timeout=60)
            finally:
                restarted.send_signal(signal.SIGTERM)
                restarted.wait(timeout=20)
        assert hook.accepted_ids() == expected
        assert all(item.signature_ok for item in hook.received)
        assert {item.status for item in store.deliveries(limit=1000)} == {"delivered"}
    finally:
        store.close()
