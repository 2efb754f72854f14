"""Write docs/cli.md: every command and sub-command of the CLI with its ``--help``.

    python scripts/write_cli_docs.py            # rewrite docs/cli.md
    python scripts/write_cli_docs.py --check    # exit 1 if docs/cli.md is not what would be written now

tests/test_docs.py runs the check, so the page cannot drift from the commands it documents.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "cli.md"

STABLE_ENV: Mapping[str, str] = {
    "TERMINAL_WIDTH": "100",
    "COLUMNS": "100",
    "NO_COLOR": "1",
    "_TYPER_FORCE_DISABLE_TERMINAL": "1",
}
"""The help is drawn by rich, which sizes and colours it from the terminal: fixed here, so the page
is the same on every machine. Typer reads these when it is imported."""
COLOUR_FORCING = ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS")

HEADER = """\
# The command line

Every command and sub-command of `counterscan`, with its `--help`. The commands in use are shown
in the README's [tour of the CLI](../README.md#a-tour-of-the-cli).

Written by `python scripts/write_cli_docs.py`; do not edit it by hand (`tests/test_docs.py` fails
when it is stale).
"""


def render() -> str:
    """The page, with every command's help as a user sees it in a terminal 100 columns wide."""
    from typer.testing import CliRunner

    from counterscan.cli import app, command_paths

    runner = CliRunner()
    sections = [HEADER]
    for path in command_paths():
        result = runner.invoke(app, [*path, "--help"], prog_name="counterscan", env=dict(STABLE_ENV))
        if result.exit_code != 0:
            raise SystemExit(f"counterscan {' '.join(path)} --help failed:\n{result.output}")
        text = "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())
        sections.append(f"## {' '.join(('counterscan', *path))}\n\n```text\n{text}\n```\n")
    return "\n".join(sections)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="Exit 1 if docs/cli.md is stale; write nothing.")
    args = parser.parse_args()
    if "typer" in sys.modules:
        raise SystemExit("run this as a script: typer must be imported after the environment is fixed")
    for name in COLOUR_FORCING:
        os.environ.pop(name, None)
    os.environ.update(STABLE_ENV)
    page = render()
    if args.check:
        current = DOCS.read_text(encoding="utf-8") if DOCS.exists() else ""
        if current != page:
            print(f"{DOCS.relative_to(REPO)} is stale: run `python scripts/write_cli_docs.py`", file=sys.stderr)
            return 1
        print(f"{DOCS.relative_to(REPO)} is up to date")
        return 0
    DOCS.write_text(page, encoding="utf-8")
    print(f"wrote {DOCS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
