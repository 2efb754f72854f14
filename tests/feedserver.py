"""A real HTTP server on 127.0.0.1 for fetch tests: scripted routes, request log, concurrency probe."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    declared_length: int | None = None
    until_in_flight: int = 0
    """Hold the reply until this many requests of its group have been in flight at once (an event,
    not a delay: a test of concurrency must not depend on how fast the machine is)."""


Route = Callable[[str, dict[str, str], dict[str, str]], Reply]
"""(path, query, headers) -> Reply"""


@dataclass
class Hit:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


class FeedServer:
    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.url = ""

    def route(self, path: str, route: Route) -> None:
        self.routes[path] = route

    def json(self, path: str, replies: list[Reply] | Callable[[dict[str, str]], Any]) -> None:
        """Serve a fixed sequence of replies (the last repeats), or a function of the query."""
        calls = {"n": 0}

        def route(_path: str, query: dict[str, str], _headers: dict[str, str]) -> Reply:
            if callable(replies):
                return Reply(body=json.dumps(replies(query)).encode())
            calls["n"] += 1
            return replies[min(calls["n"], len(replies)) - 1]

        self.routes[path] = route

    def hits_for(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parsed = urlparse(handler.path)
        query = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
        headers = {key.lower(): value for key, value in handler.headers.items()}
        group = parsed.path.rsplit("/", 1)[0] or "/"
        with self._lock:
            self.hits.append(Hit(parsed.path, query, headers, time.monotonic()))
            self.in_flight[group] = self.in_flight.get(group, 0) + 1
            self.max_in_flight[group] = max(self.max_in_flight.get(group, 0), self.in_flight[group])
            self._changed.notify_all()
        try:
            route = self.routes.get(parsed.path)
            reply = route(parsed.path, query, headers) if route else Reply(404, b"not found")
            if reply.delay:
                time.sleep(reply.delay)
            if reply.until_in_flight:
                with self._changed:
                    wanted = reply.until_in_flight
                    self._changed.wait_for(lambda: self.max_in_flight.get(group, 0) >= wanted, timeout=60)
            handler.send_response(reply.status)
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            length = reply.declared_length if reply.declared_length is not None else len(reply.body)
            handler.send_header("Content-Length", str(length))
            handler.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                handler.wfile.write(reply.body)
        finally:
            with self._lock:
                self.in_flight[group] -= 1


@contextmanager
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            server._handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class QuietServer(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # clients that hang up early (refused downloads) are part of the tests

    httpd = QuietServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
