"""The live generations page: replies queued or streaming right now, with their worker and tokens so far from
the real Redis (written through the worker's own heartbeat code), and a Cancel that goes the owner's Stop's way."""

import asyncio
import re
from datetime import timedelta

import pytest
import redis
from channels.layers import get_channel_layer
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from chat import events, names
from chat.conversations import services as conversation_services
from chat.errors import ChatError
from chat.models import AuditEvent, Message
from chat.replies import liveness
from chat.replies.services import StopOutcome
from chat.review import services as review_services
from tests.chat.admin.conftest import make_chat

pytestmark = pytest.mark.django_db

PAGE = reverse("admin:chat_livegeneration_changelist")
CANCELLED = AuditEvent.Action.CANCELLED_GENERATION
EMPTY = "No replies are being generated right now."


def cancel_url(message_id):
    return reverse("admin:chat_livegeneration_cancel", args=[message_id])


@pytest.fixture
def held():
    """Leases and token counts written as a worker's heartbeat writes them; released afterwards."""
    taken = []

    def hold(reply, worker="gpu-worker-7", tokens=None):
        liveness.heartbeat(worker, [reply.pk], {reply.pk: tokens} if tokens is not None else None)
        taken.append(reply.pk)

    yield hold
    for pk in taken:
        liveness.release(pk)


def live_reply(owner, status, *, title="chat", minutes_ago=0):
    """A conversation whose newest reply is queued or streaming (as message_send / reply_claim leave it)."""
    reply = make_chat(owner, turns=1, title=title).replies[-1]
    now = timezone.now()
    Message.objects.filter(pk=reply.pk).update(
        status=status,
        finish_reason="",
        content="",
        completion_tokens=None,
        created_at=now - timedelta(minutes=minutes_ago),
        started_at=now - timedelta(seconds=30) if status == Message.Status.STREAMING else None,
    )
    return Message.objects.get(pk=reply.pk)


def row_cells(html: str, pk: int) -> dict[str, str]:
    """The plain-text cells of one row of the list, by column."""
    row = html.split(f'name="_selected_action" value="{pk}"')[1].split("</tr>")[0]
    return dict(re.findall(r'<td class="field-(\w+)">([^<]*)</td>', row))


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_the_page_lists_only_replies_being_generated_with_their_worker_and_tokens(people, client_for, held):
    make_chat(people.owner, title="done")
    make_chat(people.owner, title="broken", reply_status=Message.Status.FAILED)
    queued = live_reply(people.owner, Message.Status.QUEUED, title="waiting chat", minutes_ago=3)
    streaming = live_reply(people.reviewer, Message.Status.STREAMING, title="busy chat")
    held(streaming, worker="gpu-worker-7", tokens=117)
    response = client_for(people.reviewer).get(PAGE)
    assert response.status_code == 200
    rows = response.context["cl"].result_list
    assert [r.pk for r in rows] == [queued.pk, streaming.pk]  # the longest wait first
    assert [(r.progress.worker, r.progress.tokens) for r in rows] == [(None, None), ("gpu-worker-7", 117)]
    html = response.content.decode()
    assert re.findall(r'<th scope="col" class="column-\w+">\s*<div class="text"><span>([^<]*)</span>', html) == [
        "ID",
        "User",
        "Conversation",
        "Model",
        "Status",
        "Waiting",
        "Streaming for",
        "Tokens so far",
        "Worker",
        "",
    ]
    cells = row_cells(html, streaming.pk)
    assert {k: cells[k] for k in ("owner", "model_column", "state", "streaming_for", "tokens", "holder")} == {
        "owner": "reviewer",
        "model_column": "m1",
        "state": "streaming",
        "streaming_for": "30 s",
        "tokens": "117",
        "holder": "gpu-worker-7",
    }
    queued_cells = row_cells(html, queued.pk)
    assert queued_cells["waiting"].startswith("3 min 0") and queued_cells["holder"] == queued_cells["tokens"] == "—"
    assert queued_cells["streaming_for"] == "—" and queued_cells["state"] == "queued"
    conversation_url = reverse("admin:chat_conversation_change", args=[streaming.conversation_id])
    assert f'<a href="{conversation_url}">busy chat</a>' in html
    assert f'formaction="{cancel_url(queued.pk)}"' in html and '<form id="live-cancel" method="post"' in html
    assert "chat/admin/live_refresh.js" in html and EMPTY not in html
    assert "done" not in {r.conversation.title for r in rows}


def test_an_empty_page_says_nothing_is_being_generated(people, client_for):
    make_chat(people.owner)
    response = client_for(people.reviewer).get(PAGE)
    assert response.status_code == 200 and EMPTY in response.content.decode()
    assert 'http-equiv="refresh"' in response.content.decode()  # the fallback without script


def test_a_page_costs_the_same_queries_and_one_redis_round_trip_however_many_rows(
    people, client_for, held, django_user_model, monkeypatch
):
    client = client_for(people.reviewer)
    round_trips = []  # every command redis-py sends outside a pipeline, by name (the real call still runs)
    send = redis.Redis.execute_command

    def counted(self, *args, **kwargs):
        round_trips.append(args[0])
        return send(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", counted)

    def cost():
        round_trips.clear()
        with CaptureQueriesContext(connection) as captured:
            assert client.get(PAGE).status_code == 200
        return len(captured), list(round_trips)

    def add(n):
        for i in range(n):
            owner = django_user_model.objects.create_user(username=f"live{i}_{n}")
            held(live_reply(owner, Message.Status.STREAMING), worker=f"w{i}", tokens=i)
            live_reply(owner, Message.Status.QUEUED)

    add(2)
    few = cost()
    add(20)
    many = cost()
    assert many == few and few[1] == ["MGET"], (few, many)
    assert few[0] <= 10


def test_cancelling_a_queued_reply_ends_it_stopped_and_audits_it(people, client_for):
    queued = live_reply(people.owner, Message.Status.QUEUED)
    response = client_for(people.reviewer).post(cancel_url(queued.pk))
    assert response.status_code == 302 and response.url == PAGE
    queued.refresh_from_db()
    assert (queued.status, queued.finish_reason, queued.finished_at is not None) == ("stopped", "cancelled", True)
    [event] = AuditEvent.objects.filter(action=CANCELLED)
    assert (event.actor, event.conversation_id, event.message_id) == (
        people.reviewer,
        queued.conversation_id,
        queued.pk,
    )
    assert event.details == {"was": "queued", "outcome": "stopped", "owner_id": people.owner.pk}
    assert messages_of(response) == [f"Cancelled 1 reply still queued: #{queued.pk}."]


def test_cancelling_a_streaming_reply_asks_its_worker_to_stop(people, client_for):
    streaming = live_reply(people.owner, Message.Status.STREAMING)
    response = client_for(people.reviewer).post(cancel_url(streaming.pk))
    streaming.refresh_from_db()
    assert (streaming.status, streaming.stop_requested) == ("streaming", True)  # its worker ends it
    assert AuditEvent.objects.get(action=CANCELLED).details["outcome"] == "stopping"
    assert "the worker ends each with the text so far" in messages_of(response)[0]
    assert ">streaming (stopping)<" in client_for(people.reviewer).get(PAGE).content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_cancel_is_broadcast_to_the_workers_as_a_stop_is(people, client_for):
    """Committed, then told to every worker through the channel layer, as the owner's Stop (real Redis)."""
    streaming = live_reply(people.owner, Message.Status.STREAMING)
    client = client_for(people.reviewer)

    async def go():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(names.WORKERS_GROUP, channel)
        try:
            response = await asyncio.to_thread(client.post, cancel_url(streaming.pk))
            while True:  # other tests may stop other replies meanwhile
                event = await asyncio.wait_for(layer.receive(channel), 10)
                if event.get("message") == streaming.pk:
                    return response, event
        finally:
            await layer.group_discard(names.WORKERS_GROUP, channel)

    response, event = asyncio.run(go())
    assert response.status_code == 302 and event == events.cancel_event(streaming.pk)


def test_a_reply_that_already_finished_is_reported_not_an_error(people, client_for):
    chat = make_chat(people.owner)
    response = client_for(people.reviewer).post(cancel_url(chat.replies[-1].pk))
    assert response.status_code == 302
    assert messages_of(response) == [f"Already finished, nothing to cancel: #{chat.replies[-1].pk}."]
    assert not AuditEvent.objects.filter(action=CANCELLED).exists()
    assert client_for(people.reviewer).post(cancel_url(999999)).status_code == 302


def test_the_bulk_action_cancels_each_selected_reply_and_reports_the_finished(people, client_for):
    queued = live_reply(people.owner, Message.Status.QUEUED)
    streaming = live_reply(people.owner, Message.Status.STREAMING)
    ended = live_reply(people.owner, Message.Status.STREAMING)
    Message.objects.filter(pk=ended.pk).update(status="complete")  # ended after the page was drawn
    response = client_for(people.reviewer).post(
        PAGE, {"action": "cancel_selected", ACTION_CHECKBOX_NAME: [queued.pk, streaming.pk, ended.pk]}
    )
    assert response.status_code == 302
    assert dict(Message.objects.filter(pk__in=[queued.pk, streaming.pk, ended.pk]).values_list("pk", "status")) == {
        queued.pk: "stopped",
        streaming.pk: "streaming",
        ended.pk: "complete",
    }
    assert sorted(AuditEvent.objects.filter(action=CANCELLED).values_list("message_id", flat=True)) == [
        queued.pk,
        streaming.pk,
    ]
    said = messages_of(response)
    assert said[0] == f"Cancelled 1 reply still queued: #{queued.pk}."
    assert said[1].startswith(f"Stopping 1 reply being streamed: #{streaming.pk};")
    assert said[2] == f"Already finished, nothing to cancel: #{ended.pk}."


def test_staff_without_the_review_permission_get_403_and_cancel_nothing(people, client_for):
    queued = live_reply(people.owner, Message.Status.QUEUED)
    client = client_for(people.staff)
    assert client.get(PAGE).status_code == 403
    assert client.post(cancel_url(queued.pk)).status_code == 403
    assert client.post(PAGE, {"action": "cancel_selected", ACTION_CHECKBOX_NAME: [queued.pk]}).status_code == 403
    assert Message.objects.get(pk=queued.pk).status == "queued" and not AuditEvent.objects.exists()
    assert "livegeneration" not in client.get(reverse("admin:index")).content.decode()
    with pytest.raises(ChatError) as err:
        review_services.reply_cancel(actor=people.staff, message_ids=[queued.pk])
    assert err.value.code == "forbidden"


def test_a_normal_user_cannot_reach_the_page(people, client_for):
    queued = live_reply(people.owner, Message.Status.QUEUED)
    client = client_for(people.owner)
    for response in (client.get(PAGE), client.post(cancel_url(queued.pk))):
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login"))
    assert Message.objects.get(pk=queued.pk).status == "queued"


def test_the_cancel_url_takes_only_a_post_and_there_is_no_change_page(people, client_for):
    queued = live_reply(people.owner, Message.Status.QUEUED)
    client = client_for(people.reviewer)
    assert client.get(cancel_url(queued.pk)).status_code == 405
    assert client.get(f"{PAGE}{queued.pk}/change/").status_code == 404  # its conversation's page is the way in
    assert Message.objects.get(pk=queued.pk).status == "queued"
    assert "livegeneration" in client.get(reverse("admin:index")).content.decode()


def test_the_owners_stop_and_a_reviewers_cancel_are_the_same_stop(people):

    first, second = (live_reply(people.owner, Message.Status.STREAMING) for _ in range(2))
    conversation_services.message_stop(user=people.owner, message_id=first.pk)
    assert review_services.reply_cancel(actor=people.reviewer, message_ids=[second.pk]) == {
        second.pk: StopOutcome.STOPPING
    }
    assert [(m.status, m.stop_requested) for m in Message.objects.filter(pk__in=[first.pk, second.pk])] == [
        ("streaming", True)
    ] * 2
