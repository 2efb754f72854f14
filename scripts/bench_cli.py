"""CLI start-up: `counterscan --help` and `--version` against a bare Python start, in fresh processes.

    python scripts/bench_cli.py --runs 5

The baseline is `python -c pass` on the same interpreter: what any command pays before it does
anything. The target for `--help` is under 0.5 s on this machine kind; the modules it imports
that a help text does not need (scikit-learn, OpenCV, FAISS, pandas) are listed, since they are
most of the cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("sklearn", "cv2", "faiss", "pandas", "onnxruntime", "scipy")


def timed(command: list[str], runs: int) -> float:
    """Median wall time of ``runs`` fresh processes, after one warm-up for the page cache."""
    subprocess.run(command, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def heavy_imports() -> list[str]:
    probe = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from counterscan.cli import app\n"
        "CliRunner().invoke(app, ['--help'])\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    found: list[str] = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = timed([sys.executable, "-c", "pass"], args.runs)
    cli = [sys.executable, "-m", "counterscan"]
    for label, extra in (("--help", ["--help"]), ("--version", ["--version"])):
        seconds = timed([*cli, *extra], args.runs)
        print(f"counterscan {label:<10} {seconds:6.3f} s  ({seconds / base:5.1f}x a bare python start of {base:.3f} s)")
    print(f"heavy modules imported by --help: {', '.join(heavy_imports()) or 'none'}")


if __name__ == "__main__":
    main()
