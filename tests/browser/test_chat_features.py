"""The chat page's features in real Chromium against the real stack (the bundled model writes every reply):
branches (edit and resend, switch, regenerate an older reply), feedback, settings, the sidebar (groups, paging,
search, rename, delete), export, reconnect, keyboard and phone width. Rows are read back from the database."""
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.browser.chromium import (CHROMIUM, LAUNCH_ARGS, SCREENSHOTS, skip_without_chromium, wait_until,
                                    watch_for_script_errors)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = pytest.mark.e2e
DONE = 240_000


def db(fn):
    """Run an ORM read outside Playwright's event loop (Django refuses sync ORM calls inside a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn).result()


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


def open_browser(p, base, cookie, viewport=(1200, 760)):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]}, accept_downloads=True)
    name, value = cookie.split("=", 1)
    context.add_cookies([{"name": name, "value": value, "url": base}])
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.errors = []
    watch_for_script_errors(page, page.errors)
    return browser, page


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


def say(page, text):
    """Send a message and wait until its reply has finished."""
    before = page.locator(".msg.assistant.complete, .msg.assistant.stopped").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant.complete, .msg.assistant.stopped")).to_have_count(before + 1, timeout=DONE)


def bodies(page):
    return [t.strip() for t in page.locator(".msg .body").all_inner_texts()]


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
    reply = db(lambda: Message.objects.filter(conversation__owner=person[0], role="assistant")
               .select_related("conversation").order_by("-id").first())
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
        Message.objects.create(conversation=c, parent=q, role="assistant",
                               content="The old lighthouse keeper lit the lamp." if n == 3 else "An answer.")
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

    say(page, "How do plants make food from sunlight?")
    first_words = "How do plants make food from sunlight?"
    old = db(lambda: Conversation.objects.get(owner=person[0]))
    page.click("#new-chat")
    wait_until(lambda: db(lambda: Conversation.objects.get(owner=person[0]).title) != first_words,
               "the model's title is stored", page=page)
    title = db(lambda: Conversation.objects.get(owner=person[0]).title)
    expect(page.locator(f'#conversations li[data-id="{old.pk}"] a')).to_have_text(title)
    expect(page.locator("#title")).to_have_text("New chat")
    say(page, "And how do animals?")  # a new conversation, not a turn of the old one
    conversations = db(lambda: list(Conversation.objects.filter(owner=person[0]).order_by("id")))
    assert len(conversations) == 2 and conversations[0].title == title
    expect(page.locator("#conversations a.current")).to_have_text("And how do animals?")
    expect(page.locator(".msg.user")).to_have_count(1)


def test_a_dropped_socket_reconnects_and_the_reply_finishes_once(patient_person, live_stack):
    from chat.models import Message

    sockets, refused = [], []

    def through(ws):
        if sockets and len(refused) < 3:  # the server stays away for three more tries
            refused.append(ws)
            ws.close()
            return
        ws.connect_to_server()
        sockets.append(ws)

    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, patient_person[1])
        page.route_web_socket("**/ws/chat/", through)
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        page.fill("#input", "Write a long story about a lighthouse keeper and a storm.")
        page.press("#input", "Enter")
        reply = page.locator(".msg.assistant")
        expect(reply).to_have_class("msg assistant streaming")
        wait_until(lambda: len(reply.locator(".body").inner_text()) > 20, "some text arrived", page=page)
        sockets[-1].close()  # the network drops mid-reply
        seen = []

        def status():  # the waits the page announces, each shown for a second or more
            text = page.locator("#connection").inner_text()
            if text.startswith("reconnecting") and (not seen or seen[-1] != text):
                seen.append(text)
            return len(sockets) == 2 and text == "connected"
        wait_until(status, "the page reconnected", timeout=30, page=page)
        # A socket dropped at once is a failed try: each waits twice as long as the one before, and says so.
        assert seen == ["reconnecting… (in 1 s)", "reconnecting… (in 2 s)", "reconnecting… (in 4 s)"], seen
        assert len(refused) == 3
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        expect(page.locator(".msg.assistant")).to_have_count(1)
        # The page compares the text that streamed in with the stored text at the end: nothing lost or doubled.
        assert page.locator("#messages").get_attribute("data-stream-mismatches") is None
        stored = db(lambda: Message.objects.get(conversation__owner=patient_person[0], role="assistant"))
        assert stored.status == "complete" and stored.content
        browser.close()
        assert page.errors == []


def test_a_new_chat_whose_first_frames_were_lost_still_appears(person, live_stack):
    """The network loses a new conversation's conversation and message frames; its deltas still come. The page
    reloads the list, finds the new conversation and opens it: question, reply and title all appear. Then a new
    chat loses only its conversation frame and its question's message frame: the reply's message frame (a
    conversation the list lacks) makes the page open the whole conversation, question included."""
    dropped = []
    lose = {"conversation", "user", "assistant"}  # the conversation frame, and message frames by their role

    def lossy(ws):
        server = ws.connect_to_server()

        def to_page(message):
            frame = json.loads(message)
            kind = frame["message"]["role"] if frame["type"] == "message" else frame["type"]
            if kind in lose and "seq" not in frame:
                dropped.append(frame["type"])
                return
            ws.send(message)
        server.on_message(to_page)

    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, person[1])
        page.route_web_socket("**/ws/chat/", lossy)
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        page.fill("#input", "Name three rivers.")
        page.press("#input", "Enter")
        expect(page.locator(".msg.user .body")).to_have_text("Name three rivers.")
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        expect(page.locator("#conversations li")).to_have_count(1)
        assert dropped[:3] == ["conversation", "message", "message"]

        lose.discard("assistant")  # the next chat loses its conversation frame and its question's message frame
        dropped.clear()
        page.click("#new-chat")
        page.fill("#input", "Name three lakes.")
        page.press("#input", "Enter")
        expect(page.locator(".msg.user .body")).to_have_text("Name three lakes.")
        expect(page.locator(".msg.assistant")).to_have_class("msg assistant complete", timeout=DONE)
        expect(page.locator("#conversations li")).to_have_count(2)
        expect(page.locator(".msg")).to_have_count(2)
        assert dropped[:2] == ["conversation", "message"]
        browser.close()
        assert page.errors == []


@pytest.fixture
def patient_page(patient_person, live_stack):
    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, patient_person[1])
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")
        yield page
        browser.close()
        assert page.errors == [], f"script errors on the page: {page.errors}"


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
    expect(page.locator("#error")).to_contain_text("You have sent 1 message in the last minute, the most this "
                                                   "site allows; try again in")
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
    from chat import quotas
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
    charged = wait_until(lambda: quotas.tokens_used_today(user.pk), "the worker ended the reply", timeout=180,
                         page=page)
    assert charged < 300, charged
    db(lambda: ChatDefaults.objects.filter(user=user).update(params={"max_new_tokens": 24}))
    page.click("#new-chat")  # the page keeps the defaults it loaded; a reload reads them again
    page.reload()
    expect(page.locator("#connection")).to_have_text("connected")
    say(page, "Hello")  # the worker took the stop in its stride: the next reply is written
