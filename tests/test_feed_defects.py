"""Issue 16: hostile feed rows are quarantined with their reason; the rest of the batch lands; nothing jams.

Each defect runs through the real CLI on SQLite and PostgreSQL: the bad row is quarantined with
its reason, the good rows around it land, and the next run of the source goes on (not blocked).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from counterscan.records import IngestedListing, Listing, Rejected
from counterscan.store import Store
from counterscan.store import schema as t
from tests.conftest import Cli

GOOD = 40
"""Good rows on each side of the bad one: all of them in the same batch."""


def _jsonl(bad_line: str) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        lines = [json.dumps({"listing_id": f"a{i}", "title": f"good {i}"}) for i in range(GOOD)]
        lines.append(bad_line)
        lines += [json.dumps({"listing_id": f"b{i}", "title": f"good {i}"}) for i in range(GOOD)]
        path = folder / "feed.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write


def _csv(bad_row: bytes) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        rows = [b"listing_id,title,colour"]
        rows += [f"a{i},good {i},red".encode() for i in range(GOOD)]
        rows.append(bad_row)
        rows += [f"b{i},good {i},red".encode() for i in range(GOOD)]
        path = folder / "feed.csv"
        path.write_bytes(b"\n".join(rows) + b"\n")
        return path

    return write


DEFECTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "field over 131,072 characters (CSV)": (_csv(b"x1," + b"t" * 140_000 + b",red"), "field larger than field limit"),
    "description over 131,072 characters (JSON)": (
        _jsonl(json.dumps({"listing_id": "x1", "description": "d" * 140_000})),
        "description: 140,000 characters",
    ),
    "JSON nested 100k deep": (_jsonl('{"listing_id": "x1", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}"), "deep"),
    "JSON nested 500 deep in an attribute": (
        _jsonl('{"listing_id": "x1", "deep": ' + "[" * 500 + "]" * 500 + "}"),
        "nested deeper than",
    ),
    "lone surrogate": (_jsonl('{"listing_id": "x1", "title": "bad \\ud800 title"}'), "lone surrogate"),
    "lone surrogate in the id": (_jsonl('{"listing_id": "x\\udfff1", "title": "t"}'), "lone surrogate"),
    "4,300-digit integer": (_jsonl('{"listing_id": "x1", "n": ' + "7" * 4300 + "}"), "integer beyond 64 bits"),
    "5,000-digit integer": (_jsonl('{"listing_id": "x1", "n": ' + "7" * 5000 + "}"), "not usable JSON"),
    "400-digit integer price": (_jsonl('{"listing_id": "x1", "price": ' + "7" * 400 + "}"), "price"),
    "NUL byte (CSV)": (_csv(b"x1,nul\x00byte,red"), "NUL byte"),
    "NUL byte (JSON)": (_jsonl('{"listing_id": "x1", "seller_name": "a\\u0000b"}'), "NUL byte"),
    "over-long listing id": (_csv(b"x" * 300 + b",t,red"), "listing_id: 300 characters"),
    "over-long seller id": (_jsonl(json.dumps({"listing_id": "x1", "seller_id": "s" * 201})), "seller_id: 201"),
    "Infinity in an attribute": (_jsonl('{"listing_id": "x1", "score": Infinity}'), "not a finite number"),
    "NaN nested in an attribute": (_jsonl('{"listing_id": "x1", "specs": {"weight": NaN}}'), "not a finite number"),
    "a Latin-1 byte": (_csv(b"x1,caf\xe9,red"), "byte 0xE9 is not UTF-8"),
    "a bare NaN price (JSON)": (_jsonl('{"listing_id": "x1", "price": NaN}'), "price NaN is not a number"),
    "an unterminated quote (CSV)": (_csv(b'x1,"never closed,red'), "a quote opened on line 42 is never closed"),
    "an object where the title goes": (_jsonl('{"listing_id": "x1", "title": {"a": [1]}}'), "title: a dict"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_bad_row_is_quarantined_and_its_batch_lands(cli: Cli, tmp_path: Path, defect: str) -> None:
    write, reason = DEFECTS[defect]
    feed = write(tmp_path)
    result = cli("ingest", str(feed), "--name", "hostile")
    assert f"new {2 * GOOD}, updated 0, unchanged 0, quarantined 1" in result.stdout, result
    assert "Traceback" not in result.stderr
    store = cli.store()
    try:
        with store.engine.connect() as conn:
            ids = set(conn.execute(sa.select(t.listings.c.listing_id)).scalars())
        assert ids == {f"a{i}" for i in range(GOOD)} | {f"b{i}" for i in range(GOOD)}
        quarantined = store.quarantined("hostile")
        assert len(quarantined) == 1
        assert reason in quarantined[0].reason
    finally:
        store.close()
    # The next run is not blocked: a row added to the feed lands, the bad one is not read again.
    with feed.open("ab") as handle:
        handle.write(b"c1,later,red\n" if feed.suffix == ".csv" else b'{"listing_id": "c1", "title": "later"}\n')
    again = cli("ingest", str(feed), "--name", "hostile")
    assert "new 1," in again.stdout and "quarantined 0" in again.stdout, again
    # `quarantine list` and a retry of the quarantine work on what was kept of the bad row.
    assert "hostile" in cli("quarantine", "list").stdout
    assert "0 resolved, 1 still failing" in cli("quarantine", "retry").stdout


def _item(listing_id: str, title: str) -> IngestedListing:
    return IngestedListing(listing=Listing(source="direct", listing_id=listing_id, title=title), images=())


def test_a_row_the_database_refuses_is_quarantined_and_the_batch_lands(store: Store) -> None:
    """Past validation (called here directly), a refused row costs only itself, on both stores."""
    store.record_source("direct", kind="jsonl", location="-", mapping=None)
    items = [_item(f"g{i}", "fine") for i in range(50)]
    items.insert(25, _item("bad", "lone \ud800 surrogate"))
    rejected = [Rejected("direct", "line 3", "missing listing_id", {"row": {"title": "x\x00y", "n": float("inf")}})]
    counts = store.commit_ingest_batch("direct", items, rejected, {"rows": 51})
    assert counts.new == 50
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.listings)).scalar_one() == 50
    reasons = {entry.record: entry.reason for entry in store.quarantined("direct")}
    assert reasons["line 3"] == "missing listing_id"
    assert reasons["listing bad"].startswith("the database refused the row")
    assert store.source_state("direct") is not None
    assert store.source_state("direct")[3] == {"rows": 51}  # type: ignore[index]


def test_two_ingests_of_one_source_the_second_ends_with_exit_12(sqlite_cli: Cli, tmp_path: Path) -> None:
    feed = _csv(b"x1,fine,red")(tmp_path)
    sqlite_cli("init")
    # A live process on this host holds the source's ingest lock, as a running ingest would.
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = sqlite_cli.store()
        try:
            ticks = Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
            owner = f"{socket.gethostname()}:{holder.pid}:{ticks}"
            store.acquire_lock("ingest:hostile", owner, conflicts=(), stale_after=timedelta(hours=1))
        finally:
            store.close()
        blocked = sqlite_cli("ingest", str(feed), "--name", "hostile", expect=12)
        assert blocked.stderr.count("\n") == 1 and "another ingest holds the lock 'ingest:hostile'" in blocked.stderr
        assert "Traceback" not in blocked.stderr and "IntegrityError" not in blocked.stderr
        # Another source is not held up.
        assert "new 81" in sqlite_cli("ingest", str(feed), "--name", "other").stdout
    finally:
        holder.kill()
        holder.wait()
    # Its holder gone (killed), the lock is taken over at once.
    assert "new 81" in sqlite_cli("ingest", str(feed), "--name", "hostile").stdout
