"""Helpers of the chat page's browser tests (their fixtures are in conftest.py): a browser signed in as someone,
sending a message and waiting for its reply, and database reads from outside Playwright's event loop."""

from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import expect

from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, watch_for_script_errors

DONE = 240_000


def db(fn):
    """Run an ORM read outside Playwright's event loop (Django refuses sync ORM calls inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def open_browser(p, base, cookie, viewport=(1200, 760)):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": base}])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.errors = []
    watch_for_script_errors(page, page.errors)
    return browser, page


def say(page, text):
    """Send a message and wait until its reply has finished."""
    before = page.locator(".msg.assistant.complete, .msg.assistant.stopped").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant.complete, .msg.assistant.stopped")).to_have_count(before + 1, timeout=DONE)


def bodies(page):
    return [t.strip() for t in page.locator(".msg .body").all_inner_texts()]
