"""A person's data rights: download everything of theirs as one JSON file (streamed), and delete the account
with everything in it — only theirs, and their open sockets close."""
import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.test import AsyncClient, Client

from chat import accounts, personal_data
from chat.models import Account, AuditEvent, Conversation, Feedback, GoldAnswer, Invite, Message
from tests.support import communicator

PASSWORD = "a-long-test-password"


def make_history(owner, conversations=2, turns=2, tag=""):
    """Conversations of question/answer pairs, each reply rated by its owner."""
    for c in range(conversations):
        conversation = Conversation.objects.create(owner=owner, title=f"{tag} chat {c}", system_prompt="be kind",
                                                   params={"temperature": 0.5})
        parent = None
        for t in range(turns):
            question = Message.objects.create(conversation=conversation, parent=parent, role="user",
                                              content=f"{tag} question {c}.{t} <b>é</b>")
            parent = Message.objects.create(conversation=conversation, parent=question, role="assistant",
                                            content=f"{tag} answer {c}.{t}", prompt_tokens=3, completion_tokens=4)
            Feedback.objects.create(message=parent, user=owner, rating=1 if t % 2 else -1, comment=f"{tag} ok")


def download(user) -> tuple[object, list[bytes]]:
    """The download through the ASGI path Daphne takes (an async iterator of chunks)."""
    async def go():
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.get("/accounts/data.json")
        return response, [chunk async for chunk in response.streaming_content]
    return async_to_sync(go)()


@pytest.mark.django_db
def test_the_download_parses_and_holds_exactly_that_persons_rows(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", email="a@example.com", password=PASSWORD)
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    make_history(alice, conversations=3, turns=2, tag="alice")
    make_history(bob, conversations=2, turns=1, tag="bob")
    response, chunks = download(alice)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith("attachment; filename=\"chat-data-")
    assert len(chunks) > 3  # streamed in pieces, not one buffer
    data = json.loads(b"".join(chunks))
    assert data["format"] == personal_data.FORMAT and data["user"]["username"] == "alice"
    assert data["user"]["email"] == "a@example.com"
    mine = Conversation.objects.filter(owner=alice).order_by("id")
    assert [c["id"] for c in data["conversations"]] == [c.id for c in mine]
    for conversation, stored in zip(data["conversations"], mine):
        assert conversation["title"] == stored.title and conversation["params"] == {"temperature": 0.5}
        assert [m["id"] for m in conversation["messages"]] == list(stored.messages.order_by("id")
                                                                   .values_list("id", flat=True))
    messages = [m for c in data["conversations"] for m in c["messages"]]
    assert len(messages) == 12 and all("alice" in m["content"] for m in messages)
    assert messages[0]["content"] == "alice question 0.0 <b>é</b>" and messages[1]["completion_tokens"] == 4
    assert sorted(f["id"] for f in data["feedback"]) == sorted(Feedback.objects.filter(user=alice)
                                                               .values_list("id", flat=True))
    assert "bob" not in json.dumps(data)


@pytest.mark.django_db
def test_a_history_longer_than_a_page_comes_whole(django_user_model, monkeypatch):
    monkeypatch.setattr(personal_data, "PAGE", 3)  # pages of 3 rows: several keyset pages per list
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    make_history(alice, conversations=7, turns=4)
    text = "".join(personal_data.personal_data_chunks(user=alice))
    data = json.loads(text)
    assert len(data["conversations"]) == 7 and all(len(c["messages"]) == 8 for c in data["conversations"])
    assert len(data["feedback"]) == 28 and len({f["id"] for f in data["feedback"]}) == 28


@pytest.mark.django_db
def test_an_empty_account_downloads_a_valid_document(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    data = json.loads("".join(personal_data.personal_data_chunks(user=alice)))
    assert data["conversations"] == [] and data["feedback"] == [] and data["account"] is None


def test_the_download_needs_a_login(client):
    response = client.get("/accounts/data.json")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def _rows(user_id):
    """Every row that belongs to a person, by model."""
    return {
        "conversations": Conversation.objects.filter(owner_id=user_id).count(),
        "messages": Message.objects.filter(conversation__owner_id=user_id).count(),
        "feedback": Feedback.objects.filter(user_id=user_id).count(),
        "gold": GoldAnswer.objects.filter(message__conversation__owner_id=user_id).count(),
        "account": Account.objects.filter(user_id=user_id).count(),
    }


@pytest.mark.django_db
def test_deleting_an_account_removes_every_row_of_that_person_and_only_theirs(django_user_model, settings):
    settings.AXES_FAILURE_LIMIT = 10
    root = django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    client = Client()
    client.post("/accounts/signup/", {"username": "alice", "email": "a@example.com", "password1": "Correct-Horse-7",
                                      "password2": "Correct-Horse-7"})
    alice = django_user_model.objects.get(username="alice")
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    Account.objects.create(user=bob)
    make_history(alice, tag="alice")
    make_history(bob, tag="bob")
    for owner in (alice, bob):
        GoldAnswer.objects.create(message=Message.objects.filter(conversation__owner=owner, role="assistant")[0],
                                  content="better", author=root)
    alice_conversations = list(Conversation.objects.filter(owner=alice).values_list("id", flat=True))
    AuditEvent.objects.create(actor=root, actor_name="root", action="opened_transcript",
                              conversation_id=alice_conversations[0])
    AuditEvent.objects.create(actor=alice, actor_name="alice", action="exported")  # alice was once staff
    invite = accounts.invite_create(created_by=root, email="a@example.com", note="Alice Smith")
    Invite.objects.filter(pk=invite.pk).update(used_by=alice, used_at=alice.date_joined)
    Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})  # a login record
    assert AccessAttempt.objects.filter(username="alice").exists()
    bob_before = _rows(bob.pk)
    assert all(bob_before.values()) and all(_rows(alice.pk).values())

    refused = client.post("/accounts/delete/", {"password": "not-it"})
    assert refused.status_code == 400 and b"not your password" in refused.content
    assert django_user_model.objects.filter(pk=alice.pk).exists()

    done = client.post("/accounts/delete/", {"password": "Correct-Horse-7"})
    assert done.status_code == 200 and b"Account deleted" in done.content
    assert not django_user_model.objects.filter(username="alice").exists()
    assert not any(_rows(alice.pk).values())
    assert not Message.objects.filter(conversation_id__in=alice_conversations).exists()
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert _rows(bob.pk) == bob_before  # another person's data intact
    # What outlives them keeps ids only.
    assert AuditEvent.objects.filter(conversation_id=alice_conversations[0], actor=root).exists()
    assert AuditEvent.objects.get(action="exported").actor_name == f"deleted user {alice.pk}"
    invite.refresh_from_db()
    assert invite.used_by is None and invite.email == "" and invite.note == "" and invite.used_at is not None
    assert client.get("/").status_code == 302  # signed out


@pytest.mark.django_db(transaction=True)
def test_a_deleted_accounts_open_sockets_are_closed(django_user_model, settings):
    settings.CHAT_SOCKET_REFRESH_S = 3600  # not the timer: the deletion tells them
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    cookies = []
    for user in (alice, bob):
        browser = Client()
        browser.force_login(user)
        cookies.append(f"sessionid={browser.cookies['sessionid'].value}")

    async def go():
        alices, bobs = communicator(cookies[0]), communicator(cookies[1])
        assert (await alices.connect())[0] and (await bobs.connect())[0]
        from channels.db import database_sync_to_async
        await database_sync_to_async(accounts.account_delete)(user_id=alice.pk)
        closed = await alices.receive_output(timeout=5)
        await bobs.send_to(text_data='{"type": "noop"}')
        still = await bobs.receive_json_from(timeout=5)
        await bobs.disconnect()
        return closed, still
    closed, still = asyncio.run(go())
    assert closed == {"type": "websocket.close", "code": 4401}
    assert still["code"] == "unknown_type"


@pytest.mark.django_db
def test_the_account_page_is_linked_from_the_chat_page_and_holds_the_three_things(django_user_model):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    client = Client()
    client.force_login(alice)
    assert b'href="/accounts/"' in client.get("/").content
    page = client.get("/accounts/").content
    for part in (b'href="/accounts/password_change/"', b'href="/accounts/data.json"',
                 b'action="/accounts/delete/"', b'name="password"'):
        assert part in page
