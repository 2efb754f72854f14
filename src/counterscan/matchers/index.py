"""FAISS indexes over asset signals, kept on disk and brought up to date instead of rebuilt.

Each index lives in one ``.npz`` file (the serialised FAISS index beside the (asset, variant)
key of every row), written aside and renamed, so a worker never reads half a file and the keys
always describe the rows they sit beside. ``sync`` makes an index hold exactly the given
signals: rows of assets that are gone are removed (or, where FAISS cannot remove, the index is
rebuilt), new ones are added, and the file is rewritten only when something changed.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from counterscan.records import AssetSignal
from counterscan.signals import SignalTable, as_table


@dataclass(frozen=True)
class SyncReport:
    added: int
    removed: int
    rebuilt: bool
    """True when the saved index could not be reused (missing, damaged, or not removable)."""


class PersistedIndex(ABC):
    """The shared bookkeeping; subclasses say how to make, fill and (de)serialise their FAISS index.

    Row r of the FAISS index is row ``order[r]`` of the signal table last synced, so a search
    result names its asset without one Python object per row.
    """

    removable: bool = False

    def __init__(self, path: Path | None) -> None:
        self.path = path
        """The file the index is loaded from and saved to; None: held in memory only."""
        self._ids = np.zeros(0, np.int64)
        self._codes = np.zeros(0, np.uint16)
        self._vocabulary: tuple[str, ...] = ()
        self.table: SignalTable = SignalTable.from_signals(())
        self._order = np.zeros(0, np.int64)
        self._index = self._empty()

    @abstractmethod
    def _empty(self) -> Any: ...

    @abstractmethod
    def _rows(self, table: SignalTable) -> np.ndarray: ...

    @abstractmethod
    def _serialise(self, index: Any) -> np.ndarray: ...

    @abstractmethod
    def _deserialise(self, data: np.ndarray) -> Any: ...

    @abstractmethod
    def _fits(self, index: Any) -> bool:
        """Whether a loaded index has this index's shape (dimension, metric)."""

    def __len__(self) -> int:
        return len(self._order)

    def signal_at(self, row: int) -> AssetSignal:
        """The asset signal behind row ``row`` of the FAISS index."""
        return self.table[int(self._order[row])]

    def sync(self, signals: Sequence[AssetSignal]) -> SyncReport:
        """Hold exactly ``signals``: load the saved index, drop what is gone, add what is new."""
        table = as_table(signals)
        rebuilt = not self._load()
        # (asset, variant) pairs as integers over one vocabulary, so ten million keys compare in numpy.
        vocabulary = tuple(sorted(set(table.variants) | set(self._vocabulary)))
        wanted = _keys(table.asset_ids, table.variant_codes, table.variants, vocabulary)
        held = _keys(self._ids, self._codes, self._vocabulary, vocabulary)
        codes = _recode(table.variant_codes, table.variants, vocabulary)
        if len(held) == len(wanted) and np.array_equal(held, wanted):
            # The usual case, an unchanged catalogue: rows line up one to one, nothing to sort.
            self._ids, self._codes, self._vocabulary = table.asset_ids, codes, vocabulary
            self.table, self._order = table, np.arange(len(table), dtype=np.int64)
            if rebuilt and len(held):
                self._save()
            return SyncReport(added=0, removed=0, rebuilt=rebuilt)
        self._codes = _recode(self._codes, self._vocabulary, vocabulary)
        self._vocabulary = vocabulary
        gone = ~np.isin(held, wanted)
        stale = int(gone.sum())
        if stale and self.removable:
            self._index.remove_ids(faiss.IDSelectorBatch(np.flatnonzero(gone).astype(np.int64)))
            self._ids, self._codes, held = self._ids[~gone], self._codes[~gone], held[~gone]
        elif stale:
            self._index, rebuilt = self._empty(), True
            self._ids, self._codes, held = self._ids[:0], self._codes[:0], held[:0]
        distinct, first = np.unique(wanted, return_index=True)
        missing = np.sort(first[~np.isin(distinct, held)])
        if len(missing):
            self._index.add(np.ascontiguousarray(self._rows(table.take(missing))))
            self._ids = np.concatenate([self._ids, table.asset_ids[missing]])
            self._codes = np.concatenate([self._codes, codes[missing]])
            held = np.concatenate([held, wanted[missing]])
        if len(missing) or stale or (rebuilt and len(held)):
            self._save()
        self.table = table
        self._order = first[np.searchsorted(distinct, held)].astype(np.int64)
        return SyncReport(added=len(missing), removed=stale, rebuilt=rebuilt)

    def _load(self) -> bool:
        path = self.path
        if path is None or not path.exists():
            return False
        try:
            with np.load(path) as saved:
                index = self._deserialise(saved["index"])
                ids, codes = saved["asset_ids"].astype(np.int64), saved["variant_codes"].astype(np.uint16)
                vocabulary = tuple(str(name) for name in saved["variant_names"])
        except (OSError, ValueError, KeyError, RuntimeError):
            return False  # a damaged, foreign or older file: rebuilt from the signals
        if index.ntotal != len(ids) or len(ids) != len(codes) or not self._fits(index):
            return False
        if len(codes) and int(codes.max()) >= len(vocabulary):
            return False
        self._index, self._ids, self._codes, self._vocabulary = index, ids, codes, vocabulary
        return True

    def _save(self) -> None:
        if self.path is not None:
            self.save(self.path)

    def save(self, path: Path) -> None:
        """Write the index and the key of every row to ``path`` (what :meth:`sync` loads)."""
        write_arrays(
            path,
            index=self._serialise(self._index),
            asset_ids=self._ids,
            variant_codes=self._codes,
            variant_names=np.array(self._vocabulary, dtype=np.str_),
        )


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    """Save ``arrays`` in one ``.npz`` file at ``path``, written aside and renamed: a reader never
    sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per writer: two workers syncing at once each rename a whole file.
    aside = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    with aside.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    aside.replace(path)


def save_derived(path: Path, digest: str, **arrays: np.ndarray) -> None:
    """Save what an index derived from its inputs, under the digest of those inputs."""
    write_arrays(path, digest=np.array(digest), **arrays)


def load_derived(path: Path, digest: str, *names: str) -> dict[str, np.ndarray] | None:
    """The arrays :func:`save_derived` saved at ``path`` from the inputs of ``digest``; None when
    the file is missing, damaged, lacks one of ``names`` or was derived from other inputs."""
    try:
        with np.load(path) as saved:
            found = {name: saved[name] for name in saved.files}
    except (OSError, ValueError, KeyError):
        return None
    if str(found.get("digest")) != digest or any(name not in found for name in names):
        return None
    return found


def save_point_index(path: Path, signals: Iterable[AssetSignal], index: faiss.IndexHNSWFlat) -> None:
    """Save an HNSW index of local-feature points (keypoints, copies, marks) under the digest of
    the asset signals it holds."""
    save_derived(path, signals_digest(signals), index=np.asarray(faiss.serialize_index(index)))


def load_point_index(path: Path, signals: Sequence[AssetSignal]) -> faiss.IndexHNSWFlat | None:
    """The HNSW index :func:`save_point_index` saved for exactly these signals; None when the file
    is missing, damaged, of another kind or was built from other signals (the caller builds it)."""
    saved = load_derived(path, signals_digest(signals), "index")
    try:
        loaded = None if saved is None else faiss.deserialize_index(saved["index"])
    except RuntimeError:  # a damaged file
        return None
    return loaded if isinstance(loaded, faiss.IndexHNSWFlat) else None


def signals_digest(signals: Iterable[AssetSignal]) -> str:
    """A digest of the signals an index was built from: what it saved is reused only for the very
    same signals."""
    digest = hashlib.sha256()
    for signal in signals:
        digest.update(f"{signal.asset_id}:{signal.brand_id}:{signal.variant}:{len(signal.signal)}:".encode())
        digest.update(signal.signal)
    return digest.hexdigest()


def _recode(codes: np.ndarray, names: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    """Codes into ``names`` as codes into the sorted ``vocabulary`` (which holds every name)."""
    if not len(names):
        return codes.astype(np.uint16)
    mapping = np.searchsorted(np.array(vocabulary, dtype=np.str_), np.array(names, dtype=np.str_))
    return np.asarray(mapping.astype(np.uint16)[codes], dtype=np.uint16)


def _keys(ids: np.ndarray, codes: np.ndarray, names: Sequence[str], vocabulary: Sequence[str]) -> np.ndarray:
    return np.asarray(ids.astype(np.int64) * max(len(vocabulary), 1) + _recode(codes, names, vocabulary), np.int64)


class BinaryHashIndex(PersistedIndex):
    """Exact Hamming-radius search over fixed-width binary hashes (brute force beats FAISS's
    bucket indexes at 64 to 256 bits; see scripts/bench_match.py)."""

    removable = True

    def __init__(self, bits: int, path: Path | None = None) -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        self.bits = bits
        super().__init__(path)

    def _empty(self) -> Any:
        return faiss.IndexBinaryFlat(self.bits)

    def _rows(self, table: SignalTable) -> np.ndarray:
        return table.matrix(self.bits // 8)

    def _serialise(self, index: Any) -> np.ndarray:
        return np.asarray(faiss.serialize_index_binary(index))

    def _deserialise(self, data: np.ndarray) -> Any:
        return faiss.deserialize_index_binary(data)

    def _fits(self, index: Any) -> bool:
        return bool(index.d == self.bits)

    def within(self, queries: np.ndarray, max_distance: int) -> list[list[tuple[AssetSignal, int]]]:
        """For each query row, every indexed signal at Hamming distance <= ``max_distance``."""
        if not len(self) or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        # FAISS's binary range search keeps distances strictly below the radius.
        limits, distances, ids = self._index.range_search(np.ascontiguousarray(queries), max_distance + 1)
        return [
            [(self.signal_at(int(ids[k])), int(distances[k])) for k in range(limits[row], limits[row + 1])]
            for row in range(len(queries))
        ]


class VectorIndex(PersistedIndex):
    """Inner-product HNSW search over L2-normalised vectors (cosine similarity). HNSW cannot
    remove rows, so removing an asset rebuilds it; adding one does not."""

    def __init__(self, dim: int, path: Path | None = None) -> None:
        self.dim = dim
        super().__init__(path)

    def _empty(self) -> Any:
        return faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT)

    def _rows(self, table: SignalTable) -> np.ndarray:
        return table.matrix(4 * self.dim).view(np.float32)

    def _serialise(self, index: Any) -> np.ndarray:
        return np.asarray(faiss.serialize_index(index))

    def _deserialise(self, data: np.ndarray) -> Any:
        return faiss.deserialize_index(data)

    def _fits(self, index: Any) -> bool:
        return bool(index.d == self.dim and index.metric_type == faiss.METRIC_INNER_PRODUCT)

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[AssetSignal, float]]]:
        if not len(self) or len(vectors) == 0:
            return [[] for _ in range(len(vectors))]
        similarities, ids = self._index.search(np.ascontiguousarray(vectors, dtype=np.float32), min(k, len(self)))
        return [
            [(self.signal_at(int(i)), float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(similarities, ids, strict=True)
        ]


def as_matrix(signals: Sequence[bytes], bits: int) -> np.ndarray:
    width = bits // 8
    for signal in signals:
        if len(signal) != width:
            raise ValueError(f"signal of {len(signal)} bytes, expected {width}")
    return np.frombuffer(b"".join(signals), dtype=np.uint8).reshape(len(signals), width)
