"""Image embeddings: what hashes miss (a different photo of the same product, a recoloured logo).

The default embedder needs no downloaded weights: VLAD over SIFT descriptors, with a 32-word
codebook learned by scikit-learn's k-means from public-domain photos and shipped with the
package (``vlad_codebook.npy``, rebuilt by ``scripts/build_codebook.py``). An ONNX model from a
local path (``embedding_model`` in the config) replaces it when given. Vectors are L2-normalised;
similarity is their dot product (cosine), searched in a FAISS HNSW index persisted on disk and
brought up to date with incremental adds when assets are added.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from counterscan.errors import ImageDecodeError, UserError
from counterscan.imaging.decode import Picture
from counterscan.matchers.base import asset_evidence
from counterscan.matchers.index import VectorIndex
from counterscan.records import IMAGE_ASSET_KINDS, AssetKind, AssetSignal, Brand, Evidence
from counterscan.signals import as_table

EMBED_SIDE = 320
SIFT_FEATURES = 400


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, image: Image.Image) -> np.ndarray: ...


def _normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else vector.astype(np.float32)


class VladEmbedder:
    """VLAD: per codebook word, the summed residuals of the SIFT descriptors nearest to it."""

    name = "vlad32"

    def __init__(self, codebook: np.ndarray | None = None) -> None:
        if codebook is None:
            with resources.files("counterscan.matchers").joinpath("vlad_codebook.npy").open("rb") as handle:
                codebook = np.load(io.BytesIO(handle.read()))
        self.codebook = codebook.astype(np.float32)
        self.dim = int(self.codebook.size)
        self._sift = cv2.SIFT.create(nfeatures=SIFT_FEATURES)

    def descriptors(self, image: Image.Image) -> np.ndarray:
        gray = image.convert("L")
        gray.thumbnail((EMBED_SIDE, EMBED_SIDE))
        _points, found = self._sift.detectAndCompute(np.asarray(gray), None)
        return found if found is not None else np.zeros((0, 128), np.float32)

    def embed(self, image: Image.Image) -> np.ndarray:
        found = self.descriptors(image)
        words, size = self.codebook.shape
        vlad = np.zeros((words, size), np.float32)
        if len(found):
            # RootSIFT, then the residual to the nearest word, summed per word.
            root = np.sqrt(found / np.maximum(found.sum(axis=1, keepdims=True), 1e-7))
            nearest = np.argmin(((root[:, None, :] - self.codebook[None, :, :]) ** 2).sum(axis=2), axis=1)
            np.add.at(vlad, nearest, root - self.codebook[nearest])
        vlad = np.sign(vlad) * np.sqrt(np.abs(vlad))  # power normalisation
        norms = np.linalg.norm(vlad, axis=1, keepdims=True)
        vlad = np.where(norms > 0, vlad / np.maximum(norms, 1e-12), vlad)  # intra-normalisation
        return _normalise(vlad.reshape(-1))


class OnnxEmbedder:
    """A local ONNX image model: NCHW float input in [0, 1], one vector output."""

    name = "onnx"

    def __init__(self, path: Path, side: int = 224) -> None:
        import onnxruntime

        if not path.is_file():
            raise UserError(f"embedding model {path} not found")
        try:
            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise UserError(f"embedding model {path} could not be loaded: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self.side = side
        probe = self._run(Image.new("RGB", (side, side)))
        self.dim = int(probe.size)
        self.name = f"onnx:{path.name}"

    def _run(self, image: Image.Image) -> np.ndarray:
        pixels = np.asarray(image.convert("RGB").resize((self.side, self.side)), dtype=np.float32) / 255.0
        output = self._session.run(None, {self._input: pixels.transpose(2, 0, 1)[None]})[0]
        return np.asarray(output, dtype=np.float32).reshape(-1)

    def embed(self, image: Image.Image) -> np.ndarray:
        return _normalise(self._run(image))


class EmbeddingMatcher:
    """Nearest assets by embedding cosine similarity."""

    name = "embedding"
    asset_kinds: tuple[AssetKind, ...] = IMAGE_ASSET_KINDS

    def __init__(self, embedder: Embedder, *, min_similarity: float, index_dir: Path | None) -> None:
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.index_dir = index_dir

    def _vector(self, picture: Picture) -> bytes:
        vector = self.embedder.embed(picture.reduced(EMBED_SIDE))
        if not np.isfinite(vector).all():
            raise ImageDecodeError("embedding is not finite", source=picture.source)
        return vector.astype(np.float32).tobytes()

    def encode(self, picture: Picture) -> bytes:
        return self._vector(picture)

    def encode_asset(self, picture: Picture) -> list[tuple[str, bytes]]:
        return [("original", self._vector(picture))]

    def build_index(self, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> EmbeddingIndex:
        """The index over ``signals``, kept up to date in ``index_dir`` when the matcher has one."""
        if self.index_dir is None:
            return self._sync(VectorIndex(self.embedder.dim), signals)
        return self.load_index(self.index_dir / f"{self.name}-{self.embedder.name}.npz", signals, brands)

    def load_index(self, path: Path, signals: Sequence[AssetSignal], brands: Sequence[Brand] = ()) -> EmbeddingIndex:
        return self._sync(VectorIndex(self.embedder.dim, path), signals)

    def _sync(self, vectors: VectorIndex, signals: Sequence[AssetSignal]) -> EmbeddingIndex:
        vectors.sync(as_table(signals).of_width(4 * self.embedder.dim))
        return EmbeddingIndex(self, vectors)

    def evidence(self, image_sha256: str, hits: list[tuple[AssetSignal, float]]) -> list[Evidence]:
        """The assets among ``hits`` (asset signal, cosine similarity) similar enough, in search order."""
        return [
            asset_evidence(
                self.name,
                asset,
                image_sha256,
                distance=round(1.0 - similarity, 4),
                score=self.confidence(similarity),
                reason=(
                    f"image looks like {asset.brand} asset #{asset.asset_id} "
                    f"(cosine similarity {similarity:.2f}, {self.embedder.name})"
                ),
                details={"similarity": round(similarity, 4), "embedder": self.embedder.name},
            )
            for asset, similarity in hits
            if similarity >= self.min_similarity
        ]

    def confidence(self, similarity: float) -> float:
        """0.5 at the threshold, rising to 0.9 for identical vectors."""
        span = max(1e-6, 1.0 - self.min_similarity)
        return round(0.5 + 0.4 * min(1.0, max(0.0, (similarity - self.min_similarity) / span)), 4)


class EmbeddingIndex:
    """Asset embeddings, searched for the nearest few of each listing image's."""

    def __init__(self, matcher: EmbeddingMatcher, vectors: VectorIndex) -> None:
        self.matcher = matcher
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def save(self, path: Path) -> None:
        self.vectors.save(path)

    def query(self, signals: Sequence[tuple[str, bytes]]) -> list[list[Evidence]]:
        if not signals:
            return []
        vectors = np.stack([np.frombuffer(signal, np.float32) for _, signal in signals])
        found = self.vectors.search(vectors, k=5)
        return [self.matcher.evidence(sha256, hits) for (sha256, _), hits in zip(signals, found, strict=True)]
