"""Screenshots of the agent console's main states, taken with the tests' headless Chromium.

    .venv/bin/python -m devtools.console_screenshots --home var --out docs/console

Starts ``bentoml serve`` over ``--home`` (a built world: ``make demo``'s ``var/`` or a test
world), signs in with a key holding the ``agent`` scope (``screenshots``, created in the
home's key file if missing), finds a customer the retention story fits, and saves:
``api-page.png``, ``sign-in.png``, ``unknown-identifier.png``, ``open-case.png`` (service
actions first), ``case-resolved.png`` (the retention offer), ``declined.png`` (the
cooldown) and ``tablet.png`` (the customer page at a tablet's width). The server is
stopped by its process id at the end. It writes events to the home's ledger (a case opened
and resolved, a declined offer), as an agent would.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import httpx
import pandas as pd

from devtools.browser import LAPTOP, TABLET, browser_missing, start_browser, submit
from devtools.process import start_server, stop_server

RETENTION = "call_retention_offer"


def _agent_key(home: Path) -> str:
    from nextbest.core.api_keys import create_key, load_keys, revoke_key, write_secret
    from nextbest.core.settings import get_settings

    settings = get_settings(home=home)
    raw = settings.root / "screenshots-api-key"
    names = {r.name for r in load_keys(settings.api_keys_path)}
    if "screenshots" in names and raw.exists():
        return raw.read_text().strip()
    if "screenshots" in names:
        revoke_key(settings.api_keys_path, "screenshots")
    key, _ = create_key(settings.api_keys_path, "screenshots", ["agent"])
    write_secret(raw, key)
    return key


def _customer(url: str, headers: dict[str, str], home: Path) -> tuple[str, str]:
    """(customer id, e-mail) of a customer outside the holdout whom the retention offer
    fits."""
    from nextbest.core.settings import get_settings

    settings = get_settings(home=home)
    crm = pd.read_parquet(settings.raw_dir / "crm_accounts.parquet", columns=["crm_id", "email"])
    for email in crm["email"].dropna().head(200):
        body = {
            "customer": {"id": email, "id_type": "email"},
            "channel": "call_center",
            "k": 8,
            "mode": "service",
        }
        answer = httpx.post(f"{url}/decide", json=body, headers=headers, timeout=30).json()
        if answer.get("group") == "decided" and RETENTION in [
            a["action_id"] for a in answer.get("actions", [])
        ]:
            return answer["customer_id"], email
    raise SystemExit("no customer of the first 200 qualifies for the retention offer")


def take(home: Path, out: Path) -> list[Path]:
    """Take every screenshot; the paths written."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select

    out.mkdir(parents=True, exist_ok=True)
    key = _agent_key(home)
    server = start_server("serving.service:NextBest", home, out / "serve.log")
    written: list[Path] = []
    driver = start_browser(LAPTOP)

    def shot(name: str) -> None:
        # the whole page: the window as tall as the document (at most 2,400 px)
        width = driver.get_window_size()["width"]
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(max(int(height) + 140, 600), 2400))
        path = out / f"{name}.png"
        driver.save_screenshot(str(path))
        written.append(path)

    def search(value: str) -> None:
        driver.get(f"{server.url}/console/")
        Select(driver.find_element(By.ID, "id_type")).select_by_value("auto")
        driver.find_element(By.ID, "value").send_keys(value)
        submit(driver, driver.find_element(By.ID, "search-button"))

    try:
        cid, email = _customer(server.url, server.headers, home)
        driver.get(f"{server.url}/")
        shot("api-page")
        driver.get(f"{server.url}/console/")
        shot("sign-in")
        driver.find_element(By.ID, "key").send_keys(key)
        submit(driver, driver.find_element(By.ID, "sign-in"))
        search(f"nobody-{uuid.uuid4().hex[:6]}@example.org")
        shot("unknown-identifier")
        httpx.post(
            f"{server.url}/events",
            json={
                "customer": {"id": cid},
                "type": "service_case_opened",
                "payload": {"case_id": f"screenshot-{uuid.uuid4().hex[:6]}"},
            },
            headers=server.headers,
            timeout=30,
        ).raise_for_status()
        search(email)
        shot("open-case")
        submit(driver, driver.find_element(By.ID, "case-resolved"))
        shot("case-resolved")
        offer = driver.find_element(By.CSS_SELECTOR, f'#ranked li[data-action="{RETENTION}"]')
        submit(driver, offer.find_element(By.CSS_SELECTOR, 'button[data-outcome="declined"]'))
        shot("declined")
        driver.set_window_size(*TABLET)
        driver.refresh()
        shot("tablet")
    finally:
        driver.quit()
        stop_server(server.proc)
        (out / "serve.log").unlink(missing_ok=True)
    return written


def main() -> None:
    """Command line: ``--home`` (a built world) and ``--out`` (the folder of the PNGs)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path("var"))
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        raise SystemExit(missing)
    for path in take(args.home, args.out):
        print(path)


if __name__ == "__main__":
    main()
