"""Real-time check latency and throughput, and a bounded loopback load test.

    python scripts/bench_check.py                       # latency, throughput, logo matchers' cost
    python scripts/bench_check.py --load-minutes 10     # sustained load at the measured capacity

The catalogue: ``--brands`` brands (names and keywords for the text matchers) and ``--signals``
indexed hash signals per matcher (pHash and dHash), of which one is a real product photo and the
rest random 64-bit hashes on synthetic assets (inserted in bulk: uploading 100k pictures would
measure uploads, not checks). The listing checked: one 800 px JPEG photo, a re-encoded copy of the
registered product photo, and a title naming a brand.

Latency is measured over HTTP against ``counterscan serve`` on 127.0.0.1 with one worker process,
client-side, requests one after another after a warm-up. Throughput: the same server with 1 and 2
worker processes, ``--clients`` concurrent clients. The logo matcher's added latency is measured
in-process (the same Checker the server uses) with and without the "keypoints" matcher, against
``--logos`` registered logos.

The load test runs ``serve --workers 2 --deliver-webhooks`` with a webhook endpoint on a local
receiver, sends checks at ``--rate`` per second (default: 80% of the measured 2-worker capacity),
one in ten stored (``store=true``, a new suspect, so a webhook), and reports error responses, the
workers' resident memory after warm-up and at the end, and whether every delivery arrived.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa
from PIL import Image
from skimage import data as skdata

from counterscan.config import Settings
from counterscan.matchers import image_matchers
from counterscan.records import Listing
from counterscan.registry.assets import add_asset_files, upload_limits
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.scan.executors import limit_native_threads
from counterscan.service.checker import Checker
from counterscan.service.webhooks import add_webhook, verify
from counterscan.store import BlobStore, Store
from counterscan.store import schema as t
from counterscan.store.base import bulk_insert, now

REPO = Path(__file__).resolve().parents[1]
SYLLABLES = ("ka", "zor", "vex", "lu", "mi", "dra", "pol", "nix", "ta", "ren", "sol", "qui", "bra", "fen", "gor")


def brand_names(count: int) -> list[str]:
    rng = random.Random(3)
    names: set[str] = set()
    while len(names) < count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize())
    return sorted(names)


def photo_800(photos: Path | None) -> tuple[bytes, bytes]:
    """(the brand's product photo, a seller's 800 px re-encoded copy of it)."""
    if photos is not None and photos.is_dir():
        source = Image.open(sorted(photos.glob("*.jpg"))[0]).convert("RGB")
    else:
        source = Image.fromarray(np.asarray(skdata.astronaut())).convert("RGB")  # type: ignore[no-untyped-call]
    original = io.BytesIO()
    source.save(original, "JPEG", quality=92)
    scale = 800 / max(source.size)
    copy = source.resize((round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS)
    seller = io.BytesIO()
    copy.save(seller, "JPEG", quality=80)
    return original.getvalue(), seller.getvalue()


def build(home: Path, brands: int, signals: int, product: bytes, logos: list[Path]) -> dict[str, str]:
    settings = Settings.load(home=home, environ={})
    store = Store.open(settings.database_url)
    try:
        owner = add_member(store, "bench-owner")
        market = add_member(store, "bench-market", role="marketplace")
        names = brand_names(brands)
        started = time.perf_counter()
        made = [add_brand(store, owner.member, name, keywords=[name]) for name in names]
        print(f"catalogue: {brands} brands in {time.perf_counter() - started:.1f}s", flush=True)
        folder = home / "product"
        folder.mkdir()
        (folder / "product.jpg").write_bytes(product)
        blobs = BlobStore(settings.blob_dir)
        limits = upload_limits(settings)
        matchers = image_matchers(settings)
        add_asset_files(
            store, blobs, limits, matchers, owner.member, brand=names[0], kind="product", paths=[folder / "product.jpg"]
        )
        if logos:
            for number, path in enumerate(logos):
                add_asset_files(
                    store,
                    blobs,
                    limits,
                    matchers,
                    owner.member,
                    brand=names[1 + number % (brands - 1)],
                    kind="logo",
                    paths=[path],
                )
        rng = np.random.default_rng(5)
        moment = now()
        started = time.perf_counter()
        with store.engine.begin() as conn:
            first = int(conn.execute(sa.select(sa.func.max(t.assets.c.asset_id))).scalar_one()) + 1
            for start in range(0, signals - 1, 20_000):
                count = min(20_000, signals - 1 - start)
                ids = range(first + start, first + start + count)
                brand_ids = rng.integers(0, brands, count)
                bulk_insert(
                    conn,
                    t.assets,
                    [
                        {
                            "asset_id": asset_id,
                            "brand_id": made[int(b)].brand_id,
                            "kind": "product",
                            "sha256": hashlib.sha256(str(asset_id).encode()).hexdigest(),
                            "original_name": f"synthetic-{asset_id}.jpg",
                            "width": 100,
                            "height": 100,
                            "created_at": moment,
                            "created_by": "bench",
                            "live_key": f"{made[int(b)].brand_id}:{asset_id}",
                        }
                        for asset_id, b in zip(ids, brand_ids, strict=True)
                    ],
                )
                for matcher in ("phash", "dhash"):
                    hashes = rng.integers(0, 256, (count, 8), dtype=np.uint8)
                    bulk_insert(
                        conn,
                        t.asset_signals,
                        [
                            {"asset_id": asset_id, "matcher": matcher, "variant": "original", "signal": row.tobytes()}
                            for asset_id, row in zip(ids, hashes, strict=True)
                        ],
                    )
            # One audit row, as every catalogue change writes: servers see the catalogue changed.
            conn.execute(
                sa.insert(t.audit).values(actor="bench", action="asset.bulk", target="synthetic", details={}, at=moment)
            )
        print(f"catalogue: {signals} signals per hash matcher in {time.perf_counter() - started:.1f}s", flush=True)
        return {"owner": owner.api_key, "market": market.api_key, "brand": names[0]}
    finally:
        store.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(
    home: Path, workers: int, env: dict[str, str] | None = None, deliver: bool = False
) -> Iterator[tuple[str, int]]:
    port = free_port()
    program = Path(sys.executable).parent / "counterscan"
    command = [str(program), "--home", str(home), "serve", "--port", str(port), "--workers", str(workers)]
    if deliver:
        command.append("--deliver-webhooks")
    log = (home / f"serve-{port}.log").open("w")
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        ready = 0
        while ready < workers * 3:  # every worker ready: several answers in a row
            if process.poll() is not None:
                raise RuntimeError(f"server exited: see {log.name}")
            if time.monotonic() - started > 600:
                raise RuntimeError("server not ready in 10 minutes")
            try:
                ready = ready + 1 if httpx.get(f"{url}/readyz", timeout=5).status_code == 200 else 0
            except httpx.HTTPError:
                ready = 0
            time.sleep(0.2)
        print(f"  serve --workers {workers}: ready in {time.monotonic() - started:.1f}s", flush=True)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def check_once(client: httpx.Client, photo: bytes, title: str, store: bool = False, listing_id: str = "") -> int:
    data = {"title": title, "price": "35", "currency": "USD"}
    if listing_id:
        data["listing_id"] = listing_id
    response = client.post(
        "/v1/check" + ("?store=true" if store else ""), data=data, files=[("images", ("p.jpg", photo, "image/jpeg"))]
    )
    return response.status_code


def percentiles(samples: list[float]) -> str:
    values = np.array(samples) * 1000
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms (n={len(samples)})"


def answer_and_completion(url: str, key: str, photo: bytes, title: str, count: int) -> tuple[list[float], list[float]]:
    """Seconds to the synchronous answer, and to the complete one (the answer itself when complete,
    else the first ``GET /v1/check/{id}`` that says complete), checks one after another."""
    answered, completed = [], []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for number in range(count + 5):
            started = time.perf_counter()
            response = client.post(
                "/v1/check", data={"title": title}, files=[("images", ("p.jpg", photo, "image/jpeg"))]
            )
            first = time.perf_counter() - started
            assert response.status_code == 200, response.text
            answer = response.json()
            while answer["status"] == "pending":
                time.sleep(0.005)
                answer = client.get(f"/v1/check/{answer['check_id']}").json()
            if number >= 5:  # after a warm-up
                answered.append(first)
                completed.append(time.perf_counter() - started)
    return answered, completed


def latency(url: str, key: str, photo: bytes, title: str, count: int) -> list[float]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        for _ in range(10):
            check_once(client, photo, title)
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            status = check_once(client, photo, title)
            samples.append(time.perf_counter() - started)
            assert status == 200, status
    return samples


def throughput(url: str, key: str, photo: bytes, title: str, clients: int, seconds: float) -> float:
    done = [0] * clients
    errors = [0] * clients
    deadline = time.monotonic() + seconds

    def run(number: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            while time.monotonic() < deadline:
                if check_once(client, photo, title) == 200:
                    done[number] += 1
                else:
                    errors[number] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not sum(errors), f"{sum(errors)} error responses"
    return sum(done) / (time.monotonic() - started)


def in_process(
    home: Path, photo: bytes, title: str, count: int, matchers: str, *, costly: bool = True
) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of each check by the server's Checker in this process (CPU time is what a
    check costs a core; on a loaded machine the wall time also counts waiting for one). ``matchers``
    "" runs what the server runs; ``costly`` False: the cheap matchers only (the synchronous answer)."""
    settings = replace(Settings.load(home=home, environ={}), image_matchers=matchers)
    store = Store.open(settings.database_url)
    try:
        limit_native_threads(1)
        checker = Checker(store, settings)
        checker.refresh()
        listing = Listing(source="bench", listing_id="x", title=title)
        image = (hashlib.sha256(photo).hexdigest(), photo)
        for _ in range(3):
            checker.check(listing, [image], costly=costly)
        wall, cpu = [], []
        for _ in range(count):
            started, started_cpu = time.perf_counter(), time.thread_time()
            checker.check(listing, [image], costly=costly)
            wall.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
        return wall, cpu
    finally:
        store.close()


def worker_rss(pid: int) -> int:
    """Resident bytes of the server and its worker processes."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) != pid and int(stat[1]) != pid:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


@contextmanager
def receiver() -> Iterator[tuple[str, dict[str, object]]]:
    state: dict[str, object] = {"secret": "", "ids": set(), "bad": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify(str(state["secret"]), dict(self.headers.items()), body)
            with lock:
                if ok:
                    ids = state["ids"]
                    assert isinstance(ids, set)
                    ids.add(json.loads(body)["delivery_id"])
                else:
                    state["bad"] = int(str(state["bad"])) + 1
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def load_test(home: Path, keys: dict[str, str], photo: bytes, title: str, rate: float, minutes: float) -> None:
    env = {"COUNTERSCAN_ALLOWED_PRIVATE_NETWORKS": "127.0.0.1/32", "COUNTERSCAN_WEBHOOK_RETRY_SECONDS": "1"}
    settings = replace(Settings.load(home=home, environ={}), allowed_private_networks=("127.0.0.1/32",))
    with receiver() as (hook_url, state):
        store = Store.open(settings.database_url)
        owner = store.member("bench-owner")
        _hook, state["secret"] = add_webhook(
            store, settings, owner, url=hook_url, events=["suspect.new"], min_score=0.5
        )
        with server(home, 2, env, deliver=True) as (url, pid):
            interval = 1.0 / rate
            statuses: dict[int, int] = {}
            lock = threading.Lock()
            sent = [0]
            stop = time.monotonic() + minutes * 60
            warm_at = time.monotonic() + min(60.0, minutes * 6)
            rss: dict[str, int] = {}

            def client_loop(offset: int, clients: int) -> None:
                with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {keys['market']}"}, timeout=60) as c:
                    slot = time.monotonic() + offset * interval
                    while slot < stop:
                        time.sleep(max(0.0, slot - time.monotonic()))
                        with lock:
                            number = sent[0]
                            sent[0] += 1
                        try:
                            status = check_once(c, photo, title, store=number % 10 == 0, listing_id=f"load-{number}")
                        except httpx.HTTPError:
                            status = 0
                        with lock:
                            statuses[status] = statuses.get(status, 0) + 1
                        slot += clients * interval

            clients = 8
            threads = [threading.Thread(target=client_loop, args=(n, clients)) for n in range(clients)]
            for thread in threads:
                thread.start()
            while any(thread.is_alive() for thread in threads):
                if "warm" not in rss and time.monotonic() >= warm_at:
                    rss["warm"] = worker_rss(pid)
                time.sleep(1)
            rss["end"] = worker_rss(pid)
            deadline = time.monotonic() + 120
            while store.deliveries(status="pending", limit=1) and time.monotonic() < deadline:
                time.sleep(0.5)
        expected = {item.delivery_id for item in store.deliveries(limit=10**7)}
        store.close()
        ids = state["ids"]
        assert isinstance(ids, set)
    errors = sum(count for status, count in statuses.items() if status != 200)
    growth = (rss["end"] - rss["warm"]) / rss["warm"] * 100
    print(
        f"load test: {minutes:g} min at {rate:.1f} checks/s, 2 workers: {sum(statuses.values())} checks, "
        f"statuses {dict(sorted(statuses.items()))}, error responses {errors}"
    )
    print(
        f"load test: server RSS after warm-up {rss['warm'] / 2**20:.0f} MiB, at the end {rss['end'] / 2**20:.0f} MiB "
        f"({growth:+.1f}%)"
    )
    print(
        f"load test: webhook deliveries {len(expected)} written, {len(ids & expected)} received and verified, "
        f"{len(expected - ids)} lost, {state['bad']} bad signatures"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--brands", type=int, default=1000)
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300, help="Sequential checks for the latency figures.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients for throughput.")
    parser.add_argument("--seconds", type=float, default=20, help="Duration of each throughput run.")
    parser.add_argument(
        "--photos", type=Path, default=REPO.parent / "shared" / "data" / "flickrlogos27-train" / "images"
    )
    parser.add_argument("--logos", type=Path, default=REPO.parent / "shared" / "data" / "gilbarbara-logos" / "logos")
    parser.add_argument("--logo-count", type=int, default=100)
    parser.add_argument("--load-minutes", type=float, default=0, help="Run the sustained load test this long.")
    parser.add_argument("--rate", type=float, default=0, help="Load test checks/s (default: 80%% of capacity).")
    args = parser.parse_args()

    product, photo = photo_800(args.photos)
    logos = sorted(args.logos.glob("*.svg"))[: args.logo_count] if args.logos.is_dir() else []
    with tempfile.TemporaryDirectory(prefix="bench-check-") as folder:
        home = Path(folder) / "home"
        keys = build(home, args.brands, args.signals, product, logos)
        title = f"{keys['brand']} original bag, new with tags"
        if args.load_minutes:
            rate = args.rate
            if not rate:
                with server(home, 2) as (url, _pid):
                    rate = 0.8 * throughput(url, keys["market"], photo, title, args.clients, args.seconds)
            load_test(home, keys, photo, title, rate, args.load_minutes)
            return
        with server(home, 1) as (url, _pid):
            answered, completed = answer_and_completion(url, keys["market"], photo, title, args.requests)
            one = throughput(url, keys["market"], photo, title, args.clients, args.seconds)
        matchers = "the default matchers (" + ("with" if logos else "without") + f" {len(logos)} logos)"
        print(
            f"check over HTTP, 1 worker, one 800 px photo + title, {matchers}, {args.brands} brands, "
            f"{args.signals} signals per hash:\n  synchronous answer: {percentiles(answered)}\n"
            f"  complete result:    {percentiles(completed)}"
        )
        sync_wall, _sync_cpu = in_process(home, photo, title, args.requests, "", costly=False)
        full_wall, _full_cpu = in_process(home, photo, title, min(args.requests, 60), "")
        print(f"  in-process, same matchers: synchronous {percentiles(sync_wall)}; complete {percentiles(full_wall)}")
        print(
            "  HTTP / in-process, median: synchronous "
            f"x{statistics.median(answered) / statistics.median(sync_wall):.2f}, complete "
            f"x{statistics.median(completed) / statistics.median(full_wall):.2f}"
        )
        with server(home, 2) as (url, _pid):
            two = throughput(url, keys["market"], photo, title, args.clients, args.seconds)
        print(
            f"throughput, {args.clients} clients: 1 worker {one:.1f} checks/s, 2 workers {two:.1f} checks/s "
            f"(x{two / one:.2f})"
        )
        wall, cpu = in_process(home, photo, title, args.requests, "phash,dhash")
        print(f"in-process check (the server's Checker), wall: {percentiles(wall)}")
        print(f"in-process check, CPU time of the checking thread: {percentiles(cpu)}")
        if logos:
            _wall, with_logos = in_process(home, photo, title, 30, "phash,dhash,keypoints")
            base, added = statistics.median(cpu), statistics.median(with_logos)
            print(
                f"logo matcher (keypoints, {len(logos)} logos), median CPU per check: {base * 1000:.1f} ms without, "
                f"{added * 1000:.1f} ms with (+{(added - base) * 1000:.1f} ms, x{added / base:.2f})"
            )


if __name__ == "__main__":
    main()
