"""HTTP with manners: a rate cap, timeouts, retries with exponential backoff honouring Retry-After,
a cap on redirects and on response size, http and https only, every connection checked by the
outbound address policy (netpolicy), and credentials kept from any other origin a redirect names."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urljoin

import httpx

from counterscan.ingest.netpolicy import AddressRefusedError, NetPolicy
from counterscan.ingest.urls import MalformedURLError, OutboundURL, parse_url

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# Headers that carry credentials: sent only to the origin the caller asked for, never to another
# origin a redirect points at (a feed host could otherwise collect the API token).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


class FetchError(Exception):
    """A request that failed for good; the message is one short line."""


class TooLargeError(FetchError):
    pass


class RefusedAddressError(FetchError):
    """The outbound address policy refused the host (or a host a redirect named)."""


class BadURLError(FetchError):
    """The URL (or one a redirect named) is malformed: refused before any lookup or connection."""


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    timeout_seconds: float = 10.0
    max_redirects: int = 5


class RateLimiter:
    """At most ``per_second`` request starts per second, shared by threads."""

    def __init__(self, per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def checked_url(url: str) -> OutboundURL:
    """``url`` parsed for a request; a malformed one raises BadURLError with the reason."""
    try:
        return parse_url(url)
    except MalformedURLError as exc:
        raise BadURLError(str(exc)) from None


class PoliteClient:
    """Sends GETs through one httpx connection pool with the policy above."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        requests_per_second: float = 0.0,
        headers: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        network: NetPolicy | None = None,
    ) -> None:
        self.policy = policy
        self.limiter = RateLimiter(requests_per_second)
        self._sleep = sleep
        given = dict(headers or {})
        self._credentials = {key: value for key, value in given.items() if key.lower() in CREDENTIAL_HEADERS}
        self._client = (network or NetPolicy()).client(
            timeout=httpx.Timeout(policy.timeout_seconds),
            follow_redirects=False,
            headers={
                "User-Agent": "counterscan",
                **{key: value for key, value in given.items() if key.lower() not in CREDENTIAL_HEADERS},
            },
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(
        self, url: str, *, params: Mapping[str, str] | None = None, max_bytes: int
    ) -> tuple[bytes, httpx.Headers, str]:
        """Body, headers and final URL of a successful GET; raises FetchError when it finally fails."""
        attempt = 0
        while True:
            try:
                return self._get_once(url, params=params, max_bytes=max_bytes)
            except _RetryableError as retry:
                attempt += 1
                if attempt > self.policy.max_retries:
                    raise FetchError(f"{retry.reason} (gave up after {attempt} attempts)") from None
                backoff = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1))
                delay = retry.wait if retry.wait is not None else backoff * (0.5 + random.random() / 2)
                self._sleep(min(delay, self.policy.max_delay))

    def _get_once(
        self, url: str, *, params: Mapping[str, str] | None, max_bytes: int
    ) -> tuple[bytes, httpx.Headers, str]:
        checked_url(url)
        # Merged into the URL's own query string, which httpx's params= would replace.
        current = str(httpx.URL(url).copy_merge_params(params)) if params else url
        origin = checked_url(current).origin
        for _hop in range(self.policy.max_redirects + 1):
            target = checked_url(current)
            self.limiter.wait()
            headers = self._credentials if target.origin == origin else None
            try:
                with self._client.stream("GET", current, headers=headers) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchError(f"HTTP {response.status_code} redirect without a Location")
                        try:
                            current = urljoin(current, location)
                        except ValueError as exc:
                            raise BadURLError(f"redirect to {location[:80]!r}: {exc}") from None
                        continue
                    if response.status_code in RETRY_STATUSES:
                        wait = retry_after_seconds(response.headers.get("retry-after"))
                        raise _RetryableError(f"HTTP {response.status_code}", wait)
                    if response.status_code >= 400:
                        raise FetchError(f"HTTP {response.status_code}")
                    return _read_capped(response, max_bytes), response.headers, str(response.url)
            except AddressRefusedError as exc:
                raise RefusedAddressError(str(exc)) from None
            except MalformedURLError as exc:
                raise BadURLError(str(exc)) from None
            except httpx.InvalidURL as exc:
                raise BadURLError(f"URL {current[:80]!r}: {exc}") from None
            except httpx.TimeoutException:
                raise _RetryableError(f"timed out after {self.policy.timeout_seconds:g}s", None) from None
            except httpx.TransportError as exc:
                raise _RetryableError(f"connection failed ({type(exc).__name__})", None) from None
        raise FetchError(f"more than {self.policy.max_redirects} redirects")


class _RetryableError(Exception):
    def __init__(self, reason: str, wait: float | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLargeError(f"response of {int(declared)} bytes refused (cap {max_bytes})")
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise TooLargeError(f"response over the cap of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
