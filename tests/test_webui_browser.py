"""The review UI driven in Debian's chromium through its chromedriver (Selenium), against uvicorn on loopback.

Screenshots of the queue and a suspect page land in build/screenshots/ (ignored by git).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from counterscan.config import Settings
from tests.reviewsite import MATCHERS, Site, build_store, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Debian's chromium and chromium-driver are not installed (make test installs them when run as root)",
    ),
]

if CHROMIUM is not None and CHROMEDRIVER is not None:
    from selenium import webdriver
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import Select


@pytest.fixture
def site(tmp_path: Path, photos: dict[str, Image.Image]) -> Iterator[Site]:
    settings = replace(Settings.load(home=tmp_path / "home", environ={}), image_matchers=MATCHERS)
    keys = build_store(settings, photos, tmp_path)
    with serve(settings) as url:
        yield Site(url, settings, *keys)


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1440,1000")
    # No network beyond loopback: a page that reached for a CDN would fail to render.
    options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(5)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition``; an element that vanished or went stale mid-navigation counts as not yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (StaleElementReferenceException, NoSuchElementException):
            pass
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def sign_in(browser: WebDriver, site: Site, key: str) -> None:
    browser.get(f"{site.url}/review/")
    assert "/review/login" in browser.current_url
    browser.find_element(By.NAME, "api_key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(lambda: browser.find_elements(By.ID, "queue") != [])


def press(browser: WebDriver, keys: str) -> None:
    body = browser.find_element(By.TAG_NAME, "body")
    for key in keys:
        body.send_keys(key)


def images_loaded(browser: WebDriver) -> bool:
    return bool(
        browser.execute_script(
            "return [...document.images].every(i => i.complete && i.naturalWidth > 0) && document.images.length > 0"
        )
    )


def test_analyst_reviews_by_filter_keyboard_and_bulk(browser: WebDriver, site: Site) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(browser, site, site.analyst_key)
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tbody tr")
    assert len(rows) >= 5
    wait_for(lambda: images_loaded(browser))
    browser.save_screenshot(str(SCREENSHOTS / "queue.png"))

    # Filter the queue to one marketplace.
    Select(browser.find_element(By.NAME, "marketplace")).select_by_visible_text("bazaar")
    browser.find_element(By.CSS_SELECTOR, "#filters button[type=submit]").click()
    wait_for(lambda: "marketplace=bazaar" in browser.current_url)
    titles = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#queue td.listing a.title")]
    assert "Latte mug" in titles and "Espresso cup gift set" not in titles

    # Open the top suspect of the Acme brand and judge it with the keyboard.
    browser.get(f"{site.url}/review/?brand={site.brand_id('Acme')}")
    press(browser, "o")
    wait_for(lambda: "/review/suspects/" in browser.current_url)
    wait_for(lambda: images_loaded(browser))
    assert browser.find_elements(By.CSS_SELECTOR, ".compare figure img[alt='matched asset']")
    assert browser.find_elements(By.CSS_SELECTOR, ".chart .msrp-line")
    first = str(browser.find_element(By.ID, "suspect").get_attribute("data-key"))
    press(browser, "c")  # counterfeit, then on to the next suspect
    wait_for(lambda: browser.find_element(By.ID, "suspect").get_attribute("data-key") != first)
    second = str(browser.find_element(By.ID, "suspect").get_attribute("data-key"))
    press(browser, "l")
    wait_for(lambda: "done=1" in browser.current_url and "verdict=legit" in browser.current_url)

    # In the queue: j moves down, x selects, and a bulk verdict covers the selection.
    browser.get(f"{site.url}/review/?status=new")
    press(browser, "xjx")
    selected = [
        str(box.get_attribute("value"))
        for box in browser.find_elements(By.CSS_SELECTOR, "#queue input[name=key]:checked")
    ]
    assert len(selected) == 2
    assert browser.find_element(By.ID, "selected-count").text == "2"
    browser.find_element(By.CSS_SELECTOR, ".bulkbar button[value=unsure]").click()
    wait_for(lambda: "done=2" in browser.current_url)
    assert "Recorded unsure for 2 suspects" in browser.find_element(By.CSS_SELECTOR, ".flash").text

    # The store and the audit say the same, in the analyst's name.
    with site.store() as store:
        decided = {
            key: [verdict for verdict, _, _ in store.verdicts(int(key.split(":")[0]))]
            for key in [first, second, *selected]
        }
    assert decided[first] == ["counterfeit"] and decided[second] == ["legit"]
    assert all(decided[key] == ["unsure"] for key in selected)
    audit = site.audit_verdicts()
    assert len(audit) == 4 and {actor for actor, _, _ in audit} == {"inspector"}
    assert sorted(str(details["via"]) for _, _, details in audit) == ["one", "one", "selection", "selection"]

    # The suspect whose photo shows Acme's logo: the region is drawn over the photo, the logo beside it.
    browser.get(f"{site.url}/review/suspects/{site.listing_pk('a4')}/{site.brand_id('Acme')}")
    wait_for(lambda: images_loaded(browser))
    assert browser.find_elements(By.CSS_SELECTOR, ".overlay polygon.shape-region")
    browser.set_window_size(1440, 1250)
    browser.save_screenshot(str(SCREENSHOTS / "suspect.png"))
    browser.set_window_size(1440, 1000)

    # The seller page lists the seller's listings and the picture another seller shows too.
    browser.get(f"{site.url}/review/sellers/s1")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "Cup Outlet" in text and "Espresso cup gift set" in text and "Mug Bazaar" in text
    browser.save_screenshot(str(SCREENSHOTS / "seller.png"))


def test_member_sees_only_their_brand_in_the_browser(browser: WebDriver, site: Site) -> None:
    sign_in(browser, site, site.owner_key)
    brands = {element.text for element in browser.find_elements(By.CSS_SELECTOR, "#queue tbody td:nth-child(5)")}
    assert brands == {"Acme"}
    browser.get(f"{site.url}/review/suspects/{site.listing_pk('r1')}/{site.brand_id('Rival')}")
    assert "Not allowed" in browser.find_element(By.TAG_NAME, "h1").text
    assert site.verdict_count() == 0


def test_api_docs_render_offline(browser: WebDriver, site: Site) -> None:
    browser.get(f"{site.url}/docs")
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) >= 4, timeout=30)
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert "/v1/results" in paths
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "docs.png"))


def test_analyst_labels_clean_listings_and_follows_a_case_to_removal(browser: WebDriver, site: Site) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    sign_in(browser, site, site.analyst_key)

    # To label: clean listings the queue never shows are proposed too, for a brand.
    browser.find_element(By.LINK_TEXT, "To label").click()
    wait_for(lambda: browser.find_elements(By.ID, "to-label") != [])
    rows = browser.find_elements(By.CSS_SELECTOR, "#to-label tbody tr")
    whys = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#to-label td.why")]
    assert rows and any(why.startswith("likely legit (no evidence") for why in whys)
    assert any(why.startswith("likely counterfeit") for why in whys)
    browser.save_screenshot(str(SCREENSHOTS / "to_label.png"))
    clean_key = next(
        str(row.get_attribute("data-key"))
        for row, why in zip(rows, whys, strict=True)
        if why.startswith("likely legit (no evidence")
    )
    browser.find_element(By.CSS_SELECTOR, f"button[value='legit|{clean_key}']").click()
    wait_for(lambda: "done=1" in browser.current_url)
    assert "Recorded legit for 1 suspect: market/c1" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    assert clean_key not in {
        str(row.get_attribute("data-key")) for row in browser.find_elements(By.CSS_SELECTOR, "#to-label tbody tr")
    }

    # A counterfeit verdict opens the seller's case at once.
    a4 = f"{site.listing_pk('a4')}:{site.brand_id('Acme')}"
    browser.get(f"{site.url}/review/?status=new")
    browser.find_element(By.CSS_SELECTOR, f"button[value='counterfeit|{a4}']").click()
    wait_for(lambda: "done=1" in browser.current_url)
    assert (
        "Recorded counterfeit for 1 suspect: market/a4 (Acme)" in browser.find_element(By.CSS_SELECTOR, ".flash").text
    )
    browser.find_element(By.LINK_TEXT, "Cases").click()
    wait_for(lambda: browser.find_elements(By.ID, "cases") != [])
    cells = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#cases tbody tr td")]
    assert "Replica King" in cells and "bazaar" in cells and "open" in cells
    browser.find_element(By.CSS_SELECTOR, "#cases a.title").click()
    wait_for(lambda: browser.find_elements(By.ID, "case-status-form") != [])
    Select(browser.find_element(By.NAME, "status")).select_by_visible_text("reported")
    browser.find_element(By.NAME, "note").send_keys("bazaar ticket 7781")
    browser.find_element(By.CSS_SELECTOR, "#case-status-form button[type=submit]").click()
    wait_for(lambda: "changed=reported" in browser.current_url)
    Select(browser.find_element(By.NAME, "status")).select_by_visible_text("removed")
    browser.find_element(By.CSS_SELECTOR, "#case-status-form button[type=submit]").click()
    wait_for(lambda: "changed=removed" in browser.current_url)
    assert browser.find_element(By.ID, "case-status").text == "removed"
    history = browser.find_element(By.ID, "case-history").text
    assert "bazaar ticket 7781" in history and "inspector" in history and "listing added" in history
    wait_for(lambda: images_loaded(browser))
    browser.set_window_size(1440, 900)
    browser.save_screenshot(str(SCREENSHOTS / "case.png"))
    browser.get(f"{site.url}/review/cases")
    browser.save_screenshot(str(SCREENSHOTS / "cases.png"))
    with site.store() as store:
        actions = [
            (entry.action, entry.actor) for entry in store.audit_log(limit=20) if entry.action.startswith("case")
        ]
    assert actions[:2] == [("case.status", "inspector"), ("case.status", "inspector")]
