"""Issue 22: a new user's learning loop starts: `review list --to-label` proposes verdicts until `train` succeeds."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from counterscan.config import Settings, demo_data_dir
from counterscan.errors import TrainingRefusedError
from counterscan.ranking.labelled import build
from tests.conftest import Cli

ROUND = 6
"""Verdicts per round of the loop: what an analyst judges before trying `train` again."""


@pytest.fixture(scope="module")
def feed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """A marketplace feed (CSV and photos) of 90 listings whose truth the test knows, as a new user brings one."""
    root = tmp_path_factory.mktemp("feed")
    labelled = build(Settings.load(home=root / "scratch", environ={}), root / "feed", listings=90, seed=3)
    return root / "feed" / "labelled.csv", labelled.labels


@pytest.mark.slow
def test_a_new_user_trains_a_first_model_from_an_empty_store(feed: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    csv_path, truth = feed
    cli = Cli(tmp_path / "home")
    cli("init")
    cli.add_member("alliance")
    manifest = tomllib.loads((demo_data_dir() / "brands.toml").read_text(encoding="utf-8"))
    for entry in manifest["brand"]:
        keywords = [arg for word in entry["keywords"] for arg in ("--keyword", word)]
        cli("brands", "add", entry["name"], "--member", "alliance", *keywords, "--msrp", str(entry["msrp"]),
            "--currency", "USD")  # fmt: skip
        photos = [str(demo_data_dir() / path) for path in entry["products"]]
        cli("assets", "add", "--brand", entry["name"], "--kind", "product", *photos)
    cli("ingest", str(csv_path), "--name", "market")
    cli("scan", "--workers", "1")
    cli.add_member("ana", role="analyst")

    refused = cli("train", expect=TrainingRefusedError.exit_code)
    assert "have 0 counterfeit and 0 legit: record 5 more counterfeit and 5 more legit" in refused.stderr
    assert TrainingRefusedError.exit_code not in (0, 2)

    judged: set[tuple[str, str]] = set()
    rounds = 0
    while True:
        rounds += 1
        assert rounds <= len(truth) // ROUND, "the loop never trained"
        proposed = json.loads(cli("review", "list", "--to-label", str(ROUND), "--format", "json").stdout)
        assert proposed, "nothing left to propose"
        pairs = {(row["listing_id"], row["brand"]) for row in proposed}
        assert len(pairs) == len(proposed) and not pairs & judged, "a proposal repeats a judged listing"
        if rounds == 1:  # the first round brings both kinds, clean listings among them
            assert {truth[row["listing_id"]] for row in proposed} == {0, 1}
            assert any(row["why"].startswith("likely legit") for row in proposed)
            assert any(row["why"].startswith("likely counterfeit") for row in proposed)
        for row in proposed:
            verdict = "counterfeit" if truth[row["listing_id"]] else "legit"
            cli("review", "decide", row["listing_id"], "--brand", row["brand"], "--verdict", verdict)
        judged |= pairs
        trained = cli("train", expect=(0, TrainingRefusedError.exit_code))
        if trained.exit_code == 0:
            break
        gate = trained.stdout + trained.stderr
        assert "more counterfeit" in gate or "more legit" in gate or "above the cold-start scorer's" in gate
    assert "model 1 is now active" in trained.stdout
    models = json.loads(cli("models", "list", "--format", "json").stdout)
    assert [(row["model_id"], row["active"]) for row in models] == [(1, True)]
    print(f"trained after {rounds} rounds, {len(judged)} verdicts: {trained.stdout.strip()}")
    cli("scan", "--all", "--workers", "1")
    top = json.loads(cli("review", "list", "--limit", "1", "--format", "json").stdout)[0]
    assert json.loads(cli("review", "show", top["listing_id"]).stdout)["scorer"] == "model:1"
