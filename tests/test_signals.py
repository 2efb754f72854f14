"""Signals as columns: the table behaves like the list of AssetSignal it replaces, and indexes sync from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sqlalchemy as sa
from PIL import Image

from counterscan.matchers.index import BinaryHashIndex
from counterscan.records import AssetSignal
from counterscan.signals import SignalTable, SignalTableBuilder
from counterscan.store import schema as t
from tests.conftest import Cli


def signals(count: int, seed: int = 1) -> list[AssetSignal]:
    rng = np.random.default_rng(seed)
    return [
        AssetSignal(
            asset_id=number // 3,
            brand_id=number // 6,
            brand=f"brand {number // 6}",
            signal=rng.bytes(8),
            variant=("original", "mirror", "crop-5-5-5-5")[number % 3],
            origin="bank shared" if number // 3 == 2 else "",
        )
        for number in range(count)
    ]


def test_a_table_reads_back_every_signal_it_was_given() -> None:
    given = [*signals(30), AssetSignal(99, 1, "brand 1", b"\x01" * 32, "original")]
    table = SignalTable.from_signals(given)
    assert len(table) == len(given)
    assert list(table) == given
    assert table[-1] == given[-1] and list(table[2:5]) == given[2:5]
    assert list(table.of_width(32)) == [given[-1]]
    assert table.of_width(8).matrix(8).tobytes() == b"".join(signal.signal for signal in given[:30])
    picked = table.take(np.array([7, 3]))
    assert list(picked) == [given[7], given[3]]


def test_rows_added_one_by_one_or_in_chunks_make_the_same_table() -> None:
    given = signals(12)
    one_by_one, chunked = SignalTableBuilder(), SignalTableBuilder()
    for signal in given:
        one_by_one.add(signal.asset_id, signal.brand_id, signal.variant, signal.signal)
    chunked.add_rows([(s.asset_id, s.brand_id, s.variant, s.signal) for s in given[:5]])
    chunked.add_rows([])
    chunked.add_rows([(s.asset_id, s.brand_id, s.variant, s.signal) for s in given[5:]])
    first, second = one_by_one.build(), chunked.build()
    assert [(s.asset_id, s.variant, s.signal) for s in first] == [(s.asset_id, s.variant, s.signal) for s in second]
    assert len(SignalTableBuilder().build()) == 0


def test_an_index_synced_from_a_table_follows_adds_and_removals(tmp_path: Path) -> None:
    given = signals(60)
    index = BinaryHashIndex(64, tmp_path / "phash.npz")
    assert index.sync(SignalTable.from_signals(given)).added == 60
    query = np.frombuffer(given[7].signal, np.uint8).reshape(1, 8)
    assert [(hit.asset_id, hit.variant, distance) for hit, distance in index.within(query, 0)[0]] == [
        (given[7].asset_id, given[7].variant, 0)
    ]
    # Reloaded unchanged: nothing added or rebuilt, the same answers.
    again = BinaryHashIndex(64, tmp_path / "phash.npz")
    report = again.sync(SignalTable.from_signals(given))
    assert (report.added, report.removed, report.rebuilt) == (0, 0, False)
    origin_row = np.frombuffer(given[6].signal, np.uint8).reshape(1, 8)
    assert again.within(origin_row, 0)[0][0][0].origin == "bank shared"
    # Asset 2 removed, a new asset with a variant name never seen before added.
    kept = given[10]  # asset 3, which stays
    changed = [*(s for s in given if s.asset_id != 2), AssetSignal(500, 9, "brand 9", kept.signal, "rotate-90")]
    later = BinaryHashIndex(64, tmp_path / "phash.npz")
    report = later.sync(SignalTable.from_signals(changed))
    assert (report.added, report.removed) == (1, 3)
    kept_query = np.frombuffer(kept.signal, np.uint8).reshape(1, 8)
    found = {(hit.asset_id, hit.variant) for hit, _ in later.within(kept_query, 0)[0]}
    assert found == {(kept.asset_id, kept.variant), (500, "rotate-90")}
    assert not later.within(query, 0)[0]
    assert not later.within(np.frombuffer(given[6].signal, np.uint8).reshape(1, 8), 0)[0]
    assert len(later) == len(changed)


def test_the_store_hands_back_every_signal_row(cli: Cli, tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    cli.add_member("acme-group")
    cli("brands", "add", "Acme", "--member", "acme-group")
    for name in ("coffee", "rocket"):
        photos[name].save(tmp_path / f"{name}.png")
    cli(
        "assets",
        "add",
        "--brand",
        "Acme",
        "--kind",
        "product",
        str(tmp_path / "coffee.png"),
        str(tmp_path / "rocket.png"),
    )
    store = cli.store()
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.asset_signals.c.asset_id, t.asset_signals.c.variant, t.asset_signals.c.signal)
                .where(t.asset_signals.c.matcher == "phash")
                .order_by(t.asset_signals.c.asset_id, t.asset_signals.c.variant)
            ).all()
        table = store.asset_signals("phash")
    finally:
        store.close()
    assert len(rows) > 20
    assert [(s.asset_id, s.variant, s.signal, s.brand) for s in table] == [
        (row.asset_id, row.variant, bytes(row.signal), "Acme") for row in rows
    ]
