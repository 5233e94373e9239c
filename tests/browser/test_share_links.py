"""Share links in real Chromium against Django's live_server (no worker needed: the conversation is stored as a
finished one): the owner makes a link in the chat page's Share dialog; a browser that is not signed in reads the
branch, its reply's markup inert; a message written later is not there; the owner revokes the link on the Account
page and the link then says it is gone. Screenshots: docs/screenshots/share-*.png."""

import re

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

QUESTION = "What is two and two? <b>bold?</b>"
REPLY = (
    "**Four.** Here is why:\n\n- two\n- and two\n\n"
    '<script>window.pwned = 1</script> <img src="x" onerror="window.pwned = 2; alert(1)">\n\n'
    "```python\nprint(2 + 2)\n```\n\nIn symbols: $2 + 2 = 4$."
)
LATER = "A question asked after sharing"


def live_links():
    from chat.models import ShareLink

    return ShareLink.objects.filter(revoked_at__isnull=True).count()


def stored_conversation(user):
    from chat.models import Conversation, Message

    conversation = Conversation.objects.create(owner=user, title="Arithmetic, shared")
    question = Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    Message.objects.create(conversation=conversation, parent=question, role="assistant", content=REPLY)
    return conversation.pk


def add_later_message(conversation_id):
    from chat.models import Message

    last = Message.objects.filter(conversation_id=conversation_id).order_by("id").last()
    Message.objects.create(conversation_id=conversation_id, parent=last, role="user", content=LATER)


def context_page(browser, base, errors, cookie=None, expected=(), **options):
    options.setdefault("viewport", {"width": 1280, "height": 800})
    # Django's live_server serves no websockets: the chat page's socket fails its handshake, expected here.
    page = new_page(
        browser, base, errors, cookie=cookie, expected=("/ws/chat/' failed", *expected), timeout=30_000, **options
    )
    page.dialogs = []
    page.dismiss_dialogs = lambda d: (page.dialogs.append(d.message), d.dismiss())  # an alert() would be XSS
    page.on("dialog", page.dismiss_dialogs)
    return page


def assert_shared_page_is_inert(page):
    expect(page.locator(".msg.user .body")).to_have_text(QUESTION)  # typed text is text
    reply = page.locator(".msg.assistant .body")
    expect(reply.locator("strong")).to_have_text("Four.")  # Markdown rendered
    expect(reply.locator("li")).to_have_count(2)
    expect(reply.locator(".katex")).to_have_count(1)  # math typeset, as on the chat page
    expect(reply).to_contain_text("<script>window.pwned = 1</script>")  # raw HTML shown as text
    assert page.locator(".msg script, .msg img, .msg b").count() == 0
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.dialogs == []
    expect(page.get_by_text(LATER)).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_share_open_logged_out_and_revoke(transactional_db, live_server, make_user, session_cookie):
    owner = make_user("olga")
    conversation_id = stored_conversation(owner)
    cookie = session_cookie(owner)
    base = live_server.url
    errors: list[str] = []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        chat = context_page(browser, base, errors, cookie)
        chat.goto(f"{base}/#{conversation_id}")
        expect(chat.locator("#title")).to_have_text("Arithmetic, shared")
        chat.click("#share")
        dialog = chat.locator("#share-dialog")
        expect(dialog).to_be_visible()
        chat.click("#share-create")
        link = chat.locator("#share-url")
        expect(link).to_have_value(re.compile(rf"^{re.escape(base)}/s/[A-Za-z0-9_-]{{43}}/$"))
        url = link.input_value()
        assert url.rsplit("/s/", 1)[1] != f"{conversation_id}/"  # the token, never the conversation's id
        expect(chat.locator("#share-meta")).to_contain_text("2 messages")
        chat.screenshot(path=str(SCREENSHOTS / "share-dialog.png"))
        chat.click("#share-close")
        expect(dialog).to_be_hidden()
        # Another part of the page (the sidebar's ⋯ menu) opens the same dialog: it finds the link just made.
        chat.evaluate(f"window.chatShare.open({conversation_id})")
        expect(link).to_have_value(url)
        chat.click("#share-close")

        db(lambda: add_later_message(conversation_id))

        # The link, once revoked, answers 404 (its page says it is gone): the one failed load expected (the phone
        # and dark pages below load the same files and expect none).
        stranger = context_page(browser, base, errors, expected=("status of 404",))
        stranger.goto(url)
        expect(stranger.locator("h1")).to_have_text("Arithmetic, shared")
        assert_shared_page_is_inert(stranger)
        stranger.screenshot(path=str(SCREENSHOTS / "share-public-desktop.png"), full_page=True)

        phone = context_page(browser, base, errors, viewport={"width": 390, "height": 780}, is_mobile=True)
        phone.goto(url)
        assert_shared_page_is_inert(phone)
        phone.screenshot(path=str(SCREENSHOTS / "share-public-phone.png"), full_page=True)

        dark = context_page(browser, base, errors, color_scheme="dark")
        dark.goto(url)
        assert_shared_page_is_inert(dark)
        dark.screenshot(path=str(SCREENSHOTS / "share-public-dark.png"), full_page=True)

        chat.click("#account-link")
        rows = chat.locator("#shares .share-row")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Arithmetic, shared")
        expect(rows.first).to_contain_text("2 messages")
        chat.screenshot(path=str(SCREENSHOTS / "share-account.png"), full_page=True)
        asked, answers = [], [False, True]  # asked first: Cancel keeps the link, OK revokes it

        def answer(dialog):
            asked.append(dialog.message)
            dialog.accept() if answers.pop(0) else dialog.dismiss()

        chat.remove_listener("dialog", chat.dismiss_dialogs)
        chat.on("dialog", answer)
        rows.first.get_by_role("button", name="Revoke").click()
        expect(rows).to_have_count(1)
        assert asked == ["Revoke this link? Anyone who has it can no longer read the conversation."]
        rows.first.get_by_role("button", name="Revoke").click()
        expect(chat.locator("#shares")).to_contain_text("You have no share links")

        stranger.reload()
        expect(stranger.locator("h1")).to_have_text("This share link is gone")
        expect(stranger.locator("#share-gone")).to_contain_text("its owner revoked it")
        expect(stranger.locator(".msg")).to_have_count(0)
        stranger.screenshot(path=str(SCREENSHOTS / "share-gone.png"))

        # Back on the chat page, the dialog offers a new link: the revoked one is not shown again.
        chat.goto(f"{base}/#{conversation_id}")
        expect(chat.locator("#title")).to_have_text("Arithmetic, shared")
        chat.click("#share")
        expect(chat.locator("#share-create")).to_be_visible()
        expect(chat.locator("#share-url")).to_be_hidden()

        phone_owner = context_page(
            browser, base, errors, cookie, viewport={"width": 390, "height": 780}, is_mobile=True, color_scheme="dark"
        )
        phone_owner.goto(f"{base}/#{conversation_id}")
        expect(phone_owner.locator("#title")).to_have_text("Arithmetic, shared")
        phone_owner.click("#share")
        phone_owner.click("#share-create")
        expect(phone_owner.locator("#share-url")).to_have_value(re.compile(r"/s/"))
        assert phone_owner.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        phone_owner.screenshot(path=str(SCREENSHOTS / "share-dialog-phone-dark.png"))
        phone_owner.click("#share-revoke")  # the dialog's own Revoke
        expect(phone_owner.locator("#share-status")).to_have_text("The link was revoked: it no longer works.")
        expect(phone_owner.locator("#share-create")).to_be_focused()
        assert db(live_links) == 0
        browser.close()
    assert errors == [], f"script errors on the page: {errors}"
