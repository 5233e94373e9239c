"""Rough edges of the chat page, fixed (issue 22), in real Chromium against the live stack and the bundled model:
the edit form's buttons are readable in light and dark, focus follows Regenerate, the phone's placeholder speaks
of no keys, the header fits a phone with a 200-character title while a reply streams and after, and the
sidebar's footer shows the whole name."""

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    new_page,
    skip_without_chromium,
)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, say  # noqa: E402

pytestmark = pytest.mark.e2e

# WCAG's contrast ratio of an element's text against the first opaque background at or above it.
CONTRAST = """(el) => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const fg = getComputedStyle(el).color;
  let bg = "rgba(0, 0, 0, 0)";
  for (let e = el; e; e = e.parentElement) {
    const b = getComputedStyle(e).backgroundColor, parts = rgb(b);
    if (parts.length === 3 || parts[3] > 0) { bg = b; break; }
  }
  const [a, b] = [lum(rgb(fg)), lum(rgb(bg))].sort((x, y) => y - x);
  return { fg, bg, ratio: (a + 0.05) / (b + 0.05) };
}"""
NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= innerWidth"
# What reaches past the screen's right edge (for the failure's message): the outermost such elements.
PAST_THE_EDGE = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getBoundingClientRect().right > innerWidth + 1 && e.getClientRects().length)
  .filter((e, _, all) => !all.includes(e.parentElement))
  .map((e) => `${e.tagName}#${e.id}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`)"""
TITLE = ("How do I keep a sourdough starter alive through a hot summer without a fridge " * 3)[:200]
KEYS_HINT = "Enter sends"


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"fixes-{name}.png"))


def test_edit_buttons_are_readable_and_focus_follows_regenerate(page):
    say(page, "Name a colour.")
    # The sidebar's footer shows the whole name.
    name = page.locator(".account .user-name")
    expect(name).to_have_text("ines")
    assert name.evaluate("e => e.scrollWidth <= e.clientWidth")
    sidebar = page.locator("#sidebar").bounding_box()
    box = name.bounding_box()
    assert box["x"] + box["width"] <= sidebar["x"] + sidebar["width"]
    assert KEYS_HINT in page.locator("#input").get_attribute("placeholder")  # a desktop is told the keys

    # Regenerate from the keyboard: the old reply (and its button) leaves; focus goes to the new reply.
    page.locator(".msg.assistant .regenerate").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".msg.assistant.streaming, .msg.assistant.queued")).to_have_count(1)
    expect(page.locator(".msg.assistant.complete")).to_have_count(1, timeout=DONE)
    focused = page.evaluate(
        "() => [document.activeElement.tagName, document.activeElement.closest('.msg.assistant')?.dataset.id]"
    )
    assert focused[0] != "BODY"
    assert focused[1] == page.locator(".msg.assistant").last.get_attribute("data-id")
    page.keyboard.press("Tab")  # and Tab goes on from there, into the reply's own buttons
    assert page.evaluate("document.activeElement.closest('.msg.assistant') !== null")

    page.locator(".msg.user .edit").click()
    form = page.locator(".msg.user .edit-form")
    expect(form).to_be_visible()
    for width, scheme in ((1280, "light"), (1280, "dark"), (390, "light"), (390, "dark")):
        page.set_viewport_size({"width": width, "height": 760})
        page.emulate_media(color_scheme=scheme)
        send, cancel = form.locator("button.primary"), form.get_by_role("button", name="Cancel")
        for button in (send, cancel):
            seen = button.evaluate(CONTRAST)
            assert seen["fg"] != seen["bg"], (width, scheme, seen)
            assert seen["ratio"] >= 4.5, (width, scheme, seen)
        # Send is a button, not a label on the bubble: its face differs from the bubble's.
        bubble = page.locator(".msg.user").evaluate("e => getComputedStyle(e).backgroundColor")
        assert send.evaluate("e => getComputedStyle(e).backgroundColor") != bubble
        assert page.evaluate(NO_SIDEWAYS_SCROLL)
        shot(page, f"edit-{width}-{scheme}")
    form.get_by_role("button", name="Cancel").click()
    expect(form).to_have_count(0)


@pytest.fixture
def long_title_chat(patient_person):
    """A conversation with a 200-character title and one exchange, made before the browser starts."""
    from chat.models import Conversation, Message

    user, cookie = patient_person
    conversation = Conversation.objects.create(owner=user, title=TITLE)
    question = Message.objects.create(conversation=conversation, role="user", content="Hello!")
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content="Hello! How can I help?",
        status="complete",
    )
    return conversation.pk, cookie


def test_a_phone_with_a_long_title_never_scrolls_sideways_while_a_reply_streams(long_title_chat, live_stack):
    conversation, cookie = long_title_chat
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        errors = []
        phone = {"width": 390, "height": 760}
        page = new_page(
            browser, live_stack.origin, errors, cookie=cookie, viewport=phone, is_mobile=True, has_touch=True
        )
        page.goto(f"{live_stack.origin}/#{conversation}")
        expect(page.locator("#connection")).to_have_text("connected")
        expect(page.locator("#title")).to_have_text(TITLE)
        expect(page.locator("#conversation-actions")).to_be_visible()

        # A phone has no Shift, Esc or ↑ to press: the placeholder says only what the box is for.
        expect(page.locator("#input")).to_have_attribute("placeholder", "Message")
        assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(PAST_THE_EDGE)

        # Nor a Shift key: Enter on a touch keyboard adds a line; Send sends.
        page.fill("#input", "first line")
        page.press("#input", "Enter")
        expect(page.locator("#input")).to_have_value("first line\n")
        expect(page.locator(".msg.user")).to_have_count(1)  # the conversation's own, nothing sent

        page.fill("#input", "Tell me about bread, in a few sentences.")
        page.locator("#send").tap()
        reply = page.locator(".msg.assistant").last
        expect(reply).to_have_class("msg assistant streaming")
        expect(reply.locator(".body")).not_to_be_empty()
        widths = []
        while "streaming" in (reply.get_attribute("class") or ""):
            widths.append(page.evaluate("[document.documentElement.scrollWidth, innerWidth]"))
            if widths[-1][0] > widths[-1][1]:
                widths[-1].append(page.evaluate(PAST_THE_EDGE))
            if len(widths) == 3:
                shot(page, "phone-mid-reply")
                page.emulate_media(color_scheme="dark")
                shot(page, "phone-mid-reply-dark")
            page.wait_for_timeout(200)
        assert len(widths) >= 3, "the reply ended before it was watched"
        assert all(scroll <= inner for scroll, inner in widths), widths
        expect(reply).to_have_class("msg assistant complete", timeout=DONE)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(PAST_THE_EDGE)
        header = page.locator(".thread header").bounding_box()
        assert header["x"] + header["width"] <= 390
        for button in page.locator(".header-actions button:visible, .header-actions a:visible").all():
            box = button.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390, button.inner_text()
        shot(page, "phone-after-reply-dark")
        page.emulate_media(color_scheme="light")
        shot(page, "phone-after-reply")
        # The settings on a phone: each hint under its field, across the panel, not squeezed into a third column.
        page.click("#open-settings")
        hint = page.locator("#hint-max_new_tokens")
        expect(hint).to_be_visible()
        field, said = page.locator("#set-max_new_tokens").bounding_box(), hint.bounding_box()
        assert said["y"] >= field["y"] + field["height"] - 1 and said["width"] > 250, (field, said)
        shot(page, "phone-settings")
        page.click("#settings-cancel")
        # And on a desktop the long title is cut, not widening the thread's column.
        page.set_viewport_size({"width": 1280, "height": 760})
        assert page.evaluate(NO_SIDEWAYS_SCROLL), page.evaluate(PAST_THE_EDGE)
        assert page.locator("#title").evaluate("e => e.scrollWidth > e.clientWidth")  # cut with an ellipsis
        browser.close()
    assert errors == [], f"script errors on the page: {errors}"
