"""Issue 13: `counterscan init` writes every setting, with its default and cost, from Settings itself."""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

from counterscan.config import CONFIG_FILE_NAME, NOT_IN_FILE, Settings, config_template
from tests.conftest import Cli


def _uncommented(template: str) -> str:
    """The template with every setting line switched on (unset ones left out)."""
    return "\n".join(
        line[2:] for line in template.splitlines() if re.match(r"^# \w+ = ", line) and not line.endswith("(unset)")
    )


def test_template_lists_every_setting_and_loads_back_to_the_defaults(tmp_path: Path) -> None:
    template = config_template()
    names = [f.name for f in fields(Settings) if f.name not in NOT_IN_FILE]
    for name in names:
        assert re.search(rf"^# {name} = ", template, re.MULTILINE), name
    # As written (all commented out) the file changes nothing...
    home = tmp_path / "home"
    home.mkdir()
    (home / CONFIG_FILE_NAME).write_text(template)
    assert Settings.load(home=home, environ={}) == Settings(home=home)
    # ...and with every setting switched on at its written value, the same defaults load back.
    switched_on = _uncommented(template)
    assert len(tomllib.loads(switched_on)) == sum(1 for f in fields(Settings) if f.name not in NOT_IN_FILE) - 1
    (home / CONFIG_FILE_NAME).write_text(switched_on)
    assert Settings.load(home=home, environ={}) == Settings(home=home)


def test_template_carries_the_comments_that_explain_each_setting() -> None:
    template = config_template()
    before_matchers = template.split("# image_matchers = ")[0].rsplit("\n\n", 1)[1]
    assert "Per image" in before_matchers and "ms" in before_matchers  # what it does and costs
    assert "# scan_worker_threads = 1" in template


def test_init_writes_the_config_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cli = Cli(home)
    assert "wrote" in cli("init").stdout
    config = home / CONFIG_FILE_NAME
    assert config.read_text() == config_template()
    config.write_text("phash_max_distance = 8\n")
    assert "wrote" not in cli("init").stdout and config.read_text() == "phash_max_distance = 8\n"
