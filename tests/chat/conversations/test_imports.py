"""Importing conversations from a file: a ChatGPT export with a branch, this site's own export read back as the
same tree, and hostile files refused with a sentence and a stable code while nothing is half-imported."""

import json
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from chat.conversations import conversation_settings, import_views
from chat.conversations import services as conversation_services
from chat.conversations.import_services import conversations_import
from chat.errors import ChatError, ErrorCode
from chat.models import Account, Conversation, Message
from chat.replies import services as reply_services

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000.0


def node(key, parent, role, text, t, children=(), **extra):
    message = None
    if role is not None:
        message = {
            "id": key,
            "author": {"role": role},
            "create_time": t,
            "content": {"content_type": "text", "parts": [text]},
            **extra,
        }
    return {"id": key, "parent": parent, "children": list(children), "message": message}


def chatgpt_conversation(title="Trip to Lisbon", current="a2"):
    """A ChatGPT conversation whose first user message was edited: two children of the (hidden) system message,
    each answered; the edit's branch is the one on show. A tool call and its output sit inside the second answer."""
    mapping = {
        "root": node("root", None, None, None, None, ["sys"]),
        "sys": node("sys", "root", "system", "You are a travel guide.", T0, ["u1", "u2"]),
        "u1": node("u1", "sys", "user", "What to see in Lisbon?", T0 + 1, ["a1"]),
        "a1": node("a1", "u1", "assistant", "The Alfama and the tram 28.", T0 + 2),
        "u2": node("u2", "sys", "user", "What to see in Porto?", T0 + 10, ["call"]),
        "call": node("call", "u2", "assistant", "search('porto')", T0 + 11, ["tool"], recipient="browser"),
        "tool": node("tool", "call", "tool", "results…", T0 + 12, ["a2"]),
        "a2": node("a2", "tool", "assistant", "The Ribeira and the Livraria Lello.", T0 + 13),
    }
    return {"title": title, "create_time": T0, "update_time": T0 + 13, "mapping": mapping, "current_node": current}


def as_file(doc) -> bytes:
    return json.dumps(doc).encode()


def tree(conversation) -> list[tuple]:
    """The conversation's rows with the ids replaced by positions: (role, content, parent's position, current)."""
    rows = list(conversation.messages.order_by("id"))
    place = {m.pk: i for i, m in enumerate(rows)}
    return [(m.role, m.content, place.get(m.parent_id), m.is_current) for m in rows]


def shape(conversation, parent=None) -> tuple:
    """The tree as nested tuples, each message's children (its alternatives' order) in id order."""
    below = conversation.messages.filter(parent_id=parent).order_by("id")
    return tuple((m.role, m.content, m.is_current, m.status, shape(conversation, m.pk)) for m in below)


def test_a_chatgpt_export_keeps_both_branches_with_the_edited_one_on_show(make_user):
    user = make_user()
    [pk] = conversations_import(user=user, data=as_file([chatgpt_conversation()]))
    conversation = Conversation.objects.get(pk=pk)
    assert conversation.owner == user and conversation.source == Conversation.Source.IMPORT
    assert conversation.title == "Trip to Lisbon" and conversation.system_prompt == "You are a travel guide."
    assert tree(conversation) == [
        ("user", "What to see in Lisbon?", None, False),
        ("user", "What to see in Porto?", None, True),
        ("assistant", "The Alfama and the tram 28.", 0, False),
        ("assistant", "The Ribeira and the Livraria Lello.", 1, True),
    ]
    # Not generated here: never a training target, no tokens.
    assert all(m.supplied for m in conversation.messages.filter(role="assistant"))
    assert not conversation.messages.filter(role="user", supplied=True).exists()
    assert conversation.messages.get(content__startswith="What to see in L").created_at.timestamp() == T0 + 1
    assert conversation.created_at.timestamp() == T0 and conversation.updated_at.timestamp() == T0 + 13


def test_the_other_branch_is_on_show_when_it_is_the_current_node(make_user):
    [pk] = conversations_import(user=make_user(), data=as_file([chatgpt_conversation(current="a1")]))
    shown = Message.objects.filter(conversation_id=pk, is_current=True).order_by("id")
    assert [m.content for m in shown] == ["What to see in Lisbon?", "The Alfama and the tram 28."]


def test_the_conversation_opens_and_continues_like_any_other(make_user):
    user = make_user()
    client = Client()
    client.force_login(user)
    [pk] = conversations_import(user=user, data=as_file([chatgpt_conversation()]))
    page = client.get(f"/conversations/{pk}/").json()
    assert [m["content"] for m in page["messages"]] == ["What to see in Porto?", "The Ribeira and the Livraria Lello."]
    listed = client.get("/conversations/").json()["conversations"]
    assert [c["id"] for c in listed] == [pk]
    # A new message goes below the shown branch's last reply, with the person's own model.
    sent = conversation_services.message_send(user=user, conversation_id=pk, content="And the food?")
    assert sent.user_message.parent.content == "The Ribeira and the Livraria Lello."
    reply_services.reply_finish(
        message_id=sent.assistant_message.pk, content="Francesinha.", status="complete", finish_reason="stop"
    )


def test_own_export_read_back_is_the_same_tree(make_user):
    user = make_user()
    client = Client()
    client.force_login(user)
    first = conversation_services.message_send(user=user, conversation_id=None, content="q1")
    reply_services.reply_finish(
        message_id=first.assistant_message.pk, content="a1", status="complete", finish_reason="stop"
    )
    pk = first.conversation.pk
    conversation_settings.conversation_settings_set(user=user, conversation_id=pk, system_prompt="Be brief.", params={})
    second = conversation_services.message_send(user=user, conversation_id=pk, content="q2")
    reply_services.reply_finish(
        message_id=second.assistant_message.pk, content="a2", status="complete", finish_reason="stop"
    )
    # Edit q2: a second branch with its own reply; then switch back to the first.
    edited = conversation_services.message_edit(user=user, message_id=second.user_message.pk, content="q2 again")
    reply_services.reply_finish(
        message_id=edited.assistant_message.pk, content="a2 again", status="complete", finish_reason="stop"
    )
    conversation_services.message_switch(user=user, message_id=second.user_message.pk)
    original = Conversation.objects.get(pk=pk)

    exported = client.get(f"/conversations/{pk}/export.json").content
    assert json.loads(exported)["version"] == 2
    [copy] = conversations_import(user=user, data=exported)
    copied = Conversation.objects.get(pk=copy)
    assert copy != pk and shape(copied) == shape(original)
    assert copied.messages.count() == 6 and copied.title == original.title
    assert copied.system_prompt == original.system_prompt


@pytest.mark.django_db(transaction=True)  # the upload is stored by a thread of its own, on its own connection
def test_the_upload_endpoint_needs_csrf_and_a_login_and_answers_json(make_user, monkeypatch):
    """And the upload is read and stored in the import's own pool, never the thread every socket's database calls
    share (20,000 messages took seconds there, and another person's message waited)."""
    user = make_user()
    threads, store = [], import_views.conversations_import

    def stored_where(**kwargs):
        threads.append(threading.current_thread().name)
        return store(**kwargs)

    monkeypatch.setattr(import_views, "conversations_import", stored_where)
    client = Client(enforce_csrf_checks=True)
    upload = SimpleUploadedFile("conversations.json", as_file([chatgpt_conversation()]))
    assert client.post("/conversations/import/", {"file": upload}).status_code == 302  # to the login page
    client.force_login(user)
    upload.seek(0)
    assert client.post("/conversations/import/", {"file": upload}).status_code == 403  # no CSRF token
    assert not Conversation.objects.exists()
    token = client.get("/conversations/import/").context["csrf_token"]
    upload.seek(0)
    answer = client.post(
        "/conversations/import/", {"file": upload, "csrfmiddlewaretoken": str(token)}, HTTP_ACCEPT="application/json"
    )
    assert answer.status_code == 201
    [pk] = answer.json()["conversations"]
    upload.seek(0)
    page = client.post("/conversations/import/", {"file": upload, "csrfmiddlewaretoken": str(token)})
    assert page.status_code == 302 and page["Location"].startswith("/#")
    assert len(threads) == 2 and all(name.startswith("import") for name in threads), threads


def test_another_person_cannot_see_an_import(make_user):
    owner, other = make_user("ana"), make_user("bob")
    [pk] = conversations_import(user=owner, data=as_file([chatgpt_conversation()]))
    client = Client()
    client.force_login(other)
    assert client.get(f"/conversations/{pk}/").status_code == 404
    assert client.get(f"/conversations/{pk}/export.json").status_code == 404
    assert client.get("/conversations/").json()["conversations"] == []


def refused(user, data: bytes) -> ChatError:
    with pytest.raises(ChatError) as info:
        conversations_import(user=user, data=data)
    assert not Conversation.objects.exists() and not Message.objects.exists()
    assert info.value.detail.endswith(".")
    return info.value


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"{not json", ErrorCode.IMPORT_INVALID),
        (b"\xff\xfe\x00garbage", ErrorCode.IMPORT_INVALID),
        (b"[" * 100_000 + b"]" * 100_000, ErrorCode.IMPORT_INVALID),  # a JSON bomb: nested beyond the parser
        (b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, ErrorCode.IMPORT_INVALID),
        (b"12345", ErrorCode.IMPORT_UNKNOWN_FORMAT),
        (b"[]", ErrorCode.IMPORT_UNKNOWN_FORMAT),
        (b'[{"title": "no mapping"}]', ErrorCode.IMPORT_UNKNOWN_FORMAT),
        (b'[{"mapping": {"a": 5}}]', ErrorCode.IMPORT_INVALID),
        (b'[{"mapping": {"a": {"parent": 7, "message": null}}}]', ErrorCode.IMPORT_INVALID),
        (b'[{"mapping": {"a": {"parent": null, "message": "hi"}}}]', ErrorCode.IMPORT_INVALID),
        (b'[{"mapping": {"a": {"parent": null, "message": null}}}]', ErrorCode.IMPORT_INVALID),  # no messages
        (b'{"format": "chat-conversation", "conversation": {}, "messages": {"x": 1}}', ErrorCode.IMPORT_INVALID),
        (b"1" * 5000, ErrorCode.IMPORT_INVALID),  # an integer too long to read
    ],
)
def test_malformed_files_are_refused_with_a_code(make_user, data, code):
    assert refused(make_user(), data).code == code


def test_a_cycle_of_parents_is_refused(make_user):
    doc = chatgpt_conversation()
    doc["mapping"]["sys"]["parent"] = "a2"  # a2 → tool → call → u2 → sys → a2 …
    error = refused(make_user(), as_file([doc]))
    assert error.code == ErrorCode.IMPORT_INVALID and "cycle" in error.detail


def test_a_50_mb_file_is_refused_before_it_is_read(make_user):
    user = make_user()
    big = b"[" + b" " * (50 * 1024 * 1024) + b"]"
    assert refused(user, big).code == ErrorCode.IMPORT_TOO_LARGE
    client = Client()
    client.force_login(user)
    answer = client.post(
        "/conversations/import/",
        {"file": SimpleUploadedFile("conversations.json", big)},
        HTTP_ACCEPT="application/json",
    )
    assert answer.status_code == 413 and answer.json()["error"]["code"] == ErrorCode.IMPORT_TOO_LARGE
    assert not Conversation.objects.exists()


def test_bounds_of_count_depth_and_text_refuse_the_whole_file(make_user, settings):
    user = make_user()
    good = chatgpt_conversation()
    settings.CHAT_IMPORT_MAX_CONVERSATIONS = 2
    assert refused(user, as_file([good, good, good])).code == ErrorCode.IMPORT_LIMIT
    settings.CHAT_IMPORT_MAX_CONVERSATIONS = 10
    settings.CHAT_IMPORT_MAX_MESSAGES = 15
    assert refused(user, as_file([good, good])).code == ErrorCode.IMPORT_LIMIT  # 16 nodes
    settings.CHAT_IMPORT_MAX_MESSAGES = 1000
    settings.CHAT_IMPORT_MAX_DEPTH = 1
    assert refused(user, as_file([good])).code == ErrorCode.IMPORT_LIMIT
    settings.CHAT_IMPORT_MAX_DEPTH = 100
    settings.CHAT_IMPORT_MAX_TEXT_CHARS = 20
    # The first conversation is fine, the second has a long text: neither is stored.
    assert refused(user, as_file([good, chatgpt_conversation()])).code == ErrorCode.IMPORT_LIMIT


def test_a_late_bad_conversation_leaves_nothing_half_imported(make_user):
    bad = chatgpt_conversation()
    bad["mapping"]["a2"]["message"] = "not an object"
    user = make_user()
    assert refused(user, as_file([chatgpt_conversation()] * 5 + [bad])).code == ErrorCode.IMPORT_INVALID
    cycle = {"mapping": {"x": {"parent": "y", "message": None}, "y": {"parent": "x", "message": None}}}
    assert refused(user, as_file([chatgpt_conversation(), cycle])).code == ErrorCode.IMPORT_INVALID


def test_imported_messages_per_person_are_bounded(make_user, settings):
    user = make_user()
    settings.CHAT_IMPORTED_MESSAGES_PER_PERSON = 6
    conversations_import(user=user, data=as_file([chatgpt_conversation()]))  # 4 messages
    with pytest.raises(ChatError) as info:
        conversations_import(user=user, data=as_file([chatgpt_conversation()]))
    assert info.value.code == ErrorCode.IMPORT_LIMIT
    assert Conversation.objects.filter(owner=user).count() == 1


def test_the_text_imported_per_person_is_bounded_in_bytes_not_only_in_messages(make_user, settings):
    """50,000 messages of 100,000 four-byte characters were ~19 GB for one account: the bytes are bounded too."""
    user = make_user()
    doc = chatgpt_conversation()
    for n in doc["mapping"].values():
        if n["message"]:
            n["message"]["content"]["parts"] = ["😀" * 50_000]  # 200,000 bytes a message, 4 messages
    settings.CHAT_IMPORTED_BYTES_PER_PERSON = 1_000_000
    conversations_import(user=user, data=as_file([doc]))  # 800,000 bytes
    with pytest.raises(ChatError) as info:
        conversations_import(user=user, data=as_file([doc]))
    assert info.value.code == ErrorCode.IMPORT_LIMIT
    assert "1 MB of text per person; you have 0.8 MB and the file has 0.8 MB" in info.value.detail
    assert Conversation.objects.filter(owner=user).count() == 1


def test_imports_are_counted_per_hour_and_need_an_approved_account(
    make_user, settings, django_capture_on_commit_callbacks
):
    user = make_user()
    settings.CHAT_IMPORTS_PER_HOUR = 2
    for _ in range(3):  # a file refused is no import: retrying a broken export does not use up the hour
        with pytest.raises(ChatError):
            conversations_import(user=user, data=b"not json")
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):  # counted once it is stored
            conversations_import(user=user, data=as_file([chatgpt_conversation()]))
    with pytest.raises(ChatError) as info:
        conversations_import(user=user, data=as_file([chatgpt_conversation()]))
    assert info.value.code == ErrorCode.RATE_LIMITED and info.value.retry_after > 0
    assert "You have imported 2 files in the last hour" in info.value.detail
    assert Conversation.objects.filter(owner=user).count() == 2

    waiting = make_user("waiting")
    Account.objects.create(user=waiting, approved_at=None)  # signed up under CHAT_SIGNUP=approval, not approved
    with pytest.raises(ChatError) as info:
        conversations_import(user=waiting, data=as_file([chatgpt_conversation()]))
    assert info.value.code == ErrorCode.NOT_APPROVED
    assert not Conversation.objects.filter(owner=waiting).exists()


def test_the_review_panel_says_a_conversation_was_imported(make_user, reviewer_group):
    [pk] = conversations_import(user=make_user("ana"), data=as_file([chatgpt_conversation()]))
    reviewer = make_user("rita")
    reviewer.is_staff = True
    reviewer.save()
    reviewer.groups.add(reviewer_group)
    client = Client()
    client.force_login(reviewer)
    listing = client.get("/admin/chat/conversation/").content.decode()
    assert "Trip to Lisbon" in listing and "imported" in listing
    assert "imported" in client.get(f"/admin/chat/conversation/{pk}/change/").content.decode()


def test_an_imported_system_prompt_is_cut_to_the_pages_bound(make_user):
    """The bound of a system prompt typed on the page holds for an imported one: it goes into every later prompt."""
    doc = chatgpt_conversation()
    doc["mapping"]["sys"]["message"]["content"]["parts"] = ["x" * 20_000]
    [pk] = conversations_import(user=make_user(), data=as_file([doc]))
    assert len(Conversation.objects.get(pk=pk).system_prompt) == conversation_settings.SYSTEM_PROMPT_CHARS
