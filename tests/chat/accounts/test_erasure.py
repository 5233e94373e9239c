"""A deletion removes the person's words everywhere the project writes them, for each kind of deletion — a
conversation by its owner, transcripts by staff in the admin (its Delete and delete_selected), a whole account
(by the person, by staff in the admin): their replies' stream logs and other keys in the real Redis, the Django
admin's log (``object_repr`` and ``change_message``), the review panel's audit rows; nothing is charged to a
deleted person afterwards; and the embedded Redis of ``make run`` rewrites its append-only file after an
account deletion (docs/security.md, "Privacy: what a deletion removes")."""

import asyncio
import json
import subprocess
import time
import uuid

import pytest
import redis
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import connection
from django.test import Client
from django.utils import timezone

from chat import store
from chat.accounts import services as account_services
from chat.conversations import organise
from chat.conversations import services as conversation_services
from chat.limits import quotas
from chat.models import AuditEvent, Conversation, Message
from chat.names import gone_key, handed_key, reply_keys, reserved_key, stream_key
from chat.replies import liveness, streamlog, sweep
from chat.review import services as review_services
from chat.store import client as redis_client
from chatsite import stack

PASSWORD = "a-long-test-password"


def words(tag: str) -> str:
    """A phrase no other row or key holds, so finding it anywhere means it was left behind."""
    return f"{tag}-{uuid.uuid4().hex[:12]}"


def chat_of(owner, secret: str) -> Conversation:
    """A conversation whose title and messages hold ``secret``, its reply just streamed by a worker: its stream
    log, progress and lease in Redis as the worker leaves them, and the queue it was handed to."""
    conversation = Conversation.objects.create(owner=owner, title=f"plans {secret}", system_prompt=f"sys {secret}")
    question = Message.objects.create(conversation=conversation, role="user", content=f"question {secret}")
    reply = Message.objects.create(
        conversation=conversation,
        parent=question,
        role="assistant",
        content=f"answer {secret}",
        status=Message.Status.COMPLETE,
        finished_at=timezone.now(),
    )
    asyncio.run(streamlog.append(reply.id, 0, [f"answer {secret}"]))
    liveness.heartbeat("worker-1", [reply.id], {reply.id: 3})
    redis_client().set(handed_key(reply.id), "worker-1", ex=600)
    conversation.reply = reply
    return conversation


def staff_traces(root, person, conversation, secret: str) -> None:
    """What staff leave about a person's conversation and the person: the admin's log (a change of each, its
    object_repr the title and the username), a review note and a gold answer (audit rows with texts), a search
    for the person's username in the review panel (audited with the words searched)."""
    LogEntry.objects.log_actions(
        user_id=root.pk, queryset=[conversation], action_flag=CHANGE, change_message=f"noted {secret}"
    )
    LogEntry.objects.log_actions(user_id=root.pk, queryset=[person], action_flag=CHANGE, change_message="approved")
    review_services.review_set(reviewer=root, conversation_ids=[conversation.pk], state="approved", note=secret)
    review_services.gold_answer_set(reviewer=root, message_id=conversation.reply.pk, content=f"better {secret}")
    staff = Client()
    staff.force_login(root)
    assert staff.get("/admin/chat/conversation/", {"q": person.username}).status_code == 200
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SEARCHED, details__query=person.username).exists()


def redis_holding(*texts: str) -> list[str]:
    """Every key of the real Redis whose name or value holds one of ``texts``."""
    r = redis.Redis.from_url(store._url(), decode_responses=False)
    found = []
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        if kind == b"string":
            values = [r.get(key) or b""]
        elif kind == b"list":
            values = r.lrange(key, 0, -1)
        elif kind == b"hash":
            values = [b"%s %s" % pair for pair in r.hgetall(key).items()]
        elif kind == b"set":
            values = list(r.smembers(key))
        elif kind == b"zset":
            values = r.zrange(key, 0, -1)
        else:
            values = []
        blob = key + b" " + b" ".join(values)
        found += [key.decode(errors="replace") for text in texts if text.encode() in blob]
    return found


def rows_holding(*texts: str) -> list[str]:
    """Admin-log and audit rows whose text holds one of ``texts``."""
    found = []
    for entry in LogEntry.objects.all():
        found += [f"LogEntry {entry.pk}" for t in texts if t in entry.object_repr or t in entry.change_message]
    for event in AuditEvent.objects.all():
        found += [f"AuditEvent {event.action}" for t in texts if t in json.dumps(event.details)]
    return found


def keys_of(conversation) -> list[str]:
    return [k for k in reply_keys(conversation.reply.pk) if redis_client().exists(k)]


@pytest.fixture
def cast(django_user_model):
    root = django_user_model.objects.create_superuser(username="root", password=None)
    alice = django_user_model.objects.create_user(username="alice", password=PASSWORD)
    bob = django_user_model.objects.create_user(username="bob", password=PASSWORD)
    return root, alice, bob


@pytest.mark.django_db(transaction=True)
def test_a_person_deleting_a_conversation_leaves_none_of_its_words_behind(cast):
    root, alice, _ = cast
    secret, kept = words("gone"), words("kept")
    doomed, other = chat_of(alice, secret), chat_of(alice, kept)
    staff_traces(root, alice, doomed, secret)
    assert len(keys_of(doomed)) == 4 and redis_holding(secret) and rows_holding(secret)

    organise.conversation_delete(user=alice, conversation_id=doomed.pk)

    assert keys_of(doomed) == [] and redis_holding(secret) == []  # its stream log, progress, lease, hand-over
    assert rows_holding(secret) == []  # the admin's log and the audit rows keep ids
    entry = LogEntry.objects.get(object_id=str(doomed.pk), content_type__model="conversation")
    assert (entry.object_repr, entry.change_message) == (f"conversation {doomed.pk}", "")
    review = AuditEvent.objects.get(action=AuditEvent.Action.REVIEW_CHANGED, conversation_id=doomed.pk)
    assert review.details == {"state": "approved", "previous": "unreviewed", "erased": True}
    assert len(keys_of(other)) == 4 and redis_holding(kept)  # the person's other chat is untouched


@pytest.mark.parametrize("how", ["change page", "delete_selected"])
@pytest.mark.django_db(transaction=True)
def test_staff_deleting_transcripts_in_the_admin_leave_ids_only(cast, how):
    root, alice, _ = cast
    secret, kept = words("gone"), words("kept")
    doomed, other = chat_of(alice, secret), chat_of(alice, kept)
    staff_traces(root, alice, doomed, secret)
    staff = Client()
    staff.force_login(root)
    if how == "change page":
        response = staff.post(f"/admin/chat/conversation/{doomed.pk}/delete/", {"post": "yes"})
    else:
        response = staff.post(
            "/admin/chat/conversation/",
            {"action": "delete_selected", "_selected_action": [doomed.pk], "post": "yes"},
        )
    assert response.status_code == 302 and not Conversation.objects.filter(pk=doomed.pk).exists()

    assert keys_of(doomed) == [] and redis_holding(secret) == []
    assert rows_holding(secret, "plans") == []  # the admin logged the deletion under its title: ids now
    deletion = LogEntry.objects.get(object_id=str(doomed.pk), action_flag=3)
    assert deletion.object_repr == f"conversation {doomed.pk}"
    audit = AuditEvent.objects.get(action=AuditEvent.Action.DELETED, conversation_id=doomed.pk)
    assert audit.details == {"owner_id": alice.pk, "messages": 2}  # no title, no owner's name
    assert len(keys_of(other)) == 4 and redis_holding(kept)


@pytest.mark.parametrize("who", ["the person", "staff in the admin"])
@pytest.mark.django_db(transaction=True)
def test_deleting_an_account_leaves_none_of_the_persons_words_behind(cast, who):
    root, alice, bob = cast
    secret, kept = words("gone"), words("kept")
    chat = chat_of(alice, secret)
    staff_traces(root, alice, chat, secret)
    earlier = chat_of(alice, secret)  # deleted by staff before this release kept ids only in the audit row
    AuditEvent.objects.create(
        actor=root,
        actor_name="root",
        action=AuditEvent.Action.DELETED,
        conversation_id=earlier.pk,
        details={"title": earlier.title, "owner_id": alice.pk, "owner": "alice", "messages": 2},
    )
    bobs = chat_of(bob, kept)
    staff_traces(root, bob, bobs, kept)
    quotas.tokens_count(alice.pk, 42)
    quotas.tokens_reserve(alice.pk, quotas.allowance_for(alice.pk), 100)
    assert redis_holding(secret) and rows_holding(secret, "alice")

    if who == "the person":
        browser = Client()
        browser.force_login(alice)
        assert browser.post("/accounts/delete/", {"password": PASSWORD}).status_code == 200
    else:
        staff = Client()
        staff.force_login(root)
        assert staff.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"}).status_code == 302

    assert redis_holding(secret) == [] and keys_of(chat) == [] and keys_of(earlier) == []
    assert rows_holding(secret, "alice") == []  # no title, no username, in the admin's log or the audit rows
    about_her = LogEntry.objects.get(object_id=str(alice.pk), content_type__model="user", action_flag=CHANGE)
    assert about_her.object_repr == f"user {alice.pk}"
    searches = [e.details for e in AuditEvent.objects.filter(action=AuditEvent.Action.SEARCHED).order_by("pk")]
    assert [(d.get("query"), d.get("erased"), d["page"]) for d in searches] == [
        (None, True, "conversation"),  # the search for her name keeps that it happened, and on which list
        ("bob", None, "conversation"),
    ]
    r = redis_client()
    assert not [*r.scan_iter(f"chat:tokens:{alice.pk}:*")] and not r.exists(reserved_key(alice.pk))
    # Bob's words, keys and rows are his still.
    assert redis_holding(kept) and len(keys_of(bobs)) == 4 and len(rows_holding(kept, "bob")) >= 4


@pytest.mark.django_db(transaction=True)
def test_nothing_is_charged_to_a_deleted_person(cast, settings):
    """A reply or a title of theirs ending after the deletion (the worker's own end, a title after it) charges
    nothing and makes no counter again; the reservation of a reply in flight goes with the account."""
    settings.CHAT_TOKENS_PER_DAY = 1000
    _, alice, _ = cast
    in_flight = conversation_services.message_send(user=alice, conversation_id=None, content="hi").assistant_message
    assert quotas.tokens_held(alice.pk) > 0
    account_services.account_delete(user_id=alice.pk)
    r = redis_client()
    assert r.exists(gone_key(alice.pk)) and not r.exists(reserved_key(alice.pk))

    quotas.tokens_settle(alice.pk, in_flight.reservation, 30)  # the reply's end, had it been stored
    quotas.tokens_count(alice.pk, 30)  # the worker's own count, its end having found no row
    allowance = quotas.allowance_for(alice.pk)
    assert not quotas.title_reserve(alice.pk, allowance, 40, f"title-{in_flight.pk}")
    assert not [*r.scan_iter(f"chat:tokens:{alice.pk}:*")] and not r.exists(reserved_key(alice.pk))


def aof_settled(client) -> None:
    """Wait (bounded) until no append-only rewrite is running or scheduled."""
    deadline = time.monotonic() + 60
    while True:
        info = client.info("persistence")
        if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
            return
        assert time.monotonic() < deadline, info
        time.sleep(0.05)


@pytest.fixture
def embedded_redis(tmp_path, settings):
    """A Redis started as ``make run`` starts its own (append-only file on), this process's Redis for the test
    and marked embedded as settings mark the launcher's; the file holds plain commands (no RDB preamble), so a
    text in it can be looked for."""
    data = tmp_path / "redis"
    proc, url = stack.start_redis(data, stdout=subprocess.DEVNULL)
    suites = settings.REDIS_URL
    store._client = None
    settings.REDIS_URL, settings.CHAT_REDIS_EMBEDDED = url, True
    client = redis.Redis.from_url(url)
    client.config_set("aof-use-rdb-preamble", "no")
    try:
        yield client, data / "appendonly.aof"
    finally:
        settings.REDIS_URL, store._client = suites, None  # the suite's Redis again for what tears down after
        stack.stop(proc)


@pytest.mark.django_db(transaction=True)
def test_after_an_account_deletion_the_embedded_redis_rewrites_its_append_only_file(cast, embedded_redis):
    client, aof = embedded_redis
    _, alice, bob = cast
    secret, kept = words("gone"), words("kept")
    chat_of(alice, secret)
    chat_of(bob, kept)
    aof_settled(client)
    assert secret.encode() in aof.read_bytes()  # every command that wrote it is in the file

    account_services.account_delete(user_id=alice.pk)
    aof_settled(client)
    assert client.exists(stream_key(Message.objects.get(content=f"answer {kept}").pk))
    text = aof.read_bytes()
    assert secret.encode() not in text and kept.encode() in text  # rewritten from the data kept


def _index_holding(word: str) -> bool:
    """Whether SQLite's full-text index of passages still holds ``word`` in any of its segments (its shadow
    table), whatever a MATCH says."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT block FROM chat_passage_fts_data")
        return any(word.encode() in bytes(block or b"") for (block,) in cursor.fetchall())


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's FTS5 index; PostgreSQL's GIN index is vacuumed")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["its conversation", "the account", "taken back before sending"])
def test_a_deleted_documents_words_leave_the_full_text_index_too(cast, how):
    """FTS5 records a deletion as a segment that carries the deleted terms, beside the one that held them, until
    segments merge: a deleted account's document stayed readable in the index (and the database file)."""
    from chat.models import Attachment, Passage

    _, alice, bob = cast
    rare, kept = "zqxjkwvb", "plmqrtzx"  # words the porter stemmer leaves as they are
    chat = chat_of(alice, words("gone"))
    pending = how == "taken back before sending"
    document = Attachment.objects.create(
        owner=alice, conversation=None if pending else chat, name="notes.txt", kind="text", size=40, text=rare
    )
    Passage.objects.create(attachment=document, seq=1, text=f"The diagnosis: {rare}.")
    bobs = Attachment.objects.create(
        owner=bob, conversation=chat_of(bob, words("b")), name="b.txt", kind="text", size=9, text=kept
    )
    Passage.objects.create(attachment=bobs, seq=1, text=f"Bob's {kept}.")
    assert _index_holding(rare) and _index_holding(kept)

    if how == "its conversation":
        organise.conversation_delete(user=alice, conversation_id=chat.pk)
    elif how == "the account":
        account_services.account_delete(user_id=alice.pk)
    else:
        from chat.documents import services as document_services

        document_services.attachment_remove_pending(user=alice, attachment_id=document.pk)

    assert not Passage.objects.filter(attachment_id=document.pk).exists()
    sweep.sweep()  # the next sweep merges the index, once for every deletion since the last
    assert not _index_holding(rare)
    assert _index_holding(kept)  # another person's document is still found
