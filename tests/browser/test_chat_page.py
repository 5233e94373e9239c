"""The chat page in real Chromium against the real stack: sign up, chat, stop, reload mid-reply."""

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    skip_without_chromium,
    wait_until,
    watch_for_script_errors,
)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(live_stack, transactional_db):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 760})
        page.set_default_timeout(60_000)
        errors = []
        watch_for_script_errors(page, errors)
        page.base = live_stack.origin
        yield page
        browser.close()
        assert errors == [], f"script errors on the page: {errors}"


def wait_for_text_longer_than(page, selector, n, timeout=60.0):
    wait_until(lambda: len(page.locator(selector).inner_text()) > n, f"{selector} grew past {n} characters", timeout)


def sign_up(page, name="erin"):
    page.goto(page.base + "/")
    expect(page).to_have_url(page.base + "/accounts/login/?next=/")
    page.click("text=Sign up")
    page.fill("#id_username", name)
    page.fill("#id_email", f"{name}@example.com")
    page.fill("#id_password1", "Correct-Horse-7")
    page.fill("#id_password2", "Correct-Horse-7")
    page.click("button[type=submit]")
    expect(page).to_have_url(page.base + "/")
    expect(page.locator("#connection")).to_have_text("connected")


def test_sign_up_chat_and_see_the_reply_stream_in(page):
    sign_up(page)
    box = page.locator("#input")
    box.fill("Hello")
    box.press("Shift+Enter")  # a new line, not a send
    box.type("What is the capital of France? <img src=x onerror=alert(1)>")
    expect(page.locator(".msg")).to_have_count(0)
    box.press("Enter")
    # Titled with its first words at once (the model's own title may replace them once the reply is done).
    expect(page.locator("#conversations a.current")).to_contain_text("Hello What is the capital")
    user = page.locator(".msg.user")
    expect(user.locator(".body")).to_have_text("Hello\nWhat is the capital of France? <img src=x onerror=alert(1)>")
    assert page.locator("#messages img").count() == 0  # typed HTML stays text
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant complete", timeout=120_000)
    assert reply.locator(".body").inner_text().strip()
    reply.locator(".info-button").click()  # the reply's tokens and speed, in its ⓘ card
    expect(reply.locator(".info-card")).to_contain_text("tokens/s")
    reply.locator(".info-button").click()
    expect(box).to_have_value("")
    # The day's allowance line is read again once the reply is charged: fewer tokens left than at sign-up.
    expect(page.locator("#quota")).not_to_contain_text("200,000 of 200,000")
    left = int(page.locator("#quota").inner_text().split(" of 200,000 tokens left today")[0].replace(",", ""))
    assert 0 < left < 200_000
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "chat.png"))

    page.click("text=Log out")  # and back in with the password: the conversation is there
    page.goto(page.base + "/")
    expect(page).to_have_url(page.base + "/accounts/login/?next=/")
    page.fill("#id_username", "erin")
    page.fill("#id_password", "Correct-Horse-7")
    page.click("button[type=submit]")
    expect(page).to_have_url(page.base + "/")
    expect(page.locator("#conversations li")).to_have_count(1)
    page.locator("#conversations li a").click()
    expect(page.locator(".msg.user .body")).to_have_text(
        "Hello\nWhat is the capital of France? <img src=x onerror=alert(1)>"
    )


def test_the_page_is_labelled_and_keyboard_usable(page):
    """Every control has a name a screen reader can say, focus is visible, and the reply being written is a live
    region that is busy until it ends."""
    sign_up(page, "lena")
    unnamed = page.locator("button:visible, input:visible, textarea:visible, select:visible").evaluate_all(
        """els => els.filter(e => !(e.getAttribute("aria-label") || e.labels?.length || e.title
                                  || e.textContent.trim() || e.placeholder)).map(e => e.outerHTML)"""
    )
    assert unnamed == []
    page.keyboard.press("Tab")
    focused = page.locator(":focus")
    assert focused.evaluate("e => getComputedStyle(e).outlineStyle") != "none"
    page.fill("#input", "Write a long story about a lighthouse keeper and a storm.")
    page.press("#input", "Enter")
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant streaming")
    expect(reply).to_have_attribute("aria-live", "polite")
    expect(reply).to_have_attribute("aria-busy", "true")
    expect(page.locator("#messages")).to_have_attribute("role", "log")
    page.keyboard.press("Escape")
    expect(reply).to_have_class("msg assistant stopped")
    expect(reply).to_have_attribute("aria-busy", "false")
    assert reply.get_attribute("aria-live") is None


def test_stop_and_reload_mid_reply(page):
    sign_up(page, "frank")
    page.fill("#input", "Write a long story about a lighthouse keeper and a storm.")
    page.press("#input", "Enter")
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant streaming")
    wait_for_text_longer_than(page, ".msg.assistant .body", 20)
    page.reload()  # the tab reloads mid-reply: it resumes from the server
    expect(page.locator("#connection")).to_have_text("connected")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant streaming")
    before = len(page.locator(".msg.assistant .body").inner_text())
    wait_for_text_longer_than(page, ".msg.assistant .body", before + 10)
    expect(page.locator("#stop")).to_be_visible()
    page.click("#stop")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant stopped")
    expect(page.locator(".msg.assistant .meta")).to_contain_text("stopped")
    expect(page.locator("#stop")).to_be_hidden()
    kept = page.locator(".msg.assistant .body").inner_text()
    assert len(kept) > before
    page.reload()
    expect(page.locator(".msg.assistant .body")).to_have_text(kept)  # what was shown is what was stored


PAYLOADS = [
    '<svg onload="alert(1)"></svg>',
    "[click](javascript:alert(2))",
    '<a href="javascript:alert(3)">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoNCk+" onerror="alert(5)">',
    '<script>alert(6)</script><iframe src="data:text/html,<script>alert(7)</script>"></iframe>',
]


@pytest.fixture
def hostile_conversation(live_stack, transactional_db, make_user, session_cookie):
    """Stored before the browser starts: Playwright's loop makes the ORM refuse calls once it runs."""
    from chat.models import Conversation, Message

    user = make_user("gina")
    conversation = Conversation.objects.create(owner=user, title="<b>title</b>")
    parent = Message.objects.create(conversation=conversation, role="user", content="show me markup")
    Message.objects.create(conversation=conversation, parent=parent, role="assistant", content="\n".join(PAYLOADS))
    return conversation.id, session_cookie(user)


def test_model_output_with_markup_never_runs(hostile_conversation, page):
    """A stored reply is rendered as Markdown, but the HTML in it is shown as text and a javascript: link keeps
    only its words: markup a model writes can never run or link anywhere (tests/browser/test_markdown.py has
    the full list, streamed replies and typed text)."""
    conversation_id, cookie = hostile_conversation
    name, value = cookie.split("=", 1)
    page.context.add_cookies([{"name": name, "value": value, "url": page.base}])
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{page.base}/#{conversation_id}")
    body = page.locator(".msg.assistant .body")
    for shown_as_typed in (PAYLOADS[0], PAYLOADS[2], PAYLOADS[3], PAYLOADS[4]):
        expect(body).to_contain_text(shown_as_typed)
    expect(body).to_contain_text("click")
    expect(page.locator("#title")).to_have_text("<b>title</b>")
    expect(page.locator("#conversations li a")).to_have_text("<b>title</b>")
    page.fill("#search", "onload")  # a search snippet of the hostile reply, the match highlighted
    expect(page.locator("#conversations li .snippet mark").first).to_have_text("onload")
    expect(page.locator("#conversations li .snippet")).to_contain_text('<svg onload="alert(1)">')
    for tag in ("svg", "img", "a", "script", "iframe", "b"):
        assert page.locator(f"#messages {tag}, #title {tag}").count() == 0, tag
        assert page.locator(f"#conversations {tag}").count() == (1 if tag == "a" else 0), tag  # the one link
    assert dialogs == []


@pytest.fixture
def oversized_conversation(live_stack, transactional_db, make_user, session_cookie):
    """A conversation whose system prompt alone overflows the model's context window."""
    from chat.models import Conversation

    user = make_user("hana")
    conversation = Conversation.objects.create(owner=user, title="too much", system_prompt="lighthouse " * 9000)
    return conversation.id, session_cookie(user)


def test_a_failed_reply_shows_the_servers_reason(oversized_conversation, page):
    """The done frame carries the stored error: the page shows the server's sentence, then again after a reload."""
    conversation_id, cookie = oversized_conversation
    name, value = cookie.split("=", 1)
    page.context.add_cookies([{"name": name, "value": value, "url": page.base}])
    page.goto(f"{page.base}/#{conversation_id}")
    expect(page.locator("#connection")).to_have_text("connected")
    page.fill("#input", "Hi")  # at once: a message typed before the conversation has loaded still goes to it
    page.press("#input", "Enter")
    reply = page.locator(".msg.assistant")
    expect(reply).to_have_class("msg assistant failed", timeout=120_000)
    expect(reply.locator(".meta")).to_contain_text("too long for this model")
    expect(page.locator("#conversations li")).to_have_count(1)  # no new conversation was started
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "failed-reply.png"))
    page.reload()
    expect(page.locator(".msg.assistant .meta")).to_contain_text("too long for this model")
