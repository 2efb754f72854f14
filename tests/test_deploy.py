"""The Dockerfile and compose file: every counterscan command they run exists with the options they pass."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from counterscan.cli import app
from tests.conftest import REPO

COMPOSE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def counterscan_invocations() -> list[list[str]]:
    """Each `counterscan ...` call in the services, as argv after the program name."""
    calls: list[list[str]] = []
    for service in compose()["services"].values():
        entrypoint = service.get("entrypoint")
        command = service.get("command", [])
        if entrypoint is None and service.get("image", "").startswith("counterscan"):
            calls.append([str(word) for word in command])
        elif entrypoint == ["/bin/sh", "-c"]:
            for segment in re.split(r";|&&|\|\||\n|\bdo\b", "\n".join(command)):
                words = shlex.split(segment)
                if words[:1] == ["counterscan"]:
                    calls.append([word for word in words[1:] if "$" not in word])
    return calls


def test_every_counterscan_command_in_compose_exists_with_its_options() -> None:
    calls = counterscan_invocations()
    assert ["serve", "--host", "0.0.0.0", "--port", "8080"] in calls
    assert any(call[:1] == ["scan"] for call in calls)
    runner = CliRunner()
    for call in calls:
        words = [word for word in call if not word.startswith("-")]
        options = [word for word in call if word.startswith("--")]
        command = words[:1] if words[:1] != ["schedule"] else words[:2]
        result = runner.invoke(app, [*command, "--help"])
        assert result.exit_code == 0, (call, result.output)
        for option in options:
            assert option in result.output, (call, option)


def test_dask_services_point_at_the_scheduler_the_scanner_uses() -> None:
    services = compose()["services"]
    scheduler_port = services["dask-scheduler"]["command"][services["dask-scheduler"]["command"].index("--port") + 1]
    address = f"tcp://dask-scheduler:{scheduler_port}"
    assert address in services["dask-worker"]["command"]
    assert address in "\n".join(services["scanner"]["command"])


def test_dockerfile_copies_what_exists() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode != 0,
    reason="docker compose is not installed here",
)
def test_docker_compose_accepts_the_file() -> None:
    subprocess.run(["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"], check=True, cwd=REPO)
