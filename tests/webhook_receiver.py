"""A real webhook receiver on 127.0.0.1 that verifies each delivery's signature like a member would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from counterscan.service.webhooks import DELIVERY_HEADER, verify


@dataclass
class Received:
    delivery_id: int
    event: str
    body: dict[str, Any]
    signature_ok: bool
    answered: int


@dataclass
class Receiver:
    secret: str = ""
    statuses: list[int] = field(default_factory=list)
    """Answers to give, in order; 200 once they run out."""
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted_ids(self) -> set[int]:
        with self.lock:
            return {item.delivery_id for item in self.received if item.answered == 200}

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.accepted_ids()) < count:
            assert time.monotonic() < deadline, f"only {len(self.accepted_ids())} of {count} deliveries arrived"
            time.sleep(0.05)


@contextmanager
def receiver(secret: str = "", statuses: list[int] | None = None, delay: float = 0.0) -> Iterator[Receiver]:
    state = Receiver(secret=secret, statuses=list(statuses or []), delay=delay)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            ok = verify(state.secret, dict(self.headers.items()), body)
            if state.delay:
                time.sleep(state.delay)
            with state.lock:
                answer = state.statuses.pop(0) if state.statuses else 200
                if not ok:
                    answer = 401
                state.received.append(
                    Received(
                        int(self.headers[DELIVERY_HEADER]),
                        self.headers["X-Counterscan-Event"],
                        json.loads(body),
                        ok,
                        answer,
                    )
                )
            self.send_response(answer)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
