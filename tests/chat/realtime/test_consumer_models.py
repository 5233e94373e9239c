"""Models over the socket, through the real ASGI app and Redis layer: the frames of a send to a picked model,
of Compare and of a pick, each checked against its schema, and the refusals."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import served
from chat.frames import check_frame
from chat.models import Comparison, Message
from chat.replies import liveness
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)
DEFAULT = "bundled:smollm2-135m-instruct"


@pytest.fixture
def two_models(settings):
    settings.CHAT_SERVED_MODELS = served.parse(f"{DEFAULT}={DEFAULT},other=/models/other", "")
    liveness.heartbeat("stand-in-other", [], model="other")
    yield
    liveness.worker_gone("stand-in-other", "other")


def test_compare_then_pick_over_the_socket(two_models, make_user, session_cookie):
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, connected, _ = await connect(cookie)
        assert connected
        await comm.send_json_to({"type": "send", "content": "Hi", "model": "gpt-9", "client_id": "a"})
        refused = await comm.receive_json_from(timeout=10)
        await comm.send_json_to({"type": "send", "content": "Hi", "compare": "other", "blind": True, "client_id": "b"})
        sent = await frames_until(comm, "compared")
        replies = [f["message"] for f in sent if f["type"] == "message" and f["message"]["role"] == "assistant"]
        await database_sync_to_async(
            lambda: Message.objects.filter(pk__in=[r["id"] for r in replies]).update(status="complete", content="x")
        )()
        await comm.send_json_to({"type": "pick", "message": replies[1]["id"]})
        picked = await frames_until(comm, "thread")
        await comm.send_json_to({"type": "pick", "message": replies[0]["id"]})
        again = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return refused, sent, replies, picked, again

    refused, sent, replies, picked, again = run(go())
    for frame in (refused, *sent, *picked, again):
        check_frame(frame)
    assert refused["code"] == "model_not_found" and refused["client_id"] == "a" and DEFAULT in refused["detail"]
    assert [f["type"] for f in sent] == ["conversation", "message", "message", "message", "compared"]
    assert [r["model"] for r in replies] == [DEFAULT, "other"]
    assert replies[0]["siblings"] == replies[1]["siblings"] == [replies[0]["id"], replies[1]["id"]]
    comparison = sent[-1]["comparison"]
    assert (comparison["blind"], comparison["chosen"], comparison["second"]) == (True, None, replies[1]["id"])
    assert [f["type"] for f in picked] == ["compared", "thread"] and picked[0]["comparison"]["chosen"] == replies[1][
        "id"
    ]
    assert Comparison.objects.get().chosen_id == replies[1]["id"]
    assert again["code"] == "already_picked"


def test_every_frame_the_services_publish_has_a_handler_in_the_consumer():
    """A group event without a handler raises inside Channels and ends the socket: every frame type published
    to a person's group (all but the socket's own answers, ``subscribed`` and ``error``) must have one."""
    from chat.frames import FRAMES
    from chat.realtime.consumers import ChatConsumer

    published = set(FRAMES) - {"subscribed", "error"}
    assert {t for t in published if not hasattr(ChatConsumer, f"chat_{t}")} == set()


def test_a_reload_during_compare_resumes_both_replies(two_models, make_user, session_cookie):
    """Both of a Compare's replies stream at once: a subscribe answers with the text so far of each, and each
    one's later deltas follow."""
    from chat.conversations import services as conversation_services
    from chat.replies import services as reply_services
    from chat.worker.link import WorkerLink

    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="Hi", compare="other")
    replies = [reply_services.reply_claim(message_id=m.id) for m in (sent.assistant_message, sent.compared)]
    link = WorkerLink()
    for n, reply in enumerate(replies):
        link.clear_stream(reply.id)
        link.delta(sent.conversation.id, reply.id, 0, [f"reply {n}"])
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "subscribe", "conversation": sent.conversation.id})
        got = await frames_until(comm, "subscribed")
        await asyncio.to_thread(link.delta, sent.conversation.id, replies[1].id, 1, ["reply 1", " goes on"])
        later = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return got, later

    try:
        got, later = run(go())
    finally:
        link.close()
    snapshots, ack = got[:-1], got[-1]
    assert [(f["message"]["id"], f["message"]["content"], f["seq"]) for f in snapshots] == [
        (replies[0].id, "reply 0", 0),
        (replies[1].id, "reply 1", 0),
    ]
    assert ack["actives"] == [replies[0].id, replies[1].id] and ack["active"] == replies[1].id
    assert (later["type"], later["message"], later["text"]) == ("delta", replies[1].id, " goes on")
