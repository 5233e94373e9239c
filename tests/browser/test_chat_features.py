"""The chat page's features in real Chromium against the real stack (the bundled model writes every reply):
branches (edit and resend, switch, regenerate an older reply), feedback, settings, the sidebar (groups, paging,
search, rename, delete), export, keyboard and phone width. Rows are read back from the database. Reconnecting
and lost frames: test_reconnect.py."""

import json
from datetime import timedelta

import pytest

from tests.browser.chromium import SCREENSHOTS, skip_without_chromium, wait_until

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, bodies, db, open_browser, say  # noqa: E402

pytestmark = pytest.mark.e2e


def test_edit_switch_branches_continue_and_regenerate_an_older_reply(page, person):
    from chat.models import Message

    user = person[0]
    say(page, "Say hello")
    say(page, "Name a colour")
    first_branch = bodies(page)
    page.locator(".msg.user").first.locator(".edit").click()
    editor = page.locator(".edit-form textarea")
    expect(editor).to_have_value("Say hello")
    editor.fill("Say goodbye")
    editor.press("Enter")
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.locator(".msg.user .switcher .position")).to_have_text("2/2")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
    assert bodies(page)[0] == "Say goodbye"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "branches.png"))

    page.locator(".msg.user .switcher .prev").click()  # back to the first branch, all of it
    expect(page.locator(".msg.user .switcher .position")).to_have_text("1/2")
    expect(page.locator(".msg")).to_have_count(4)
    assert bodies(page) == first_branch
    say(page, "And another one")  # continues from the chosen branch
    rows = db(lambda: list(Message.objects.filter(conversation__owner=user).select_related("parent").order_by("id")))
    last_user = [m for m in rows if m.content == "And another one"][0]
    colour_reply = [m for m in rows if m.role == "assistant" and m.parent.content == "Name a colour"][0]
    assert last_user.parent_id == colour_reply.id

    page.locator(".msg.assistant").first.locator(".regenerate").click()  # an older reply
    expect(page.locator(".msg")).to_have_count(2)
    expect(page.locator(".msg.assistant .switcher .position")).to_have_text("2/2")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
    hello = [m for m in rows if m.content == "Say hello"][0]
    replies = db(lambda: list(Message.objects.filter(parent_id=hello.id).values_list("is_current", flat=True)))
    assert sorted(replies) == [False, True]
    page.reload()  # what is shown is what is stored
    expect(page.locator(".msg.assistant .switcher .position")).to_have_text("2/2")


def test_thumbs_down_with_a_comment_is_stored_and_shown(page, person):
    from chat.models import Feedback

    say(page, "What is two plus two?")
    reply = page.locator(".msg.assistant")
    reply.locator(".thumb.down").click()
    expect(reply.locator(".thumb.down")).to_have_attribute("aria-pressed", "true")
    reply.locator(".feedback-form input").fill("It did not say four.")
    reply.locator(".feedback-form button[type=submit]").click()
    expect(reply.locator(".feedback .comment")).to_have_text("“It did not say four.”")
    stored = db(lambda: list(Feedback.objects.filter(user=person[0]).values_list("rating", "comment")))
    assert stored == [(-1, "It did not say four.")]
    page.reload()
    expect(page.locator(".msg.assistant .thumb.down")).to_have_attribute("aria-pressed", "true")


def test_settings_apply_to_the_next_reply_and_new_chats_start_from_my_defaults(page, person):
    from chat.models import ChatDefaults, Conversation, Message

    say(page, "Hi")
    page.click("#open-settings")
    expect(page.locator("#settings")).to_be_visible()
    expect(page.locator("#hint-max_new_tokens")).to_contain_text("1 – 1024")
    expect(page.locator("#settings-privacy")).to_contain_text("Staff reviewers")
    page.fill("#set-system", "You are terse.")
    page.fill("#set-max_new_tokens", "5")
    page.check("#set-as-default")
    page.screenshot(path=str(SCREENSHOTS / "settings.png"))
    page.click("#settings-save")
    expect(page.locator("#settings-saved")).to_have_text("Saved.")
    say(page, "Tell me a long story about the sea.")
    reply = db(
        lambda: (
            Message.objects.filter(conversation__owner=person[0], role="assistant")
            .select_related("conversation")
            .order_by("-id")
            .first()
        )
    )
    assert reply.params["max_new_tokens"] == 5 and 0 < reply.completion_tokens <= 5
    assert reply.conversation.system_prompt == "You are terse."
    assert db(lambda: ChatDefaults.objects.get(user=person[0]).params) == {"max_new_tokens": 5}
    page.click("#new-chat")
    say(page, "Hello again")
    newest = db(lambda: Conversation.objects.filter(owner=person[0]).order_by("-id").first())
    assert (newest.system_prompt, newest.params) == ("You are terse.", {"max_new_tokens": 5})


@pytest.fixture
def many_chats(person):
    """35 conversations over two months, one of them about a lighthouse."""
    from django.utils import timezone

    from chat.models import Conversation, Message

    user = person[0]
    now = timezone.now()
    ages = [0, 0, 1, 3, 5] + [40 + n for n in range(30)]
    for n, days in enumerate(ages):
        c = Conversation.objects.create(owner=user, title=f"Chat number {n}")
        q = Message.objects.create(conversation=c, role="user", content=f"question {n}")
        Message.objects.create(
            conversation=c,
            parent=q,
            role="assistant",
            content="The old lighthouse keeper lit the lamp." if n == 3 else "An answer.",
        )
        Conversation.objects.filter(pk=c.pk).update(updated_at=now - timedelta(days=days, minutes=n))
    return user


def test_sidebar_groups_pages_searches_renames_exports_and_deletes(many_chats, page):
    from chat.models import Conversation

    user = many_chats
    headings = page.locator("#conversations h2.group")
    expect(headings.nth(0)).to_have_text("Today")
    expect(headings.nth(1)).to_have_text("Yesterday")
    expect(headings.nth(2)).to_have_text("Previous 7 days")
    page.screenshot(path=str(SCREENSHOTS / "sidebar.png"))
    expect(page.locator("#conversations li")).to_have_count(30)
    page.locator("#more").scroll_into_view_if_needed()
    expect(page.locator("#conversations li")).to_have_count(35)  # the next page, by the cursor
    expect(page.locator("#more")).to_be_hidden()

    page.fill("#search", "LIGHTHOUSE")
    expect(page.locator("#conversations li")).to_have_count(1)
    expect(page.locator("#conversations li mark")).to_have_text("lighthouse")
    expect(page.locator("#conversations li .snippet")).to_contain_text("keeper lit the lamp")
    page.locator("#conversations li a").click()
    expect(page.locator(".msg.assistant .body")).to_have_text("The old lighthouse keeper lit the lamp.")
    page.fill("#search", "")
    expect(page.locator("#conversations li")).to_have_count(30)

    page.click("#rename")
    page.fill("#rename-input", "Lighthouse notes")
    page.press("#rename-input", "Enter")
    expect(page.locator("#title")).to_have_text("Lighthouse notes")
    expect(page.locator("#conversations a.current")).to_have_text("Lighthouse notes")
    conv = db(lambda: Conversation.objects.get(owner=user, title="Lighthouse notes"))

    with page.expect_download() as got:
        page.click("#export-json")
    doc = json.loads(open(got.value.path()).read())
    assert doc["conversation"]["title"] == "Lighthouse notes"
    assert [m["content"] for m in doc["messages"]] == ["question 3", "The old lighthouse keeper lit the lamp."]
    with page.expect_download() as got:
        page.click("#export-md")
    md = open(got.value.path()).read()
    assert md.startswith("# Lighthouse notes") and "```text\nquestion 3\n```" in md and "## Assistant" in md

    page.click("#delete")
    expect(page.locator("#confirm-delete")).to_be_visible()
    page.click("#delete-confirm")
    expect(page.locator("#title")).to_have_text("New chat")
    expect(page.locator(f'#conversations li[data-id="{conv.pk}"]')).to_have_count(0)
    assert not db(lambda: Conversation.objects.filter(pk=conv.pk).exists())


def test_the_model_titles_a_new_conversation_after_its_first_reply(page, person):
    """The title comes after the reply; it names the conversation in the list, and a tab that has moved on to a
    new chat meanwhile stays there (the title's frame is not the frame of its own send)."""
    from chat.models import Conversation

    first_words = "How do plants make food from sunlight?"
    page.fill("#input", first_words)
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_count(1)  # the reply is queued, its title far off
    page.click("#new-chat")
    old = db(lambda: Conversation.objects.get(owner=person[0]))
    wait_until(
        lambda: db(lambda: Conversation.objects.get(owner=person[0]).title) != first_words,
        "the model's title is stored",
        page=page,
    )
    title = db(lambda: Conversation.objects.get(owner=person[0]).title)
    expect(page.locator(f'#conversations li[data-id="{old.pk}"] a')).to_have_text(title)
    expect(page.locator("#title")).to_have_text("New chat")
    say(page, "And how do animals?")  # a new conversation, not a turn of the old one
    conversations = db(lambda: list(Conversation.objects.filter(owner=person[0]).order_by("id")))
    assert len(conversations) == 2 and conversations[0].title == title
    expect(page.locator("#conversations a.current")).to_have_text("And how do animals?")
    expect(page.locator(".msg.user")).to_have_count(1)


def test_escape_stops_and_up_edits_the_last_message(patient_page):
    page = patient_page
    page.fill("#input", "Write a long story about a dragon who learns to bake.")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant streaming")
    expect(page.locator("#send")).to_be_disabled()
    page.keyboard.press("Escape")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant stopped")
    expect(page.locator("#send")).to_be_enabled()
    page.focus("#input")
    page.keyboard.press("ArrowUp")
    expect(page.locator(".edit-form textarea")).to_have_value("Write a long story about a dragon who learns to bake.")
    page.keyboard.press("Escape")
    expect(page.locator(".edit-form")).to_have_count(0)


def test_a_refusal_is_a_sentence_next_to_the_input(page, person):
    """Too long is caught on the page before anything is sent, said in a sentence next to the input; the line
    clears with the next send."""
    page.fill("#input", "x" * 16001)
    page.press("#input", "Enter")
    expect(page.locator("#error")).to_have_text("The message is too long: at most 16000 characters.")
    expect(page.locator(".msg")).to_have_count(0)
    page.fill("#input", "")
    say(page, "Hi")
    expect(page.locator("#error")).to_be_hidden()


def test_rate_and_quota_refusals_are_sentences_next_to_the_input(page, person):
    """The person's own allowance (set by staff) runs out: each refusal is the server's sentence next to the
    input, and nothing is stored or shown for it."""
    from chat.models import QuotaOverride

    user = person[0]
    db(lambda: QuotaOverride.objects.create(user=user, messages_per_minute=1))
    say(page, "Hi")
    page.fill("#input", "Again")
    page.press("#input", "Enter")
    expect(page.locator("#error")).to_contain_text(
        "You have sent 1 message in the last minute, the most this site allows; try again in"
    )
    expect(page.locator("#input")).to_have_value("Again")  # what was typed is given back
    db(lambda: QuotaOverride.objects.filter(user=user).update(messages_per_minute=0, tokens_per_day=1))
    page.fill("#input", "Once more")
    page.press("#input", "Enter")
    expect(page.locator("#error")).to_contain_text("You have used today's 1 token. Your allowance starts again at")
    expect(page.locator(".msg.user")).to_have_count(1)
    expect(page.locator("#input")).to_have_value("Once more")
    page.fill("#input", "")
    page.locator(".msg.user .edit").click()  # a refused edit: the editor opens again with the edited text
    page.locator(".edit-form textarea").fill("Hi, edited")
    page.locator(".edit-form textarea").press("Enter")
    expect(page.locator("#error")).to_contain_text("You have used today's 1 token.")
    expect(page.locator(".edit-form textarea")).to_have_value("Hi, edited")
    expect(page.locator(".msg.user")).to_have_count(1)


def test_phone_width_sidebar_is_a_drawer(person, live_stack):
    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, person[1], viewport=(390, 780))
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        say(page, "Hi there")
        expect(page.locator("#new-chat")).not_to_be_in_viewport()
        page.click("#menu")
        expect(page.locator("#new-chat")).to_be_in_viewport()
        expect(page.locator("#menu")).to_have_attribute("aria-expanded", "true")
        page.wait_for_timeout(300)  # the slide-in transition
        page.screenshot(path=str(SCREENSHOTS / "phone-drawer.png"))
        page.locator("#conversations li a").first.click()
        expect(page.locator("#new-chat")).not_to_be_in_viewport()
        page.screenshot(path=str(SCREENSHOTS / "phone.png"))
        browser.close()
        assert page.errors == []


def test_deleting_a_conversation_with_a_reply_streaming_stops_it_first(patient_page, patient_person):
    """The reply may run to 600 tokens (a minute or more here); deleting its conversation stops it on the worker
    at once, so what the worker charges for it is the few tokens written before the delete."""
    from chat.limits import quotas
    from chat.models import ChatDefaults, Conversation, Message

    page = patient_page
    user = patient_person[0]
    db(lambda: ChatDefaults.objects.filter(user=user).update(params={"max_new_tokens": 600}))
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    page.fill("#input", "Write a long story about a fox and a crow.")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant")).to_have_class("msg assistant streaming")
    page.click("#delete")
    expect(page.locator("#delete-note")).to_be_visible()  # "The reply being written is stopped first."
    page.click("#delete-confirm")
    expect(page.locator("#title")).to_have_text("New chat")
    expect(page.locator("#conversations li")).to_have_count(0)
    expect(page.locator("#send")).to_be_enabled()
    assert not db(lambda: Conversation.objects.filter(owner=patient_person[0]).exists())
    assert not db(lambda: Message.objects.filter(conversation__owner=patient_person[0]).exists())
    # The worker charges the reply when it ends: prompt and the tokens written before the delete, far from 600.
    charged = wait_until(
        lambda: quotas.tokens_used_today(user.pk), "the worker ended the reply", timeout=180, page=page
    )
    assert charged < 300, charged
    db(lambda: ChatDefaults.objects.filter(user=user).update(params={"max_new_tokens": 24}))
    page.click("#new-chat")  # the page keeps the defaults it loaded; a reload reads them again
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    say(page, "Hello")  # the worker took the stop in its stride: the next reply is written
