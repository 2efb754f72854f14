"""One Settings object, built from flags, environment (COUNTERSCAN_*) and an optional TOML file.

The commented config.toml that `counterscan init` writes is generated from Settings itself
(:func:`config_template`): every setting, commented out, with its default and the comment that explains
it here (what it does and what it costs), so the file can never drift from the code.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

from counterscan.errors import UserError

DEFAULT_HOME = Path(".counterscan")
CONFIG_FILE_NAME = "config.toml"


@dataclass(frozen=True)
class Settings:
    """Everything a run needs to know; passed down explicitly, never read from globals."""

    home: Path = DEFAULT_HOME
    db_url: str | None = None
    # Guards on every decoded image: bytes read and pixels decoded.
    max_image_bytes: int = 25 * 1024 * 1024
    # 40 MP: beyond any marketplace photo; a 59 MP PNG took 7.6 s to take in (decode and re-encode).
    max_image_pixels: int = 40_000_000
    # Refused before decoding too: any side over this, and long side / short side over this ratio
    # (a 1 x 59,000,000 PNG costs 24 s to decode: decoders pay per row as well as per pixel).
    max_image_side: int = 16_384
    max_image_aspect: float = 50.0
    # Cap on one upload request or archive, expanded.
    max_upload_bytes: int = 200 * 1024 * 1024
    # Hamming distances at or under which two images are the same picture, per hash (pHash and
    # dHash of 64 bits, PDQ of 256). Chosen from measured distributions, see docs/matching.md.
    phash_max_distance: int = 10
    dhash_max_distance: int = 6
    pdq_max_distance: int = 32
    # Image matchers a scan runs. Empty (the default): chosen by what the brands registered, the
    # hashes ("phash", "dhash") and "copies" (product photos re-used turned, cropped, in a collage
    # or a screenshot) where they have product photos, the hashes and the logo matchers
    # ("keypoints", ...) where they have logos, readers of brand names in photos where there are
    # brands. Or an explicit comma-separated list of "phash", "dhash", "pdq" (whole-image copies),
    # "copies", "keypoints", "marks" (logos inside photos), "embedding", ...; "none" for none.
    # Per image (CPU, one core, median, docs/matching.md): pHash and dHash ~1.5 ms each (one
    # shared decode), PDQ ~7 ms, embeddings ~16 ms; copies and marks share one XFeat pass
    # (~55-75 ms), then copies ~110 ms and marks ~490 ms of search and checks; keypoints ~88-117
    # ms, OCR 60-130 ms, shapes ~37-56 ms (whole default scans: docs/scaling.md).
    # A change re-scans the listings the changed matchers look at on the next scan.
    image_matchers: str = ""
    # Cosine similarity at or over which embeddings match (docs/matching.md), and an optional
    # local ONNX model to embed with instead of the built-in VLAD descriptor.
    embedding_min_similarity: float = 0.45
    embedding_model: str = ""
    # Logos inside photos (the "keypoints" image matcher): RANSAC inliers and inlier share needed.
    keypoint_min_inliers: int = 8
    keypoint_min_inlier_ratio: float = 0.05
    # Brand marks inside photos by learned local features (the "marks" image matcher, XFeat): the
    # cosine similarity two descriptors need to match, and the distinct photo points that must agree
    # with one plausible homography for a mark to count as found.
    mark_min_similarity: float = 0.82
    mark_min_inliers: int = 14
    # Words read in listing photos (the "ocr" image matcher, PP-OCRv4 through rapidocr-onnxruntime):
    # the detector's input size (longest side, px), how many text boxes are recognised at most (the
    # tallest first), and the recognition confidence a line needs. Cost per photo grows with the
    # square of ocr_det_side and about linearly with the boxes read; see docs/matching.md.
    ocr_det_side: int = 480
    ocr_max_lines: int = 16
    ocr_min_confidence: float = 0.5
    # Native threads (FAISS/OpenMP, OpenCV, BLAS, ONNX) in each scan worker process. Workers
    # default to one per core, so 1 avoids oversubscription: measured 11-21% less scan CPU than 2.
    scan_worker_threads: int = 1

    # Outbound fetches (feed images, HTTP sources, webhooks) refuse loopback, private, link-local,
    # multicast and reserved addresses unless they fall in one of these networks (CIDR list,
    # comma-separated in the environment), e.g. "10.20.0.0/16". Costs one DNS lookup per connection.
    allowed_private_networks: tuple[str, ...] = ()
    # Folders besides a feed's own folder from which a feed's absolute image_paths may be read
    # (comma-separated in the environment). Empty: only paths inside the feed's folder.
    local_image_roots: tuple[str, ...] = ()

    # Secret that signs the review UI's session cookies. Empty: one is made and kept in
    # HOME/session.key. Set it when several servers share sessions behind one address.
    session_secret: str = ""
    # Failed authentications (CLI and API alike, counted in the store) allowed per client and per
    # key prefix within the window; past them, tries are refused unchecked until the window passes.
    # One indexed count query per authentication.
    auth_max_failures_per_client: int = 20
    auth_max_failures_per_key: int = 10
    auth_failure_window_seconds: int = 300
    # Flat logos by their silhouette (the "shapes" image matcher): how much of a logo's outline a
    # region of the photo must cover (0-1). Lower finds more logos and more false ones.
    shape_min_overlap: float = 0.88

    # Exchange rates for price evidence: each currency's value in one common unit, e.g.
    # {"USD": 1.0, "EUR": 1.08}. Never fetched: prices in a currency missing here are not compared.
    rates: Mapping[str, float] = field(default_factory=dict)

    # -- the service (counterscan serve): real-time checks, webhooks, metrics --
    # Seconds between the server's looks for changed assets, brands or models (one cheap query);
    # a change is picked up and indexes rebuilt within this time plus the rebuild.
    check_refresh_seconds: float = 10.0
    # Most images one check may carry (files or URLs); each costs a decode and every image matcher.
    check_max_images: int = 10
    # A check answers at once from the cheap matchers (hashes, words) when costly image matchers
    # run (keypoints, OCR, shapes: 100-300 ms a photo); they finish in the background and the
    # complete answer comes at GET /v1/check/{id} and as a "check.completed" webhook. false: they
    # run before the answer.
    check_costly_in_background: bool = True
    # Who may read /metrics: "" everyone, "off" nobody, else comma-separated client addresses or
    # networks (e.g. "127.0.0.1,10.0.0.0/8"). Behind a proxy the client is the proxy.
    metrics_allow: str = ""
    # Webhook delivery (destinations limited as allowed_private_networks says): attempts before a
    # delivery is marked failed, first retry delay (doubling each time, capped at an hour), request
    # timeout, and how long a worker's claim on a delivery lasts before another worker may take it
    # over (a worker killed mid-delivery).
    webhook_max_attempts: int = 12
    webhook_retry_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    webhook_lease_seconds: float = 60.0

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{(self.home / 'counterscan.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.home / "blobs"

    @classmethod
    def load(
        cls,
        *,
        home: Path | None = None,
        db_url: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Flags beat environment, environment beats ``HOME/config.toml``, which beats defaults."""
        env = os.environ if environ is None else environ
        resolved_home = home or Path(env.get("COUNTERSCAN_HOME", str(DEFAULT_HOME)))
        settings = cls(home=resolved_home)
        settings = settings._apply(_read_toml(resolved_home / CONFIG_FILE_NAME), origin="config.toml")
        env_values = {
            f.name: env[f"COUNTERSCAN_{f.name.upper()}"]
            for f in fields(cls)
            if f.name != "home" and f"COUNTERSCAN_{f.name.upper()}" in env
        }
        if "COUNTERSCAN_DB" in env:
            env_values["db_url"] = env["COUNTERSCAN_DB"]
        settings = settings._apply(env_values, origin="environment")
        if db_url:
            settings = replace(settings, db_url=db_url)
        return settings

    def _apply(self, values: Mapping[str, Any], *, origin: str) -> Settings:
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known or key == "home":
                raise UserError(f"{origin}: unknown setting {key!r}")
            current = getattr(self, key)
            try:
                if isinstance(current, tuple):
                    items = value.split(",") if isinstance(value, str) else list(value)
                    changes[key] = tuple(str(item).strip() for item in items if str(item).strip())
                    continue
                if isinstance(current, Mapping):
                    source = json.loads(value) if isinstance(value, str) else value
                    changes[key] = {str(code).upper(): float(rate) for code, rate in dict(source).items()}
                    continue
                changes[key] = type(current)(value) if current is not None else str(value)
            except (TypeError, ValueError, AttributeError) as exc:
                raise UserError(f"{origin}: setting {key!r} has a bad value {value!r}") from exc
        return replace(self, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from exc


def demo_data_dir() -> Path:
    """The demo set: packaged with the wheel, or ``data/demo`` in a source checkout."""
    packaged = Path(str(resources.files("counterscan"))) / "demo_data"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "data" / "demo"
    if checkout.is_dir():
        return checkout
    raise UserError("demo data not found (expected data/demo in the source tree)")


# The commented config.toml, generated from Settings.

NOT_IN_FILE = ("home",)
"""Where the file itself lives: set by --home or COUNTERSCAN_HOME only."""

_FIELD = re.compile(r"^    (\w+): [^=]+(=|$)")


def _comments() -> dict[str, list[str]]:
    """Per field, the comment lines written above it (shared by the fields that follow them)."""
    found: dict[str, list[str]] = {}
    block: list[str] = []
    after_field = False
    for line in inspect.getsource(Settings).splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if after_field:
                block, after_field = [], False
            block.append(stripped.lstrip("#").strip())
        elif match := _FIELD.match(line):
            found[match.group(1)] = block
            after_field = True
        elif not stripped:
            block, after_field = [], False
    return found


def _default(spec: Field[Any]) -> Any:
    if spec.default is not MISSING:
        return spec.default
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return None


def toml_value(value: Any) -> str:
    """A TOML literal for a setting's value (str, bool, int, float, tuple or mapping)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(key))} = {toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def config_template() -> str:
    """The commented config.toml: each setting at its default, commented out (so later versions'
    defaults still apply), with what it does and costs."""
    comments = _comments()
    lines = [
        "# counterscan settings. Every setting is listed at its default, commented out: remove the",
        "# leading '# ' of a setting to change it. Flags beat COUNTERSCAN_<NAME> environment variables,",
        "# which beat this file. Generated by `counterscan init` from the code's own settings.",
        "",
    ]
    shown: list[str] | None = None
    for spec in fields(Settings):
        if spec.name in NOT_IN_FILE:
            continue
        comment = comments.get(spec.name, [])
        if comment != shown:
            lines.append("")
            lines.extend(f"# {text}".rstrip() for text in comment)
            shown = comment
        value = _default(spec)
        if value is None:
            lines.append(f"# {spec.name} = (unset)")
        else:
            lines.append(f"# {spec.name} = {toml_value(value)}")
    return "\n".join(lines).lstrip("\n") + "\n"
