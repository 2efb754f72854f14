"""Asset signals held as columns of numpy arrays, not one Python object per row.

Ten million hash rows as ``AssetSignal`` objects take gigabytes and seconds to build, pickle and
send to workers; as columns they take about 30 bytes a row and move as a handful of buffers.
A ``SignalTable`` is still a ``Sequence[AssetSignal]``: code that wants objects gets them one row
at a time (the rows a search returns), and indexes read the columns directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from counterscan.records import AssetSignal


@dataclass(frozen=True, eq=False)
class SignalTable(Sequence[AssetSignal]):
    """Rows of (asset, brand, variant, signal bytes) as parallel arrays."""

    asset_ids: np.ndarray
    """int64 per row."""
    brand_ids: np.ndarray
    """int32 per row."""
    variant_codes: np.ndarray
    """uint16 per row: an index into ``variants``."""
    variants: tuple[str, ...]
    data: np.ndarray
    """uint8: every row's signal, one after the other."""
    offsets: np.ndarray
    """int64, one more than there are rows: row i's signal is data[offsets[i]:offsets[i + 1]]."""
    brand_names: Mapping[int, str] = field(default_factory=dict)
    origins: Mapping[int, str] = field(default_factory=dict)
    """Per asset id, where a hash-only asset came from (imported banks); absent for uploads."""

    def __len__(self) -> int:
        return len(self.asset_ids)

    @overload
    def __getitem__(self, item: int) -> AssetSignal: ...

    @overload
    def __getitem__(self, item: slice) -> Sequence[AssetSignal]: ...

    def __getitem__(self, item: int | slice) -> AssetSignal | Sequence[AssetSignal]:
        if isinstance(item, slice):
            return self.take(np.arange(len(self))[item])
        row = range(len(self))[item]  # negative indexes and bounds, as a list has them
        asset_id = int(self.asset_ids[row])
        brand_id = int(self.brand_ids[row])
        return AssetSignal(
            asset_id=asset_id,
            brand_id=brand_id,
            brand=self.brand_names.get(brand_id, ""),
            signal=self.signal(row),
            variant=self.variants[int(self.variant_codes[row])],
            origin=self.origins.get(asset_id, ""),
        )

    def signal(self, row: int) -> bytes:
        return self.data[int(self.offsets[row]) : int(self.offsets[row + 1])].tobytes()

    @property
    def widths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of_width(self, width: int) -> SignalTable:
        """The rows whose signal has exactly ``width`` bytes."""
        return self.take(np.flatnonzero(self.widths == width))

    def matrix(self, width: int) -> np.ndarray:
        """The signals as a (rows, width) uint8 matrix; every row must have ``width`` bytes."""
        if len(self) and not bool((self.widths == width).all()):
            raise ValueError(f"signals of other widths than {width} bytes")
        return self.data[: len(self) * width].reshape(len(self), width)

    def take(self, rows: np.ndarray) -> SignalTable:
        """The given rows, in the given order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, widths = self.offsets[rows], self.widths[rows]
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(widths, out=offsets[1:])
        if len(rows) and bool((widths == widths[0]).all()):
            # Fixed-width rows (hashes): gather them as a matrix, not byte by byte.
            width = int(widths[0])
            gathered = self.data[starts[:, None] + np.arange(width)[None, :]].reshape(-1)
        else:
            gathered = (
                np.concatenate([self.data[s : s + w] for s, w in zip(starts.tolist(), widths.tolist(), strict=True)])
                if len(rows)
                else np.zeros(0, np.uint8)
            )
        return SignalTable(
            asset_ids=self.asset_ids[rows],
            brand_ids=self.brand_ids[rows],
            variant_codes=self.variant_codes[rows],
            variants=self.variants,
            data=np.ascontiguousarray(gathered, dtype=np.uint8),
            offsets=offsets,
            brand_names=self.brand_names,
            origins=self.origins,
        )

    @classmethod
    def from_signals(cls, signals: Iterable[AssetSignal]) -> SignalTable:
        builder = SignalTableBuilder()
        for signal in signals:
            builder.add(signal.asset_id, signal.brand_id, signal.variant, signal.signal)
            builder.brand_names[signal.brand_id] = signal.brand
            if signal.origin:
                builder.origins[signal.asset_id] = signal.origin
        return builder.build()


def as_table(signals: Sequence[AssetSignal]) -> SignalTable:
    return signals if isinstance(signals, SignalTable) else SignalTable.from_signals(signals)


class SignalTableBuilder:
    """Collects rows in plain lists (cheap appends), turned into arrays every ``FLUSH_ROWS`` rows so
    that ten million rows never sit in Python lists at once."""

    FLUSH_ROWS = 500_000

    def __init__(self) -> None:
        self._asset_ids: list[int] = []
        self._brand_ids: list[int] = []
        self._codes: list[int] = []
        self._chunks: list[bytes] = []
        self._done: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.vocabulary: dict[str, int] = {}
        self.brand_names: dict[int, str] = {}
        self.origins: dict[int, str] = {}

    def add(self, asset_id: int, brand_id: int, variant: str, signal: bytes) -> None:
        code = self._code(variant)
        self._asset_ids.append(asset_id)
        self._brand_ids.append(brand_id)
        self._codes.append(code)
        self._chunks.append(signal)
        if len(self._chunks) >= self.FLUSH_ROWS:
            self._flush()

    def add_rows(self, rows: Sequence[tuple[int, int, str, bytes]]) -> None:
        """Many (asset id, brand id, variant, signal) rows at once, as a database cursor hands them."""
        if not rows:
            return
        self._flush()
        asset_ids, brand_ids, variants, signals = zip(*rows, strict=True)
        self._done.append(
            (
                np.asarray(asset_ids, np.int64),
                np.asarray(brand_ids, np.int32),
                np.asarray([self._code(variant) for variant in variants], np.uint16),
                np.frombuffer(b"".join(signals), np.uint8),
                np.fromiter(map(len, signals), np.int64, count=len(signals)),
            )
        )

    def _code(self, variant: str) -> int:
        """The variant name's small integer code, given the next free one when it is new."""
        code = self.vocabulary.get(variant)
        if code is None:
            if len(self.vocabulary) > np.iinfo(np.uint16).max:
                raise ValueError("more than 65,536 distinct variant names")
            code = self.vocabulary[variant] = len(self.vocabulary)
        return code

    def _flush(self) -> None:
        if not self._chunks:
            return
        widths = np.fromiter((len(chunk) for chunk in self._chunks), np.int64, count=len(self._chunks))
        self._done.append(
            (
                np.asarray(self._asset_ids, np.int64),
                np.asarray(self._brand_ids, np.int32),
                np.asarray(self._codes, np.uint16),
                np.frombuffer(b"".join(self._chunks), np.uint8),
                widths,
            )
        )
        self._asset_ids, self._brand_ids, self._codes, self._chunks = [], [], [], []

    def build(self) -> SignalTable:
        self._flush()
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.uint16), np.zeros(0, np.uint8))
        columns = list(zip(*self._done, strict=True)) or [[column] for column in (*empty, np.zeros(0, np.int64))]
        widths = np.concatenate(columns[4])
        offsets = np.zeros(len(widths) + 1, np.int64)
        np.cumsum(widths, out=offsets[1:])
        return SignalTable(
            asset_ids=np.concatenate(columns[0]),
            brand_ids=np.concatenate(columns[1]),
            variant_codes=np.concatenate(columns[2]),
            variants=tuple(self.vocabulary),
            data=np.concatenate(columns[3]),
            offsets=offsets,
            brand_names=dict(self.brand_names),
            origins=dict(self.origins),
        )
