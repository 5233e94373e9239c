"""The model picker and Compare in real Chromium against the live stack, which serves two models: the bundled one
(the default) and TINY, a random two-layer model with its own worker (tests/helpers/live.py). The picker starts a
conversation of the chosen model, the header switches it from the next reply, the settings panel sets the person's
default; Compare streams two models' replies side by side, a pick is stored as the comparison's choice and shows
the picked branch, blind hides the names until the pick, and the page fits a phone's width in light and dark mode.
Rows (the conversation's model, each reply's model and worker, the comparison) are read back from the database."""

import pytest

from tests.browser.chromium import SCREENSHOTS, skip_without_chromium
from tests.helpers.live import DEFAULT_MODEL, TINY

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, db, open_browser, say  # noqa: E402

pytestmark = pytest.mark.e2e

SMOL, TINY_LABEL = "SmolLM2 135M", "Tiny"  # the live stack's labels (CHAT_MODEL_OPTIONS)


@pytest.fixture
def page(tiny_worker, person, live_stack):
    """The chat page, loaded once TINY's worker is up (the picker counts the live workers as the page loads)."""
    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, person[1])
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        yield page
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"


def newest_reply(user):
    from chat.models import Message

    return db(
        lambda: (
            Message.objects.filter(conversation__owner=user, role="assistant")
            .select_related("conversation")
            .order_by("-id")
            .first()
        )
    )


def overflowing(page) -> list[str]:
    """What sticks out past the viewport's right edge (or makes the thread scroll sideways)."""
    return page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const out = [...document.querySelectorAll("header, header *, #composer, #composer *, .compare, .compare *")]
            .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > width + 0.5)
            .map((e) => e.id || e.className || e.tagName);
          if (document.documentElement.scrollWidth > width) out.push("the page scrolls sideways");
          const thread = document.getElementById("messages");
          if (thread.scrollWidth > thread.clientWidth) out.push("the thread scrolls sideways");
          return out;
        }"""
    )


def test_the_picker_starts_a_chat_of_its_model_the_header_switches_it_and_settings_set_my_default(
    page, person, live_stack, tiny_worker
):
    from chat.models import ChatDefaults

    user = person[0]
    picker, about = page.locator("#model"), page.locator("#model-about")
    expect(picker).to_have_value(DEFAULT_MODEL)  # the site's default, preselected for a new chat
    assert picker.locator("option").all_inner_texts() == [SMOL, TINY_LABEL]
    expect(about).to_contain_text("The bundled model")
    expect(about).to_contain_text("-token window")
    picker.select_option(TINY)
    expect(about).to_have_text("A random two-layer model for tests · 1,024-token window")
    say(page, "Hi")
    reply = newest_reply(user)
    assert reply.conversation.model_name == TINY
    assert (reply.model_name, reply.worker.rsplit("-", 1)[1]) == (TINY, str(tiny_worker.pid))
    expect(page.locator(".msg.assistant .model-tag")).to_have_text(TINY_LABEL)
    expect(picker).to_have_value(TINY)  # now the conversation's model

    picker.select_option(DEFAULT_MODEL)  # the header's switch: from the next reply on
    expect(page.locator("#model-note")).to_have_text(f"Switched to {SMOL}: it answers from the next reply on.")
    expect(page.locator(".msg.assistant .model-tag")).to_have_text(TINY_LABEL)  # the reply written stays Tiny's
    say(page, "Hello again")
    reply = newest_reply(user)
    assert reply.conversation.model_name == DEFAULT_MODEL
    assert (reply.model_name, reply.worker.rsplit("-", 1)[1]) == (DEFAULT_MODEL, str(live_stack.worker.pid))
    expect(page.locator(".msg.assistant .model-tag")).to_have_text([TINY_LABEL, SMOL])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "models-picker.png"))
    page.reload()  # what is shown is what is stored
    expect(page.locator(".msg.assistant .model-tag")).to_have_text([TINY_LABEL, SMOL])
    expect(picker).to_have_value(DEFAULT_MODEL)

    page.click("#new-chat")  # no chat open: the settings panel sets the model new chats start with
    expect(picker).to_have_value(DEFAULT_MODEL)
    page.click("#open-settings")
    expect(page.locator("#set-model")).to_have_value(DEFAULT_MODEL)
    page.select_option("#set-model", TINY)
    page.screenshot(path=str(SCREENSHOTS / "settings-model.png"))
    page.click("#settings-save")
    expect(picker).to_have_value(TINY)
    assert db(lambda: ChatDefaults.objects.get(user=user).model_name) == TINY
    page.reload()
    expect(picker).to_have_value(TINY)
    expect(about).to_have_text("A random two-layer model for tests · 1,024-token window")
    page.screenshot(path=str(SCREENSHOTS / "models-new-chat.png"))


def test_compare_streams_two_models_side_by_side_stores_the_pick_and_blind_hides_names_until_it(
    page, person, tiny_worker
):
    from chat.models import Comparison, Message

    user = person[0]
    page.check("#compare-on")
    expect(page.locator("#compare-model")).to_have_value(TINY)  # the other model
    expect(page.locator("#send")).to_have_text("Send to both")
    page.fill("#input", "Name a fruit.")
    page.press("#input", "Enter")
    pair = page.locator(".compare .msg.assistant")
    expect(pair).to_have_count(2)
    expect(page.locator(".compare .msg.assistant.complete")).to_have_count(2, timeout=DONE)
    first, second = (int(i) for i in pair.evaluate_all("els => els.map((e) => e.dataset.id)"))
    # Both streamed (deltas keyed by each reply) and what streamed is what was stored; side by side on a desktop.
    assert all(int(d) > 0 for d in pair.evaluate_all("els => els.map((e) => e.dataset.deltas || 0)"))
    assert page.locator("#messages").get_attribute("data-stream-mismatches") is None
    left, right = pair.nth(0).bounding_box(), pair.nth(1).bounding_box()
    assert left["y"] == right["y"] and left["x"] + left["width"] <= right["x"]
    expect(pair.locator(".model-tag")).to_have_text([SMOL, TINY_LABEL])
    expect(pair.locator(".pick")).to_have_count(2)
    page.screenshot(path=str(SCREENSHOTS / "compare.png"))

    page.locator(f'.msg[data-id="{second}"] .pick').click()  # Tiny's, the one not on the branch
    expect(page.locator(".compare")).to_have_count(0)
    shown = page.locator(".msg.assistant")
    expect(shown).to_have_count(1)
    expect(shown).to_have_attribute("data-id", str(second))
    expect(shown.locator(".model-tag")).to_have_text(TINY_LABEL)
    expect(shown.locator(".picked")).to_have_text(f"★ your pick over {SMOL}")
    expect(shown.locator(".switcher .position")).to_have_text("2/2")
    stored = db(lambda: Comparison.objects.get(prompt__conversation__owner=user))
    assert (stored.first_id, stored.second_id, stored.chosen_id, stored.blind) == (first, second, second, False)
    assert db(lambda: Message.objects.get(pk=second).is_current)
    shown.locator(".switcher .prev").click()  # the other reply, one switch away
    expect(shown).to_have_attribute("data-id", str(first))
    expect(shown.locator(".picked")).to_have_text(f"not your pick (you picked {TINY_LABEL})")

    page.check("#compare-blind")  # blind: names hidden until the pick, even after a reload
    page.fill("#input", "Name a colour.")
    page.press("#input", "Enter")
    expect(pair).to_have_count(2)
    expect(page.locator(".compare .compare-note")).to_contain_text("Blind comparison")
    expect(pair.locator(".model-tag")).to_have_text(["Reply A", "Reply B"])
    expect(page.locator(".compare .msg.assistant.complete")).to_have_count(2, timeout=DONE)
    page.reload()
    expect(pair.locator(".model-tag")).to_have_text(["Reply A", "Reply B"])
    expect(pair.locator(".pick")).to_have_count(2)
    assert pair.locator(".model-tag[title]").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "compare-blind.png"))

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the two stacked, nothing wider than it
    page.check("#compare-on")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        expect(page.locator("#model")).to_be_in_viewport()
        expect(page.locator("#compare-model")).to_be_in_viewport()
        assert overflowing(page) == [], scheme
        top, below = pair.nth(0).bounding_box(), pair.nth(1).bounding_box()
        assert top["y"] + top["height"] <= below["y"]
        page.screenshot(path=str(SCREENSHOTS / f"phone-compare{'-dark' if scheme == 'dark' else ''}.png"))
    blind_ids = [int(i) for i in pair.evaluate_all("els => els.map((e) => e.dataset.id)")]
    pair.nth(0).locator(".pick").click()  # "Reply A": the names come back
    shown = page.locator(f'.msg[data-id="{blind_ids[0]}"]')
    expect(page.locator(".compare")).to_have_count(0)
    expect(shown.locator(".picked")).to_contain_text("★ your pick over")
    stored = db(lambda: Comparison.objects.filter(prompt__conversation__owner=user).order_by("-id").first())
    assert stored.blind and stored.chosen_id == blind_ids[0]
    names = {stored.first_id: SMOL, stored.second_id: TINY_LABEL}
    expect(shown.locator(".model-tag")).to_have_text(names[blind_ids[0]])
    expect(shown.locator(".picked")).to_have_text(f"★ your pick over {names[blind_ids[1]]}")
    assert overflowing(page) == []
    page.screenshot(path=str(SCREENSHOTS / "phone-compare-picked.png"))
