"""The review panel in real Chromium: a reviewer works the queue and reads a transcript, and watches the live
generations page refresh itself, under the site's CSP."""

import pytest

from tests.browser.chromium import (
    CHROMIUM,
    LAUNCH_ARGS,
    SCREENSHOTS,
    admin_log_in,
    skip_without_chromium,
    wait_until,
    watch_for_script_errors,
)

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

PASSWORD = "a-long-test-password"
PAUSE_REFRESH_S = 3  # the live page's interval while the test ticks a row: far longer than ticking takes


@pytest.fixture
def reviewer(transactional_db, django_user_model, reviewer_group):
    """A reviewer, and three people's chats: one with a 👎 and a gold answer, one failed, one plain. Stored before
    the browser starts (Playwright's event loop makes the ORM refuse calls once it runs)."""
    from chat.models import Feedback, GoldAnswer, Message
    from tests.chat.admin.conftest import make_chat

    user = django_user_model.objects.create_user(username="rita", password=PASSWORD, is_staff=True)
    user.groups.add(reviewer_group)
    people = [django_user_model.objects.create_user(username=n) for n in ("ann", "ben", "cat")]
    make_chat(people[2], turns=2, title="Plain questions about tea")
    make_chat(people[1], turns=2, title="A reply that failed", reply_status="failed")
    disliked = make_chat(
        people[0],
        turns=3,
        title="Capital of Australia",
        content="What is the capital of Australia? <script>alert({n})</script>",
    )
    old = disliked.replies[2]
    Message.objects.filter(pk=old.pk).update(is_current=False, content="Sydney is the capital.")
    Message.objects.create(
        conversation=disliked,
        parent=old.parent,
        role="assistant",
        status="complete",
        content="Canberra is the capital of Australia.",
        finish_reason="stop",
        model_name="m1",
        completion_tokens=9,
        ttft_ms=51,
        tokens_per_s=21.5,
        prompt_tokens=30,
    )
    Feedback.objects.create(message=old, user=people[0], rating=-1, comment="Sydney is wrong")
    GoldAnswer.objects.create(message=old, content="Canberra.", author=user)
    return user


def test_a_reviewer_works_the_queue_and_reads_a_transcript(reviewer, live_server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        errors, dialogs = [], []
        watch_for_script_errors(page, errors)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        admin_log_in(page, live_server.url, "/admin/chat/reviewqueue/", "rita", PASSWORD)
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(3)
        # Negative feedback first, then the failure, then the rest.
        assert [rows.nth(i).locator("td, th").nth(1).inner_text() for i in range(3)] == [
            "Capital of Australia",
            "A reply that failed",
            "Plain questions about tea",
        ]
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "review-queue.png"))

        page.click("text=Capital of Australia")
        expect(page.locator("#content h1, #content h2").first).to_be_visible()
        body = page.locator("#content")
        expect(body).to_contain_text("Sydney is wrong")
        expect(body).to_contain_text("Canberra is the capital of Australia.")
        expect(body).to_contain_text("<script>alert(0)</script>")  # the person's markup, shown as text
        scripts = page.locator("#content script")  # the admin's own files only, none made from the transcript
        assert all(
            scripts.nth(i).get_attribute("src") and "alert" not in scripts.nth(i).inner_text()
            for i in range(scripts.count())
        )
        page.screenshot(path=str(SCREENSHOTS / "review-conversation.png"), full_page=True)

        page.select_option("select[name=state]", "needs_attention")
        page.fill("textarea[name=note]", "Wrong capital; gold answer added.")
        page.click("input[value='Save review']")
        expect(page.locator(".messagelist")).to_contain_text("Review saved.")
        browser.close()
    assert errors == [] and dialogs == [], (errors, dialogs)
    from chat.models import AuditEvent, Conversation

    assert Conversation.objects.get(title="Capital of Australia").review_state == "needs_attention"
    assert AuditEvent.objects.filter(action="opened_transcript", actor=reviewer).count() >= 2  # before and after


def test_the_live_page_refreshes_by_itself_and_pauses_while_a_row_is_ticked(
    reviewer, live_server, settings, monkeypatch
):
    """A reply queued after the page loaded appears on it with no navigation by the test (the page's script
    reloads it every CHAT_LIVE_REFRESH_S); while a row is ticked the reloads stop, and resume once it is not."""
    from chat.models import Conversation, Message

    settings.CHAT_LIVE_REFRESH_S = 1
    conversation = Conversation.objects.get(title="Plain questions about tea")

    def queue_a_reply() -> int:
        # The ORM refuses calls from inside Playwright's event loop; this one write is the test's, not the
        # page's, so the guard is lifted for it alone.
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        try:
            return Message.objects.create(
                conversation=conversation, role="assistant", status="queued", model_name="m1"
            ).pk
        finally:
            monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE")

    page_url = f"{live_server.url}/admin/chat/livegeneration/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 700})
        page.set_default_timeout(30_000)
        errors, loads = [], []
        watch_for_script_errors(page, errors)
        page.on("load", lambda _: loads.append(page.url))
        admin_log_in(page, live_server.url, "/admin/chat/livegeneration/", "rita", PASSWORD)
        expect(page.locator(".live-empty")).to_contain_text("No replies are being generated right now.")
        expect(page.locator(".live-refresh")).to_contain_text("refreshes every 1 s")

        reply = queue_a_reply()
        rows = page.locator("#result_list tbody tr")
        expect(rows).to_have_count(1, timeout=20_000)  # reloads come every second; this allows many
        expect(rows.first).to_contain_text("Plain questions about tea")
        expect(rows.first).to_contain_text("queued")
        assert page.url == page_url and len(loads) >= 3, loads  # the login, the page, and a reload of it

        # The pause: a longer interval, and the tick made right after a load, so it lands seconds before that
        # page's first reload would fire rather than racing it (a tick on a page already unloading is lost).
        settings.CHAT_LIVE_REFRESH_S = PAUSE_REFRESH_S
        slower = f"refreshes every {PAUSE_REFRESH_S} s"
        expect(page.locator(".live-refresh")).to_contain_text(slower, timeout=20_000)  # the next 1 s reload's page
        with page.expect_event("load"):  # a load of a page on the longer interval: its next reload is far off
            pass
        page.evaluate("window.tickedHere = true")  # a reload makes a new document, without this mark
        box = page.locator(f"input.action-select[value='{reply}']")
        box.check()
        ticked = len(loads)
        page.wait_for_timeout((PAUSE_REFRESH_S + 2) * 1000)  # past the interval's next turn, with room to load
        assert page.evaluate("window.tickedHere === true"), "the page reloaded while a row was ticked"
        expect(box).to_be_checked()
        assert len(loads) == ticked, f"the page reloaded while a row was ticked: {loads[ticked:]}"
        box.uncheck()
        wait_until(lambda: len(loads) > ticked, "the page reloads again once no row is ticked", timeout=20, page=page)
        assert page.evaluate("window.tickedHere === undefined")  # the mark goes with a reload: it would tell one
        browser.close()
    assert errors == [], errors


def test_a_transcript_marks_a_blind_compare_each_replys_model_and_worker_and_the_pick(reviewer, live_server):
    """One message answered by two models side by side (blind), the second picked: the rows say which two
    replies, which model and worker wrote each, that the pick was blind, and which one was picked."""
    from chat.models import Comparison, Conversation, Message

    owner = Conversation.objects.get(title="Plain questions about tea").owner
    conversation = Conversation.objects.create(owner=owner, title="Green or black tea?", model_name="m1")
    asked = Message.objects.create(
        conversation=conversation, role="user", content="Which tea has more caffeine, green or black?"
    )
    replies = [
        Message.objects.create(
            conversation=conversation,
            parent=asked,
            role="assistant",
            status="complete",
            finish_reason="stop",
            content=text,
            model_name=model,
            worker=f"{model}-worker-1",
            is_current=current,
            prompt_tokens=20,
            completion_tokens=len(text.split()),
            ttft_ms=60,
            tokens_per_s=20.0,
        )
        for text, model, current in (
            ("Green tea.", "m1", False),
            (
                "Black tea usually has more caffeine than green tea, though it varies with the leaf and brewing.",
                "m2",
                True,
            ),
        )
    ]
    Comparison.objects.create(prompt=asked, first=replies[0], second=replies[1], blind=True, chosen=replies[1])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        errors = []
        watch_for_script_errors(page, errors)
        admin_log_in(page, live_server.url, f"/admin/chat/conversation/{conversation.pk}/change/", "rita", PASSWORD)
        asked_row, first, second = (page.locator(f"#m{m.pk}") for m in (asked, *replies))
        expect(asked_row).to_contain_text(f"Compare: two models answered, #{replies[0].pk} and #{replies[1].pk}")
        expect(asked_row).to_contain_text(f"the person picked #{replies[1].pk}")
        expect(first).to_contain_text("model m1")
        expect(first).to_contain_text("worker m1-worker-1")
        expect(first).to_contain_text("not picked")
        expect(second).to_contain_text("model m2")
        expect(second.locator(".compare-picked")).to_have_text("picked")
        expect(second.locator(".compare")).to_contain_text("blind: the names were hidden until the pick")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#transcript").screenshot(path=str(SCREENSHOTS / "review-compare.png"))
        browser.close()
    assert errors == [], errors
