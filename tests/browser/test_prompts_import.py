"""The prompt library and the import in real Chromium against Django's live_server (nothing is generated, so no
worker is needed): `/name` with a `{{variable}}` fills the input and sends nothing; a prompt made on the Prompts
page; a ChatGPT export made here, uploaded through the import page, appears in the sidebar and opens with its
messages and both branches; a hostile file gets a sentence. Desktop, phone and dark, with screenshots."""

import json

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    new_page,
    skip_without_chromium,
)
from tests.browser.people import db

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

# Django's live_server serves no websockets: the chat page's socket fails its handshake and retries, expected.
NO_SOCKET = ("/ws/chat/' failed", "WebSocket")
T0 = 1_700_000_000.0
OVERFLOW = "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"


def open_page(p, base, cookie, *, width=1280, height=800, dark=False):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    errors = []
    page = new_page(
        browser,
        base,
        errors,
        cookie=cookie,
        expected=(*NO_SOCKET, "status of 400"),
        timeout=30_000,
        viewport={"width": width, "height": height},
        color_scheme="dark" if dark else "light",
        is_mobile=width < 500,
    )
    page.errors = errors
    return browser, page


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def test_slash_prompt_with_a_variable_fills_the_input_and_sends_nothing(
    transactional_db, live_server, make_user, session_cookie
):
    from django.contrib.auth.models import Permission

    from chat.models import Message
    from chat.prompts import services

    ines = make_user("ines")
    staff = make_user("staff")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="publish_prompt"))
    staff = type(staff).objects.get(pk=staff.pk)
    services.prompt_create(user=ines, name="haiku", title="A haiku", text="Write a haiku about {{topic}}.")
    services.prompt_create(user=ines, name="summarise", title="Summarise a text", text="Summarise this in 3 lines:")
    services.prompt_create(
        user=staff, name="review", title="Review code kindly", text="Review this {{language}} code:", published=True
    )
    cookie = session_cookie(ines)
    with sync_playwright() as p:
        browser, page = open_page(p, live_server.url, cookie)
        page.goto(live_server.url + "/")
        page.click("#input")
        page.keyboard.type("/")
        options = page.locator("#prompt-suggestions li[role=option]")
        expect(options).to_have_count(3)
        expect(page.locator("#prompt-suggestions li[data-name=review] .tag")).to_have_text("shared")
        shot(page, "prompts-suggestions.png")
        page.keyboard.type("ha")
        expect(options).to_have_count(1)
        page.keyboard.press("Enter")  # picks, does not send
        dialog = page.locator("#prompt-fill")
        expect(dialog).to_be_visible()
        expect(page.locator("#prompt-fill label")).to_have_text("topic")
        page.keyboard.type("the sea")
        shot(page, "prompts-variables.png")
        page.keyboard.press("Enter")
        expect(dialog).to_be_hidden()
        expect(page.locator("#input")).to_have_value("Write a haiku about the sea.")
        expect(page.locator("#input")).to_be_focused()

        # The keyboard: arrows move, Tab picks; a prompt without variables goes straight in, after the text.
        page.keyboard.type(" /")
        expect(options).to_have_count(3)
        page.keyboard.press("ArrowDown")
        page.keyboard.press("ArrowDown")
        expect(page.locator("#prompt-suggestions li[aria-selected=true]")).to_have_attribute("data-name", "summarise")
        page.keyboard.press("Tab")
        expect(page.locator("#input")).to_have_value("Write a haiku about the sea. Summarise this in 3 lines:")
        # Escape closes the list and leaves the text; a click picks.
        page.fill("#input", "")
        page.keyboard.type("/")
        expect(options).to_have_count(3)
        page.keyboard.press("Escape")
        expect(page.locator("#prompt-suggestions")).to_be_hidden()
        expect(page.locator("#input")).to_have_value("/")
        page.keyboard.type("rev")
        page.click("#prompt-suggestions li[data-name=review]")
        page.fill("#prompt-fill input", "Python")
        page.click("#prompt-fill-insert")
        expect(page.locator("#input")).to_have_value("Review this Python code:")
        # A slash before a word no prompt has is left alone (a path, say).
        page.fill("#input", "")
        page.keyboard.type("see /usr")
        expect(page.locator("#prompt-suggestions")).to_be_hidden()
        assert db(lambda: Message.objects.count()) == 0  # nothing was sent
        browser.close()
        assert page.errors == [], page.errors

        # The Prompts page: make one there, at phone width, then light and dark screenshots.
        browser, page = open_page(p, live_server.url, cookie, width=390, height=844)
        page.goto(live_server.url + "/")
        page.click("#input")
        page.keyboard.type("/")
        expect(page.locator("#prompt-suggestions li[role=option]")).to_have_count(3)
        assert page.evaluate(OVERFLOW) <= 0
        shot(page, "prompts-suggestions-phone.png")
        page.goto(live_server.url + "/settings/prompts/")
        page.fill("#prompt-name", "standup")
        page.fill("#prompt-title", "Stand-up notes")
        page.fill("#prompt-text", "Turn these notes into a stand-up update for {{team}}:")
        page.click("#prompt-form button[type=submit]")
        expect(page.locator("#my-prompts li")).to_have_count(3)
        expect(page.locator("#shared-prompts li")).to_have_count(1)
        assert page.evaluate(OVERFLOW) <= 0
        shot(page, "prompts-page-phone.png")
        page.fill("#prompt-name", "standup")
        page.fill("#prompt-text", "again")
        page.click("#prompt-form button[type=submit]")
        expect(page.locator(".refusal")).to_have_attribute("data-code", "name_taken")
        browser.close()
        assert page.errors == [], page.errors
        for dark, name in ((False, "prompts-page.png"), (True, "prompts-page-dark.png")):
            browser, page = open_page(p, live_server.url, cookie, dark=dark, height=1000)
            page.goto(live_server.url + "/settings/prompts/")
            expect(page.locator("#my-prompts li")).to_have_count(3)
            shot(page, name)
            if dark:
                page.goto(live_server.url + "/")
                page.click("#input")
                page.keyboard.type("/s")
                expect(page.locator("#prompt-suggestions li[role=option]")).to_have_count(2)  # names with s
                shot(page, "prompts-suggestions-dark.png")
            browser.close()
            assert page.errors == [], page.errors


def test_a_slash_word_typed_before_the_prompts_arrive_lists_them_when_they_do(
    transactional_db, live_server, make_user, session_cookie
):
    """The list is fetched at the first "/": "/s" typed before it arrives matched none of the none there were and
    closed the list (a slash before a word no prompt has); once the prompts come, "/s" lists its two. The fetch is
    held here until both keys are typed, so the order is certain (it failed CI at random before)."""
    from chat.prompts import services

    ines = make_user("ines")
    services.prompt_create(user=ines, name="haiku", title="A haiku", text="Write a haiku about {{topic}}.")
    services.prompt_create(user=ines, name="summarise", title="Summarise a text", text="Summarise this:")
    services.prompt_create(user=ines, name="sonnet", title="A sonnet", text="Write a sonnet.")
    cookie = session_cookie(ines)
    with sync_playwright() as p:
        browser, page = open_page(p, live_server.url, cookie)
        held, released = [], []

        def hold(route):  # the page's fetches of the list wait until both keys are typed
            if released:
                route.continue_()
            else:
                held.append(route)

        page.route("**/settings/prompts/list.json", hold)
        page.goto(live_server.url + "/")
        page.click("#input")
        page.keyboard.type("/s")
        for _ in range(100):  # the fetch has been asked for, and is held
            if held:
                break
            page.wait_for_timeout(50)
        expect(page.locator("#prompt-suggestions")).to_be_hidden()  # nothing to list yet
        released.append(True)
        for route in held:
            route.continue_()
        options = page.locator("#prompt-suggestions li[role=option]")
        expect(options).to_have_count(2)
        assert sorted(options.evaluate_all("els => els.map((e) => e.dataset.name)")) == ["sonnet", "summarise"]
        browser.close()
        assert page.errors == [], page.errors


def chatgpt_export() -> list:
    def node(key, parent, role, text, t, children=()):
        message = None
        if role:
            message = {"author": {"role": role}, "create_time": t, "content": {"content_type": "text", "parts": [text]}}
        return {"id": key, "parent": parent, "children": list(children), "message": message}

    mapping = {
        "root": node("root", None, None, None, None, ["u1", "u2"]),
        "u1": node("u1", "root", "user", "Which bird sings at dawn?", T0, ["a1"]),
        "a1": node("a1", "u1", "assistant", "The blackbird, often first.", T0 + 1),
        "u2": node("u2", "root", "user", "Which bird sings at dusk?", T0 + 5, ["a2"]),
        "a2": node("a2", "u2", "assistant", "The **robin** keeps singing into the dusk.", T0 + 6),
    }
    return [{"title": "Birdsong", "create_time": T0, "update_time": T0 + 6, "mapping": mapping, "current_node": "a2"}]


def test_import_a_chatgpt_export_through_the_page(transactional_db, live_server, make_user, session_cookie, tmp_path):
    from chat.models import Conversation

    ines, other = make_user("ines"), make_user("olga")
    good = tmp_path / "conversations.json"
    good.write_text(json.dumps(chatgpt_export()))
    bomb = tmp_path / "bomb.json"
    bomb.write_text("[" * 200_000 + "]" * 200_000)
    cookie, other_cookie = session_cookie(ines), session_cookie(other)
    with sync_playwright() as p:
        browser, page = open_page(p, live_server.url, cookie)
        page.goto(live_server.url + "/")
        page.click("#import-link")
        expect(page.locator("h1")).to_have_text("Import chats")
        shot(page, "import-page.png")
        page.set_input_files("#import-file", str(bomb))
        page.click("#import-form button[type=submit]")
        expect(page.locator("#import-error")).to_have_attribute("data-code", "import_invalid")
        expect(page.locator("#import-error")).to_contain_text("nested too deeply")
        shot(page, "import-refused.png")
        assert db(lambda: Conversation.objects.count()) == 0

        page.set_input_files("#import-file", str(good))
        page.click("#import-form button[type=submit]")
        conversation = db(lambda: Conversation.objects.get(owner=ines))
        expect(page).to_have_url(f"{live_server.url}/#{conversation.pk}")
        expect(page.locator(f'#conversations li[data-id="{conversation.pk}"]')).to_contain_text("Birdsong")
        expect(page.locator(f'#conversations li[data-id="{conversation.pk}"] .mark.imported')).to_be_visible()
        expect(page.locator("#title")).to_have_text("Birdsong")
        bodies = page.locator(".msg .body")
        expect(bodies).to_have_count(2)
        expect(bodies.nth(0)).to_have_text("Which bird sings at dusk?")
        expect(page.locator(".msg.user").first).to_contain_text("2/2")  # the other branch: the edited question
        expect(page.locator(".msg.assistant .body strong")).to_have_text("robin")  # Markdown, as any reply
        shot(page, "import-opened.png")
        browser.close()
        assert page.errors == [], page.errors

        for dark, width, height, name in (
            (True, 1280, 800, "import-page-dark.png"),
            (False, 390, 844, "import-page-phone.png"),
        ):
            browser, page = open_page(p, live_server.url, cookie, dark=dark, width=width, height=height)
            page.goto(live_server.url + "/conversations/import/")
            expect(page.locator("#import-form")).to_be_visible()
            assert page.evaluate(OVERFLOW) <= 0
            shot(page, name)
            browser.close()
            assert page.errors == [], page.errors

        # Another person's list does not have it, and its address opens nothing for them.
        browser, page = open_page(p, live_server.url, other_cookie)
        page.goto(f"{live_server.url}/#{conversation.pk}")
        expect(page.locator("#error")).to_contain_text("could not be opened")
        expect(page.locator("#conversations li")).to_have_count(0)
        browser.close()
