"""What a newcomer's first half hour on the chat page met, fixed, in real Chromium against the live stack and the
bundled model: another conversation's address typed into the tab opens it, "Jump to latest" sits above the
message box however tall it grows, and a refusal can be dismissed."""

import pytest

from tests.browser.chromium import SCREENSHOTS, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, open_browser  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_chats(patient_person):
    """Two conversations of one exchange each, made before the browser starts."""
    from chat.models import Conversation, Message

    user, cookie = patient_person
    ids = []
    for title in ("Alpha chat", "Beta chat"):
        conversation = Conversation.objects.create(owner=user, title=title)
        question = Message.objects.create(conversation=conversation, role="user", content=f"About {title}?")
        Message.objects.create(
            conversation=conversation, parent=question, role="assistant", content="Certainly.", status="complete"
        )
        ids.append(conversation.pk)
    return ids, cookie


def test_an_address_typed_into_the_tab_a_refusal_dismissed_and_jump_above_the_box(two_chats, live_stack):
    (alpha, beta), cookie = two_chats
    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, cookie)
        page.goto(f"{live_stack.origin}/#{alpha}")
        expect(page.locator("#connection")).to_have_text("connected")
        expect(page.locator("#title")).to_have_text("Alpha chat")
        # Another conversation's address typed (or a link to it followed) in the same tab: it opens, as on reload.
        page.evaluate(f"location.hash = '#{beta}'")
        expect(page.locator("#title")).to_have_text("Beta chat")
        expect(page.locator(".msg.user .body")).to_have_text("About Beta chat?")
        page.evaluate("location.hash = ''")
        expect(page.locator("#title")).to_have_text("New chat")
        page.evaluate(f"location.hash = '#{alpha}'")
        expect(page.locator("#title")).to_have_text("Alpha chat")

        # A refusal stays until the next success, or until it is dismissed; its text is the sentence alone.
        page.fill("#input", "x" * 16_001)
        page.press("#input", "Enter")
        error = page.locator("#error")
        expect(error).to_have_text("The message is too long: at most 16000 characters.")
        error.get_by_role("button", name="Dismiss").click()
        expect(error).to_be_hidden()

        # While a reply streams (Stop shown, the box taller), scrolled up: the button is above the box, not under it.
        page.fill("#input", "Tell me a long story about a lighthouse keeper.")
        page.press("#input", "Enter")
        reply = page.locator(".msg.assistant").last
        expect(reply).to_have_class("msg assistant streaming")
        expect(page.locator("#stop")).to_be_visible()
        page.evaluate("() => { const m = document.getElementById('messages'); m.scrollTop = 0; }")
        page.mouse.move(600, 200)
        page.mouse.wheel(0, -400)
        jump = page.locator("#jump")
        expect(jump).to_be_visible()
        page.wait_for_timeout(100)  # the ResizeObserver's callback runs after layout
        button, box = jump.bounding_box(), page.locator("#composer").bounding_box()
        assert button["y"] + button["height"] <= box["y"], (button, box)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "walk-jump-while-streaming.png"))
        jump.click()
        expect(jump).to_be_hidden()
        expect(reply).to_have_class("msg assistant complete", timeout=DONE)
        browser.close()
    assert page.errors == [], f"script errors on the page: {page.errors}"
