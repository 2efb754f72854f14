"""Issue 4: the asset registry: ownership, validation by content, archives, history, audit."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from counterscan.errors import PermissionDeniedError, UserError
from counterscan.imaging.decode import DecodeLimits
from counterscan.matchers.perceptual import PHASH, HashMatcher
from counterscan.records import Member
from counterscan.registry.assets import UploadLimits, add_upload_bytes, remove_asset
from counterscan.registry.brands import BrandChanges, add_brand, update_brand
from counterscan.registry.members import add_member
from counterscan.registry.uploads import UploadFile
from counterscan.store import BlobStore, Store
from tests.conftest import Cli, jpeg_bytes, png_bytes


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def owned(cli: Cli) -> Cli:
    cli.add_member("acme-group")
    cli("brands", "add", "Acme", "--member", "acme-group")
    return cli


def live_assets(cli: Cli, kind: str = "product") -> list[dict[str, object]]:
    listed = json.loads(cli("assets", "list", "--format", "json").stdout)
    return [item for item in listed if item["kind"] == kind]


def test_zip_upload_lands_good_entries_and_reports_each_bad_one(
    owned: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    archive = tmp_path / "kit.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "photos/front.jpg": jpeg_bytes(photos["coffee"]),
                "photos/back.png": png_bytes(photos["rocket"]),
                "../escape.jpg": jpeg_bytes(photos["moon"]),
                "/etc/absolute.jpg": jpeg_bytes(photos["moon"]),
                "readme.txt": b"brand guidelines",
                "inner.zip": zip_bytes({"x.jpg": jpeg_bytes(photos["moon"])}),
                "folder/": b"",
            }
        )
    )
    result = owned("assets", "add", "--brand", "Acme", "--kind", "product", str(archive))
    assert result.stdout.count("added asset") == 2
    errors = result.stderr
    assert "kit.zip:../escape.jpg: unsafe path in archive (escapes with ..)" in errors
    assert "kit.zip:/etc/absolute.jpg: unsafe path in archive (absolute)" in errors
    assert "kit.zip:readme.txt: not a recognised image" in errors
    assert "kit.zip:inner.zip: archives inside archives are not accepted" in errors
    assert sorted(str(item["original_name"]) for item in live_assets(owned)) == ["back.png", "front.jpg"]
    assert not (tmp_path.parent / "escape.jpg").exists()


def test_files_are_judged_by_content_not_extension(owned: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    disguised = tmp_path / "photo.txt"
    disguised.write_bytes(png_bytes(photos["chelsea"]))
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"GIF89a but not really")
    result = owned("assets", "add", "--brand", "Acme", "--kind", "product", str(disguised), str(fake))
    assert "added asset" in result.stdout and "photo.txt" in result.stdout
    assert f"rejected {fake}:" in result.stderr


def test_metadata_is_stripped_and_identical_pictures_dedup(
    owned: Cli, tmp_path: Path, photos: dict[str, Image.Image]
) -> None:
    exif = Image.Exif()
    exif[0x010E] = "secret location notes"  # ImageDescription
    exif[0x8825] = {1: "N", 2: (51.0, 30.0, 0.0)}  # GPS
    tagged = io.BytesIO()
    photos["coins"].save(tagged, "PNG", exif=exif.tobytes())
    plain = png_bytes(photos["coins"])
    (tmp_path / "tagged.png").write_bytes(tagged.getvalue())
    (tmp_path / "plain.png").write_bytes(plain)
    result = owned("assets", "add", "--brand", "Acme", "--kind", "product", str(tmp_path / "tagged.png"))
    assert "added asset" in result.stdout
    [asset] = live_assets(owned)
    blob = owned.home / "blobs" / str(asset["sha256"])[:2] / str(asset["sha256"])
    stored = blob.read_bytes()
    assert b"secret location" not in stored
    assert not Image.open(io.BytesIO(stored)).getexif()
    again = owned("assets", "add", "--brand", "Acme", "--kind", "product", str(tmp_path / "plain.png"))
    assert "already present" in again.stdout
    assert len(live_assets(owned)) == 1


def test_remove_and_replace_keep_history(owned: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    (tmp_path / "v1.jpg").write_bytes(jpeg_bytes(photos["astronaut"]))
    (tmp_path / "v2.jpg").write_bytes(jpeg_bytes(photos["rocket"]))
    owned("assets", "add", "--brand", "Acme", "--kind", "product", str(tmp_path / "v1.jpg"))
    [first] = live_assets(owned)
    replaced = owned("assets", "replace", str(first["asset_id"]), str(tmp_path / "v2.jpg"))
    assert f"asset {first['asset_id']} replaced by" in replaced.stdout
    [second] = live_assets(owned)
    assert second["replaces_asset_id"] == first["asset_id"]
    history = json.loads(owned("assets", "list", "--history", "--format", "json").stdout)
    assert {(item["asset_id"], item["removed"]) for item in history if item["kind"] == "product"} == {
        (first["asset_id"], True),
        (second["asset_id"], False),
    }
    owned("assets", "remove", str(second["asset_id"]))
    assert live_assets(owned) == []
    store = owned.store()
    try:
        assert len(store.asset_signals("phash")) == 0  # removed assets leave future scans
    finally:
        store.close()
    assert "already removed" in owned("assets", "remove", str(second["asset_id"]), expect=2).stderr
    audit = json.loads(owned("audit", "--format", "json").stdout)
    actions = [entry["action"] for entry in audit]
    assert actions[:4] == ["asset.remove", "asset.add", "asset.remove", "asset.add"]
    assert all(entry["actor"] == "acme-group" for entry in audit[:4])


def test_members_touch_only_their_own_brands(owned: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    other_key = owned.add_member("rival", use=False)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(photos["astronaut"]))
    as_rival = ["--as", "rival", "--key", other_key]
    denied = owned("assets", "add", "--brand", "Acme", str(tmp_path / "a.jpg"), *as_rival, expect=5)
    assert denied.stderr.strip() == "error: member 'rival' may not change brand 'Acme'"
    assert (
        "may not register brands for 'acme-group'"
        in owned("brands", "add", "Sneaky", "--member", "acme-group", *as_rival, expect=5).stderr
    )
    assert "may not change brand" in owned("brands", "update", "Acme", "--add-alias", "x", *as_rival, expect=5).stderr
    owned("assets", "add", "--brand", "Acme", str(tmp_path / "a.jpg"))
    asset_id = str(live_assets(owned, "logo")[0]["asset_id"])
    assert "may not change" in owned("assets", "remove", asset_id, *as_rival, expect=5).stderr
    wrong = owned("assets", "add", "--brand", "Acme", str(tmp_path / "a.jpg"), "--key", "cs_wrong", expect=5)
    assert "wrong API key" in wrong.stderr
    assert len(live_assets(owned, "logo")) == 1


def test_brand_profile_update_show_and_audit(owned: Cli) -> None:
    owned(
        "brands",
        "update",
        "Acme",
        "--add-alias",
        "ACME Corp",
        "--add-lookalike",
        "Akme",
        "--add-lookalike",
        "Acmee",
        "--add-seller",
        "acme-official",
        "--add-category",
        "sneakers",
    )
    owned("brands", "update", "Acme", "--product", "Roadrunner 2", "--msrp", "149.5", "--currency", "eur")
    owned("brands", "update", "Acme", "--remove-lookalike", "acmee", "--msrp", "120", "--currency", "USD")
    owned("assets", "add", "--brand", "Acme", "--kind", "text", "Roadrunner", "ROADRUNNER", "Wile E.")
    profile = json.loads(owned("brands", "show", "Acme").stdout)
    assert profile["aliases"] == ["ACME Corp"]
    assert profile["lookalikes"] == ["Akme"]
    assert profile["authorised_sellers"] == ["acme-official"]
    assert profile["categories"] == ["sneakers"]
    assert profile["products"] == [{"name": "Roadrunner 2", "msrp": 149.5, "currency": "EUR"}]
    assert (profile["msrp"], profile["currency"]) == (120.0, "USD")
    assert profile["keywords"] == ["Roadrunner", "Wile E."]  # the same word twice is one asset
    assert "has no lookalike 'nope'" in owned("brands", "update", "Acme", "--remove-lookalike", "nope", expect=2).stderr
    actions = [entry["action"] for entry in json.loads(owned("audit", "--format", "json").stdout)]
    assert {"brand.add", "brand.update", "brand.product", "member.add", "asset.add"} <= set(actions)


# -- fuzzing the uploader ---------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> tuple[Store, BlobStore, Member]:
    store = Store.open(f"sqlite:///{tmp_path / 'fuzz.db'}")
    owner = add_member(store, "owner").member
    add_brand(store, owner, "Fuzzed")
    return store, BlobStore(tmp_path / "blobs"), owner


def _consistent(store: Store, blobs: BlobStore) -> None:
    """Every live image asset has its signals and its blob: nothing half-written."""
    live = [asset for asset in store.assets() if asset.kind != "text"]
    signalled = {signal.asset_id for signal in store.asset_signals("phash")}
    assert {asset.asset_id for asset in live} == signalled
    assert all(asset.sha256 in blobs for asset in live)


MALFORMED_ZIP_PARTS = st.sampled_from(
    [
        b"PK\x03\x04",
        b"PK\x03\x04" + b"\x00" * 26,
        zip_bytes({"a.jpg": b"not a jpeg"})[:-10],
        zip_bytes({"../../x.png": b"\x89PNG\r\n\x1a\n"}),
        zip_bytes({"a/b/c.gif": b"GIF89a\x01\x00\x01\x00"}),
    ]
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(st.binary(max_size=2048), MALFORMED_ZIP_PARTS, MALFORMED_ZIP_PARTS.map(lambda d: d + b"junk")),
        min_size=1,
        max_size=4,
    )
)
def test_uploader_survives_random_bytes_and_malformed_archives(
    registry: tuple[Store, BlobStore, Member], payloads: list[bytes]
) -> None:
    store, blobs, owner = registry
    limits = UploadLimits(image=DecodeLimits(max_bytes=100_000, max_pixels=4_000_000), max_archive_bytes=1_000_000)
    matcher = HashMatcher(PHASH, max_distance=10)
    files = [io_file(index, payload) for index, payload in enumerate(payloads)]
    report = add_upload_bytes(store, blobs, limits, [matcher], owner, brand="Fuzzed", kind="logo", files=files)
    assert not report.added  # none of these is a valid picture
    assert all(item.reason for item in report.rejected)
    _consistent(store, blobs)


def io_file(index: int, payload: bytes) -> UploadFile:
    return UploadFile(name=f"upload-{index}", data=payload)


def test_library_refuses_other_members_and_text_files(
    registry: tuple[Store, BlobStore, Member], photos: dict[str, Image.Image]
) -> None:
    store, blobs, owner = registry
    rival = add_member(store, "rival").member
    limits = UploadLimits(image=DecodeLimits(max_bytes=10_000_000, max_pixels=40_000_000), max_archive_bytes=10_000_000)
    matcher = HashMatcher(PHASH, max_distance=10)
    with pytest.raises(PermissionDeniedError):
        add_upload_bytes(store, blobs, limits, [matcher], rival, brand="Fuzzed", kind="logo", files=[])
    with pytest.raises(UserError, match="text assets are words"):
        add_upload_bytes(store, blobs, limits, [matcher], owner, brand="Fuzzed", kind="text", files=[])
    with pytest.raises(PermissionDeniedError):
        update_brand(store, rival, "Fuzzed", BrandChanges(add={"aliases": ["x"]}))
    good = add_upload_bytes(
        store,
        blobs,
        limits,
        [matcher],
        owner,
        brand="Fuzzed",
        kind="logo",
        files=[io_file(0, jpeg_bytes(photos["coffee"]))],
    )
    with pytest.raises(PermissionDeniedError):
        remove_asset(store, rival, good.added[0].asset_id)
    _consistent(store, blobs)
