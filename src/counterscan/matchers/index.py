"""FAISS indexes over asset signals, kept on disk and brought up to date instead of rebuilt.

Each index lives in one ``.npz`` file (the serialised FAISS index beside the (asset, variant)
key of every row), written aside and renamed, so a worker never reads half a file and the keys
always describe the rows they sit beside. ``sync`` makes an index hold exactly the given
signals: rows of assets that are gone are removed (or, where FAISS cannot remove, the index is
rebuilt), new ones are added, and the file is rewritten only when something changed.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from counterscan.records import AssetSignal


@dataclass(frozen=True)
class SyncReport:
    added: int
    removed: int
    rebuilt: bool
    """True when the saved index could not be reused (missing, damaged, or not removable)."""


class PersistedIndex(ABC):
    """The shared bookkeeping; subclasses say how to make, fill and (de)serialise their FAISS index."""

    removable: bool = False

    def __init__(self, folder: Path | None, name: str) -> None:
        self.folder = folder
        self.name = name
        self._ids = np.zeros(0, np.int64)
        self._variants = np.zeros(0, np.str_)
        self.signals: list[AssetSignal] = []
        self._index = self._empty()

    @abstractmethod
    def _empty(self) -> Any: ...

    @abstractmethod
    def _rows(self, signals: Sequence[AssetSignal]) -> np.ndarray: ...

    @abstractmethod
    def _serialise(self, index: Any) -> np.ndarray: ...

    @abstractmethod
    def _deserialise(self, data: np.ndarray) -> Any: ...

    @abstractmethod
    def _fits(self, index: Any) -> bool:
        """Whether a loaded index has this index's shape (dimension, metric)."""

    def __len__(self) -> int:
        return len(self.signals)

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / f"{self.name}.npz"

    def sync(self, signals: Sequence[AssetSignal]) -> SyncReport:
        """Hold exactly ``signals``: load the saved index, drop what is gone, add what is new."""
        ids = np.fromiter((signal.asset_id for signal in signals), np.int64, count=len(signals))
        variants = np.array([signal.variant for signal in signals], dtype=np.str_).reshape(len(signals))
        rebuilt = not self._load()
        # (asset, variant) pairs as integers, so a million keys compare in numpy, not in Python sets.
        vocabulary = np.unique(np.concatenate([variants, self._variants]))
        wanted = ids * len(vocabulary) + np.searchsorted(vocabulary, variants)
        held = self._ids * len(vocabulary) + np.searchsorted(vocabulary, self._variants)
        gone = ~np.isin(held, wanted)
        stale = int(gone.sum())
        if stale and self.removable:
            self._index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(gone).astype(np.int64)))
            self._ids, self._variants, held = self._ids[~gone], self._variants[~gone], held[~gone]
        elif stale:
            self._index, rebuilt = self._empty(), True
            self._ids, self._variants, held = self._ids[:0], self._variants[:0], held[:0]
        distinct, first = np.unique(wanted, return_index=True)
        missing = np.sort(first[~np.isin(distinct, held)])
        if len(missing):
            self._index.add(np.ascontiguousarray(self._rows([signals[i] for i in missing.tolist()])))
            self._ids = np.concatenate([self._ids, ids[missing]])
            self._variants = np.concatenate([self._variants, variants[missing]])
            held = np.concatenate([held, wanted[missing]])
        if len(missing) or stale or (rebuilt and len(held)):
            self._save()
        self.signals = [signals[i] for i in first[np.searchsorted(distinct, held)].tolist()]
        return SyncReport(added=len(missing), removed=stale, rebuilt=rebuilt)

    def _load(self) -> bool:
        path = self.path
        if path is None or not path.exists():
            return False
        try:
            with np.load(path) as saved:
                index = self._deserialise(saved["index"])
                ids, variants = saved["asset_ids"].astype(np.int64), saved["variants"].astype(np.str_)
        except (OSError, ValueError, KeyError, RuntimeError):
            return False  # a damaged or foreign file: rebuilt from the signals
        if index.ntotal != len(ids) or len(ids) != len(variants) or not self._fits(index):
            return False
        self._index, self._ids, self._variants = index, ids, variants
        return True

    def _save(self) -> None:
        path = self.path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own per writer: two workers syncing at once each rename a whole file.
        aside = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        with aside.open("wb") as handle:
            np.savez(
                handle,
                index=self._serialise(self._index),
                asset_ids=self._ids,
                variants=self._variants,
            )
        aside.replace(path)


class BinaryHashIndex(PersistedIndex):
    """Exact Hamming-radius search over fixed-width binary hashes (brute force beats FAISS's
    bucket indexes at 64 to 256 bits; see scripts/bench_match.py)."""

    removable = True

    def __init__(self, bits: int, folder: Path | None = None, name: str = "hashes") -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        self.bits = bits
        super().__init__(folder, name)

    def _empty(self) -> Any:
        return faiss.IndexBinaryFlat(self.bits)

    def _rows(self, signals: Sequence[AssetSignal]) -> np.ndarray:
        return as_matrix([signal.signal for signal in signals], self.bits)

    def _serialise(self, index: Any) -> np.ndarray:
        return np.asarray(faiss.serialize_index_binary(index))

    def _deserialise(self, data: np.ndarray) -> Any:
        return faiss.deserialize_index_binary(data)

    def _fits(self, index: Any) -> bool:
        return bool(index.d == self.bits)

    def within(self, queries: np.ndarray, max_distance: int) -> list[list[tuple[AssetSignal, int]]]:
        """For each query row, every indexed signal at Hamming distance <= ``max_distance``."""
        if not self.signals or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        # FAISS's binary range search keeps distances strictly below the radius.
        limits, distances, ids = self._index.range_search(np.ascontiguousarray(queries), max_distance + 1)
        return [
            [(self.signals[int(ids[k])], int(distances[k])) for k in range(limits[row], limits[row + 1])]
            for row in range(len(queries))
        ]


class VectorIndex(PersistedIndex):
    """Inner-product HNSW search over L2-normalised vectors (cosine similarity). HNSW cannot
    remove rows, so removing an asset rebuilds it; adding one does not."""

    def __init__(self, dim: int, folder: Path | None = None, name: str = "vectors") -> None:
        self.dim = dim
        super().__init__(folder, name)

    def _empty(self) -> Any:
        return faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)

    def _rows(self, signals: Sequence[AssetSignal]) -> np.ndarray:
        return np.stack([np.frombuffer(signal.signal, np.float32) for signal in signals])

    def _serialise(self, index: Any) -> np.ndarray:
        return np.asarray(faiss.serialize_index(index))

    def _deserialise(self, data: np.ndarray) -> Any:
        return faiss.deserialize_index(data)

    def _fits(self, index: Any) -> bool:
        return bool(index.d == self.dim and index.metric_type == faiss.METRIC_INNER_PRODUCT)

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[AssetSignal, float]]]:
        if not self.signals or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        similarities, ids = self._index.search(
            np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self.signals))
        )
        return [
            [(self.signals[int(i)], float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(similarities, ids, strict=True)
        ]


def as_matrix(signals: Sequence[bytes], bits: int) -> np.ndarray:
    width = bits // 8
    for signal in signals:
        if len(signal) != width:
            raise ValueError(f"signal of {len(signal)} bytes, expected {width}")
    return np.frombuffer(b"".join(signals), dtype=np.uint8).reshape(len(signals), width)
