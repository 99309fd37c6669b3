"""A headless Chromium for the console's browser tests and screenshots: Debian's
``chromium`` driven by Selenium through ``/usr/bin/chromedriver`` (``make setup`` installs
both). The driver's path is given, so Selenium Manager never looks for or downloads a
browser."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: Laptop and tablet (portrait) viewports.
LAPTOP = (1366, 900)
TABLET = (820, 1180)


def browser_missing() -> str | None:
    """Why no browser can be started here (None: one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the console extra)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists() and shutil.which(path.name) is None:
            return f"{path} not installed (apt-get install chromium chromium-driver)"
    return None


def start_browser(size: tuple[int, int] = LAPTOP) -> Any:
    """A headless Chromium window of ``size`` (width, height); quit it when done."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.exists() else shutil.which("chromium"))
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={size[0]},{size[1]}",
    ):
        options.add_argument(arg)
    driver_path = CHROMEDRIVER if CHROMEDRIVER.exists() else Path(shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    driver.set_page_load_timeout(60)
    return driver


def submit(driver: Any, button: Any, timeout: float = 60.0) -> None:
    """Click a form's button and wait for the page it loads (a click returns before the
    navigation; reading the page then could read the old one). The old page is marked
    and the new one has no mark: Chrome may answer a check on an element of a page being
    replaced with an inspector error rather than "stale element"."""
    from selenium.webdriver.support.wait import WebDriverWait

    driver.execute_script("window.__nextbest_old_page = true;")
    button.click()
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(
            "return window.__nextbest_old_page === undefined && document.readyState === 'complete';"
        )
    )
