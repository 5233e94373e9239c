"""Rough edges of the pages around the chat, fixed (issue 22), in real Chromium on Django's test server: the
review panel's lists fit a 1280 px screen, the error pages have the site's look and a way back, and a new API
key has a Copy button. Each at desktop and phone width, light and dark, under the site's CSP."""

import re

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    admin_log_in,
    skip_without_chromium,
    watch_for_script_errors,
)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

PASSWORD = "a-long-test-password"
LONG_TITLE = "A very long conversation title about" + " the history of tea and coffee in Europe" * 4

# Each column header's box against the viewport and its table's scrolling box: the right edges that run past.
HEADERS_OUTSIDE = """() => {
  const box = document.querySelector("#changelist .results") || document.querySelector("#result_list").parentElement;
  const limit = Math.min(innerWidth, box.getBoundingClientRect().right) + 1;
  return [...document.querySelectorAll("#result_list thead th")]
    .map((th) => ({ text: th.innerText.trim(), right: Math.round(th.getBoundingClientRect().right) }))
    .filter((h) => h.right > limit).map((h) => `${h.text} ends at ${h.right}, the box at ${limit}`);
}"""
TABLE_FITS = """() => { const t = document.querySelector("#result_list");
  const box = document.querySelector("#changelist .results") || t.parentElement;
  return [Math.round(t.getBoundingClientRect().width), Math.round(box.getBoundingClientRect().width)]; }"""


@pytest.fixture
def superuser(transactional_db, django_user_model, reviewer_group):
    """A superuser who reviews, and chats and audit events with long titles and long details."""
    from chat.models import AuditEvent, Feedback
    from tests.chat.admin.conftest import make_chat

    user = django_user_model.objects.create_superuser(username="rita", password=PASSWORD)
    user.groups.add(reviewer_group)
    owner = django_user_model.objects.create_user(username="a-person-with-a-rather-long-username-indeed")
    for n in range(3):
        chat = make_chat(owner, turns=2, title=f"{LONG_TITLE} {n}", model="a-model-with-a-long-name-v2-instruct")
        Feedback.objects.create(message=chat.replies[0], user=owner, rating=-1 if n else 1)
        # as a worker writes them: the bundled model's adapter name, the host-pid worker name
        chat.messages.filter(role="assistant").update(
            model_name="bundled:smollm2-135m-instruct+a-run-name-of-thirty-chars", worker="vm-19414-inference2"
        )
    for n in range(3):
        AuditEvent.objects.create(
            actor=user,
            actor_name=user.username,
            action=AuditEvent.Action.SEARCHED,
            details={"query": "tea " * 40, "filters": {"owner": "someone", "model": "x" * 80}, "n": n},
        )
    return user


@pytest.fixture
def chromium():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        errors = []

        def new_page(width=1280, dark=False, **context):
            ctx = browser.new_context(
                viewport={"width": width, "height": 900}, color_scheme="dark" if dark else "light", **context
            )
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            watch_for_script_errors(page, errors, expected=("404 (Not Found)", "403 (Forbidden)"))
            return page

        yield new_page
        browser.close()
        assert errors == [], f"script errors on the page: {errors}"


def test_the_review_panels_lists_fit_at_1280(superuser, live_server, chromium):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for dark in (False, True):
        page = chromium(1280, dark)
        admin_log_in(page, live_server.url, "/admin/chat/conversation/", "rita", PASSWORD)
        expect(page.locator("#result_list tbody tr")).to_have_count(3)
        headers = page.locator("#result_list thead th").all_inner_texts()
        assert any("👍" in h for h in headers) and any("👎" in h for h in headers), headers
        assert page.evaluate(HEADERS_OUTSIDE) == []
        table, box = page.evaluate(TABLE_FITS)
        assert table <= box, (table, box)
        # A long title is cut with an ellipsis and kept whole in its tooltip.
        title = page.locator("#result_list td.field-short_title span").first
        expect(title).to_have_attribute("title", re.compile(rf"^{LONG_TITLE} \d$"))
        assert title.evaluate("e => e.scrollWidth > e.clientWidth")  # cut, with an ellipsis
        page.screenshot(path=str(SCREENSHOTS / f"fixes-review-list{'-dark' if dark else ''}.png"))

        # The message list: sixteen columns, with a real model's and worker's names (no spaces to break at).
        page.goto(live_server.url + "/admin/chat/message/?role__exact=assistant")
        expect(page.locator("#result_list tbody tr")).to_have_count(6)
        page.screenshot(path=str(SCREENSHOTS / f"fixes-message-list{'-dark' if dark else ''}.png"))
        assert page.evaluate(HEADERS_OUTSIDE) == []
        table, box = page.evaluate(TABLE_FITS)
        assert table <= box, (table, box)

        page.goto(live_server.url + "/admin/chat/auditevent/")
        expect(page.locator("#result_list tbody tr")).to_have_count(3)
        assert page.evaluate(HEADERS_OUTSIDE) == []
        table, box = page.evaluate(TABLE_FITS)
        assert table <= box, (table, box)
        details = page.locator("#result_list td.field-details").first
        cell = details.bounding_box()
        assert cell["x"] + cell["width"] <= 1280
        page.screenshot(path=str(SCREENSHOTS / f"fixes-audit-log{'-dark' if dark else ''}.png"))


def test_error_pages_have_the_sites_look_and_a_way_back(live_server, chromium, transactional_db):
    for width, dark in ((1280, False), (390, True)):
        page = chromium(width, dark)
        response = page.goto(live_server.url + "/no/such/page/")
        assert response.status == 404
        expect(page.locator("main.card.error-page h1")).to_have_text("Page not found")
        expect(page).to_have_title("Page not found · Chat")
        # The site's stylesheet is applied: the card has its panel background, not the browser's default.
        background = page.locator("main.card").evaluate("e => getComputedStyle(e).backgroundColor")
        assert background == ("rgb(21, 27, 35)" if dark else "rgb(255, 255, 255)"), background
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.screenshot(path=str(SCREENSHOTS / f"fixes-404-{width}{'-dark' if dark else ''}.png"))
        page.get_by_role("link", name="Back to the chat").click()
        expect(page).to_have_url(live_server.url + "/accounts/login/?next=/")  # signed out: the chat asks who


@pytest.fixture
def cookie(transactional_db, make_user, session_cookie):
    """A signed-in person's session cookie, made before Chromium starts (its event loop makes the ORM refuse)."""
    return session_cookie(make_user("ines")).split("=", 1)


def test_a_new_api_key_has_a_copy_button(cookie, live_server, chromium):
    for width, dark in ((1280, False), (390, True)):
        page = chromium(width, dark, permissions=["clipboard-read", "clipboard-write"])
        page.context.add_cookies([{"name": cookie[0], "value": cookie[1], "url": live_server.url}])
        page.goto(live_server.url + "/settings/api-keys/")
        page.fill("input[name=name]", f"script {width}")
        page.get_by_role("button", name="Create key").click()
        key = page.locator("#new-key").inner_text()
        assert key.startswith("sk-")
        page.get_by_role("button", name="Copy").click()
        expect(page.locator("#copy-key-status")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == key
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.screenshot(path=str(SCREENSHOTS / f"fixes-api-key-{width}{'-dark' if dark else ''}.png"))

    # Without the clipboard API (no permission here: writeText is refused), the key is selected for copying.
    page = chromium(1280)
    page.context.add_cookies([{"name": cookie[0], "value": cookie[1], "url": live_server.url}])
    page.goto(live_server.url + "/settings/api-keys/")
    page.fill("input[name=name]", "no clipboard")
    page.get_by_role("button", name="Create key").click()
    page.evaluate("() => { Object.defineProperty(navigator, 'clipboard', { value: undefined }); }")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator("#copy-key-status")).not_to_have_text("")
    assert page.evaluate("getSelection().toString()") == page.locator("#new-key").inner_text()
