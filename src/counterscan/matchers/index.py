"""FAISS wrappers. Exact brute-force Hamming search: at 64 bits it beats FAISS's bucket indexes."""

from __future__ import annotations

from collections.abc import Sequence

import faiss
import numpy as np

from counterscan.records import AssetSignal


class BinaryHashIndex:
    """Exact Hamming-radius search over fixed-width binary signals."""

    def __init__(self, signals: Sequence[AssetSignal], *, bits: int) -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        self.bits = bits
        self.signals = tuple(signals)
        self._index = faiss.IndexBinaryFlat(bits)
        if self.signals:
            self._index.add(as_matrix([s.signal for s in self.signals], bits))

    def __len__(self) -> int:
        return len(self.signals)

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


def as_matrix(signals: Sequence[bytes], bits: int) -> np.ndarray:
    width = bits // 8
    for signal in signals:
        if len(signal) != width:
            raise ValueError(f"signal of {len(signal)} bytes, expected {width}")
    return np.frombuffer(b"".join(signals), dtype=np.uint8).reshape(len(signals), width)
