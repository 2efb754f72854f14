"""`counterscan --help` starts without the heavy libraries: they load when a command needs them."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sklearn", "cv2", "faiss", "pandas", "scipy", "onnxruntime", "dask", "sqlalchemy", "fastapi", "PIL")

PROBE = f"""
import json, sys
from typer.testing import CliRunner
from counterscan.cli import app
runner = CliRunner()
codes = [runner.invoke(app, args).exit_code for args in (["--help"], ["scan", "--help"], ["review", "--help"])]
print(json.dumps({{"codes": codes, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_help_imports_no_heavy_library() -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0, 0]
    assert report["loaded"] == []


def test_a_command_still_loads_what_it_needs() -> None:
    probe = PROBE.replace('(["--help"], ["scan", "--help"], ["review", "--help"])', '(["members", "list"],)')
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env={"COUNTERSCAN_DB": "sqlite://", "PATH": "/usr/bin:/bin"},
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0]
    assert "sqlalchemy" in report["loaded"]
