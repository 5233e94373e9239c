"""A reply's frames reaching the socket that shows it: the text so far on subscribing and only newer deltas after,
deltas in order once whatever order the layer brings them, a lost frame caught up, nothing after a reply's
``done``, and Continue's second end delivered. The real ASGI app and the real Redis layer."""

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_subscribe_sends_text_so_far_then_only_newer_deltas(make_user, session_cookie):
    """A reload mid-reply: the snapshot comes from the stream log, later deltas from the group, no duplicates."""
    from chat.conversations import services as conversation_services
    from chat.replies import services as reply_services
    from chat.worker.link import WorkerLink

    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="Hi")
    reply = reply_services.reply_claim(message_id=sent.assistant_message.id)
    link = WorkerLink()  # the worker's side, as the task uses it
    link.clear_stream(reply.id)
    pieces = ["Hel", "lo", " world"]
    link.delta(sent.conversation.id, reply.id, 0, pieces)
    link.delta(sent.conversation.id, reply.id, 1, pieces)
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "subscribe", "conversation": sent.conversation.id})
        snapshot = await comm.receive_json_from(timeout=10)
        ack = await comm.receive_json_from(timeout=10)
        await asyncio.to_thread(link.delta, sent.conversation.id, reply.id, 1, pieces)  # a late duplicate: dropped
        await asyncio.to_thread(link.delta, sent.conversation.id, reply.id, 2, pieces)
        delta = await comm.receive_json_from(timeout=10)
        await database_sync_to_async(reply_services.reply_finish)(  # sends done on commit
            message_id=reply.id, content="Hello world", status="complete", finish_reason="stop"
        )
        done = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return snapshot, ack, delta, done

    try:
        snapshot, ack, delta, done = run(go())
    finally:
        link.close()
    assert snapshot["message"]["content"] == "Hello" and snapshot["seq"] == 1
    assert snapshot["message"]["status"] == "streaming"
    assert ack == {
        "type": "subscribed",
        "conversation": sent.conversation.id,
        "active": reply.id,
        "actives": [reply.id],
    }
    assert delta == {"type": "delta", "message": reply.id, "seq": 2, "text": " world"}
    assert done["type"] == "done" and done["content"] == "Hello world"


def test_out_of_order_and_repeated_deltas_reach_the_client_in_order_once(make_user, session_cookie):
    """The channel layer may redeliver a message late (after a cancelled receive): the socket still sends
    every seq once, in order, filling a gap from the stream log."""
    from channels.layers import get_channel_layer

    from chat import events
    from chat.conversations import services as conversation_services
    from chat.names import stream_key
    from chat.store import client

    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="Hi")
    reply = sent.assistant_message.id
    key = stream_key(reply)
    client().delete(key)
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "subscribe", "conversation": sent.conversation.id})
        assert (await frames_until(comm, "subscribed"))[0]["seq"] == -1  # nothing written yet
        await asyncio.to_thread(client().rpush, key, "A", " word", " here")  # the worker logs before it publishes
        layer = get_channel_layer()
        group = events.conversation_group(sent.conversation.id)
        for seq in (0, 2, 1, 2):  # seq 1 overtaken by 2, then both again
            await layer.group_send(group, events.as_event(events.delta_frame(reply, seq, ["A", " word", " here"][seq])))
        out = [await comm.receive_json_from(timeout=10) for _ in range(3)]
        assert await comm.receive_nothing(timeout=0.5)
        await comm.disconnect()
        return out

    out = run(go())
    assert [(f["seq"], f["text"]) for f in out] == [(0, "A"), (1, " word"), (2, " here")]


def test_a_lost_message_frame_and_a_lost_done_frame_still_arrive(make_user, session_cookie, monkeypatch):
    """The channel layer can lose a frame. The socket's watchdog finds the reply quiet and sends what the
    database holds: the assistant's message frame, then its done."""
    from chat import events
    from chat.realtime import delivery
    from chat.replies import services as reply_services

    monkeypatch.setattr(delivery, "WATCH_INTERVAL_S", 0.2)
    real_notify = events.notify
    lost = []

    def lossy(user_id, frame, person=False):
        if (frame["type"] == "message" and frame["message"]["role"] == "assistant") or frame["type"] == "done":
            lost.append(frame["type"])
            return
        real_notify(user_id, frame, person)

    monkeypatch.setattr(events, "notify", lossy)
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Hi"})
        first = [await comm.receive_json_from(timeout=10) for _ in range(3)]
        reply = first[-1]["message"]["id"]
        await database_sync_to_async(reply_services.reply_claim)(message_id=reply)
        await database_sync_to_async(reply_services.reply_finish)(
            message_id=reply, content="", status="failed", finish_reason="error", error="The model broke."
        )
        done = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return first, done

    first, done = run(go())
    assert lost == ["message", "done"]
    assert [f["type"] for f in first] == ["conversation", "message", "message"]
    assert first[-1]["message"]["role"] == "assistant"  # from the database, not the layer
    assert (done["type"], done["status"], done["error"]) == ("done", "failed", "The model broke.")


def test_a_reply_frame_handled_after_its_done_is_dropped_and_the_done_sent_once(make_user, session_cookie, monkeypatch):
    """A slow socket (or the layer re-ordering) can handle a reply's queued message frame after the watchdog has
    already ended that reply from the database. The stale frame must not make the socket follow the reply again:
    it sent the done a second time, and the load test's client, reading that done as its next reply's end, sent
    into a conversation still busy. The page still gets what the frame carried (here the sending tab's client id),
    with the reply as it ended, not as waiting."""
    from chat import events
    from chat.realtime import delivery
    from chat.replies import services as reply_services

    monkeypatch.setattr(delivery, "WATCH_INTERVAL_S", 0.2)
    real_notify = events.notify
    held = []

    def late(user_id, frame, person=False):
        if frame["type"] == "message" and frame["message"]["role"] == "assistant":
            held.append((user_id, frame, person))  # published below, once the reply has ended
            return
        real_notify(user_id, frame, person)

    monkeypatch.setattr(events, "notify", late)
    cookie = session_cookie(make_user())

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Hi", "client_id": "c1"})
        first = [await comm.receive_json_from(timeout=10) for _ in range(3)]  # the third from the watchdog
        reply = first[-1]["message"]["id"]
        await database_sync_to_async(reply_services.reply_claim)(message_id=reply)
        await database_sync_to_async(reply_services.reply_finish)(
            message_id=reply, content="Hello.", status="complete", finish_reason="stop"
        )
        done = await frames_until(comm, "done")
        await asyncio.to_thread(real_notify, *held[0])  # the reply's own frame, queued and empty, comes late
        after = []
        while not await comm.receive_nothing(timeout=1):  # five watchdog rounds
            after.append(await comm.receive_json_from(timeout=1))
        await comm.disconnect()
        return first, done, after

    first, done, after = run(go())
    assert [f["type"] for f in first] == ["conversation", "message", "message"]
    assert [f["type"] for f in done] == ["done"] and done[0]["content"] == "Hello."
    assert [f["type"] for f in after] == ["message"]  # and no second done
    late = after[0]
    assert late["client_id"] == "c1" and late["message"]["id"] == first[-1]["message"]["id"]
    assert (late["message"]["status"], late["message"]["content"]) == ("complete", "Hello.")


def test_continue_over_the_socket_requeues_the_same_reply_and_its_new_end_is_delivered(make_user, session_cookie):
    """The socket already sent this reply's done once; Continue makes it stream again under the same id, so its
    second done must still come (the delivery forgets that it ended), with the text kept."""
    alice, bob = make_user("alice"), make_user("bob")
    alice_cookie, bob_cookie = session_cookie(alice), session_cookie(bob)

    async def go():
        comm, _, _ = await connect(alice_cookie)
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Tell me a story"})
        reply = None
        while reply is None:  # the conversation, the person's message, then the reply
            frame = await comm.receive_json_from(timeout=10)
            if frame["type"] == "message" and frame["message"]["role"] == "assistant":
                reply = frame
        reply_id = reply["message"]["id"]
        await comm.send_json_to({"type": "stop", "message": reply_id})
        await frames_until(comm, "done")
        await database_sync_to_async(
            lambda: Message.objects.filter(pk=reply_id).update(
                status="complete", finish_reason="length", content="Once upon a time", completion_tokens=4
            )
        )()
        other, _, _ = await connect(bob_cookie)
        await other.send_json_to({"type": "continue", "message": reply_id})
        refused = await other.receive_json_from(timeout=10)
        await other.disconnect()
        await comm.send_json_to({"type": "continue", "message": reply_id, "client_id": "c2"})
        again = await comm.receive_json_from(timeout=10)
        await comm.send_json_to({"type": "continue", "message": reply_id})
        twice = await comm.receive_json_from(timeout=10)
        await comm.send_json_to({"type": "stop", "message": reply_id})
        done = (await frames_until(comm, "done"))[-1]
        await comm.disconnect()
        return refused, again, twice, done

    refused, again, twice, done = run(go())
    assert refused["code"] == "not_found"
    assert again["type"] == "message" and again["client_id"] == "c2"
    assert (again["message"]["status"], again["message"]["content"], again["message"]["finish_reason"]) == (
        "queued",
        "Once upon a time",
        "",
    )
    assert twice["code"] == "not_continuable" and twice["detail"].endswith(".")
    assert (done["status"], done["content"], done["usage"]["completion_tokens"]) == ("stopped", "Once upon a time", 4)
    assert Message.objects.filter(role="assistant").count() == 1


def test_only_a_continue_of_a_reply_cut_at_its_length_follows_an_ended_reply_again():
    """After a reply's done, a queued frame of it starts it again only as a Continue would queue it: the reply had
    ended complete at its length bound, and the frame carries at least the text that done carried."""
    from chat.realtime.delivery import ReplyDelivery

    def done(message, content, status="complete", reason="length"):
        return {"type": "done", "message": message, "content": content, "status": status, "finish_reason": reason}

    async def go():
        sent = []

        async def send_json(frame):
            sent.append(frame)

        delivery = ReplyDelivery(send_json)
        try:
            for message, frame in enumerate(
                [
                    done(1, "Once upon"),
                    done(2, "Once upon", "stopped", "cancelled"),  # a Continue stopped before it wrote a word
                    done(3, "Once upon", "complete", "stop"),
                    done(4, "Once upon a time"),  # the Continue's own run ended
                ],
                start=1,
            ):
                await delivery.done(frame)
            return [
                delivery.queued(1, "Once upon"),  # Continue: the same text, queued again
                delivery.queued(2, "Once upon"),
                delivery.queued(3, "Once upon"),
                delivery.queued(4, "Once upon"),  # the frame that queued the run that has ended
                delivery.queued(5, ""),  # a reply this socket has not seen end
            ], len(sent)
        finally:
            delivery.close()

    assert run(go()) == ([True, False, False, False, True], 4)
