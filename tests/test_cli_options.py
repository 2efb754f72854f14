"""The CLI's edge: options with a fixed set of values, the output formats, shell completion and the version."""

from __future__ import annotations

import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import counterscan
from counterscan.cli import app, command_paths
from tests.conftest import REPO, Cli, panel_text

CHOICES = [
    (["members", "add", "x", "--role", "boss"], "--role", ("member", "analyst", "marketplace")),
    (["assets", "add", "--brand", "B", "--kind", "video", "f.png"], "--kind", ("logo", "product", "text")),
    (["review", "decide", "L1", "--verdict", "maybe"], "--verdict", ("counterfeit", "legit", "unsure")),
    (["review", "list", "--status", "open"], "--status", ("new", "counterfeit", "legit", "unsure")),
    (
        ["export", "--format", "csv", "--out", "x", "--status", "open"],
        "--status",
        ("new", "counterfeit", "legit", "unsure"),
    ),
    (["webhooks", "log", "--status", "lost"], "--status", ("pending", "delivered", "failed")),
    (["scan", "--executor", "ray"], "--executor", ("local", "dask")),
    (["members", "keys", "list", "--format", "csv"], "--format", ("table", "json")),
    (["audit", "--format", "csv"], "--format", ("table", "json")),
    (["review", "list", "--format", "html"], "--format", ("table", "json", "csv")),
    (["export", "--format", "pdf", "--out", "x"], "--format", ("csv", "json", "html")),
]


@pytest.mark.parametrize(("args", "option", "allowed"), CHOICES, ids=lambda value: str(value))
def test_a_choice_is_listed_in_help_and_a_bad_value_is_a_usage_error(
    tmp_path: Path, args: list[str], option: str, allowed: tuple[str, ...]
) -> None:
    runner = CliRunner()
    # Wide enough that rich does not wrap the list of values.
    help_text = runner.invoke(app, [*_command_path(args), "--help"], env={"COLUMNS": "200"}).output
    assert f"<{'|'.join(allowed)}>" in help_text or f"<list[{'|'.join(allowed)}]>" in help_text

    refused = runner.invoke(app, ["--home", str(tmp_path), *args])
    assert refused.exit_code == 2, refused.output
    bad = args[args.index(option) + 1]
    expected = f"Invalid value for '{option}': Value error, '{bad}' is not one of " + ", ".join(map(repr, allowed))
    assert expected in panel_text(refused.stderr)
    assert not (tmp_path / "counterscan.db").exists()  # refused before the store is opened


def _command_path(args: list[str]) -> list[str]:
    """The leading words of ``args`` that name a command."""
    matching = [list(path) for path in command_paths() if list(path) == args[: len(path)]]
    return max(matching, key=len)


def test_a_listing_prints_a_table_or_json(sqlite_cli: Cli) -> None:
    sqlite_cli.add_member("acme-group")
    table = sqlite_cli("audit").stdout.splitlines()
    assert table[0].split() == ["at", "actor", "action", "target", "details"]
    assert "member.add" in table[1].split()
    [entry] = json.loads(sqlite_cli("audit", "--format", "json").stdout)
    assert (entry["actor"], entry["action"], entry["target"]) == ("operator", "member.add", "acme-group")


def test_shell_completion_completes_commands_and_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    # Typer detects the shell from the process tree (make runs tests under sh, which it does not
    # support); with detection off, --show-completion takes the shell by name, wherever it runs.
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    runner = CliRunner()
    script = runner.invoke(app, ["--show-completion", "bash"], prog_name="counterscan")
    assert script.exit_code == 0 and "_COUNTERSCAN_COMPLETE=complete_bash" in script.stdout

    def complete(words: str) -> list[str]:
        env = {"_COUNTERSCAN_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()))}
        result = runner.invoke(app, [], prog_name="counterscan", env=env)
        assert result.exit_code == 0, result.output
        return result.stdout.split()

    assert complete("counterscan review list --format ") == ["table", "json", "csv"]
    assert {"add", "list", "keys"} <= set(complete("counterscan members "))


def test_the_version_is_written_once_and_is_the_installed_distributions() -> None:
    shown = CliRunner().invoke(app, ["--version"]).stdout.strip()
    assert shown == f"counterscan {importlib.metadata.version('counterscan')}"
    assert shown == f"counterscan {counterscan.__version__}"
    # The wheel's version is read by hatch from __init__.py, with hatch's own pattern.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    source = (REPO / project["tool"]["hatch"]["version"]["path"]).read_text(encoding="utf-8")
    found = re.findall(r"""^(?:__version__|VERSION) *= *(['"])v?(.+?)\1""", source, re.MULTILINE)
    assert [version for _quote, version in found] == [counterscan.__version__]
