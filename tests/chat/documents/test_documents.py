"""Attachments with the database: stored, ranked by the database's own full-text search (run this file on SQLite
and on PostgreSQL: DATABASE_URL), quoted into the prompt with their sources, linked by send to their message,
nobody else's, exported, downloaded, deleted with their conversation; the upload endpoint's refusals."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from chat.accounts.personal_data import personal_data_chunks
from chat.conversations import exports, organise
from chat.conversations import selectors as conversation_selectors
from chat.conversations import services as conversation_services
from chat.documents import prompt, search
from chat.documents import services as document_services
from chat.errors import ChatError
from chat.events import done_frame
from chat.frames import check_frame
from chat.models import Attachment, Conversation, Message, Passage
from chat.replies import selectors as reply_selectors
from tests.helpers.documents import FACT, QUESTION, docx_zip_bomb, long_text_with_fact, pdf_bytes, pdf_many_pages

pytestmark = pytest.mark.django_db


def upload(user, name="notes.txt", text=None, data=None):
    return document_services.attachment_upload(user=user, name=name, data=data if data is not None else text.encode())


def send(user, content, attachments=None, conversation_id=None):
    return conversation_services.message_send(
        user=user, conversation_id=conversation_id, content=content, attachments=attachments
    )


def test_an_upload_is_stored_as_the_persons_pending_attachment_with_its_passages(make_user):
    alice = make_user()
    attachment = upload(alice, "book.md", long_text_with_fact())
    assert attachment.owner == alice and attachment.message is None and attachment.conversation is None
    passages = list(Passage.objects.filter(attachment=attachment))
    assert len(passages) > 10 and [p.seq for p in passages] == list(range(1, len(passages) + 1))
    assert sum(FACT in p.text for p in passages) == 1


def test_the_database_full_text_search_finds_the_passage_that_answers(make_user):
    alice = make_user()
    attachment = upload(alice, "book.md", long_text_with_fact())
    other = upload(make_user("bob"), "bob.md", "The lighthouse keeper's parrot is a secret of Bob's.")
    ids = search.ranked_passage_ids(attachment_ids=[attachment.pk], question=QUESTION, limit=3)
    assert ids, f"no passage found on {connection.vendor}"
    assert FACT in Passage.objects.get(pk=ids[0]).text  # the answer ranks first
    assert not Passage.objects.filter(pk__in=ids, attachment=other).exists()  # only the attachments asked about
    assert search.ranked_passage_ids(attachment_ids=[attachment.pk], question="zebra xylophone", limit=3) == []
    # What a person types is never query syntax: quotes, operators, NEAR, a column filter.
    hostile = "parrot\" OR text:* NEAR(a b) AND ) ( ' | ! & :* -- ;"
    assert search.ranked_passage_ids(attachment_ids=[attachment.pk], question=hostile, limit=3)


def test_a_pdf_passage_keeps_its_page(make_user):
    alice = make_user()
    pages = ["Opening remarks about the harbour ferry.", "Nothing here but canal tariffs.", FACT]
    attachment = upload(alice, "report.pdf", data=pdf_bytes(pages))
    assert attachment.pages == 3 and attachment.kind == "pdf"
    best = search.ranked_passage_ids(attachment_ids=[attachment.pk], question=QUESTION, limit=1)
    assert Passage.objects.get(pk=best[0]).page == 3


def test_send_links_pending_attachments_and_the_prompt_quotes_the_answering_passage(make_user):
    alice = make_user()
    short = upload(alice, "short.txt", "A short note: the meeting is on Tuesday.")
    long = upload(alice, "book.md", long_text_with_fact())
    sent = send(alice, QUESTION, [short.pk, long.pk])
    short.refresh_from_db(), long.refresh_from_db()
    assert (short.message_id, long.conversation_id) == (sent.user_message.pk, sent.conversation.pk)
    history = reply_selectors.history_for_prompt(message=sent.assistant_message)
    turns, sources = prompt.with_documents(history=history, message=sent.assistant_message)
    question = turns[-1]["content"]
    assert question.startswith(prompt.HEADER) and question.endswith(f"Question: {QUESTION}")
    assert "[1] short.txt (the whole document)" in question and "the meeting is on Tuesday" in question
    assert FACT in question  # the passage that answers, out of the long document
    fact_source = next(
        s for s in sources if not s["whole"] and FACT in Passage.objects.get(attachment=long, seq=s["passage"]).text
    )
    assert f"[{fact_source['n']}] book.md, passage {fact_source['passage']} of " in question  # says which
    assert len(question) < len(long.text)  # passages, not the whole long document
    # The reply keeps its sources: in its done frame and in the thread after a reload.
    document_services.reply_sources_store(message_id=sent.assistant_message.pk, sources=sources)
    Message.objects.filter(pk=sent.assistant_message.pk).update(status="complete", finish_reason="stop")
    reply = Message.objects.get(pk=sent.assistant_message.pk)
    frame = done_frame(reply)
    check_frame(frame)
    assert frame["sources"] == sources
    thread = conversation_selectors.thread_for_user(user=alice, conversation=sent.conversation)
    assert thread[1]["sources"] == sources
    assert [a["name"] for a in thread[0]["attachments"]] == ["short.txt", "book.md"]


def test_a_later_question_still_reads_the_conversations_documents(make_user):
    alice = make_user()
    doc = upload(alice, "book.md", long_text_with_fact())
    first = send(alice, "Summarise it please.", [doc.pk])
    Message.objects.filter(pk=first.assistant_message.pk).update(status="complete", content="A summary.")
    second = send(alice, QUESTION, conversation_id=first.conversation.pk)
    history = reply_selectors.history_for_prompt(message=second.assistant_message)
    turns, sources = prompt.with_documents(history=history, message=second.assistant_message)
    assert FACT in turns[-1]["content"] and sources
    assert turns[0]["content"] == "Summarise it please."  # only the question gets the block


def test_a_question_sharing_no_word_quotes_the_documents_opening_passages(make_user):
    alice = make_user()
    doc = upload(alice, "book.md", long_text_with_fact())
    sent = send(alice, "Summarise it.", [doc.pk])
    turns, sources = prompt.with_documents(
        history=reply_selectors.history_for_prompt(message=sent.assistant_message), message=sent.assistant_message
    )
    assert [s["passage"] for s in sources][0] == 1


def test_another_persons_attachment_cannot_be_sent_and_nothing_is_stored(make_user):
    alice, bob = make_user(), make_user("bob")
    bobs = upload(bob, "bob.txt", "Bob's private notes.")
    with pytest.raises(ChatError) as err:
        send(alice, "Read Bob's file", [bobs.pk])
    assert err.value.code == "not_found"
    assert Conversation.objects.count() == 0 and Message.objects.count() == 0
    bobs.refresh_from_db()
    assert bobs.message is None
    with pytest.raises(ChatError):  # nor taken back by another
        document_services.attachment_remove_pending(user=alice, attachment_id=bobs.pk)


def test_an_attachment_is_sent_once(make_user):
    alice = make_user()
    doc = upload(alice, "a.txt", "Some words.")
    first = send(alice, "one", [doc.pk])
    Message.objects.filter(pk=first.assistant_message.pk).update(status="complete")
    with pytest.raises(ChatError) as err:
        send(alice, "again", [doc.pk], conversation_id=first.conversation.pk)
    assert err.value.code == "not_found"


@pytest.mark.parametrize("ids,code", [(["1"], "bad_id"), ([True], "bad_id"), ([0], "bad_id"), ([-5], "bad_id")])
def test_malformed_attachment_ids_are_refused(make_user, ids, code):
    with pytest.raises(ChatError) as err:
        send(make_user(), "hi", ids)
    assert err.value.code == code and Message.objects.count() == 0


def test_bounds_per_message_conversation_and_person(make_user, settings):
    alice = make_user()
    settings.CHAT_ATTACHMENTS_PER_MESSAGE = 2
    ids = [upload(alice, f"{i}.txt", f"file {i}").pk for i in range(2)]
    with pytest.raises(ChatError) as err:
        upload(alice, "third.txt", "one too many")
    assert err.value.code == "too_many_attachments"
    settings.CHAT_ATTACHMENTS_PER_CONVERSATION = 3
    first = send(alice, "two files", ids)
    Message.objects.filter(pk=first.assistant_message.pk).update(status="complete")
    more = [upload(alice, f"m{i}.txt", f"more {i}").pk for i in range(2)]
    with pytest.raises(ChatError) as err:
        send(alice, "two more", more, conversation_id=first.conversation.pk)
    assert err.value.code == "too_many_attachments"
    settings.CHAT_ATTACHMENT_TOTAL_CHARS = 100
    Attachment.objects.filter(pk__in=more).delete()
    with pytest.raises(ChatError) as err:
        upload(alice, "big.txt", "x" * 95)
    assert err.value.code == "attachments_full"


def test_deleting_the_conversation_or_the_account_deletes_the_documents_and_their_index(make_user):
    alice = make_user()
    doc = upload(alice, "book.md", long_text_with_fact())
    sent = send(alice, QUESTION, [doc.pk])
    organise.conversation_delete(user=alice, conversation_id=sent.conversation.pk)
    assert not Attachment.objects.exists() and not Passage.objects.exists()
    if connection.vendor == "sqlite":  # the FTS5 index follows its rows (triggers)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM chat_passage_fts WHERE chat_passage_fts MATCH 'parrot'")
            assert cursor.fetchone()[0] == 0
    upload(alice, "pending.txt", "still pending")
    alice.delete()
    assert not Attachment.objects.exists()


def test_exports_and_the_data_download_hold_the_documents(make_user):
    alice = make_user()
    doc = upload(alice, "book.md", long_text_with_fact())
    sent = send(alice, QUESTION, [doc.pk])
    sources = [
        {"n": 1, "attachment": doc.pk, "name": "book.md", "passage": 24, "passages": 40, "page": None, "whole": False}
    ]
    document_services.reply_sources_store(message_id=sent.assistant_message.pk, sources=sources)
    conversation, messages = conversation_selectors.conversation_for_export(
        user=alice, conversation_id=sent.conversation.pk
    )
    as_json = json.loads(exports.as_json(conversation, messages))
    assert as_json["attachments"][0]["name"] == "book.md" and FACT in as_json["attachments"][0]["text"]
    assert as_json["messages"][0]["attachments"] == [doc.pk] and as_json["messages"][1]["sources"] == sources
    markdown = exports.as_markdown(conversation, messages)
    assert "_Attached: `book.md`_" in markdown and "## Attached document: book.md" in markdown
    assert FACT in markdown and "_Sources: [1] book.md, passage 24_" in markdown
    download = json.loads("".join(personal_data_chunks(user=alice)))
    assert download["attachments"][0]["name"] == "book.md" and FACT in download["attachments"][0]["text"]
    reply = next(m for m in download["conversations"][0]["messages"] if m["role"] == "assistant")
    assert reply["sources"] == sources


# --- the upload endpoint ------------------------------------------------------------------------------------------
@pytest.fixture
def browser(make_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user())
    client.get(reverse("chat:index"))  # the CSRF cookie, as the page gets it
    return client


def post_file(client, name, data, csrf=True):
    from django.core.files.uploadedfile import SimpleUploadedFile

    headers = {"X-CSRFToken": client.cookies["csrftoken"].value} if csrf else {}
    return client.post(reverse("chat:attachment-upload"), {"file": SimpleUploadedFile(name, data)}, headers=headers)


def test_the_endpoint_stores_a_file_and_answers_its_id_name_size_pages_and_passages(browser):
    response = post_file(browser, "report.pdf", pdf_bytes(["Opening words.", FACT]))
    assert response.status_code == 201
    body = response.json()["attachment"]
    assert body["name"] == "report.pdf" and body["pages"] == 2 and body["passages"] == 2 and body["size"] > 100
    pending = browser.get(reverse("chat:attachment-pending")).json()["attachments"]
    assert [a["id"] for a in pending] == [body["id"]]
    remove = reverse("chat:attachment-remove", args=[body["id"]])
    token = {"X-CSRFToken": browser.cookies["csrftoken"].value}
    assert browser.delete(remove, headers=token).status_code == 200
    assert browser.delete(remove, headers=token).json()["error"]["code"] == "not_found"


def test_the_endpoint_wants_a_session_and_the_csrf_token(browser):
    assert post_file(browser, "a.txt", b"hello", csrf=False).status_code == 403
    anonymous = Client()
    assert anonymous.post(reverse("chat:attachment-upload"), {}).status_code == 302  # to the login page
    assert not Attachment.objects.exists()


@pytest.mark.parametrize(
    "name,data,status,code",
    [
        ("big.txt", b"x" * (50 * 1024 * 1024), 413, "file_too_large"),
        ("book.pdf", pdf_many_pages(10_000), 400, "file_too_many_pages"),
        ("letter.docx", docx_zip_bomb(200), 413, "file_too_large"),
        ("virus.exe", b"MZ", 415, "file_unsupported"),
        ("data.json", b"\x00\x01garbage", 400, "file_unreadable"),
    ],
)
def test_hostile_uploads_get_a_sentence_and_a_code_not_an_error_page(browser, name, data, status, code):
    response = post_file(browser, name, data)
    assert response.status_code == status and response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code and error["detail"].endswith(".")
    assert not Attachment.objects.exists()


def test_the_review_panels_transcript_shows_the_documents_and_the_sources(make_user, reviewer_group):
    from django.utils.html import escape

    alice = make_user()
    reviewer = make_user("rita")
    reviewer.is_staff = True
    reviewer.save()
    reviewer.groups.add(reviewer_group)
    doc = upload(alice, "book.md", long_text_with_fact() + "\n\n<script>alert(1)</script>")
    sent = send(alice, QUESTION, [doc.pk])
    sources = [
        {"n": 1, "attachment": doc.pk, "name": "book.md", "passage": 24, "passages": 41, "page": None, "whole": False}
    ]
    document_services.reply_sources_store(message_id=sent.assistant_message.pk, sources=sources)
    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("admin:chat_conversation_change", args=[sent.conversation.pk])).content.decode()
    assert "attached: book.md" in page and escape(FACT) in page
    assert "<script>alert(1)</script>" not in page  # the document's text is shown as text
    assert "[1] book.md, passage 24" in page


def test_a_person_reads_one_file_at_a_time_and_the_key_is_let_go_after(browser, make_user):
    """While one of a person's files is being read (the Redis key the view holds), another of theirs is refused
    with a sentence; another person's upload is not; and the key is let go when a read ends, refused or not."""
    from chat import store
    from chat.names import uploading_key

    person = browser.get(reverse("chat:index")).wsgi_request.user
    store.client().set(uploading_key(person.pk), "1", ex=30)
    try:
        refused = post_file(browser, "a.txt", b"hello")
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert "being read" in refused.json()["error"]["detail"]
        other = Client(enforce_csrf_checks=True)
        other.force_login(make_user("bob"))
        other.get(reverse("chat:index"))
        assert post_file(other, "b.txt", b"hello").status_code == 201
    finally:
        store.client().delete(uploading_key(person.pk))
    assert post_file(browser, "virus.exe", b"MZ").status_code == 415
    assert post_file(browser, "a.txt", b"hello").status_code == 201  # the refusal let the key go
    assert not store.client().exists(uploading_key(person.pk))


def test_a_malformed_multipart_body_gets_a_sentence(browser):
    response = browser.post(
        reverse("chat:attachment-upload"),
        data=b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n\r\nabc',
        content_type="multipart/form-data; boundary=",
        headers={"X-CSRFToken": browser.cookies["csrftoken"].value},
    )
    assert response["Content-Type"] == "application/json", response.content[:200]
    assert response.json()["error"]["code"] in ("file_unreadable", "empty")
