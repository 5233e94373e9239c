"""A reply waiting for a row of its worker's batch shows its place, in real Chromium on the live stack: TINY's
worker batches 4 rows (tests/helpers/live.py); two other people and the page's person fill them with long
replies, so the reply sent from the page waits in the engine — the worker's `queued` frame reaches the page, which
says how many replies are ahead of it, and the note goes once its text streams. Desktop and phone, light and dark.
Screenshots: docs/screenshots/fair-*.png."""

import re

import pytest

from tests.browser.chromium import SCREENSHOTS, skip_without_chromium
from tests.helpers.live import TINY

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

from tests.browser.people import DONE, db  # noqa: E402

pytestmark = pytest.mark.e2e

LONG = {"max_new_tokens": 900, "temperature": 0}  # seconds of a busy row on TINY, stopped by the test


def fill_rows(people) -> list[int]:
    """Long replies of TINY: ``(user, how many)`` each (at most the replies-at-once cap, 3); their ids."""
    from chat.conversations import services as conversation_services

    ids = []
    for user, count in people:
        for n in range(count):
            sent = conversation_services.message_send(
                user=user, conversation_id=None, content=f"Tell me a long story, number {n}.", params=LONG, model=TINY
            )
            ids.append(sent.assistant_message.id)
    return ids


def stop(ids) -> None:
    from chat.models import Message
    from chat.replies import services as reply_services

    for message in Message.objects.filter(pk__in=ids):
        reply_services.reply_stop(message=message)


def test_a_reply_waiting_for_a_row_shows_its_place_until_it_streams(
    page, person, make_user, tiny_worker, served_like_the_live_stack
):
    from chat.models import ChatDefaults, Message

    user = person[0]
    db(lambda: ChatDefaults.objects.filter(user=user).update(model_name=TINY))
    page.set_viewport_size({"width": 1280, "height": 760})
    page.emulate_media(reduced_motion="reduce")  # the phone's drawer closes at once when the width changes
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    # Eight long replies for 4 rows; the page's person keeps one of their 3 for the page.
    busy = db(lambda: fill_rows([(make_user("busy-one"), 3), (make_user("busy-two"), 3), (user, 2)]))
    running = lambda: Message.objects.filter(pk__in=busy, status="streaming").count()  # noqa: E731
    for _ in range(600):  # every filler reply taken by TINY's worker (4 rows running, the rest waiting there)
        if db(running) == len(busy):
            break
        page.wait_for_timeout(100)

    page.fill("#input", "And one more question, please.")
    page.press("#input", "Enter")
    reply = page.locator(".msg.assistant")
    note = reply.locator(".queue-place")
    expect(note).to_have_text(re.compile(r"^(Your reply is next\.|\d+ repl(y|ies) ahead of yours)$"), timeout=30_000)
    expect(note).to_have_attribute("role", "status")

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "fair-queued.png"))
    page.emulate_media(color_scheme="dark")
    page.screenshot(path=str(SCREENSHOTS / "fair-queued-dark.png"))
    page.set_viewport_size({"width": 390, "height": 760})
    page.screenshot(path=str(SCREENSHOTS / "fair-queued-phone-dark.png"))
    page.emulate_media(color_scheme="light")
    page.screenshot(path=str(SCREENSHOTS / "fair-queued-phone.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    edge = note.bounding_box()
    assert edge and edge["x"] >= 0 and edge["x"] + edge["width"] <= 390
    # Reloaded while it waits (the rows stay full: its place does not change), the page shows the place again.
    page.set_viewport_size({"width": 1280, "height": 760})
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    expect(note).to_have_text(re.compile(r"^(Your reply is next\.|\d+ repl(y|ies) ahead of yours)$"))

    db(lambda: stop(busy))  # rows free: the page's reply is admitted, and its text replaces the note
    expect(reply).to_have_class(re.compile(r"\b(complete|stopped)\b"), timeout=DONE)
    expect(note).to_have_count(0)
    assert reply.locator(".body").inner_text().strip()
