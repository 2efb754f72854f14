"""Issue 7: the embedding matcher (VLAD default, ONNX optional) and its persisted FAISS index."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image, ImageDraw, ImageOps

from counterscan.config import Settings
from counterscan.imaging.decode import DecodeLimits
from counterscan.matchers.embedding import EmbeddingMatcher, OnnxEmbedder, VladEmbedder
from counterscan.matchers.index import SyncReport, VectorIndex
from counterscan.matchers.perceptual import PHASH, HashMatcher, crop_fraction
from counterscan.records import AssetSignal
from tests.conftest import PHOTO_NAMES, Cli, as_picture, jpeg_bytes

THRESHOLD = Settings().embedding_min_similarity


def relabelled(image: Image.Image) -> Image.Image:
    """A seller's version of an official photo: framed in white, with a red banner across the top
    (so the frame is not plain, and the hash matchers cannot trim it off)."""
    framed = ImageOps.expand(image, border=40, fill="white")
    ImageDraw.Draw(framed).rectangle((0, 0, framed.width, 30), fill="red")
    ImageDraw.Draw(framed).text((8, 8), "BEST PRICE", fill="white")
    return framed


@pytest.fixture
def matcher(limits: DecodeLimits, tmp_path: Path) -> EmbeddingMatcher:
    return EmbeddingMatcher(VladEmbedder(), min_similarity=THRESHOLD, index_dir=tmp_path / "index")


def cosine(a: bytes, b: bytes) -> float:
    return float(np.frombuffer(a, np.float32) @ np.frombuffer(b, np.float32))


def test_vlad_catches_framed_copies_that_phash_misses(
    photos: dict[str, Image.Image], matcher: EmbeddingMatcher, limits: DecodeLimits
) -> None:
    names = ["astronaut", "coffee", "rocket", "chelsea", "hubble_deep_field", "coins", "camera"]
    phash = HashMatcher(PHASH, max_distance=10)
    by_embedding = by_phash = 0
    for name in names:
        original = jpeg_bytes(photos[name], 95)
        edited = jpeg_bytes(relabelled(photos[name]), 70)
        by_embedding += cosine(matcher.encode(as_picture(original)), matcher.encode(as_picture(edited))) >= THRESHOLD
        query = np.frombuffer(phash.encode(as_picture(edited)), np.uint8)
        nearest = min(
            int(np.unpackbits(np.frombuffer(v, np.uint8) ^ query).sum())
            for _, v in phash.encode_asset(as_picture(original))
        )
        by_phash += nearest <= phash.max_distance
    # Measured: 4 of 7 for VLAD, 1 for pHash (docs/matching.md has the FlickrLogos numbers).
    assert by_embedding >= 4 and by_phash < by_embedding


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "hubble_deep_field", "camera"])
def test_vlad_survives_crops_and_recolouring(
    name: str, photos: dict[str, Image.Image], matcher: EmbeddingMatcher
) -> None:
    original = matcher.encode(as_picture(jpeg_bytes(photos[name], 95)))
    for edited in (crop_fraction(photos[name], (0.05, 0.05, 0.05, 0.05)), ImageOps.grayscale(photos[name])):
        assert cosine(original, matcher.encode(as_picture(jpeg_bytes(edited.convert("RGB"), 70)))) >= THRESHOLD


def test_vlad_keeps_unrelated_photos_apart(photos: dict[str, Image.Image], matcher: EmbeddingMatcher) -> None:
    vectors = {name: matcher.encode(as_picture(jpeg_bytes(photos[name]))) for name in PHOTO_NAMES}
    for a, b in itertools.combinations(PHOTO_NAMES, 2):
        assert cosine(vectors[a], vectors[b]) < THRESHOLD, (a, b)


def _signals(matcher: EmbeddingMatcher, photos: dict[str, Image.Image], names: list[str]) -> list[AssetSignal]:
    return [
        AssetSignal(
            asset_id=index,
            brand_id=1,
            brand="B",
            signal=matcher.encode_asset(as_picture(jpeg_bytes(photos[name])))[0][1],
        )
        for index, name in enumerate(names, start=1)
    ]


def test_index_is_persisted_and_grows_incrementally(photos: dict[str, Image.Image], matcher: EmbeddingMatcher) -> None:
    signals = _signals(matcher, photos, ["coffee", "rocket", "moon"])
    assert matcher.index_dir is not None
    first = VectorIndex(matcher.embedder.dim, matcher.index_dir / "t.npz")
    assert first.sync(signals[:2]).added == 2
    assert (matcher.index_dir / "t.npz").exists()

    second = VectorIndex(matcher.embedder.dim, matcher.index_dir / "t.npz")
    assert second.sync(signals) == SyncReport(added=1, removed=0, rebuilt=False)  # two loaded from disk
    removed = VectorIndex(matcher.embedder.dim, matcher.index_dir / "t.npz")
    assert removed.sync(signals[1:]) == SyncReport(added=2, removed=1, rebuilt=True)  # HNSW cannot remove
    index = matcher.build_index(signals)
    [hits] = index.query([("s" * 64, matcher.encode(as_picture(jpeg_bytes(ImageOps.grayscale(photos["rocket"])))))])
    assert [hit.asset_id for hit in hits] == [2]
    assert "cosine similarity" in hits[0].reason and hits[0].score >= 0.5


def _average_colour_model(path: Path) -> Path:
    """A tiny ONNX graph made here: global average pooling of the three colour channels."""
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])
    vector = helper.make_tensor_value_info("vector", TensorProto.FLOAT, [1, 3])
    pool = helper.make_node("GlobalAveragePool", ["image"], ["pooled"])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, 3])
    flat = helper.make_node("Reshape", ["pooled", "shape"], ["vector"])
    graph = helper.make_graph([pool, flat], "average-colour", [image], [vector], initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_embedder_from_a_local_model(tmp_path: Path, limits: DecodeLimits) -> None:
    embedder = OnnxEmbedder(_average_colour_model(tmp_path / "colour.onnx"))
    assert embedder.dim == 3
    matcher = EmbeddingMatcher(embedder, min_similarity=0.99, index_dir=None)
    red = jpeg_bytes(Image.new("RGB", (300, 200), (200, 20, 20)))
    red_small = jpeg_bytes(Image.new("RGB", (90, 60), (205, 25, 15)))
    blue = jpeg_bytes(Image.new("RGB", (300, 200), (20, 20, 200)))
    assert cosine(matcher.encode(as_picture(red)), matcher.encode(as_picture(red_small))) > 0.99
    assert cosine(matcher.encode(as_picture(red)), matcher.encode(as_picture(blue))) < 0.5


def test_onnx_model_missing_is_a_user_error(tmp_path: Path, settings: Settings) -> None:
    from counterscan.errors import UserError
    from counterscan.matchers import image_matchers

    with pytest.raises(UserError, match="not found"):
        image_matchers(replace(settings, image_matchers="embedding", embedding_model=str(tmp_path / "none.onnx")))
    with pytest.raises(UserError, match="unknown image matcher"):
        image_matchers(replace(settings, image_matchers="phash,clip"))


def test_scan_with_the_embedding_matcher_turned_on(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('image_matchers = "phash,embedding"\n')
    cli = Cli(home)
    cli.add_member("owner")
    cli("brands", "add", "Acme", "--member", "owner")
    (tmp_path / "official.jpg").write_bytes(jpeg_bytes(photos["coffee"], 95))
    cli("assets", "add", "--brand", "Acme", "--kind", "product", str(tmp_path / "official.jpg"))
    (tmp_path / "framed.jpg").write_bytes(jpeg_bytes(relabelled(photos["coffee"]), 70))
    (tmp_path / "other.jpg").write_bytes(jpeg_bytes(photos["moon"]))
    feed = tmp_path / "feed.csv"
    feed.write_text(
        f"listing_id,title,image_paths\nF1,mug,{tmp_path / 'framed.jpg'}\nF2,poster,{tmp_path / 'other.jpg'}\n"
    )
    cli("ingest", str(feed))
    cli("scan", "--workers", "1")
    queue = json.loads(cli("review", "list", "--format", "json").stdout)
    assert [(row["listing_id"], row["matcher"]) for row in queue] == [("F1", "embedding")]
    # Saved under a name that carries the matcher's version and settings (the embedder among them).
    assert len(list((home / "index").glob("embedding-*.npz"))) == 1
