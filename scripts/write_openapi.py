"""Write the members' API's OpenAPI document to docs/openapi.json, or check that it is current.

    python scripts/write_openapi.py           # (re)write docs/openapi.json
    python scripts/write_openapi.py --check   # exit 1, with what differs, when it is stale

The document comes from the app itself (``counterscan.api.create_app``), built on a throwaway
SQLite store in a temporary home; nothing in it depends on the machine, the time or the settings.
tests/test_openapi.py fails while the committed file differs from it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from counterscan.api import create_app
from counterscan.config import Settings
from counterscan.service.docs import openapi_text

TARGET = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
MAX_DIFF_LINES = 40


def current_document() -> str:
    with tempfile.TemporaryDirectory(prefix="counterscan-openapi-") as folder:
        home = Path(folder)
        settings = Settings.load(home=home, db_url=f"sqlite:///{home / 'openapi.sqlite'}", environ={})
        app = create_app(settings)
        try:
            return openapi_text(app)
        finally:
            app.state.service.store.close()


def _parts(document: dict[str, Any]) -> dict[str, object]:
    """The document by path, by component and by every other top-level member."""
    parts: dict[str, object] = {f"path {name}": item for name, item in document.get("paths", {}).items()}
    for kind, members in document.get("components", {}).items():
        parts |= {f"{kind} {name}": item for name, item in members.items()}
    parts |= {name: item for name, item in document.items() if name not in ("paths", "components")}
    return parts


def changes(committed: str, wanted: str) -> list[str]:
    """What differs: ``+`` only in the app, ``-`` only in the committed file, ``~`` in both but not the same."""
    try:
        before = _parts(json.loads(committed or "{}"))
    except ValueError:
        return ["~ the committed file is not JSON"]
    after = _parts(json.loads(wanted))
    marks = {name: "+" if name not in before else "-" if name not in after else "~" for name in {*before, *after}}
    return [f"{marks[name]} {name}" for name in sorted(marks) if before.get(name) != after.get(name)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the file is stale")
    parser.add_argument("--target", type=Path, default=TARGET, help="the file (default: docs/openapi.json)")
    args = parser.parse_args()
    target: Path = args.target
    wanted = current_document()
    present = target.read_text(encoding="utf-8") if target.exists() else ""
    if not args.check:
        if present != wanted:
            target.write_text(wanted, encoding="utf-8")
        print(f"{target}: {'written' if present != wanted else 'already current'}")
        return 0
    if present == wanted:
        print(f"{target}: current")
        return 0
    diff = list(difflib.unified_diff(present.splitlines(), wanted.splitlines(), "committed", "app", lineterm="", n=1))
    changed = sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---"))
    lines = [
        f"{target} is stale ({changed} lines differ); run: python scripts/write_openapi.py",
        *changes(present, wanted),
    ]
    lines += diff[:MAX_DIFF_LINES]
    if len(diff) > MAX_DIFF_LINES:
        lines.append(f"... and {len(diff) - MAX_DIFF_LINES} more lines of diff")
    print("\n".join(lines), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
