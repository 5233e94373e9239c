"""A person's data rights: download everything of theirs as one JSON file (streamed), and delete the account
with everything in it — every row related to them, their sessions and counters, only theirs — and their open
sockets close."""

import asyncio
import datetime
import json

import pytest
from asgiref.sync import async_to_sync
from axes.models import AccessAttempt
from django.apps import apps
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client
from django.utils import timezone

from chat.accounts import personal_data, services
from chat.limits import quotas, sockets
from chat.models import (
    Account,
    Attachment,
    AuditEvent,
    Conversation,
    Feedback,
    GoldAnswer,
    Invite,
    Message,
)
from chat.names import tokens_key
from chat.store import client as redis_client
from tests.chat.review.conftest import BIG, SMALL, compared, two_models  # noqa: F401  (two_models: a fixture)
from tests.helpers.support import communicator

PASSWORD = "a-long-test-password"


def make_history(owner, conversations=2, turns=2, tag=""):
    """Conversations of question/answer pairs, each reply rated by its owner."""
    for c in range(conversations):
        conversation = Conversation.objects.create(
            owner=owner, title=f"{tag} chat {c}", system_prompt="be kind", params={"temperature": 0.5}
        )
        parent = None
        for t in range(turns):
            question = Message.objects.create(
                conversation=conversation, parent=parent, role="user", content=f"{tag} question {c}.{t} <b>é</b>"
            )
            parent = Message.objects.create(
                conversation=conversation,
                parent=question,
                role="assistant",
                content=f"{tag} answer {c}.{t}",
                prompt_tokens=3,
                completion_tokens=4,
            )
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
    assert response["Content-Disposition"].startswith('attachment; filename="chat-data-')
    assert len(chunks) > 3  # streamed in pieces, not one buffer
    data = json.loads(b"".join(chunks))
    assert data["format"] == personal_data.FORMAT and data["user"]["username"] == "alice"
    assert data["user"]["email"] == "a@example.com"
    mine = Conversation.objects.filter(owner=alice).order_by("id")
    assert [c["id"] for c in data["conversations"]] == [c.id for c in mine]
    for conversation, stored in zip(data["conversations"], mine):
        assert conversation["title"] == stored.title and conversation["params"] == {"temperature": 0.5}
        assert [m["id"] for m in conversation["messages"]] == list(
            stored.messages.order_by("id").values_list("id", flat=True)
        )
    messages = [m for c in data["conversations"] for m in c["messages"]]
    assert len(messages) == 12 and all("alice" in m["content"] for m in messages)
    assert messages[0]["content"] == "alice question 0.0 <b>é</b>" and messages[1]["completion_tokens"] == 4
    assert sorted(f["id"] for f in data["feedback"]) == sorted(
        Feedback.objects.filter(user=alice).values_list("id", flat=True)
    )
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
    assert data["comparisons"] == []


@pytest.mark.django_db
def test_the_download_holds_the_persons_compares_with_each_replys_model_and_their_pick(
    django_user_model,
    two_models,  # noqa: F811
):
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    picked = compared(alice, "which?", ("big's", "small's"), pick=1)
    open_one = compared(alice, "and now?", ("b", "s"), conversation_id=picked.prompt.conversation_id, blind=True)
    compared(bob, "bob's question", ("x", "y"), pick=0)
    data = json.loads("".join(personal_data.personal_data_chunks(user=alice)))

    def as_json(value):  # a time as the document writes it (DjangoJSONEncoder: milliseconds)
        from django.core.serializers.json import DjangoJSONEncoder

        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))

    def row(c, chosen_model):
        return {
            "id": c.pk,
            "message_id": c.prompt_id,
            "first_id": c.first_id,
            "first_model": BIG,
            "second_id": c.second_id,
            "second_model": SMALL,
            "blind": c.blind,
            "chosen_id": c.chosen_id,
            "chosen_model": chosen_model,
            "created_at": as_json(c.created_at),
            "picked_at": as_json(c.picked_at),
        }

    picked.refresh_from_db()
    assert data["comparisons"] == [row(picked, SMALL), row(open_one, None)]
    messages = {m["id"]: m for c in data["conversations"] for m in c["messages"]}
    assert (messages[picked.first_id]["model_name"], messages[picked.second_id]["model_name"]) == (BIG, SMALL)
    assert "bob's question" not in json.dumps(data)


def test_the_download_needs_a_login(client):
    response = client.get("/accounts/data.json")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def _pointing_at(targets: dict, models: list) -> dict:
    """Rows of ``models`` with a relation field whose value is among ``targets`` (model → set of pks)."""
    out: dict = {}
    for model in models:
        for field in model._meta.concrete_fields:
            if field.is_relation and field.related_model in targets:
                pks = model.objects.filter(**{f"{field.attname}__in": targets[field.related_model]}).values_list(
                    "pk", flat=True
                )
                out.setdefault(model, set()).update(pks)
    return {model: pks for model, pks in out.items() if pks}


def _rows(user_id) -> dict[str, set]:
    """Every row that points at the person, or at a row that does, and so on (their conversations, those
    conversations' messages, the feedback and gold answers on those…), by model: found by walking every model
    of every installed app, auto-created many-to-many tables included, not from a list of them."""
    user_model = get_user_model()
    models = [m for m in apps.get_models(include_auto_created=True) if not m._meta.proxy]
    found: dict = {}
    frontier = {user_model: {user_id}}
    while frontier:
        frontier = {model: pks - found.get(model, set()) for model, pks in _pointing_at(frontier, models).items()}
        frontier = {model: pks for model, pks in frontier.items() if pks}
        for model, pks in frontier.items():
            found.setdefault(model, set()).update(pks)
    return {model._meta.label: pks for model, pks in found.items()}


def _related_models() -> set[str]:
    """Every model with a relation path to the user model (what a person's rows can be in)."""
    user_model = get_user_model()
    models = [m for m in apps.get_models(include_auto_created=True) if not m._meta.proxy]
    reached, grew = {user_model}, True
    while grew:
        more = {m for m in models for f in m._meta.concrete_fields if f.is_relation and f.related_model in reached}
        grew = bool(more - reached)
        reached |= more
    return {m._meta.label for m in reached - {user_model}}


def _sessions_of(user_id) -> list[str]:
    from django.contrib.sessions.models import Session

    return [s.session_key for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(user_id)]


def _counters_of(user_id) -> list[str]:
    """The person's keys in Redis: tokens per day, the minute's window, open sockets, the session index."""
    r = redis_client()
    return sorted(
        [
            *r.scan_iter(match=f"chat:tokens:{user_id}:*"),
            *r.scan_iter(match=f"chat:sockets:{user_id}"),
            *r.scan_iter(match=f"chat:limits*/messages/{user_id}/*"),
            *r.scan_iter(match=f"chat:sessions:{user_id}"),
        ]
    )


def _a_row_in_every_related_model(person, root, other, group):
    """What a long-time person leaves: an API key (a conversation through it), their allowance and defaults,
    a group and a permission, an admin log entry and an invite they wrote as staff, another person they
    approved and whose conversation they reviewed."""
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from chat.api.services import api_key_create
    from chat.models import ChatDefaults, QuotaOverride

    key = api_key_create(owner=person, name="laptop").key
    Conversation.objects.filter(owner=person).update(api_key=key)
    QuotaOverride.objects.create(user=person, tokens_per_day=5)
    ChatDefaults.objects.create(user=person, system_prompt="be brief")
    from chat.models import Folder

    Conversation.objects.filter(owner=person).update(folder=Folder.objects.create(owner=person, name="Work"))
    person.groups.add(group)
    person.user_permissions.add(Permission.objects.get(codename="view_conversation"))
    LogEntry.objects.create(
        user=person,
        content_type=ContentType.objects.get_for_model(Invite),
        object_id="1",
        object_repr="an invite",
        action_flag=ADDITION,
    )
    services.invite_create(created_by=person, note="for a friend")
    Account.objects.filter(user=other).update(approved_by=person)
    # A document attached to a message (its text, one passage) and one attached but never sent.
    from chat.documents.services import attachment_upload

    question = Message.objects.filter(conversation__owner=person, role="user").first()
    sent = attachment_upload(user=person, name="notes.md", data=b"the person's notes")
    Attachment.objects.filter(pk=sent.pk).update(conversation=question.conversation, message=question)
    attachment_upload(user=person, name="draft.txt", data=b"a draft never sent")
    Conversation.objects.filter(owner=other).update(reviewed_by=person)
    # A Compare: one of their messages answered by two models, the first picked.
    from chat.models import Comparison

    conversation = Conversation.objects.filter(owner=person).first()
    asked = Message.objects.create(conversation=conversation, role="user", content="which is better?")
    first, second = (
        Message.objects.create(conversation=conversation, parent=asked, role="assistant", content=t, model_name=m)
        for t, m in (("one", "a"), ("two", "b"))
    )
    Comparison.objects.create(prompt=asked, first=first, second=second, chosen=first)
    # A saved prompt (the prompt library).
    from chat.models import Prompt

    Prompt.objects.create(owner=person, name="greet", title="Greet", text="Say hello to {{name}}")
    # As staff: a training run on their conversation, an experiment, a promotion.
    from chat.models import Experiment, SiteDefault, TrainingExample, TrainingRun

    run = TrainingRun.objects.create(name=f"run-{person.pk}", base_model="m", started_by=person)
    TrainingExample.objects.create(
        run=run, conversation=conversation, conversation_ref=conversation.pk, message_ref=first.pk, split="train"
    )
    experiment = Experiment.objects.create(control="m", candidate=run.served_name, share=0.5, started_by=person)
    Conversation.objects.filter(pk=conversation.pk).update(experiment=experiment, experiment_arm="candidate")
    # A share link of one of their conversations (chat/sharing/): it goes with the account.
    from chat.models import ShareLink

    ShareLink.objects.create(
        owner=person, conversation=conversation, token=f"token-{person.pk}", message_ids=[asked.pk]
    )
    SiteDefault.objects.create(model_name="m", promoted_by=person)


@pytest.mark.django_db
def test_deleting_an_account_removes_every_row_of_that_person_and_only_theirs(
    django_user_model, settings, reviewer_group, django_capture_on_commit_callbacks
):
    settings.AXES_FAILURE_LIMIT = 10
    root = django_user_model.objects.create_superuser(username="root", password=PASSWORD)
    client = Client()
    client.post(
        "/accounts/signup/",
        {"username": "alice", "email": "a@example.com", "password1": "Correct-Horse-7", "password2": "Correct-Horse-7"},
    )
    alice = django_user_model.objects.get(username="alice")
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    Account.objects.create(user=bob)
    make_history(alice, tag="alice")
    make_history(bob, tag="bob")
    for owner in (alice, bob):
        GoldAnswer.objects.create(
            message=Message.objects.filter(conversation__owner=owner, role="assistant")[0],
            content="better",
            author=root,
        )
    _a_row_in_every_related_model(alice, root, bob, reviewer_group)
    alice_conversations = list(Conversation.objects.filter(owner=alice).values_list("id", flat=True))
    AuditEvent.objects.create(
        actor=root, actor_name="root", action="opened_transcript", conversation_id=alice_conversations[0]
    )
    AuditEvent.objects.create(actor=alice, actor_name="alice", action="exported")  # alice was once staff
    invite = services.invite_create(created_by=root, email="a@example.com", note="Alice Smith")
    Invite.objects.filter(pk=invite.pk).update(used_by=alice, used_at=alice.date_joined)
    Client().post("/accounts/login/", {"username": "alice", "password": "wrong"})  # a login record
    assert AccessAttempt.objects.filter(username="alice").exists()
    for user in (alice, bob):  # another browser each; counters of today, yesterday, this minute, sockets
        Client().force_login(user)
        allowance = quotas.allowance_for(user.pk)
        quotas.message_hit(user.pk, allowance)
        quotas.tokens_count(user.pk, 42)
        redis_client().set(tokens_key(user.pk, timezone.localdate() - datetime.timedelta(days=1)), 7, ex=3600)
        sockets.socket_open(user.pk, f"socket-of-{user.pk}")
    bob_before, alice_before = _rows(bob.pk), _rows(alice.pk)
    assert set(alice_before) == _related_models(), "a model related to the user has no row of alice's here"
    assert len(_sessions_of(alice.pk)) == 2 and len(_counters_of(alice.pk)) == 5
    bob_sessions, bob_counters = _sessions_of(bob.pk), _counters_of(bob.pk)
    assert len(bob_sessions) == 1 and len(bob_counters) == 5

    refused = client.post("/accounts/delete/", {"password": "not-it"})
    assert refused.status_code == 400 and b"not your password" in refused.content
    assert django_user_model.objects.filter(pk=alice.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):  # the Redis part runs once the deletion commits
        done = client.post("/accounts/delete/", {"password": "Correct-Horse-7"})
    assert done.status_code == 200 and b"Account deleted" in done.content
    assert not django_user_model.objects.filter(username="alice").exists()
    assert _rows(alice.pk) == {}  # no row anywhere still points at her, directly or through her rows
    assert not Message.objects.filter(conversation_id__in=alice_conversations).exists()
    assert not AccessAttempt.objects.filter(username="alice").exists()
    assert _sessions_of(alice.pk) == [] and _counters_of(alice.pk) == []  # her other browser's session too
    assert _rows(bob.pk) == bob_before  # another person's data intact
    assert _sessions_of(bob.pk) == bob_sessions and _counters_of(bob.pk) == bob_counters
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

        await database_sync_to_async(services.account_delete)(user_id=alice.pk)
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
    for part in (
        b'href="/accounts/password_change/"',
        b'href="/accounts/data.json"',
        b'action="/accounts/delete/"',
        b'name="password"',
    ):
        assert part in page
