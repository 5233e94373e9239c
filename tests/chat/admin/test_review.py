"""The review workflow: review states and notes, bulk approve/flag, gold answers, the queue's order; each
change through chat.review, each with its audit row, none touching the owner's last activity."""

import re

import pytest
from django.db import connection
from django.urls import reverse

from chat.errors import ChatError
from chat.models import AuditEvent, Conversation, Feedback, GoldAnswer, Message
from chat.review import selectors, services
from tests.chat.admin.conftest import make_chat

pytestmark = pytest.mark.django_db

CHANGED = AuditEvent.Action.REVIEW_CHANGED


def test_review_set_stores_state_note_reviewer_and_an_audit_row(people):
    conversation = make_chat(people.owner)
    last_activity = Conversation.objects.get().updated_at
    assert (
        services.review_set(
            reviewer=people.reviewer,
            conversation_ids=[conversation.pk],
            state="needs_attention",
            note="  rude reply \x00",
        )
        == 1
    )
    row = Conversation.objects.get()
    assert (row.review_state, row.review_note, row.reviewed_by) == ("needs_attention", "rude reply", people.reviewer)
    assert row.reviewed_at is not None and row.updated_at == last_activity
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.conversation_id) == (CHANGED, people.reviewer, conversation.pk)
    assert event.details == {"state": "needs_attention", "note": "rude reply", "previous": "unreviewed"}


@pytest.mark.parametrize(
    "who,state,code",
    [("staff", "approved", "forbidden"), ("owner", "approved", "forbidden"), ("reviewer", "great", "invalid_state")],
)
def test_review_set_refuses_non_reviewers_and_unknown_states(people, who, state, code):
    conversation = make_chat(people.owner)
    with pytest.raises(ChatError) as err:
        services.review_set(reviewer=getattr(people, who), conversation_ids=[conversation.pk], state=state)
    assert err.value.code == code
    assert Conversation.objects.get().review_state == "unreviewed" and not AuditEvent.objects.exists()


def test_the_review_form_on_the_conversation_page(people, client_for):
    conversation = make_chat(people.owner)
    url = reverse("admin:chat_conversation_review", args=[conversation.pk])
    client = client_for(people.reviewer)
    assert client.get(url).status_code == 405
    response = client.post(url, {"state": "approved", "note": "fine"})
    assert response.status_code == 302 and response.url == reverse(
        "admin:chat_conversation_change", args=[conversation.pk]
    )
    row = Conversation.objects.get()
    assert (row.review_state, row.review_note, row.reviewed_by) == ("approved", "fine", people.reviewer)
    assert AuditEvent.objects.filter(action=CHANGED).count() == 1
    assert client.post(url, {"state": "bogus"}).status_code == 302
    assert Conversation.objects.get().review_state == "approved"  # an invalid form changes nothing


@pytest.mark.parametrize("changelist", ["admin:chat_conversation_changelist", "admin:chat_reviewqueue_changelist"])
@pytest.mark.parametrize("action,state", [("approve", "approved"), ("flag", "needs_attention")])
def test_bulk_actions_approve_and_flag(people, client_for, changelist, action, state):
    chats = [make_chat(people.owner, title=f"c{n}") for n in range(3)]
    chosen = [c.pk for c in chats[:2]]
    response = client_for(people.reviewer).post(reverse(changelist), {"action": action, "_selected_action": chosen})
    assert response.status_code == 302
    assert dict(Conversation.objects.values_list("pk", "review_state")) == {
        chats[0].pk: state,
        chats[1].pk: state,
        chats[2].pk: "unreviewed",
    }
    assert sorted(AuditEvent.objects.filter(action=CHANGED).values_list("conversation_id", flat=True)) == sorted(chosen)


def test_staff_without_the_permission_cannot_run_the_bulk_actions(people, client_for):
    conversation = make_chat(people.owner)
    response = client_for(people.staff).post(
        reverse("admin:chat_conversation_changelist"), {"action": "approve", "_selected_action": [conversation.pk]}
    )
    assert response.status_code == 403
    assert Conversation.objects.get().review_state == "unreviewed"


def test_a_reviewer_attaches_replaces_and_removes_a_gold_answer(people, client_for):
    conversation = make_chat(people.owner)
    reply = conversation.replies[0]
    url = reverse("admin:chat_conversation_gold", args=[conversation.pk, reply.pk])
    client = client_for(people.reviewer)
    page = client.get(url)
    assert page.status_code == 200 and b"answer 0" in page.content
    assert client.post(url, {"content": "the right answer"}).status_code == 302
    gold = GoldAnswer.objects.get()
    assert (gold.message, gold.content, gold.author) == (reply, "the right answer", people.reviewer)
    client.post(url, {"content": "a better one"})
    assert list(GoldAnswer.objects.values_list("content", flat=True)) == ["a better one"]
    transcript = client.get(reverse("admin:chat_conversation_change", args=[conversation.pk])).content.decode()
    assert "a better one" in transcript and "change gold answer" in transcript
    client.post(url, {"content": ""})
    assert not GoldAnswer.objects.exists()
    changes = AuditEvent.objects.filter(action=AuditEvent.Action.GOLD_ANSWER_CHANGED).order_by("id")
    assert [(e.details["previous"], e.details["content"]) for e in changes] == [
        (None, "the right answer"),
        ("the right answer", "a better one"),
        ("a better one", ""),
    ]
    assert {e.message_id for e in changes} == {reply.pk}


def test_gold_answers_belong_to_assistant_replies_and_reviewers(people, client_for):
    conversation = make_chat(people.owner)
    question = conversation.replies[0].parent
    with pytest.raises(ChatError) as err:
        services.gold_answer_set(reviewer=people.reviewer, message_id=question.pk, content="x")
    assert err.value.code == "not_an_answer"
    with pytest.raises(ChatError) as err:
        services.gold_answer_set(reviewer=people.staff, message_id=conversation.replies[0].pk, content="x")
    assert err.value.code == "forbidden"
    assert (
        client_for(people.reviewer)
        .get(reverse("admin:chat_conversation_gold", args=[conversation.pk, question.pk]))
        .status_code
        == 404
    )
    assert (
        client_for(people.staff)
        .post(
            reverse("admin:chat_conversation_gold", args=[conversation.pk, conversation.replies[0].pk]),
            {"content": "x"},
        )
        .status_code
        == 403
    )
    assert not GoldAnswer.objects.exists()


def test_the_queue_lists_unreviewed_chats_negative_feedback_first_then_failures(people, client_for):
    """Made oldest first in the reverse of the expected order, so neither id nor recency explains the result."""
    plain_old = make_chat(people.owner, title="plain old")
    failed = make_chat(people.owner, title="failed", reply_status=Message.Status.FAILED)
    stopped = make_chat(people.owner, title="stopped", reply_status=Message.Status.STOPPED)
    disliked = make_chat(people.owner, title="disliked")
    approved_disliked = make_chat(people.owner, title="approved but disliked")
    plain_new = make_chat(people.owner, title="plain new")
    liked = make_chat(people.owner, title="liked")
    for chat in (disliked, approved_disliked):
        Feedback.objects.create(message=chat.replies[-1], user=people.owner, rating=-1)
    Feedback.objects.create(message=liked.replies[-1], user=people.owner, rating=1)
    services.review_set(reviewer=people.reviewer, conversation_ids=[approved_disliked.pk], state="approved")
    # Activity order, newest first: plain_new, liked, then the ones below in creation order reversed.
    for n, chat in enumerate([plain_old, failed, stopped, disliked, plain_new, liked]):
        Conversation.objects.filter(pk=chat.pk).update(updated_at=chat.created_at.replace(year=2020, day=1 + n))

    response = client_for(people.reviewer).get(reverse("admin:chat_reviewqueue_changelist"))
    assert response.status_code == 200
    titles = [row.title for row in response.context["cl"].result_list]
    assert titles == ["disliked", "stopped", "failed", "liked", "plain new", "plain old"]
    assert b"approved but disliked" not in response.content
    html = response.content.decode()
    assert reverse("admin:chat_conversation_change", args=[disliked.pk]) in html  # rows open the transcript page


PLACEHOLDERS = r" IN \(((?:%s, )*%s)\)"  # a list of bound ids, as Django writes it before the driver sees it
IN_LISTS = {
    "conversations": re.compile(r'(?:"chat_conversation"\."id"|"conversation_id")' + PLACEHOLDERS),
    "replies": re.compile(r'"chat_message"\."id"' + PLACEHOLDERS),
}


@pytest.mark.parametrize("action", ["approve", "delete_selected", "cancel_selected"])
def test_a_bulk_action_over_select_all_binds_its_ids_a_chunk_at_a_time(people, client_for, monkeypatch, action):
    """More ids than one chunk (3 here; 500 in production, far under SQLite's 32,766 bound parameters): every
    row is acted on and audited, and no statement binds more than a chunk of the ids."""

    monkeypatch.setattr(selectors, "ID_CHUNK", 3)
    chats = [make_chat(people.owner, title=f"c{n}") for n in range(8)]
    if action == "cancel_selected":
        for chat in chats:
            Message.objects.create(conversation=chat, role="assistant", status="queued", model_name="m1")
    page, who, kind = {
        "approve": ("admin:chat_conversation_changelist", people.reviewer, "conversations"),
        "delete_selected": ("admin:chat_conversation_changelist", people.root, "conversations"),
        "cancel_selected": ("admin:chat_livegeneration_changelist", people.reviewer, "replies"),
    }[action]
    bound = []

    def measure(execute, sql, params, many, context):
        bound.extend(m.group(1).count("%s") for m in IN_LISTS[kind].finditer(sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(measure):
        response = client_for(who).post(
            reverse(page),
            {"action": action, "select_across": "1", "index": "0", "_selected_action": [chats[0].pk], "post": "yes"},
        )
    assert response.status_code == 302
    assert bound and max(bound) == 3, bound  # chunks of 3, never the 8 at once
    audited = AuditEvent.objects.values_list("action", flat=True)
    if action == "approve":
        assert set(Conversation.objects.values_list("review_state", flat=True)) == {"approved"}
        assert list(audited) == [CHANGED] * 8
    elif action == "delete_selected":
        assert not Conversation.objects.exists() and list(audited) == ["deleted"] * 8
    else:
        assert not Message.objects.filter(status="queued").exists()
        assert list(audited) == ["cancelled_generation"] * 8


def test_id_chunks_walks_a_list_in_memory_and_a_queryset_one_query_per_chunk(people):
    """The review writes and the export both take ids through ``selectors.id_chunks``: a caller's list, deduplicated
    and sorted; a queryset by keyset pages of its primary key, never the whole table at once."""
    from django.test.utils import CaptureQueriesContext

    from chat.review.selectors import id_chunks

    assert list(id_chunks(["7", 3, 7, 1, 9, 4], size=2)) == [[1, 3], [4, 7], [9]]
    assert list(id_chunks([], size=2)) == []
    pks = [make_chat(people.owner, turns=1).pk for _ in range(5)]
    conversations = Conversation.objects.filter(pk__in=pks).order_by("-pk")  # its own order is not the walk's
    with CaptureQueriesContext(connection) as captured:
        assert list(id_chunks(conversations, size=2)) == [pks[0:2], pks[2:4], pks[4:5]]
    assert len(captured) == 3 and all(" LIMIT 2" in q["sql"] for q in captured), captured.captured_queries
    with CaptureQueriesContext(connection) as captured:
        assert list(id_chunks(conversations.exclude(pk=pks[4]), size=2)) == [pks[0:2], pks[2:4]]
    assert len(captured) == 3  # a full last chunk: one more query finds nothing after it
