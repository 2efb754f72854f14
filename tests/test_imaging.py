from __future__ import annotations

import contextlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from counterscan.errors import ImageDecodeError, ImageError, ImageTooLargeError
from counterscan.imaging.decode import (
    HASH_DRAFT_SIDE,
    HASH_DRAFT_SIZE,
    DecodeLimits,
    Picture,
    decode,
    inspect,
    read_capped,
)
from counterscan.matchers.perceptual import DHASH, PHASH, HashMatcher
from tests.conftest import jpeg_bytes, png_bytes


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming huge dimensions, with one tiny IDAT."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def test_decodes_real_jpeg_to_rgb(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    image = decode(jpeg_bytes(photos["astronaut"]), limits)
    assert image.mode == "RGB"
    assert image.size == photos["astronaut"].size


def test_draft_decoding_shrinks_jpeg_but_never_below_the_request(
    photos: dict[str, Image.Image], limits: DecodeLimits
) -> None:
    big = photos["hubble_deep_field"].resize((1024, 1024))
    image = decode(jpeg_bytes(big), limits, draft_size=HASH_DRAFT_SIZE, mode="L")
    assert image.mode == "L"
    assert HASH_DRAFT_SIZE[0] <= image.width < big.width
    assert image.height >= HASH_DRAFT_SIZE[1]


def test_corrupt_bytes_are_a_decode_error(limits: DecodeLimits) -> None:
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        decode(b"this is a text file, not a picture", limits)


def test_empty_file_is_a_decode_error(limits: DecodeLimits) -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        decode(b"", limits)


def test_truncated_jpeg_is_a_decode_error(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    data = jpeg_bytes(photos["coffee"])
    with pytest.raises(ImageDecodeError, match="corrupt or truncated JPEG"):
        decode(data[: len(data) // 2], limits, source="half.jpg")


def test_huge_dimension_png_is_refused_before_decoding(limits: DecodeLimits) -> None:
    with pytest.raises(ImageTooLargeError, match="decompression bomb") as raised:
        decode(_png_header_only(100_000, 100_000), limits, source="bomb.png")
    assert "bomb.png" in str(raised.value)


def test_pixel_cap_is_the_configured_one(photos: dict[str, Image.Image]) -> None:
    tight = DecodeLimits(max_bytes=10_000_000, max_pixels=1000)
    with pytest.raises(ImageTooLargeError, match="over the cap of 1000"):
        decode(jpeg_bytes(photos["coffee"]), tight)


def test_byte_cap(photos: dict[str, Image.Image]) -> None:
    data = jpeg_bytes(photos["coffee"])
    with pytest.raises(ImageTooLargeError):
        decode(data, DecodeLimits(max_bytes=len(data) - 1, max_pixels=60_000_000))


def test_cmyk_jpeg_becomes_rgb(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    buffer = io.BytesIO()
    photos["chelsea"].convert("CMYK").save(buffer, "JPEG", quality=90)
    image = decode(buffer.getvalue(), limits)
    assert image.mode == "RGB"
    original = np.asarray(photos["chelsea"].resize((8, 8)), dtype=int)
    decoded = np.asarray(image.resize((8, 8)), dtype=int)
    # Colours survive the CMYK round trip (no inverted channels).
    assert np.abs(original - decoded).max() < 40


def test_palette_with_alpha_is_flattened_onto_white(limits: DecodeLimits) -> None:
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((200, 0, 0, 255), (10, 10, 30, 30))
    palette = image.convert("P")  # keeps transparency in info
    palette.info["transparency"] = palette.getpixel((0, 0))
    decoded = decode(png_bytes(palette), limits)
    assert decoded.mode == "RGB"
    pixels = np.asarray(decoded)
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert pixels[20, 20, 0] > 150


def test_rgba_logo_is_flattened_onto_white(limits: DecodeLimits) -> None:
    image = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    image.paste((0, 0, 0, 255), (5, 5, 15, 15))
    decoded = decode(png_bytes(image), limits, mode="L")
    assert decoded.getpixel((0, 0)) == 255
    assert decoded.getpixel((10, 10)) == 0


def test_exif_orientation_is_applied(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    source = photos["rocket"]  # landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    source.save(buffer, "JPEG", exif=exif.tobytes())
    decoded = decode(buffer.getvalue(), limits)
    assert decoded.size == (source.height, source.width)


def test_sixteen_bit_png_is_scaled_not_clipped(limits: DecodeLimits) -> None:
    values = np.full((16, 16), 1000, dtype=np.uint16)
    values[:, :8] = 60000
    image = Image.fromarray(values)
    decoded = decode(png_bytes(image), limits, mode="L")
    pixels = np.asarray(decoded)
    assert pixels[2, 2] > 200
    assert pixels[2, 12] < 50


def test_inspect_reports_format_and_size(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    info = inspect(png_bytes(photos["coins"]), limits)
    assert (info.format, info.width, info.height) == ("PNG", *photos["coins"].size)
    assert len(info.sha256) == 64


def test_read_capped_refuses_large_files(tmp_path: Path, limits: DecodeLimits) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 2000)
    with pytest.raises(ImageTooLargeError, match="over the cap"):
        read_capped(path, 1000)
    with pytest.raises(ImageDecodeError, match="not found"):
        read_capped(tmp_path / "missing.jpg", 1000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_image_errors(data: bytes) -> None:
    limits = DecodeLimits(max_bytes=1_000_000, max_pixels=1_000_000)
    with contextlib.suppress(ImageError):
        decode(data, limits)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=100, max_value=5000), st.data())
def test_mangled_jpegs_raise_only_image_errors(cut: int, data: st.DataObject) -> None:
    base = jpeg_bytes(Image.new("RGB", (64, 48), (10, 120, 200)))
    position = data.draw(st.integers(min_value=0, max_value=len(base) - 1))
    mangled = bytearray(base[: max(cut, 10)])
    mangled[min(position, len(mangled) - 1)] ^= 0xFF
    with contextlib.suppress(ImageError):
        decode(bytes(mangled), DecodeLimits(max_bytes=1_000_000, max_pixels=1_000_000))


def _exif_rotated(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned 90 degrees
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def _sample_images(photos: dict[str, Image.Image]) -> dict[str, bytes]:
    photo = photos["astronaut"]
    return {
        "jpeg": jpeg_bytes(photo),
        "jpeg-2000px": jpeg_bytes(photo.resize((2000, 2000))),
        "jpeg-small": jpeg_bytes(photo.resize((90, 60))),
        "jpeg-grey": jpeg_bytes(photo.convert("L")),
        "jpeg-exif-rotated": _exif_rotated(photo.resize((640, 400))),
        "png-alpha": png_bytes(photo.convert("RGBA")),
    }


def test_picture_forms_are_the_decodes_they_stand_for(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    """Each form of a picture is pixel for pixel what decode() gives for the same request, so signals
    computed from a shared picture are the ones computed before pictures were shared."""
    for name, data in _sample_images(photos).items():
        picture = Picture.open(data, limits, source=name)
        expected = decode(data, limits)
        assert picture.size == expected.size, name
        for side in (HASH_DRAFT_SIDE, 320, 800):
            for mode in ("RGB", "L"):
                form = picture.reduced(side, mode)
                reference = decode(data, limits, draft_size=(side, side), mode=mode)
                assert (form.mode, form.size) == (reference.mode, reference.size), (name, side, mode)
                assert form.tobytes() == reference.tobytes(), (name, side, mode)
            grey = picture.grey(side)
            assert grey.tobytes() == decode(data, limits, draft_size=(side, side)).convert("L").tobytes()
        assert picture.full("L").tobytes() == decode(data, limits, mode="L").tobytes()
        assert picture.full().tobytes() == expected.tobytes()


def test_hashes_share_one_decode_and_stay_identical(photos: dict[str, Image.Image], limits: DecodeLimits) -> None:
    """pHash and dHash of one picture: one decoded form between them, the same hashes as apart."""
    matchers = [HashMatcher(PHASH, max_distance=10), HashMatcher(DHASH, max_distance=6)]
    for name, data in _sample_images(photos).items():
        shared = Picture.open(data, limits)
        together = [matcher.encode(shared) for matcher in matchers]
        apart = [matcher.encode(Picture.open(data, limits)) for matcher in matchers]
        assert together == apart, name
        decoded = [key for key in shared._forms if key[0] in ("draft", "full")]
        assert len(decoded) == 1, (name, decoded)


def test_picture_requests_on_the_same_jpeg_scale_share_a_decode(
    photos: dict[str, Image.Image], limits: DecodeLimits
) -> None:
    picture = Picture.open(jpeg_bytes(photos["astronaut"].resize((1000, 1000))), limits)
    assert picture.reduced(300) is picture.reduced(260)  # both decode at 1/2 scale (500 px)
    assert picture.reduced(800) is picture.full()  # scale 1: a full decode
    assert picture.reduced(100) is not picture.reduced(300)


def test_picture_checks_the_header_on_open_and_the_pixels_on_decode(
    photos: dict[str, Image.Image], limits: DecodeLimits
) -> None:
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        Picture.open(_png_header_only(100_000, 100_000), limits, source="bomb.png")
    with pytest.raises(ImageDecodeError, match="not a recognised image"):
        Picture.open(b"plain text", limits)
    data = jpeg_bytes(photos["coffee"])
    truncated = Picture.open(data[: len(data) // 2], limits, source="half.jpg")
    with pytest.raises(ImageDecodeError, match=r"half\.jpg"):
        truncated.reduced(HASH_DRAFT_SIDE, "L")
