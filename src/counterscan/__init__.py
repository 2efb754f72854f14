"""counterscan: find counterfeit marketplace listings that re-use brands' logos and photos."""

from counterscan.assets import add_assets, add_brand, add_member
from counterscan.config import Settings
from counterscan.errors import CounterscanError, DataError, ExternalError, UserError
from counterscan.ingest import ingest, open_source
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
    "add_assets",
    "add_brand",
    "add_member",
    "ingest",
    "open_source",
    "run_scan",
]
