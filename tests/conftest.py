"""Shared fixtures: real photos, real databases (SQLite always, PostgreSQL when reachable)."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image
from skimage import data as skdata
from typer.testing import CliRunner

from counterscan.cli import app
from counterscan.config import Settings
from counterscan.imaging.decode import DecodeLimits, Picture
from counterscan.store import BlobStore, Store

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POSTGRES_URL = os.environ.get("COUNTERSCAN_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

# Public-domain / CC0 sample photos that ship inside scikit-image (no download).
PHOTO_NAMES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "retina",
    "immunohistochemistry",
    "camera",
    "moon",
    "coins",
    "gravel",
    "brick",
    "page",
    "text",
    "grass",
)


def load_photo(name: str, max_side: int = 640) -> Image.Image:
    image = Image.fromarray(np.asarray(getattr(skdata, name)())).convert("RGB")
    image.thumbnail((max_side, max_side))
    return image


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return {name: load_photo(name) for name in PHOTO_NAMES}


LIMITS = DecodeLimits(max_bytes=25 * 1024 * 1024, max_pixels=60_000_000)


def as_picture(data: bytes) -> Picture:
    """Image bytes opened as a scan opens them, to hand to a matcher."""
    return Picture.open(data, LIMITS)


@pytest.fixture
def limits() -> DecodeLimits:
    return LIMITS


def _postgres_reachable() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[Callable[[], str]]:
    """Make a fresh schema per call; every schema is dropped at the end of the session."""
    problem = _postgres_reachable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem + " (CI must have it)")
        pytest.skip(problem)
    engine = sa.create_engine(POSTGRES_URL)
    made: list[str] = []

    def make() -> str:
        schema = f"cs_test_{uuid.uuid4().hex[:12]}"
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"

    yield make
    # One transaction per schema: dropping them all in one takes a lock per table and index of every
    # schema at once, past max_locks_per_transaction ("out of shared memory") in a long run.
    for schema in made:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    make: Callable[[], str] = request.getfixturevalue("postgres_url")
    return make()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    opened = Store.open(db_url)
    yield opened
    opened.close()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(home=tmp_path / "home", environ={})


class Cli:
    """Runs the real CLI in-process against one home folder."""

    def __init__(self, home: Path, db_url: str | None = None) -> None:
        self.home = home
        self.db_url = db_url
        self.runner = CliRunner()
        self.env: dict[str, str] = {}
        """Environment for every call, e.g. COUNTERSCAN_API_KEY after ``add_member``."""

    def __call__(self, *args: str, expect: int | tuple[int, ...] = 0, env: dict[str, str] | None = None) -> CliResult:
        prefix = ["--home", str(self.home)] + (["--db", self.db_url] if self.db_url else [])
        result = self.runner.invoke(app, [*prefix, *args], env={**self.env, **(env or {})})
        outcome = CliResult(result.exit_code, result.stdout, result.stderr)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"counterscan {' '.join(args)} raised {result.exception!r}\n{outcome}")
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert result.exit_code in expected, f"counterscan {' '.join(args)}: exit {result.exit_code}\n{outcome}"
        return outcome

    def add_member(self, name: str, *, role: str = "member", use: bool = True) -> str:
        """Add a member and return its API key; ``use`` makes it the key of later calls."""
        key = self("members", "add", name, "--role", role).stdout.strip().splitlines()[-1]
        if use:
            self.env["COUNTERSCAN_API_KEY"] = key
        return key

    def store(self) -> Store:
        return Store.open(Settings.load(home=self.home, db_url=self.db_url, environ={}).database_url)


def panel_text(output: str) -> str:
    """A usage error as one line of words: typer draws it in a box, wrapped to the terminal's width."""
    return " ".join(output.replace("│", " ").split())


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str) -> None:
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr

    def __str__(self) -> str:
        return f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@pytest.fixture
def cli(tmp_path: Path, db_url: str) -> Cli:
    return Cli(tmp_path / "home", db_url)


@pytest.fixture
def sqlite_cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")
