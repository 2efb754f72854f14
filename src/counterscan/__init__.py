"""counterscan: find counterfeit marketplace listings that re-use brands' logos and photos.

The library's main entry points are importable from here; each is loaded on first use, so that
importing one small module (the CLI's start-up, a worker) does not load every matcher.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from counterscan.config import Settings
    from counterscan.errors import CounterscanError, DataError, ExternalError, UserError
    from counterscan.ingest import ingest, open_source
    from counterscan.records import Asset, Brand, Evidence, Listing, Suspect
    from counterscan.registry.assets import add_asset_files, add_text_assets, remove_asset
    from counterscan.registry.brands import add_brand, update_brand
    from counterscan.registry.members import add_member, authenticate
    from counterscan.scan.batch import run_scan
    from counterscan.store import BlobStore, Store

__version__ = "0.1.0"

_HOMES = {
    "add_asset_files": "counterscan.registry.assets",
    "add_text_assets": "counterscan.registry.assets",
    "remove_asset": "counterscan.registry.assets",
    "add_brand": "counterscan.registry.brands",
    "update_brand": "counterscan.registry.brands",
    "Settings": "counterscan.config",
    "CounterscanError": "counterscan.errors",
    "DataError": "counterscan.errors",
    "ExternalError": "counterscan.errors",
    "UserError": "counterscan.errors",
    "ingest": "counterscan.ingest",
    "open_source": "counterscan.ingest",
    "add_member": "counterscan.registry.members",
    "authenticate": "counterscan.registry.members",
    "Asset": "counterscan.records",
    "Brand": "counterscan.records",
    "Evidence": "counterscan.records",
    "Listing": "counterscan.records",
    "Suspect": "counterscan.records",
    "run_scan": "counterscan.scan.batch",
    "BlobStore": "counterscan.store",
    "Store": "counterscan.store",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'counterscan' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


__all__ = [
    "Asset",
    "BlobStore",
    "Brand",
    "CounterscanError",
    "DataError",
    "Evidence",
    "ExternalError",
    "Listing",
    "Settings",
    "Store",
    "Suspect",
    "UserError",
    "add_asset_files",
    "add_brand",
    "add_member",
    "add_text_assets",
    "authenticate",
    "ingest",
    "open_source",
    "remove_asset",
    "run_scan",
    "update_brand",
]
