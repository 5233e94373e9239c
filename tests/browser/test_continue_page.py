"""Continue, the sampling defaults and what each message keeps after a reload, in real Chromium against the real
stack (the bundled model writes every reply): a reply cut at its length bound says so and Continue extends that
same bubble (one message in the database); two Regenerates with the default settings give other replies; each
message's time and each reply's ⓘ card (model, tokens, speed) are there after a reload and after a thumbs
click. Screenshots: docs/screenshots/continue-*.png."""

import pytest

from tests.browser.chromium import SCREENSHOTS, skip_without_chromium, wait_until

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

from tests.browser.people import DONE, db, say  # noqa: E402

pytestmark = pytest.mark.e2e


def inside_the_screen(page, selector):
    """Every element ``selector`` matches lies within the window's width, and the page does not scroll sideways."""
    for box in page.locator(selector).all():
        edge = box.bounding_box()
        assert edge and edge["x"] >= 0 and edge["x"] + edge["width"] <= 390, (selector, edge)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_a_cut_reply_says_so_and_continue_extends_the_same_bubble(page, person):
    from chat.models import ChatDefaults, Conversation, Message

    user = person[0]
    db(lambda: ChatDefaults.objects.filter(user=user).update(params={"max_new_tokens": 8, "temperature": 0}))
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    say(page, "Write a long story about a dragon.")
    reply = page.locator(".msg.assistant")
    expect(reply.locator(".cut-off")).to_have_text("Cut off at the length limit")
    expect(reply.locator(".continue")).to_be_visible()
    first = db(lambda: Message.objects.get(conversation__owner=user, role="assistant"))
    assert (first.finish_reason, first.completion_tokens) == ("length", 8)
    reply_id = reply.get_attribute("data-id")
    before = reply.locator(".body").inner_text().strip()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "continue-cut.png"))

    reply.locator(".continue").click()
    wait_until(
        lambda: db(lambda: Message.objects.filter(pk=first.id, status="complete", completion_tokens__gt=8).exists()),
        "the continued reply has ended",
        timeout=DONE / 1000,
        page=page,
    )
    expect(reply).to_have_class("msg assistant complete", timeout=DONE)
    expect(page.locator(".msg.assistant")).to_have_count(1)
    assert reply.get_attribute("data-id") == reply_id  # the same bubble
    after = reply.locator(".body").inner_text().strip()
    stored = db(lambda: list(Message.objects.filter(conversation__owner=user, role="assistant")))
    assert len(stored) == 1 and stored[0].id == first.id  # one message, its text appended to
    assert stored[0].content.startswith(first.content) and len(stored[0].content) > len(first.content)
    assert after.startswith(before[:20]) and len(after) > len(before)
    assert stored[0].completion_tokens == 16 if stored[0].finish_reason == "length" else stored[0].completion_tokens > 8
    assert page.locator("#messages").get_attribute("data-stream-mismatches") is None  # streamed = stored
    if stored[0].finish_reason == "length":
        expect(reply.locator(".cut-off")).to_be_visible()
    else:
        expect(reply.locator(".cut-off")).to_have_count(0)

    # The info card: model, tokens, speed; each message's time. After a reload, then after a thumbs click.
    def card_says_it_all():
        expect(reply.locator(".meta time.stamp")).to_have_attribute("datetime", stored[0].created_at.isoformat())
        expect(page.locator(".msg.user .meta time.stamp")).to_have_count(1)
        if not reply.locator(".info-card").count():
            reply.locator(".info-button").click()
        card = reply.locator(".info-card")
        expect(card).to_contain_text("SmolLM2")
        expect(card).to_contain_text(f"{stored[0].completion_tokens} in the reply")
        expect(card).to_contain_text("tokens/s")
        expect(reply.locator(".info-button")).to_have_attribute("aria-expanded", "true")

    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    reply = page.locator(".msg.assistant")
    card_says_it_all()
    page.screenshot(path=str(SCREENSHOTS / "continue-info.png"))
    reply.locator(".thumb.up").click()
    expect(reply.locator(".thumb.up")).to_have_attribute("aria-pressed", "true")
    card_says_it_all()
    reply.locator(".feedback-form .close").click()
    title = reply.locator(".meta time.stamp").get_attribute("title")
    assert title and str(stored[0].created_at.year) in title  # the full date on hover

    # Phone width and dark mode: the message, its meta line and its card within the screen. The model's title
    # is made short first: a long one runs the phone header past the screen, which is another fix of issue 22's.
    db(lambda: Conversation.objects.filter(owner=user).update(title="A dragon story"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    page.locator(".msg.assistant .info-button").click()
    expect(page.locator(".msg.assistant .info-card")).to_be_visible()
    for selector in (".msg", ".msg .meta", ".info-card", ".info-card dd", ".cut-off", ".continue"):
        inside_the_screen(page, selector)
    page.screenshot(path=str(SCREENSHOTS / "continue-phone-dark.png"))
    page.emulate_media(color_scheme="light")
    page.screenshot(path=str(SCREENSHOTS / "continue-phone.png"))


def test_two_regenerates_with_the_default_settings_give_other_replies(page, person):
    """No temperature set anywhere: the reply samples (CHAT_DEFAULT_TEMPERATURE), so Regenerate is not the same
    reply again. Seeds are not fixed; three 24-token replies of a sampled model all alike would be a fluke."""
    from chat.models import Message

    user = person[0]
    say(page, "Write a poem about the sea.")
    texts = [page.locator(".msg.assistant .body").inner_text()]
    for n in (2, 3):
        page.locator(".msg.assistant .regenerate").click()
        expect(page.locator(".msg.assistant .switcher .position")).to_have_text(f"{n}/{n}")
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        texts.append(page.locator(".msg.assistant .body").inner_text())
    replies = db(lambda: list(Message.objects.filter(conversation__owner=user, role="assistant").order_by("id")))
    # The settings panel says what applies when a field is left empty.
    page.click("#open-settings")
    expect(page.locator("#set-temperature")).to_have_attribute("placeholder", "0.7")
    expect(page.locator("#set-top_p")).to_have_attribute("placeholder", "0.9")
    expect(page.locator("#hint-temperature")).to_contain_text("empty: 0.7 (0 means greedy")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "continue-settings.png"))
    page.click("#settings-cancel")
    assert [r.params.get("temperature") for r in replies] == [0.7] * 3
    assert len({r.content for r in replies}) > 1 and len(set(texts)) > 1


def test_a_reply_being_continued_survives_a_reload(page, person):
    """Reloaded mid-Continue: the bubble shows the whole text so far at once (the stream's first delta is the reply
    before Continue), then the rest, and ends as stored."""
    from chat.models import ChatDefaults, Message

    user = person[0]
    db(lambda: ChatDefaults.objects.filter(user=user).update(params={"max_new_tokens": 6, "temperature": 0}))
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    say(page, "Write a long story about a knight.")
    first = db(lambda: Message.objects.get(conversation__owner=user, role="assistant"))
    assert first.finish_reason == "length"
    # A longer run this time, so there is a moment to reload in.
    db(lambda: Message.objects.filter(pk=first.id).update(params={**first.params, "max_new_tokens": 60}))
    page.locator(".msg.assistant .continue").click()
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant streaming", timeout=DONE)
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    reply = page.locator(".msg.assistant")
    expect(reply.locator(".body")).to_contain_text(first.content.strip()[:20])
    expect(reply).to_have_class("msg assistant complete", timeout=DONE)
    stored = db(lambda: Message.objects.get(pk=first.id))
    assert stored.content.startswith(first.content) and stored.completion_tokens > first.completion_tokens
    assert reply.locator(".body").inner_text().strip().startswith(first.content.strip()[:20])
    assert page.locator("#messages").get_attribute("data-stream-mismatches") is None
    expect(page.locator(".msg.assistant")).to_have_count(1)
