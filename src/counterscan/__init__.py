"""counterscan: find counterfeit marketplace listings that re-use brands' logos and photos."""

from counterscan.assets import add_asset_files, add_text_assets, remove_asset
from counterscan.brands import add_brand, update_brand
from counterscan.config import Settings
from counterscan.errors import CounterscanError, DataError, ExternalError, UserError
from counterscan.ingest import ingest, open_source
from counterscan.members import add_member, authenticate
from counterscan.records import Asset, Brand, Evidence, Listing, Suspect
from counterscan.scan import run_scan
from counterscan.store import BlobStore, Store

__version__ = "0.1.0"

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
