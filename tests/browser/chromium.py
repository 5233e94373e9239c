"""What the browser tests share: where Chromium and the screenshots are, how it is launched, polling."""

import os
import shutil
import time
from pathlib import Path

from tests.helpers.tools import missing_tool

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# docs/screenshots holds the copy the README and docs/ show; tests write to var/ unless asked to refresh it.
SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "var" / "screenshots")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def skip_without_chromium(chromium: str | None = None) -> None:
    """Skip the calling test module when Debian's Chromium is not installed (under CI, fail it:
    tests/helpers/tools.py)."""
    chromium = chromium or CHROMIUM
    if not shutil.which(chromium):
        missing_tool(
            f"browser tests need Chromium at {chromium} (make test installs Debian's chromium when run as root)",
            module=True,
        )


def watch_for_script_errors(page, errors: list, expected: tuple[str, ...] = ()) -> None:
    """Collect uncaught exceptions and every console error on ``page`` into ``errors`` (CSP violations, failed
    loads, the page's own console.error), but for those containing one of the ``expected`` texts."""
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"{msg.text} ({msg.location.get('url')})")
            if msg.type == "error" and not any(text in msg.text for text in expected)
            else None
        ),
    )


def new_page(
    browser, base: str, errors: list, *, cookie: str | None = None, expected=(), timeout=60_000, **context_options
):
    """A page in a fresh browser context (``context_options``: Playwright's — viewport, locale, color_scheme …),
    signed in with the session ``cookie`` ("name=value") when given, whose script errors (but the ``expected``
    ones) are collected into ``errors``."""
    context = browser.new_context(**context_options)
    if cookie:
        name, value = cookie.split("=", 1)
        context.add_cookies([{"name": name, "value": value, "url": base}])
    page = context.new_page()
    page.set_default_timeout(timeout)
    watch_for_script_errors(page, errors, expected)
    return page


def wait_until(check, what: str, timeout: float = 60.0, page=None):
    """Poll ``check`` from Python until it returns something truthy: the page's CSP forbids the eval that
    Playwright's wait_for_function needs. Pass ``page`` when ``check`` reads what Playwright's event handlers
    record: they run only while the test is inside a Playwright call, so then it waits through the page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        page.wait_for_timeout(100) if page is not None else time.sleep(0.1)
    raise AssertionError(f"timed out waiting until {what}")


def admin_log_in(page, base_url: str, path: str, username: str, password: str) -> None:
    """Sign in through the admin's login form asking for ``path`` next, and wait until the page is there."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}/admin/login/?next={path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    expect(page).to_have_url(f"{base_url}{path}")
