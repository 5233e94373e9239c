"""Helpers of the chat page's browser tests (their fixtures are in conftest.py): a browser signed in as someone,
sending a message and waiting for its reply, and database reads from outside Playwright's event loop."""

from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import expect

from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, new_page

DONE = 240_000


def db(fn):
    """Run an ORM read outside Playwright's event loop (Django refuses sync ORM calls inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


def open_browser(p, base, cookie, viewport=(1200, 760)):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    errors = []
    viewport = {"width": viewport[0], "height": viewport[1]}
    page = new_page(browser, base, errors, cookie=cookie, viewport=viewport, accept_downloads=True)
    page.errors = errors
    return browser, page


def say(page, text):
    """Send a message and wait until its reply has finished."""
    before = page.locator(".msg.assistant.complete, .msg.assistant.stopped").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant.complete, .msg.assistant.stopped")).to_have_count(before + 1, timeout=DONE)


def bodies(page):
    return [t.strip() for t in page.locator(".msg .body").all_inner_texts()]
