"""The only package that speaks SQL."""

from counterscan.store.blobs import BlobStore
from counterscan.store.sql import Store

__all__ = ["BlobStore", "Store"]
