"""Issue 8: the ranker (scikit-learn conventions), training on verdicts, the review loop, reports."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.utils.estimator_checks import parametrize_with_checks

from counterscan.config import Settings
from counterscan.matchers.outline import inlier_confidence
from counterscan.ranking.features import FEATURES, feature_row
from counterscan.ranking.labelled import LabelledSet, build
from counterscan.ranking.metrics import average_precision, per_brand, precision_at_k
from counterscan.ranking.ranker import Ranker, cold_start_score, cold_start_scores
from counterscan.records import Evidence, Listing
from tests.conftest import Cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@parametrize_with_checks([Ranker()])  # type: ignore[untyped-decorator]
def test_ranker_follows_scikit_learn_conventions(estimator: Ranker, check) -> None:  # type: ignore[no-untyped-def]
    check(estimator)


def test_features_table() -> None:
    listing = Listing(
        source="s", listing_id="1", title="t", price=10.0, currency="USD", observed_at="2026-11-20T00:00:00Z"
    )
    evidence = [
        Evidence("phash", 1, "B", 0.9, "r", image_sha256="a"),
        Evidence("dhash", 1, "B", 0.8, "r", image_sha256="b"),
        Evidence("keypoints", 1, "B", 0.7, "r", image_sha256="c"),
        Evidence("text", 1, "B", 0.6, "r", details={"signal": "counterfeit-term"}),
        Evidence("price", 2, "C", 0.5, "r", distance=0.2),
    ]
    row = dict(zip(FEATURES, feature_row(listing, evidence), strict=True))
    assert row["image_copy"] == 0.9 and row["copied_images"] == 2 and row["counterfeit_terms"] == 1
    assert row["logo"] == 0.7
    assert row["price_ratio"] == 0.2 and row["evidence_brands"] == 2 and row["has_price"] == 1
    assert 0 < row["listing_age_days"] <= 365
    empty = dict(zip(FEATURES, feature_row(Listing(source="s", listing_id="2"), []), strict=True))
    assert empty == {name: 1.0 if name == "price_ratio" else 0.0 for name in FEATURES}


def _found(matcher: str, brand_id: int, inliers: int, photo: str) -> Evidence:
    return Evidence(
        matcher,
        brand_id,
        f"B{brand_id}",
        inlier_confidence(inliers),
        "r",
        image_sha256=photo,
        details={"inliers": inliers},
    )


def test_local_feature_points_add_up_in_one_photo_only() -> None:
    """RootSIFT and XFeat see different points of a mark: found in the same photo, their agreeing
    points add up to more than either; in two photos they do not (nor does one matcher twice)."""
    sift, xfeat = _found("keypoints", 1, 12, "a"), _found("marks", 1, 14, "a")
    alone = max(cold_start_score([sift]).score, cold_start_score([xfeat]).score)
    both = cold_start_score([sift, xfeat]).score
    assert both > alone
    assert both == cold_start_score([_found("marks", 1, 26, "a")]).score
    assert cold_start_score([sift, _found("marks", 1, 14, "b")]).score < both
    assert cold_start_score([xfeat, _found("marks", 1, 12, "a")]).score == cold_start_score([xfeat]).score
    listing = Listing(source="s", listing_id="1")
    assert dict(zip(FEATURES, feature_row(listing, [sift, xfeat]), strict=True))["logo"] == both
    # A weaker rival brand in the same photo neither gains from the other's points nor wins.
    ranked = cold_start_scores([sift, xfeat, _found("marks", 2, 16, "a")])
    assert [score.brand_id for score in ranked] == [1, 2] and ranked[1].score < ranked[0].score


def test_metrics() -> None:
    assert average_precision([0.9, 0.8, 0.1], [1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert precision_at_k([0.9, 0.8, 0.1], [1, 0, 1], 2) == 0.5
    table = per_brand([0.9, 0.2, 0.7], [1, 0, 1], ["A", "A", "B"], k=1)
    assert table["A"]["average_precision"] == 1.0 and table["B"]["counterfeit"] == 1


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LabelledSet]:
    root = tmp_path_factory.mktemp("ranking")
    home = root / "home"
    labelled = build(Settings.load(home=home, environ={}), root / "images", listings=90, seed=3)
    return home, labelled


@pytest.mark.slow
def test_review_loop_train_and_rescan(world: tuple[Path, LabelledSet], tmp_path: Path) -> None:
    source, labelled = world
    home = tmp_path / "home"
    shutil.copytree(source, home)
    cli = Cli(home)
    assert "analyst's API key" in cli("train", expect=5).stderr
    cli.add_member("ana", role="analyst")  # the store's first analyst; its key is used from here on
    assert "training needs at least 5 counterfeit" in cli("train", expect=6).stderr
    cli("scan", "--workers", "1")
    nike = json.loads(cli("review", "list", "--brand", "Nike", "--format", "json").stdout)
    assert nike and {row["brand"] for row in nike} == {"Nike"}
    assert "unknown brand" in cli("review", "list", "--brand", "Nope", expect=2).stderr
    ids = sorted(labelled.labels)
    random.Random(1).shuffle(ids)
    for listing_id in ids[:60]:
        verdict = "counterfeit" if labelled.labels[listing_id] else "legit"
        cli("review", "decide", listing_id, "--verdict", verdict, "--note", "eval")
    assert all(
        row["status"] == "new"
        for row in json.loads(cli("review", "list", "--status", "new", "--format", "json").stdout)
    )
    explored = json.loads(
        cli("review", "list", "--status", "new", "--limit", "6", "--explore", "3", "--format", "json").stdout
    )
    assert [row["status"] for row in explored].count("explore") == 3 and len(explored) == 6
    trained = cli("train")
    assert "model 1 is now active" in trained.stdout
    ap = float(trained.stdout.split("cross-validated average precision ")[1].split()[0])
    cold = float(trained.stdout.split("cold-start scorer ")[1].split(")")[0].split()[0])
    assert ap > cold
    cli("scan", "--all", "--workers", "1")
    detail = json.loads(cli("review", "show", ids[0]).stdout)
    assert detail["scorer"] == "model:1" and detail["evidence"] and detail["images"][0]["cached_path"]
    assert detail["price_history"][0]["price"] is not None and detail["verdicts"][0]["note"] == "eval"
    # Flip verdicts: the new model scores worse and is refused unless forced.
    for listing_id in ids[:40]:
        verdict = "legit" if labelled.labels[listing_id] else "counterfeit"
        cli("review", "decide", listing_id, "--verdict", verdict)
    refused = cli("train", expect=6)
    assert "not better than the" in refused.stdout and "use --force" in refused.stdout
    assert "model 2 is now active" in cli("train", "--force").stdout
    listed = json.loads(cli("models", "list", "--format", "json").stdout)
    assert [(row["model_id"], row["active"]) for row in listed] == [(1, False), (2, True)]
    assert "model 1 is now active" in cli("models", "rollback").stdout
    assert "model 2 is now active" in cli("models", "activate", "2").stdout
    assert "unknown model 9" in cli("models", "activate", "9", expect=2).stderr


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it when run as root)"
)
@pytest.mark.browser
def test_html_report_renders_in_a_real_browser(world: tuple[Path, LabelledSet], tmp_path: Path) -> None:
    assert CHROMIUM is not None
    source, _labelled = world
    home = tmp_path / "home"

    shutil.copytree(source, home)
    cli = Cli(home)
    cli("scan", "--workers", "1")
    out = tmp_path / "report"
    assert "wrote 12 suspects" in cli("export", "--format", "html", "--out", str(out), "--limit", "12").stdout
    page = out / "index.html"
    assert page.read_text().count('class="suspect"') == 12
    thumbs = sorted((out / "thumbs").glob("*.jpg"))
    assert thumbs and all(Image.open(path).size[0] > 0 for path in thumbs)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000"]  # fmt: skip
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-images="loaded"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10  # text and photos, not a blank page
