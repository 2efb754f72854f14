"""The CLI's documentation keeps up with the CLI: every command is documented, and docs/cli.md is current."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from counterscan.cli import command_paths
from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "write_cli_docs.py"


def test_every_command_is_documented_in_the_readme_or_docs_cli() -> None:
    documented = (REPO / "README.md").read_text(encoding="utf-8") + (REPO / "docs" / "cli.md").read_text(
        encoding="utf-8"
    )
    paths = [" ".join(path) for path in command_paths() if path]
    assert {"init", "members keys rotate", "webhooks deliver"} <= set(paths)
    missing = [path for path in paths if f"counterscan {path}" not in documented]
    assert not missing, f"undocumented commands: {missing}; run `python scripts/write_cli_docs.py`"


@pytest.mark.slow
def test_docs_cli_is_what_the_script_writes_now() -> None:
    # A subprocess: the script fixes the terminal's width and colour before typer is imported.
    env = {key: value for key, value in os.environ.items() if not key.startswith("COUNTERSCAN_")}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    assert result.returncode == 0, f"{result.stderr.strip()} (docs/cli.md is generated from the CLI's --help)"
