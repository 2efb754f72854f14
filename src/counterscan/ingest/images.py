"""Listing images: read or download concurrently, validate by decoding, cache by content hash.

Downloads share one polite client (rate cap, retries, timeouts, redirect and size caps, http and
https only, the outbound address policy) with at most ``per_host`` requests in flight to any one
host. Local paths are read only inside the feed's folder or a folder named in the setting
``local_image_roots``, and only when they are regular files. A URL fetched once is
remembered with its content hash, and an image whose bytes are already in the blob store is not
decoded again: listings that share a picture share one copy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from counterscan.errors import ExternalError, ImageError
from counterscan.imaging.decode import DecodeLimits, inspect, read_capped, sha256_hex
from counterscan.ingest.http_client import (
    BadURLError,
    FetchError,
    PoliteClient,
    RefusedAddressError,
    RetryPolicy,
    checked_url,
)
from counterscan.ingest.netpolicy import NetPolicy
from counterscan.ingest.urls import is_web_url, url_scheme
from counterscan.records import ImageOutcome
from counterscan.store import BlobStore
from counterscan.store.protocols import ListingWriter

if TYPE_CHECKING:
    from counterscan.config import Settings

HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body")


@dataclass(frozen=True)
class FetchOptions:
    workers: int = 8
    per_host: int = 4
    timeout_seconds: float = 15.0
    max_retries: int = 2
    max_redirects: int = 5
    requests_per_second: float = 0.0
    network: NetPolicy = field(default_factory=NetPolicy)
    local_roots: tuple[Path, ...] = ()
    """Folders besides the feed's own from which local image paths may be read."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FetchOptions:
        options = cls(
            network=NetPolicy.from_settings(settings),
            local_roots=tuple(Path(root) for root in settings.local_image_roots),
        )
        return replace(options, **overrides)


LOCAL_MEMO_SIZE = 200_000
"""Local files remembered per run (path, size, mtime, inode -> outcome): about 40 MB at most."""

LOCAL_ROOTS_HINT = "allow its folder with the setting local_image_roots (env COUNTERSCAN_LOCAL_IMAGE_ROOTS)"


def feed_folder(kind: str, location: str) -> Path | None:
    """The folder a file or folder source's relative image paths live in; None for HTTP sources."""
    if kind == "http" or not location:
        return None
    path = Path(location)
    return path if kind == "folder" else path.parent


def local_image_path(ref: str, folder: Path | None, roots: Sequence[Path]) -> Path:
    """The real path of a local image reference, if policy allows reading it; raises ImageError.

    Inside the feed's folder or one of ``roots``, judged after symlinks are resolved; a path
    with a ``..`` component is refused outright, wherever it would land.
    """
    path = Path(ref)
    if ".." in path.parts:
        raise ImageError("image path contains '..': refused (image paths stay inside the feed's folder)")
    real = path.resolve()
    allowed = ([folder] if folder is not None else []) + list(roots)
    if any(real.is_relative_to(root.resolve()) for root in allowed):
        return real
    where = "outside the feed's folder" if folder is not None else "a local path named by a remote feed"
    raise ImageError(f"image path is {where}: refused ({LOCAL_ROOTS_HINT})")


def resolve_ref(ref: str, base_dir: Path | None) -> str:
    """URLs stay as they are; relative paths resolve against the feed's folder."""
    if len(url_scheme(ref)) > 1:  # one letter is a Windows drive, not a scheme
        return ref
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path)


class ImageCollector:
    """Turns image references into cached, validated blobs; failures become outcomes, not exceptions."""

    def __init__(self, store: ListingWriter, blobs: BlobStore, limits: DecodeLimits, options: FetchOptions) -> None:
        self.store = store
        self.blobs = blobs
        self.limits = limits
        self.options = options
        self._client: PoliteClient | None = None
        self._host_slots: dict[str, threading.Semaphore] = defaultdict(lambda: threading.Semaphore(options.per_host))
        self._lock = threading.Lock()
        self._local_seen: OrderedDict[tuple[str, int, int, int], ImageOutcome] = OrderedDict()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> ImageCollector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def collect(self, refs: Sequence[str], *, folder: Path | None = None) -> dict[str, ImageOutcome]:
        """Outcome per distinct resolved reference (local path or URL); local paths are read only
        inside ``folder`` (the feed's) or the configured local roots."""
        distinct = list(dict.fromkeys(refs))
        urls = [ref for ref in distinct if _is_url(ref)]
        remembered = {url: sha for url, sha in self.store.cached_urls(urls).items() if sha in self.blobs}
        outcomes = {url: ImageOutcome(ref=url, sha256=sha) for url, sha in remembered.items()}
        todo = [ref for ref in distinct if ref not in outcomes]
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, self.options.workers)) as pool:
                outcomes.update(zip(todo, pool.map(lambda ref: self._one(ref, folder), todo), strict=True))
        self.store.remember_urls(
            {ref: outcome.sha256 for ref, outcome in outcomes.items() if _is_url(ref) and outcome.sha256}
        )
        return outcomes

    def _one(self, ref: str, folder: Path | None) -> ImageOutcome:
        try:
            return self._guarded(ref, folder)
        except ExternalError:
            raise  # the blob store or the database failing is not this image's fault
        except Exception as exc:  # whatever else one image raises stays with that image
            return ImageOutcome(ref=ref, error=f"unexpected {type(exc).__name__}: {str(exc)[:300]}")

    def _guarded(self, ref: str, folder: Path | None) -> ImageOutcome:
        try:
            if _is_url(ref):
                return self._keep(ref, self._download(ref))
            path = self._local_path(ref, folder)
        except ImageError as exc:
            return ImageOutcome(ref=ref, error=exc.reason)
        # A feed names the same local picture in many rows and batches: read and hash it once
        # per run, unless the file changed in between (same size, mtime and inode: same file).
        try:
            info = path.stat()
            key: tuple[str, int, int, int] | None = (str(path), info.st_size, info.st_mtime_ns, info.st_ino)
        except OSError:
            key = None
        with self._lock:
            known = self._local_seen.get(key) if key else None
        if known is not None:
            return replace(known, ref=ref)
        try:
            outcome = self._keep(ref, read_capped(path, self.limits.max_bytes))
        except ImageError as exc:
            outcome = ImageOutcome(ref=ref, error=exc.reason)
        if key is not None:
            with self._lock:
                self._local_seen[key] = outcome
                if len(self._local_seen) > LOCAL_MEMO_SIZE:
                    self._local_seen.popitem(last=False)
        return outcome

    def _keep(self, ref: str, data: bytes) -> ImageOutcome:
        """The picture's content hash, validated and stored once."""
        sha256 = sha256_hex(data)
        if sha256 not in self.blobs:
            inspect(data, self.limits)
            self.blobs.put(data)
        return ImageOutcome(ref=ref, sha256=sha256)

    def _local_path(self, ref: str, folder: Path | None) -> Path:
        scheme = url_scheme(ref)
        if len(scheme) > 1:  # one letter is a Windows drive, not a scheme
            raise ImageError(f"unsupported URL scheme {scheme!r} (only http, https and local paths)")
        return local_image_path(ref, folder, self.options.local_roots)

    def _download(self, url: str) -> bytes:
        try:
            host = checked_url(url).host
        except BadURLError as exc:
            raise ImageError(f"malformed URL: {exc}") from None
        with self._slot(host):
            try:
                data, headers, _final = self._http().get(url, max_bytes=self.limits.max_bytes)
            except BadURLError as exc:
                raise ImageError(f"malformed URL: {exc}") from None
            except RefusedAddressError as exc:
                raise ImageError(f"address refused: {exc}") from None
            except FetchError as exc:
                raise ImageError(f"download failed: {exc}") from None
        head = data[:64].lstrip().lower()
        if head.startswith(HTML_STARTS):
            declared = headers.get("content-type", "unknown")
            raise ImageError(f"not an image: the server sent an HTML page ({declared})")
        return data

    @contextmanager
    def _slot(self, host: str) -> Iterator[None]:
        with self._lock:
            slot = self._host_slots[host]
        with slot:
            yield

    def _http(self) -> PoliteClient:
        with self._lock:
            if self._client is None:
                policy = RetryPolicy(
                    max_retries=self.options.max_retries,
                    timeout_seconds=self.options.timeout_seconds,
                    max_redirects=self.options.max_redirects,
                )
                self._client = PoliteClient(
                    policy, requests_per_second=self.options.requests_per_second, network=self.options.network
                )
            return self._client


def _is_url(ref: str) -> bool:
    return is_web_url(ref)
