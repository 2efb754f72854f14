"""Issue 16: decompression bombs refused from their headers, through the library, the CLI and the HTTP API.

The bombs are built here: a PNG whose IHDR declares the size and whose IDAT is a valid zlib
stream of zeros (a repeated full-flush deflate block, so building a 2 GB stream costs nothing).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import uvicorn
from PIL import Image

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.errors import ImageDecodeError, ImageTooLargeError
from counterscan.imaging.decode import DecodeLimits, decode
from counterscan.imaging.guard import RenderBudget
from counterscan.ingest import ingest, open_source
from counterscan.registry.brands import add_brand
from counterscan.registry.members import add_member
from counterscan.registry.uploads import UploadFile, clean_image, rasterise_svg
from counterscan.store import BlobStore, Store
from tests.conftest import Cli, png_bytes
from tests.test_api import Server, _asset_count, _blob_count, _client, _free_port

LIMITS = DecodeLimits(max_bytes=25 * 1024 * 1024, max_pixels=40_000_000)
BLOCK = 1 << 20


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def zeros_zlib(total: int) -> bytes:
    """A zlib stream of ``total`` zero bytes, built in milliseconds however large."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(bytes(BLOCK)) + deflate.flush(zlib.Z_FULL_FLUSH)
    body = block * (total // BLOCK) + deflate.compress(bytes(total % BLOCK)) + deflate.flush()
    return b"\x78\xda" + body + struct.pack(">I", ((total % 65521) << 16) | 1)  # adler32 of zeros


def png_bomb(width: int, height: int) -> bytes:
    """An 8-bit grey PNG of the given size, all black: valid, and a few KB to a few MB."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zeros_zlib((width + 1) * height)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b"")


def use_bomb(levels: int = 9, fan: int = 10) -> bytes:
    """Each level draws the one below ``fan`` times: fan**levels rectangles from a few hundred bytes."""
    groups = ['<g id="l0"><rect width="1" height="1"/></g>']
    for level in range(1, levels + 1):
        uses = "".join(f'<use xlink:href="#l{level - 1}"/>' for _ in range(fan))
        groups.append(f'<g id="l{level}">{uses}</g>')
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" height="64">'
        f'<defs>{"".join(groups)}</defs><use xlink:href="#l{levels}"/></svg>'
    ).encode()


def svg_embedding(picture: bytes, copies: int = 1) -> bytes:
    uri = "data:image/png;base64," + base64.b64encode(picture).decode()
    images = "".join(f'<image width="64" height="64" href="{uri}"/>' for _ in range(copies))
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">{images}</svg>'.encode()


BOMBS: dict[str, Callable[[], bytes]] = {
    "tall.png": lambda: png_bomb(1, 59_000_000),
    "wide.png": lambda: png_bomb(2_147_483_647, 1),
    "square.png": lambda: png_bomb(7_700, 7_700),
    "use-bomb.svg": use_bomb,
    "embedded.svg": lambda: svg_embedding(png_bomb(20_000, 20_000)),
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {name: make() for name, make in BOMBS.items()}


def test_the_bombs_are_real() -> None:
    """The generator makes valid pictures: a small one decodes to what its header says."""
    picture = Image.open(io.BytesIO(png_bomb(300, 200)))
    picture.load()
    assert picture.size == (300, 200) and picture.getextrema() == (0, 0)
    assert zlib.decompress(zeros_zlib(3 * BLOCK + 5)) == bytes(3 * BLOCK + 5)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("tall.png", "1x59000000 pixels"),
        ("wide.png", "decompression bomb"),
        ("square.png", "7700x7700 pixels, over the cap of 40000000"),
        ("use-bomb.svg", "more than 20000 elements"),
        ("embedded.svg", "SVG embeds a decompression bomb"),
    ],
)
def test_each_bomb_is_refused_from_its_header(bombs: dict[str, bytes], name: str, reason: str) -> None:
    with pytest.raises(ImageTooLargeError, match=reason):
        clean_image(UploadFile(name, bombs[name]), LIMITS)


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((16_385, 10), "a side over the cap of 16384"),
        ((5_001, 100), "aspect ratio over 50:1"),
        ((100, 5_001), "aspect ratio over 50:1"),
    ],
)
def test_side_and_aspect_caps(size: tuple[int, int], reason: str) -> None:
    with pytest.raises(ImageTooLargeError, match=reason):
        decode(png_bomb(*size), LIMITS)
    assert decode(png_bomb(5_000, 100), LIMITS).size == (5_000, 100)  # 50:1 exactly is fine


def test_svg_guards_let_real_logos_through_and_refuse_the_rest(photos: dict[str, Image.Image]) -> None:
    logo = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 5"><circle cx="5" cy="2.5" r="2"/></svg>'
    assert Image.open(io.BytesIO(rasterise_svg(logo, source="logo.svg", limits=LIMITS))).size == (512, 256)
    small = png_bytes(photos["coffee"].resize((64, 48)))
    embedded = rasterise_svg(svg_embedding(small, copies=2), source="ok.svg", limits=LIMITS)
    assert Image.open(io.BytesIO(embedded)).width == 512
    big = svg_embedding(png_bomb(5_000, 5_000))
    with pytest.raises(ImageTooLargeError, match="embedded picture of 5000x5000 pixels, over the cap of 16000000"):
        rasterise_svg(big, source="big.svg", limits=LIMITS)
    four = svg_embedding(png_bomb(3_000, 3_000), copies=4)  # 9 MP each, 36 MP together
    with pytest.raises(ImageTooLargeError, match="embedded pictures hold over 16000000 pixels together"):
        rasterise_svg(four, source="four.svg", limits=LIMITS)
    many = svg_embedding(small, copies=17)
    with pytest.raises(ImageTooLargeError, match="more than 16 pictures"):
        rasterise_svg(many, source="many.svg", limits=LIMITS)
    strip = b'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="100000"><rect width="1" height="9"/></svg>'
    with pytest.raises(ImageTooLargeError, match="SVG canvas of 512x51200000"):
        rasterise_svg(strip, source="strip.svg", limits=LIMITS)
    cycle = (
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
        b'<g id="a"><use xlink:href="#b"/></g><g id="b"><use xlink:href="#a"/></g></svg>'
    )
    with pytest.raises(ImageTooLargeError, match="cycle"):
        rasterise_svg(cycle, source="cycle.svg", limits=LIMITS)
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>'
    )
    with pytest.raises(ImageDecodeError, match="could not be read"):
        rasterise_svg(laughs, source="laughs.svg", limits=LIMITS)


# -- through the CLI ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BOMBS))
def test_cli_refuses_each_bomb_with_exit_3_and_writes_nothing(
    bombs: dict[str, bytes], name: str, tmp_path: Path
) -> None:
    cli = Cli(tmp_path / "home")
    cli.add_member("acme")
    cli("brands", "add", "Acme", "--member", "acme")
    path = tmp_path / name
    path.write_bytes(bombs[name])
    result = cli("assets", "add", "--brand", "Acme", str(path), expect=3)
    assert f"rejected {path}:" in result.stderr and "Traceback" not in result.stderr + result.stdout
    store = cli.store()
    try:
        assert [asset for asset in store.assets(include_removed=True) if asset.kind != "text"] == []
    finally:
        store.close()
    blobs = tmp_path / "home" / "blobs"
    assert not blobs.exists() or not any(p.is_file() for p in blobs.rglob("*"))


CLI_PROBE = """
import json, sys
from typer.testing import CliRunner
from counterscan.cli import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = ("sqlalchemy", "counterscan.store", "counterscan.matchers", "cv2", "faiss", "sklearn", "onnxruntime")
print(json.dumps({"code": result.exit_code, "stderr": result.stderr, "loaded": [m for m in heavy if m in sys.modules]}))
"""


@pytest.mark.parametrize("name", list(BOMBS))
def test_cli_refuses_a_bomb_before_the_store_and_the_matchers_are_imported(
    bombs: dict[str, bytes], name: str, tmp_path: Path
) -> None:
    """The refusal costs no start-up: the header check runs before the store, SQLAlchemy and the
    matchers load (`/usr/bin/time` measures the CPU it costs; this holds the order that makes it cheap)."""
    path = tmp_path / name
    path.write_bytes(bombs[name])
    home = tmp_path / "home"
    arguments = ["--home", str(home), "assets", "add", "--brand", "Acme", str(path)]
    probe = subprocess.run(
        [sys.executable, "-c", CLI_PROBE, *arguments], capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    assert report["code"] == 3 and f"rejected {path}:" in report["stderr"], report
    assert report["loaded"] == []
    assert not home.exists() or not any(item.is_file() for item in home.rglob("*"))  # nothing written


# -- through the HTTP API -----------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    settings = Settings.load(home=tmp_path / "home", db_url=db_url, environ={})
    settings = replace(settings, max_upload_bytes=50_000_000)
    store = Store.open(settings.database_url)
    owner = add_member(store, "acme-group")
    rival = add_member(store, "rival")
    analyst = add_member(store, "inspector", role="analyst")
    add_brand(store, owner.member, "Acme")
    store.close()
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not running.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    yield Server(f"http://127.0.0.1:{port}", owner.api_key, rival.api_key, analyst.api_key, settings)
    running.should_exit = True
    thread.join(timeout=10)


def test_api_refuses_every_bomb_with_413_and_writes_nothing(server: Server, bombs: dict[str, bytes]) -> None:
    with _client(server, server.owner_key) as client:
        for name, data in bombs.items():
            response = client.post("/v1/brands/Acme/assets", files=[("files", (name, data, "image/png"))])
            assert response.status_code == 413, (name, response.text)
            [rejected] = response.json()["detail"]["rejected"]
            assert rejected["kind"] == "too-large" and rejected["reason"], name
    assert (_asset_count(server), _blob_count(server)) == (0, 0)


def test_api_long_names_empty_zips_and_huge_ids(server: Server, photos: dict[str, Image.Image]) -> None:
    long_name = "x" * 600 + ".png"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("y" * 700 + ".png", png_bytes(photos["coffee"]))
        bundle.writestr("later.png", png_bytes(photos["moon"]))
    folders = io.BytesIO()
    with zipfile.ZipFile(folders, "w") as bundle:
        bundle.writestr(zipfile.ZipInfo("empty/"), b"")
        bundle.writestr(zipfile.ZipInfo("empty/inner/"), b"")
    with _client(server, server.owner_key) as client:
        response = client.post(
            "/v1/brands/Acme/assets", files=[("files", (long_name, png_bytes(photos["rocket"]), "image/png"))]
        )
        assert response.status_code == 201, response.text
        [added] = response.json()["added"]
        assert len(added["original_name"]) == 500 and added["original_name"].endswith("x.png")
        response = client.post("/v1/brands/Acme/assets", files=[("files", ("bundle.zip", archive.getvalue()))])
        assert response.status_code == 201, response.text
        assert len(response.json()["added"]) == 2  # the entry after the long one was processed too
        response = client.post("/v1/brands/Acme/assets", files=[("files", ("folders.zip", folders.getvalue()))])
        assert response.status_code == 415
        assert response.json()["detail"]["rejected"][0]["reason"] == "archive holds no files (only folders)"
        for asset_id in ("9223372036854775808", "-1", "0"):
            response = client.delete(f"/v1/assets/{asset_id}")
            assert response.status_code == 404, (asset_id, response.text)
    assert (_asset_count(server), _blob_count(server)) == (3, 3)


def test_render_budget_stops_on_time_and_on_drawn_elements() -> None:
    budget = RenderBudget(max_pixels=1_000_000, source="slow.svg", time_limit=0.0)
    budget.start()
    time.sleep(0.01)
    with pytest.raises(ImageTooLargeError, match=r"took over 0s to render"):
        budget.element()
    counted = RenderBudget(max_pixels=1_000_000, max_elements=3)
    for _ in range(3):
        counted.element()
    with pytest.raises(ImageTooLargeError, match="more than 3 elements"):
        counted.element()


def test_feed_images_that_are_bombs_are_quarantined_from_their_header(
    store: Store, blobs: BlobStore, tmp_path: Path, bombs: dict[str, bytes]
) -> None:
    for name in ("tall.png", "wide.png", "square.png"):
        (tmp_path / name).write_bytes(bombs[name])
    (tmp_path / "feed.csv").write_text("listing_id,image_paths\nT,tall.png\nW,wide.png\nS,square.png\n")
    summary = ingest(store, blobs, LIMITS, open_source(str(tmp_path / "feed.csv")))
    assert (summary.new, summary.images_failed) == (3, 3)
    assert all("over the cap" in problem.reason or "bomb" in problem.reason for problem in summary.problems)
    assert not blobs.root.exists() or not any(path.is_file() for path in blobs.root.rglob("*"))
