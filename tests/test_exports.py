"""Issue 16: reports and exports safe to open: only http(s) links and a CSP in the HTML report
(checked in a real Chromium), spreadsheet formulas neutralised in every CSV."""

from __future__ import annotations

import csv
import html
import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from counterscan.review.export import neutralise, render_csv_rows
from counterscan.review.html_report import safe_link
from tests.conftest import Cli, jpeg_bytes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HOSTILE_URLS = {
    "J1": "javascript:document.title='pwned'",
    "J2": " JaVa\tScRiPt:alert(1)",
    "J3": "data:text/html,<script>alert(1)</script>",
    "J4": "https://shop.example/item?id=4&x=<b>",
}


def test_only_http_links() -> None:
    assert safe_link("https://a.example/x").startswith('<a href="https://a.example/x"')
    assert safe_link("http://a.example").startswith("<a ")
    for url in ("javascript:alert(1)", "java\nscript:alert(1)", "  javascript:x", "data:text/html,x", "file:///etc"):
        assert "<a" not in safe_link(url) and "href" not in safe_link(url)
    assert safe_link("https:no-host") == '<span class="url">https:no-host</span>'


def test_csv_cells_that_start_a_formula_are_neutralised() -> None:
    rows: list[dict[str, Any]] = [
        {"a": '=HYPERLINK("http://x","y")', "b": "+cmd|' /C calc'!A0", "c": -3.5},
        {"a": "-1+1", "b": "@SUM(1)", "c": "\tTAB"},
        {"a": "\r=1", "b": "plain = text", "c": 7},
    ]
    written = list(csv.reader(io.StringIO(render_csv_rows(rows, ["a", "b", "c"]), newline="")))
    assert written[1:] == [
        ['\'=HYPERLINK("http://x","y")', "'+cmd|' /C calc'!A0", "-3.5"],
        ["'-1+1", "'@SUM(1)", "'\tTAB"],
        ["'\n=1", "plain = text", "7"],
    ]
    assert neutralise(-3) == -3 and neutralise("ok") == "ok"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Image.Image]) -> tuple[Path, Path, Path]:
    """A store whose suspects carry hostile URLs and titles, exported as HTML and CSV."""
    root = tmp_path_factory.mktemp("exports")
    cli = Cli(root / "home")
    cli.add_member("acme")
    cli("brands", "add", "Acme", "--member", "acme")
    (root / "official.jpg").write_bytes(jpeg_bytes(photos["coffee"], 95))
    cli("assets", "add", "--brand", "Acme", "--kind", "product", str(root / "official.jpg"))
    feed_dir = root / "feed"
    feed_dir.mkdir()
    (feed_dir / "copy.jpg").write_bytes(jpeg_bytes(photos["coffee"], 80))
    with (feed_dir / "feed.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["listing_id", "title", "url", "image_paths"])
        for listing_id, url in HOSTILE_URLS.items():
            writer.writerow([listing_id, f'=HYPERLINK("{url}") <img src=x onerror=alert(1)>', url, "copy.jpg"])
    cli("ingest", str(feed_dir / "feed.csv"))
    cli("scan", "--workers", "1")
    cli("export", "--format", "html", "--out", str(root / "report"))
    cli("export", "--format", "csv", "--out", str(root / "suspects.csv"))
    return root, root / "report" / "index.html", root / "suspects.csv"


def test_csv_export_neutralises_hostile_titles(exported: tuple[Path, Path, Path]) -> None:
    _root, _page, table = exported
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert sorted(row["listing_id"] for row in rows) == sorted(HOSTILE_URLS)
    assert all(row["title"].startswith("'=HYPERLINK(") for row in rows)


def test_report_source_has_a_csp_and_only_http_links(exported: tuple[Path, Path, Path]) -> None:
    _root, page, _table = exported
    text = page.read_text(encoding="utf-8")
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in text
    hrefs = re.findall(r'href="([^"]*)"', text)
    assert [html.unescape(href) for href in hrefs] == [HOSTILE_URLS["J4"]]
    assert "<img src=x" not in text


@pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it when run as root)"
)
@pytest.mark.browser
def test_report_in_chromium_has_no_script_links_and_runs_no_injected_script(
    exported: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    assert CHROMIUM is not None
    _root, page, _table = exported
    # A script that slipped into the page (as a seller's text would, were it not escaped) does not
    # run: the page's policy allows only the report's own script, by hash.
    tampered = page.with_name("tampered.html")
    injected = "<script>document.body.dataset.injected='ran'</script>"
    tampered.write_text(page.read_text(encoding="utf-8").replace("</body>", injected + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--virtual-time-budget=5000"]  # fmt: skip
    doms = {}
    for target in (page, tampered):
        result = subprocess.run(
            [CHROMIUM, *flags, "--dump-dom", target.as_uri()], capture_output=True, text=True, timeout=120
        )
        doms[target.name] = result.stdout
    dom = doms["index.html"]
    assert 'data-images="loaded"' in dom  # the report's own script ran and every thumbnail loaded
    anchors = re.findall(r"<a [^>]*href=\"([^\"]*)\"", dom)
    assert [html.unescape(href) for href in anchors] == [HOSTILE_URLS["J4"]]
    assert "javascript:document.title=" in html.unescape(dom)  # shown as text, not a link
    assert "<title>counterscan evidence report</title>" in dom
    assert 'data-injected="ran"' not in doms["tampered.html"]
    assert 'data-images="loaded"' in doms["tampered.html"]
