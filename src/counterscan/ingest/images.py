"""Listing images: read or download, validate by decoding, cache by content hash."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from counterscan.errors import ImageError
from counterscan.imaging import DecodeLimits, inspect, read_capped, sha256_hex
from counterscan.records import ImageOutcome
from counterscan.store.blobs import BlobStore

FETCH_TIMEOUT_SECONDS = 15.0


class ImageCollector:
    """Turns image references into cached, validated blobs; failures become outcomes, not exceptions."""

    def __init__(self, blobs: BlobStore, limits: DecodeLimits) -> None:
        self.blobs = blobs
        self.limits = limits

    def collect(self, ref: str, base_dir: Path | None) -> ImageOutcome:
        try:
            data = self._read(ref, base_dir)
            sha256 = sha256_hex(data)
            if sha256 not in self.blobs:
                inspect(data, self.limits)
                self.blobs.put(data)
            return ImageOutcome(ref=ref, sha256=sha256)
        except ImageError as exc:
            return ImageOutcome(ref=ref, error=exc.reason)

    def _read(self, ref: str, base_dir: Path | None) -> bytes:
        scheme = urlparse(ref).scheme.lower()
        if scheme in ("http", "https"):
            return self._download(ref)
        if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
            raise ImageError(f"unsupported URL scheme {scheme!r} (only http, https and local paths)")
        path = Path(ref)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return read_capped(path, self.limits.max_bytes)

    def _download(self, url: str) -> bytes:
        request = urllib.request.Request(url, headers={"User-Agent": "counterscan"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > self.limits.max_bytes:
                    raise ImageError(f"download of {declared} bytes refused (cap {self.limits.max_bytes})")
                data: bytes = response.read(self.limits.max_bytes + 1)
        except urllib.error.HTTPError as exc:
            raise ImageError(f"download failed: HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ImageError(f"download failed: {getattr(exc, 'reason', exc)}") from exc
        if len(data) > self.limits.max_bytes:
            raise ImageError(f"download over the cap of {self.limits.max_bytes} bytes")
        return data
