"""A paged HTTP JSON API as a listings source (cursor or page-number pagination)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from counterscan.errors import ExternalError, UserError
from counterscan.ingest.base import Checkpoint, SourceItem, raw_record
from counterscan.ingest.http_client import BadURLError, FetchError, PoliteClient, RefusedAddressError, RetryPolicy
from counterscan.ingest.mapping import SourceMapping, get_path, parse_mapped
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.ingest.urls import parse_url
from counterscan.records import Rejected


class HttpJsonSource:
    """Pages of JSON; the checkpoint is the next cursor or page, so a later run fetches only what is new."""

    def __init__(self, url: str, *, name: str, mapping: SourceMapping, network: NetPolicy | None = None) -> None:
        parse_url(url)  # a malformed feed URL is refused here, with its reason, before any lookup
        self.url = url
        self.name = name
        self.kind = "http"
        self.location = url
        self.mapping = mapping
        self.network = network or NetPolicy()

    def _client(self) -> PoliteClient:
        options = self.mapping.http
        headers: dict[str, str] = {"Accept": "application/json"}
        if options.token_env:
            token = os.environ.get(options.token_env)
            if not token:
                raise UserError(f"{self.name}: environment variable {options.token_env} (the API token) is not set")
            headers["Authorization"] = f"Bearer {token}"
        policy = RetryPolicy(max_retries=options.max_retries, timeout_seconds=options.timeout_seconds)
        return PoliteClient(
            policy, requests_per_second=options.requests_per_second, headers=headers, network=self.network
        )

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[SourceItem]:
        options = self.mapping.http
        state = dict(checkpoint or {})
        with self._client() as client:
            if options.pagination == "page":
                yield from self._pages(client, int(state.get("next_page", options.first_page)))
            elif options.pagination == "cursor":
                yield from self._cursors(client, state.get("cursor"))
            else:
                body = self._fetch(client, {}, label="the feed")
                yield from self._items(body, "feed")
                yield Checkpoint({"fetched": True})

    def _pages(self, client: PoliteClient, page: int) -> Iterator[SourceItem]:
        options = self.mapping.http
        while True:
            params = {options.page_param: str(page)}
            if options.page_size_param:
                params[options.page_size_param] = str(options.page_size)
            body = self._fetch(client, params, label=f"page {page}")
            items = list(self._items(body, f"page {page}"))
            if not items:
                # Stay on this page: a later run asks for it again and finds what was appended.
                yield Checkpoint({"next_page": page})
                return
            yield from items
            page += 1
            yield Checkpoint({"next_page": page})

    def _cursors(self, client: PoliteClient, cursor: str | None) -> Iterator[SourceItem]:
        options = self.mapping.http
        number = 1
        while True:
            params = {options.cursor_param: cursor} if cursor else {}
            body = self._fetch(client, params, label=f"page {number} (cursor {cursor or 'start'})")
            yield from self._items(body, f"page {number}")
            following = get_path(body, options.next_cursor) if isinstance(body, dict) else None
            if not following or following == cursor:
                yield Checkpoint({"cursor": cursor})
                return
            cursor = str(following)
            number += 1
            yield Checkpoint({"cursor": cursor})

    def _fetch(self, client: PoliteClient, params: dict[str, str], *, label: str) -> Any:
        options = self.mapping.http
        try:
            data, _headers, _final = client.get(
                self.url, params={**options.params, **params}, max_bytes=options.max_page_bytes
            )
        except (RefusedAddressError, BadURLError) as exc:
            raise UserError(f"{self.name}: {self.url} {label}: {exc}") from None
        except FetchError as exc:
            raise ExternalError(f"{self.name}: {self.url} {label}: {exc}") from None
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ExternalError(f"{self.name}: {self.url} {label}: response is not JSON ({exc})") from None

    def _items(self, body: Any, label: str) -> Iterator[SourceItem]:
        items = (
            body
            if isinstance(body, list)
            else get_path(body, self.mapping.http.items)
            if isinstance(body, dict)
            else None
        )
        if items is None:
            items = []
        if not isinstance(items, list):
            raise ExternalError(f"{self.name}: {label}: {self.mapping.http.items!r} is not a list")
        for index, item in enumerate(items, start=1):
            record = f"{label} item {index}"
            if not isinstance(item, dict):
                yield Rejected(self.name, record, "item is not a JSON object", raw_record({"item": item}, None))
                continue
            yield parse_mapped(self.name, record, item, self.mapping.columns, None)


def default_name(url: str) -> str:
    """The host and port of ``url`` as written, as a source name (a malformed URL is refused)."""
    parse_url(url)
    return urlsplit(url).netloc or "http-feed"
