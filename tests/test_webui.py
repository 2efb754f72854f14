"""The review web UI over real HTTP (uvicorn on loopback, httpx): sessions, CSRF, who sees and judges what."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image

from counterscan.config import Settings
from counterscan.registry.members import key_prefix, revoke_key
from counterscan.store import Store
from counterscan.store import schema as t
from counterscan.store.queue import QueueFilter
from counterscan.store.reviewui import QueueRow
from tests.reviewsite import MATCHERS, Site, build_store, csrf_of, serve, signed_in


@pytest.fixture
def site(tmp_path: Path, db_url: str, photos: dict[str, Image.Image]) -> Iterator[Site]:
    settings = replace(Settings.load(home=tmp_path / "home", db_url=db_url, environ={}), image_matchers=MATCHERS)
    keys = build_store(settings, photos, tmp_path)
    with serve(settings) as url:
        yield Site(url, settings, *keys)


def test_sign_in_sets_a_strict_http_only_session_and_sign_out_ends_it(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        assert client.get("/review/").status_code == 303  # to the sign-in form
        page = client.get("/review/login")
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        wrong = client.post("/review/login", data={"csrf": csrf_of(page), "api_key": "cs_wrong"})
        assert wrong.status_code == 401 and "unknown API key" in wrong.text
        page = client.get("/review/login")
        response = client.post("/review/login", data={"csrf": csrf_of(page), "api_key": site.analyst_key})
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and site.analyst_key not in cookie
        queue = client.get("/review/")
        assert queue.status_code == 200 and "inspector" in queue.text
        assert client.post("/review/logout", data={"csrf": csrf_of(queue)}).status_code == 303
        assert client.get("/review/").status_code == 303


def test_sign_in_form_without_its_csrf_token_is_refused(site: Site) -> None:
    with httpx.Client(base_url=site.url) as client:
        client.get("/review/login")
        response = client.post("/review/login", data={"api_key": site.analyst_key})
        assert response.status_code == 403
        assert client.get("/review/").status_code == 303


def test_a_verdict_without_the_csrf_token_writes_nothing(site: Site) -> None:
    a1 = site.listing_pk("a1")
    acme = site.brand_id("Acme")
    with signed_in(site, site.analyst_key) as client:
        for token in (None, "forged"):
            data = {"verdict": "counterfeit", "scope": "one", "key": f"{a1}:{acme}"}
            if token:
                data["csrf"] = token
            response = client.post("/review/verdicts", data=data)
            assert response.status_code == 403 and "CSRF" in response.text
    assert site.verdict_count() == 0 and site.audit_verdicts() == []


def test_a_member_cannot_see_or_judge_another_members_brand(site: Site) -> None:
    r1, a1 = site.listing_pk("r1"), site.listing_pk("a1")
    rival, acme = site.brand_id("Rival"), site.brand_id("Acme")
    with signed_in(site, site.owner_key) as client:
        queue = client.get("/review/")
        assert "Espresso cup gift set" in queue.text and "Cat poster" not in queue.text
        assert client.get(f"/review/suspects/{r1}/{rival}").status_code == 403
        assert client.get("/review/", params={"brand": rival}).status_code == 403
        with site.store() as store:
            cat = store.listing_pictures([r1])[r1][0]
        assert client.get(f"/review/pictures/{cat}").status_code == 403
        token = csrf_of(queue)
        refused = client.post(
            "/review/verdicts",
            data={"csrf": token, "verdict": "legit", "scope": "selection", "key": [f"{a1}:{acme}", f"{r1}:{rival}"]},
        )
        assert refused.status_code == 403 and "may not judge" in refused.text
        assert site.verdict_count() == 0
        # Bulk by seller: s1 sells both brands' suspects; acme-group's verdict reaches only Acme's.
        done = client.post(
            "/review/verdicts", data={"csrf": token, "verdict": "counterfeit", "scope": "seller", "seller": "s1"}
        )
        assert done.status_code == 303
    with site.store() as store:
        assert store.verdicts(r1) == []
        assert [verdict for verdict, _, _ in store.verdicts(a1)] == ["counterfeit"]
    assert {actor for actor, _, _ in site.audit_verdicts()} == {"acme-group"}


def test_bulk_verdict_by_picture_reaches_every_listing_showing_it(site: Site) -> None:
    a1 = site.listing_pk("a1")
    with site.store() as store:
        picture = store.listing_pictures([a1])[a1][0]
    with signed_in(site, site.analyst_key) as client:
        page = client.get(f"/review/suspects/{a1}/{site.brand_id('Acme')}")
        assert page.status_code == 200 and "Mug Bazaar" in page.text  # the same picture, another seller
        response = client.post(
            "/review/verdicts",
            data={"csrf": csrf_of(page), "verdict": "counterfeit", "scope": "picture", "picture": picture},
        )
        assert response.status_code == 303 and "done=2" in response.headers["location"]
    audit = site.audit_verdicts()
    assert sorted(target for _, target, _ in audit) == ["listing market/a1", "listing market/a3"]  # ids, not keys
    assert all(actor == "inspector" and details["via"] == "picture" for actor, _, details in audit)


def test_the_cli_queue_and_the_web_queue_hold_the_same_suspects(site: Site) -> None:
    """One queue query serves both: whatever the filter, the same suspects with the same status."""
    a1, acme = site.listing_pk("a1"), site.brand_id("Acme")
    with site.store() as store:
        store.record_suspect_verdicts([(a1, acme)], verdict="counterfeit", note=None, analyst="inspector")
        cases = [
            (store.suspects(), QueueFilter()),
            (store.suspects(status="new"), QueueFilter(statuses=("new",))),
            (store.suspects(status=["counterfeit", "legit"]), QueueFilter(statuses=("counterfeit", "legit"))),
            (store.suspects(marketplace="bazaar"), QueueFilter(marketplace="bazaar")),
            (store.suspects(brand=" acme "), QueueFilter(brand_id=acme)),
            (store.suspects(min_score=0.5, seller_id="s1"), QueueFilter(min_score=0.5, seller_id="s1")),
        ]
        for suspects, spec in cases:
            cli = {((suspect.listing_pk, suspect.brand_id), suspect.status) for suspect in suspects}
            web = {(row.key, row.status) for row in store.queue_page(spec, limit=100).rows}
            assert cli == web, spec
            assert cli, spec  # every case selects something: an empty match would prove nothing
        assert ((a1, acme), "counterfeit") in {((s.listing_pk, s.brand_id), s.status) for s in store.suspects()}


def test_queue_filters_and_keyset_paging(site: Site) -> None:
    with site.store() as store:
        everything = store.queue_page(QueueFilter(), limit=100).rows
        assert len(everything) >= 5
        pages: list[QueueRow] = []
        after: str | None = None
        for _ in range(len(everything)):
            page = store.queue_page(QueueFilter(), after=after, limit=2)
            pages.extend(page.rows)
            after = page.next_cursor
            if after is None:
                break
        assert [row.key for row in pages] == [row.key for row in everything]
        assert [row.score for row in everything] == sorted((row.score for row in everything), reverse=True)
        bazaar = store.queue_page(QueueFilter(marketplace="bazaar"), limit=100).rows
        assert {row.listing_id for row in bazaar} == {"a3", "a4"}
        s1 = store.queue_page(QueueFilter(seller_id="s1"), limit=100).rows
        assert {row.listing_id for row in s1} == {"a1", "a2", "r1"}
        acme_only = store.queue_page(QueueFilter(brand_ids=(store.brand("Acme").brand_id,)), limit=100).rows
        assert {row.brand for row in acme_only} == {"Acme"}
        oldest = store.queue_page(QueueFilter(sort="oldest"), limit=100).rows
        assert [row.listing_pk for row in oldest] == sorted(row.listing_pk for row in oldest)
        first, second = everything[0], everything[1]
        before, after_key = store.queue_neighbours(QueueFilter(), second.key)
        assert before == first.key and after_key == everything[2].key
    with signed_in(site, site.analyst_key) as client:
        shown = client.get("/review/", params={"status": "new", "marketplace": "bazaar", "min_score": "0.1"})
        assert "Latte mug" in shown.text and "Espresso cup" not in shown.text
        assert client.get("/review/", params={"min_score": "lots"}).status_code == 422


def test_suspect_page_draws_the_matched_region_beside_the_asset(site: Site) -> None:
    a4 = site.listing_pk("a4")
    with signed_in(site, site.owner_key) as client:
        page = client.get(f"/review/suspects/{a4}/{site.brand_id('Acme')}").text
    # The keypoints matcher found Acme's logo (a patch of the photo at x 170-400, y 20-250).
    polygon = re.search(r'<polygon points="([^"]+)" class="shape-region"', page)
    assert polygon is not None, page
    xs = [float(point.split(",")[0]) for point in polygon.group(1).split()]
    ys = [float(point.split(",")[1]) for point in polygon.group(1).split()]
    assert abs(min(xs) - 170) < 6 and abs(max(xs) - 400) < 6 and abs(min(ys) - 20) < 6 and abs(max(ys) - 250) < 6
    assert 'viewBox="0 0 512 512"' in page and 'alt="matched asset"' in page
    assert "logo found in photo" in page and "12 %" in page  # price 12 USD against the 100 USD MSRP


def test_docs_are_served_from_local_assets(site: Site) -> None:
    page = httpx.get(f"{site.url}/docs")
    assert page.status_code == 200 and "//" not in page.text.replace("<!doctype", "")
    assert "cdn" not in page.text.lower()
    script = httpx.get(f"{site.url}/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 500_000


def test_a_store_made_before_the_review_indexes_gets_them_on_open(db_url: str) -> None:
    with Store.open(db_url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_listings_seller_id"))
        conn.execute(sa.text("DROP INDEX ix_listing_images_sha256"))
    with Store.open(db_url) as store, store.engine.connect() as conn:
        inspector = sa.inspect(conn)
        names = {index["name"] for table in ("listings", "listing_images") for index in inspector.get_indexes(table)}
    assert {"ix_listings_seller_id", "ix_listing_images_sha256"} <= names


def test_revoking_the_key_ends_its_web_session(site: Site) -> None:
    with signed_in(site, site.owner_key) as client:
        assert client.get("/review/").status_code == 200
        with site.store() as store:
            owner = store.member("acme-group")
            revoke_key(store, owner, key_prefix(site.owner_key))
        assert client.get("/review/").status_code == 303  # back to the sign-in form


@pytest.mark.parametrize(
    "url", ["javascript:alert(document.cookie)", " JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "data:text/html,<b>x"]
)
def test_a_feed_listing_url_that_is_not_http_is_shown_as_text_never_as_a_link(site: Site, url: str) -> None:
    a1 = site.listing_pk("a1")
    with site.store() as store, store.engine.begin() as conn:
        conn.execute(sa.update(t.listings).where(t.listings.c.listing_pk == a1).values(url=url))
    with signed_in(site, site.owner_key) as client:
        page = client.get(f"/review/suspects/{a1}/{site.brand_id('Acme')}")
    assert page.status_code == 200
    hrefs = re.findall(r'href="([^"]*)"', page.text)
    assert not [href for href in hrefs if "script" in href.lower() or href.lower().startswith("data:")], hrefs
    assert "listing page ↗" not in page.text
    shown = "alert(" in page.text or "data:text/html" in page.text
    assert 'class="url"' in page.text and shown
    # An http(s) URL is still a link.
    with site.store() as store, store.engine.begin() as conn:
        conn.execute(sa.update(t.listings).where(t.listings.c.listing_pk == a1).values(url="https://shop.example/a1"))
    with signed_in(site, site.owner_key) as client:
        page = client.get(f"/review/suspects/{a1}/{site.brand_id('Acme')}")
    assert 'href="https://shop.example/a1"' in page.text


def test_cases_pages_keep_the_csrf_token_and_each_members_brands(site: Site) -> None:
    a1, r1, c1 = site.listing_pk("a1"), site.listing_pk("r1"), site.listing_pk("c1")
    acme, rival = site.brand_id("Acme"), site.brand_id("Rival")
    with site.store() as store:  # a1 (Acme) and r1 (Rival): one seller, one marketplace, one case
        store.record_suspect_verdicts([(a1, acme), (r1, rival)], verdict="counterfeit", note=None, analyst="inspector")
        (case,) = store.cases()
    with signed_in(site, site.owner_key) as client:
        listed = client.get("/review/cases")
        assert listed.status_code == 200 and f"/review/cases/{case.case_id}" in listed.text
        page = client.get(f"/review/cases/{case.case_id}")
        assert "Espresso cup gift set" in page.text and "Cat poster" not in page.text  # only its own brand's
        assert client.get("/review/to-label").status_code == 403
        refused = client.post(
            f"/review/cases/{case.case_id}/status", data={"csrf": csrf_of(page), "status": "reported"}
        )
        assert refused.status_code == 403 and "other members&#39; brands" in refused.text
        # A member judges suspects only: a clean listing is no suspect of theirs.
        clean = client.post(
            "/review/verdicts", data={"csrf": csrf_of(page), "verdict": "legit", "pick": f"legit|{c1}:{acme}"}
        )
        assert clean.status_code == 404
    with signed_in(site, site.analyst_key) as client:
        page = client.get(f"/review/cases/{case.case_id}")
        assert "Cat poster" in page.text and "acme-group" in page.text and "rival" in page.text
        for token in (None, "forged"):
            data = {"status": "reported", **({"csrf": token} if token else {})}
            response = client.post(f"/review/cases/{case.case_id}/status", data=data)
            assert response.status_code == 403 and "CSRF" in response.text
        assert site.store().cases()[0].status == "open"
        done = client.post(
            f"/review/cases/{case.case_id}/status",
            data={"csrf": csrf_of(page), "status": "reported", "note": "ticket 9"},
        )
        assert done.status_code == 303 and "changed=reported" in done.headers["location"]
        skipped = client.post(f"/review/cases/{case.case_id}/status", data={"csrf": csrf_of(page), "status": "open"})
        assert skipped.status_code == 303  # reported -> open: a report withdrawn
        bad = client.post(f"/review/cases/{case.case_id}/status", data={"csrf": csrf_of(page), "status": "removed"})
        assert bad.status_code == 400 and "may go to reported, not removed" in bad.text
        # An analyst labels a clean listing for a brand from the To label page.
        proposed = client.get("/review/to-label", params={"n": 10})
        assert f'data-key="{c1}:{acme}"' in proposed.text or f'data-key="{c1}:{rival}"' in proposed.text
        labelled = client.post(
            "/review/verdicts",
            data={"csrf": csrf_of(proposed), "pick": f"legit|{c1}:{acme}", "back": "/review/to-label"},
        )
        assert labelled.status_code == 303 and "listings=market%2Fc1+%28Acme%29" in labelled.headers["location"]
    with site.store() as store:
        assert [verdict for verdict, _, _ in store.verdicts(c1)] == ["legit"]
        history = [(event.action, event.actor, event.status) for event in store.case(case.case_id).events]
    assert history[-2:] == [("status", "inspector", "reported"), ("status", "inspector", "open")]
