"""Fixtures of the chat page's browser tests: people whose replies are short or patient, and a page signed in as
each (a module may define its own ``page``, which then wins)."""

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.people import open_browser

HERE = __file__.rsplit("/", 1)[0] + "/"


def pytest_collection_modifyitems(config, items):
    """Every test here drives Chromium, on the live stack or on Django's test server: marked ``browser``, so
    the fast loop (``make test-fast``) can leave them all out with one expression."""
    for item in items:
        if str(item.path).startswith(HERE):
            item.add_marker(pytest.mark.browser)


@pytest.fixture
def person(live_stack, transactional_db, make_user, session_cookie):
    """A signed-in person, made before the browser starts, whose chats start with short replies (their own
    defaults: 2 shared CPU cores write 24 tokens much sooner than 256)."""
    from chat.models import ChatDefaults

    user = make_user("ines")
    ChatDefaults.objects.create(user=user, params={"max_new_tokens": 24})
    return user, session_cookie(user)


@pytest.fixture
def patient_person(live_stack, transactional_db, make_user, session_cookie):
    """A signed-in person whose replies are long enough to act while one streams (80 tokens: tens of seconds on
    2 shared cores), yet end within the test's wait."""
    from chat.models import ChatDefaults

    user = make_user("jon")
    ChatDefaults.objects.create(user=user, params={"max_new_tokens": 80})
    return user, session_cookie(user)


@pytest.fixture
def page(person, live_stack):
    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, person[1])
        page.base = live_stack.origin
        page.goto(page.base + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        yield page
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"


@pytest.fixture
def patient_page(patient_person, live_stack):
    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, patient_person[1])
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        yield page
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"
