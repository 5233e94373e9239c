"""Documents in the chat, in real Chromium against the real stack (the bundled model writes the reply): a long
document attached with the 📎 button, a question whose answer is in one of its passages, the prompt the worker
built quoting that passage (read back from the reply's stored sources), the source shown under the reply and
still there after a reload; a hostile file refused with a sentence; phone width and dark mode."""

import pytest

from tests.browser.chromium import SCREENSHOTS, skip_without_chromium

skip_without_chromium()

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.browser.people import DONE, db, open_browser  # noqa: E402
from tests.helpers.documents import FACT, QUESTION, long_text_with_fact, pdf_many_pages  # noqa: E402

pytestmark = pytest.mark.e2e


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")


def test_a_question_is_answered_from_the_attached_documents_passage_with_its_source_shown(person, live_stack, tmp_path):
    from chat.models import Attachment, Conversation, Message, Passage

    user, cookie = person
    book = tmp_path / "lighthouse-notes.md"
    book.write_text(long_text_with_fact())
    hostile = tmp_path / "ten-thousand-pages.pdf"
    hostile.write_bytes(pdf_many_pages(10_000))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as p:
        browser, page = open_browser(p, live_stack.origin, cookie, viewport=(1280, 800))
        page.goto(live_stack.origin + "/")
        expect(page.locator("#connection")).to_have_text("connected")

        # A hostile file: a sentence next to the input, nothing attached.
        page.locator("#attach-input").set_input_files(str(hostile))
        expect(page.locator("#error")).to_contain_text("too many pages")
        expect(page.locator("#attachments .attachment-chip")).to_have_count(0)

        page.locator("#attach-input").set_input_files(str(book))
        chip = page.locator("#attachments .attachment-chip")
        expect(chip).to_have_count(1)
        expect(chip).to_contain_text("lighthouse-notes.md")
        expect(chip).to_contain_text("passages")
        page.screenshot(path=str(SCREENSHOTS / "documents-attached.png"))

        page.fill("#input", QUESTION)
        page.press("#input", "Enter")
        expect(page.locator("#attachments .attachment-chip")).to_have_count(0)  # sent with the message
        expect(page.locator(".msg.user .attached .attachment-chip")).to_contain_text("lighthouse-notes.md")
        reply = page.locator(".msg.assistant")
        expect(reply).to_have_class("msg assistant complete", timeout=DONE)

        # What the worker put in the prompt: the reply's sources, each a passage of the document.
        stored = db(lambda: Message.objects.get(conversation__owner=user, role="assistant"))
        attachment = db(lambda: Attachment.objects.get(owner=user))
        assert attachment.message_id == stored.parent_id
        quoted = db(
            lambda: [
                Passage.objects.get(attachment=attachment, seq=s["passage"]).text
                for s in stored.sources
                if not s["whole"]
            ]
        )
        assert any(FACT in text for text in quoted), stored.sources
        fact_source = next(s for s, text in zip(stored.sources, quoted) if FACT in text)
        assert stored.prompt_tokens > len(FACT.split())  # the passages went into the prompt the model read

        sources = reply.locator(".sources .source")
        expect(sources.first).to_be_visible()
        expect(reply.locator(".sources")).to_contain_text(f"passage {fact_source['passage']}")
        expect(reply.locator(".sources")).to_contain_text("lighthouse-notes.md")
        page.screenshot(path=str(SCREENSHOTS / "documents-desktop.png"))

        page.reload()  # kept, as stored
        expect(page.locator(".msg.assistant .sources .source")).to_have_count(len(stored.sources))
        expect(page.locator(".msg.assistant .sources")).to_contain_text(f"passage {fact_source['passage']}")
        expect(page.locator(".msg.user .attached")).to_contain_text("lighthouse-notes.md")
        conversation = page.evaluate("() => location.hash")
        browser.close()
        # The one refusal asked for (the 10,000-page PDF's 400, which Chromium logs); nothing else.
        refused = [e for e in page.errors if "status of 400" in e and "/attachments/" in e]
        assert len(refused) == 1 and [e for e in page.errors if e not in refused] == [], page.errors

    # A short title: a long one runs past a phone's width whatever the documents (the header's title, not ours).
    db(lambda: Conversation.objects.filter(owner=user).update(title="The parrot"))
    for scheme, name in (("light", "documents-phone.png"), ("dark", "documents-dark.png")):
        with sync_playwright() as p:
            browser, page = open_browser(p, live_stack.origin, cookie, viewport=(390, 780))
            page.emulate_media(color_scheme=scheme)
            page.goto(live_stack.origin + "/" + conversation)
            expect(page.locator(".msg.assistant .sources .source").first).to_be_visible()
            # A pending file in the composer, too: dropped onto it (light), pasted into the input (dark).
            text = book.read_text()
            if scheme == "light":
                page.evaluate(
                    "text => { const d = new DataTransfer(); d.items.add(new File([text], 'lighthouse-notes.md'));"
                    " document.getElementById('composer').dispatchEvent("
                    "new DragEvent('drop', {dataTransfer: d, bubbles: true, cancelable: true})); }",
                    text,
                )
            else:
                page.evaluate(
                    "text => { const d = new DataTransfer(); d.items.add(new File([text], 'lighthouse-notes.md'));"
                    " document.getElementById('input').dispatchEvent("
                    "new ClipboardEvent('paste', {clipboardData: d, bubbles: true, cancelable: true})); }",
                    text,
                )
            expect(page.locator("#attachments .attachment-chip")).to_have_count(1)
            page.locator(".msg.assistant .sources").scroll_into_view_if_needed()
            assert no_horizontal_scroll(page)
            page.screenshot(path=str(SCREENSHOTS / name))
            page.locator("#attachments .remove").click()  # taken back
            expect(page.locator("#attachments .attachment-chip")).to_have_count(0)
            browser.close()
            assert page.errors == [], page.errors
    assert db(lambda: Attachment.objects.filter(owner=user).count()) == 1  # the dropped and pasted taken back


def test_the_review_panels_transcript_shows_the_documents_and_the_sources(
    live_server, transactional_db, django_user_model, reviewer_group
):
    from chat.documents import services as document_services
    from chat.models import Attachment, Conversation, Message
    from tests.browser.chromium import CHROMIUM, LAUNCH_ARGS, admin_log_in, watch_for_script_errors
    from tests.helpers.documents import pdf_bytes

    password = "a-long-test-password"
    rita = django_user_model.objects.create_user(username="rita", password=password, is_staff=True)
    rita.groups.add(reviewer_group)
    owner = django_user_model.objects.create_user(username="ann")
    pdf = document_services.attachment_upload(
        user=owner, name="report.pdf", data=pdf_bytes(["Harbour ferry timetable.", FACT])
    )
    conversation = Conversation.objects.create(owner=owner, title="The parrot")
    question = Message.objects.create(conversation=conversation, role="user", content=QUESTION)
    Attachment.objects.filter(pk=pdf.pk).update(conversation=conversation, message=question)
    sources = [
        {"n": 1, "attachment": pdf.pk, "name": "report.pdf", "passage": 2, "passages": 2, "page": 2, "whole": False}
    ]
    Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        status="complete",
        finish_reason="stop",
        content="It is named Bartholomew Quince [1].",
        sources=sources,
    )
    path = f"/admin/chat/conversation/{conversation.pk}/change/"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        watch_for_script_errors(page, errors)
        admin_log_in(page, live_server.url, path, "rita", password)
        attached = page.locator("#transcript details.attachment")
        expect(attached).to_contain_text("attached: report.pdf")
        attached.locator("summary").click()
        expect(attached.locator(".attachment-text")).to_contain_text("Bartholomew Quince")
        expect(page.locator("#transcript .sources")).to_contain_text("[1] report.pdf, page 2, passage 2")
        page.locator("#transcript").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "documents-review.png"), full_page=True)
        browser.close()
        assert errors == []
