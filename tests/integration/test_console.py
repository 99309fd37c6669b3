"""The agent console in a real browser (Debian's headless Chromium through Selenium) over
the session's served service: sign-in by role, search by e-mail and phone, an open case
(service actions first, no marketing, the reason shown), resolving it in the page (the
retention offer the customer qualifies for), "declined" (the cooldown on the refreshed
page), an unknown identifier, and the API page with its schemas."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from devtools.browser import browser_missing, start_browser, submit
from devtools.process import Server
from serving.response_models import DecideResponse, EventResponse
from tests.conftest import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

RETENTION = "call_retention_offer"
CHANNEL = "call_center"
#: The key file is stat'ed at most once a second per worker.
RELOAD_S = 1.2
#: Customers tried (at most) to find one the test's story fits (about 3% of the
#: call-centre customers qualify for the retention offer in service mode).
MAX_TRIES = 1000

MISSING = browser_missing()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if MISSING:
        pytest.skip(MISSING)
    driver = start_browser()
    try:
        yield driver
    finally:
        driver.quit()


def _decide(service: Server, ident: str, id_type: str) -> dict:
    body = {"customer": {"id": ident, "id_type": id_type}, "channel": CHANNEL, "k": 8}
    r = httpx.post(
        f"{service.url}/decide",
        json={**body, "mode": "service"},
        headers=service.headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return DecideResponse.model_validate(r.json()).model_dump()  # the declared answer


def _people(world: World) -> pd.DataFrame:
    """(customer_id, email, phone) of the CRM's records, from the exports themselves."""
    raw = world.settings.raw_dir
    crm = pd.read_parquet(raw / "crm_accounts.parquet", columns=["crm_id", "email", "phone"])
    ident = pd.read_parquet(world.settings.unified_dir / "identity.parquet")
    crm["record_id"] = "crm:" + crm["crm_id"].astype(str)
    people = crm.merge(ident, on="record_id").dropna(subset=["email", "phone"])
    # other modules' event tests take customers from the ends and the middle of the sorted
    # ids: this one keeps away from them
    ids = sorted(ident["customer_id"].unique())
    taken = {*ids[:100], *ids[-100:], *ids[len(ids) // 2 - 5 : len(ids) // 2 + 5]}
    people = people[~people["customer_id"].isin(taken)]
    return people.sort_values("record_id", ascending=False)


@pytest.fixture(scope="module")
def customer(service: Server, world: World) -> dict:
    """A customer found by both their e-mail and their phone, outside the holdout, whom
    the retention offer fits once no case is open."""
    for row in _people(world).head(MAX_TRIES).itertuples():
        by_email = _decide(service, row.email, "email")
        ranked = [a["action_id"] for a in by_email["actions"]]
        if by_email["group"] != "decided" or RETENTION not in ranked:
            continue
        if _decide(service, row.phone, "phone")["customer_id"] != by_email["customer_id"]:
            continue  # a shared household phone: not this story
        return {"id": by_email["customer_id"], "email": row.email, "phone": row.phone}
    pytest.fail(f"none of {MAX_TRIES} customers qualifies for {RETENTION} by e-mail and phone")


def _sign_in(driver, service: Server, key: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{service.url}/console/")
    driver.find_element(By.ID, "key").send_keys(key)
    submit(driver, driver.find_element(By.ID, "sign-in"))


def _search(driver, value: str, id_type: str = "auto") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    driver.get(driver.current_url.split("/console")[0] + "/console/")
    Select(driver.find_element(By.ID, "id_type")).select_by_value(id_type)
    driver.find_element(By.ID, "value").send_keys(value)
    submit(driver, driver.find_element(By.ID, "search-button"))


def _ranked(driver) -> list[tuple[str, str]]:
    from selenium.webdriver.common.by import By

    items = driver.find_elements(By.CSS_SELECTOR, "#ranked li.action")
    return [(li.get_attribute("data-action"), li.get_attribute("data-kind")) for li in items]


def _excluded(driver) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    rows = driver.find_elements(By.CSS_SELECTOR, "#excluded tr[data-action]")
    return {r.get_attribute("data-action"): r.get_attribute("data-code") for r in rows}


def test_a_key_without_the_agent_role_is_refused(browser, service: Server, world: World) -> None:
    from selenium.webdriver.common.by import By

    from nextbest.core.api_keys import create_key

    key, _ = create_key(
        world.settings.api_keys_path, f"decide-only-{uuid.uuid4().hex[:6]}", ["decide"]
    )
    time.sleep(RELOAD_S)
    _sign_in(browser, service, key)
    assert "lacks the scope 'agent'" in browser.find_element(By.ID, "message").text
    assert browser.get_cookie("nb_console") is None
    # and no page of the console answers without a session
    r = httpx.get(f"{service.url}/console/customers/C0", timeout=30, follow_redirects=False)
    assert r.status_code == 401 and 'name="key"' in r.text


def test_search_case_resolution_and_declined_in_the_browser(
    browser, service: Server, customer: dict
) -> None:
    from selenium.webdriver.common.by import By

    key = service.headers["Authorization"].split(" ", 1)[1]
    _sign_in(browser, service, key)
    cookie = browser.get_cookie("nb_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert key not in cookie["value"]

    # search by e-mail, then by phone (written another way): the same customer, no value in a URL
    _search(browser, customer["email"].upper())
    assert browser.find_element(By.ID, "customer-id").text == customer["id"]
    assert customer["email"].lower() not in browser.current_url.lower()
    _search(browser, " " + customer["phone"] + " ", "phone")
    assert browser.find_element(By.ID, "customer-id").text == customer["id"]
    assert "mode" in browser.find_element(By.ID, "mode").text
    assert browser.find_elements(By.CSS_SELECTOR, "#consent td[data-consent]")

    # an open case: service actions first, no marketing action, and the reason says why
    opened = httpx.post(
        f"{service.url}/events",
        json={
            "customer": {"id": customer["id"]},
            "type": "service_case_opened",
            "event_id": f"console-test-{uuid.uuid4().hex[:8]}",
            "payload": {"case_id": f"case-{uuid.uuid4().hex[:6]}"},
        },
        headers=service.headers,
        timeout=30,
    )
    assert opened.status_code == 200, opened.text
    EventResponse.model_validate(opened.json())
    browser.refresh()
    ranked = _ranked(browser)
    assert ranked and all(kind == "service" for _, kind in ranked), ranked
    assert _excluded(browser)[RETENTION] == "CASE_OPEN"
    assert "open service case" in browser.find_element(By.ID, "excluded").text
    assert "Service mode" in browser.find_element(By.ID, "ranked").text

    # the agent resolves the case in the page: the retention offer follows the service actions
    submit(browser, browser.find_element(By.ID, "case-resolved"))
    assert "case is resolved" in browser.find_element(By.ID, "done").text
    ranked = _ranked(browser)
    assert (RETENTION, "retention") in ranked, ranked
    assert ranked.index((RETENTION, "retention")) == sum(k == "service" for _, k in ranked)
    assert browser.find_element(By.ID, "open-cases").text == "0"

    # "declined": a contact through the ledger; the refreshed page shows the cooldown
    offer = browser.find_element(By.CSS_SELECTOR, f'#ranked li[data-action="{RETENTION}"]')
    submit(browser, offer.find_element(By.CSS_SELECTOR, 'button[data-outcome="declined"]'))
    assert "declined" in browser.find_element(By.ID, "done").text
    assert RETENTION not in [a for a, _ in _ranked(browser)]
    assert _excluded(browser)[RETENTION] == "COOLDOWN"
    assert "declined" in browser.find_element(By.ID, "events").text

    # an unknown identifier says so; a form without its CSRF token changes nothing
    _search(browser, f"nobody-{uuid.uuid4().hex[:6]}@example.org")
    assert browser.find_element(By.ID, "message").text == "No customer has this identifier."
    forged = httpx.post(
        f"{service.url}/console/search",
        data={"id_type": "auto", "value": customer["email"]},
        cookies={"nb_console": browser.get_cookie("nb_console")["value"]},
        timeout=30,
    )
    assert forged.status_code == 403
    # no identifier value reaches the server log
    log = service.log_path.read_text(errors="replace").lower()
    assert customer["email"].lower() not in log and customer["phone"] not in log


def test_the_api_page_renders_with_its_schemas(browser, service: Server) -> None:
    from importlib.metadata import version

    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    browser.get(f"{service.url}/")
    assert browser.title.startswith("nextbest decision service")
    assert browser.find_element(By.ID, "version").text == f"version {version('nextbest')}"
    assert browser.find_elements(By.TAG_NAME, "script") == []
    decide = browser.find_element(By.CSS_SELECTOR, 'table[data-schema="DecideResponse"]')
    assert "excluded" in decide.text and "report_delivery" in decide.text
    assert browser.find_elements(By.CSS_SELECTOR, 'table[data-schema="EventResponse"]')
    assert "agent on the phone" in browser.page_source
    spec = httpx.get(f"{service.url}/docs.json", timeout=30).json()  # no key
    assert spec["info"]["version"] == version("nextbest")
