"""The websocket consumer through the real ASGI app (session auth, origin check) and the real Redis layer."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.helpers.support import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


def test_anonymous_socket_is_closed_4401():
    async def go():
        comm, connected, _ = await connect()
        assert connected
        assert (await comm.receive_output(timeout=5))["code"] == 4401

    run(go())


def test_cross_origin_socket_is_refused(make_user, session_cookie):
    cookie = session_cookie(make_user())

    async def go():
        comm, connected, _ = await connect(cookie, origin=(b"origin", b"http://evil.example"))
        assert not connected

    run(go())


def test_send_stores_and_announces_the_messages(make_user, session_cookie):
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, connected, _ = await connect(cookie)
        assert connected
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Hi there", "client_id": "c1"})
        conv = await comm.receive_json_from(timeout=10)
        user_msg = await comm.receive_json_from(timeout=10)
        reply = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return conv, user_msg, reply

    conv, user_msg, reply = run(go())
    assert conv == {
        "type": "conversation",
        "conversation": {"id": conv["conversation"]["id"], "title": "Hi there"},
        "client_id": "c1",
    }  # the tab that sent it opens it
    assert user_msg["client_id"] == "c1" and user_msg["message"]["role"] == "user"
    assert reply["message"]["status"] == "queued" and reply["message"]["role"] == "assistant"
    stored = Message.objects.get(pk=reply["message"]["id"])
    assert stored.conversation.owner == user and stored.role == "assistant"


BAD_FRAMES = [
    (b"\x00\x01", "bad_frame"),
    ("{not json", "bad_json"),
    ("[1, 2]", "bad_frame"),
    ('{"no": "type"}', "bad_frame"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "stop", "message": "7"}', "bad_id"),
    ('{"type": "stop", "message": true}', "bad_id"),
    ('{"type": "subscribe", "conversation": -1}', "bad_id"),
    ('{"type": "stop", "message": 99999}', "not_found"),
    ('{"type": "send", "conversation": null, "content": ""}', "empty"),
    ('{"type": "send", "conversation": null, "content": "hi", "params": {"temperature": 9}}', "invalid_params"),
    (
        '{"type": "send", "conversation": null, "content": "hi", "params": {"max_new_tokens": 100000000}}',
        "invalid_params",
    ),
    ('{"type": "send", "conversation": null, "content": "hi", "client_id": 5}', "bad_frame"),
    ('{"type": "send", "conversation": "1", "content": "hi"}', "bad_id"),
    ('{"type": "regenerate", "message": 1, "client_id": 5}', "bad_frame"),
    (json.dumps({"type": "regenerate", "message": 1, "client_id": "x" * 101}), "bad_frame"),
    (
        '{"type": "send", "conversation": null, "content": "hi", "params": {"temperature": 1' + "0" * 400 + "}}",
        "invalid_params",
    ),
    ("[" * 30000 + "]" * 30000, "bad_json"),  # deeper than the parser's recursion limit, under the size limit
    (json.dumps({"type": "send", "conversation": None, "content": "x" * 70000}), "too_large"),
]


def test_bad_frames_get_error_frames_and_the_socket_keeps_working(make_user, session_cookie):
    cookie = session_cookie(make_user())

    async def go():
        comm, _, _ = await connect(cookie)
        codes = []
        for frame, _ in BAD_FRAMES:
            if isinstance(frame, bytes):
                await comm.send_to(bytes_data=frame)
            else:
                await comm.send_to(text_data=frame)
            reply = await comm.receive_json_from(timeout=10)
            assert reply["type"] == "error" and reply["detail"]
            codes.append(reply["code"])
        await comm.send_json_to({"type": "send", "conversation": None, "content": "still here"})
        assert (await comm.receive_json_from(timeout=10))["type"] == "conversation"
        await comm.disconnect()
        return codes

    assert run(go()) == [code for _, code in BAD_FRAMES]
    assert Message.objects.count() == 2  # only the valid send stored anything


def test_a_refusal_names_the_frame_it_refuses_and_a_title_change_names_no_send(make_user, session_cookie):
    """A refused send, edit or regenerate echoes its client_id (the page gives the text back); a rename's
    conversation frame carries none (no tab mistakes it for the start of its own new chat)."""
    from chat.conversations import services as conversation_services

    user = make_user()
    sent = conversation_services.message_send(user=user, conversation_id=None, content="first")
    Message.objects.filter(pk=sent.assistant_message.pk).update(status=Message.Status.COMPLETE)
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        out = []
        for frame in (
            {"type": "send", "conversation": None, "content": "  ", "client_id": "a"},
            {"type": "edit", "message": sent.assistant_message.id, "content": "x", "client_id": "b"},
            {"type": "regenerate", "message": sent.user_message.id, "client_id": "c"},
            {"type": "send", "conversation": None, "content": "x", "client_id": 7},
            {"type": "rename", "conversation": sent.conversation.id, "title": "Renamed"},
        ):
            await comm.send_json_to(frame)
            out.append(await comm.receive_json_from(timeout=10))
        await comm.disconnect()
        return out

    empty, not_editable, not_regenerable, bad_client_id, renamed = run(go())
    assert (empty["code"], empty["client_id"]) == ("empty", "a")
    assert (not_editable["code"], not_editable["client_id"]) == ("not_editable", "b")
    assert (not_regenerable["code"], not_regenerable["client_id"]) == ("not_regenerable", "c")
    assert bad_client_id["code"] == "bad_frame" and "client_id" not in bad_client_id
    assert renamed == {"type": "conversation", "conversation": {"id": sent.conversation.id, "title": "Renamed"}}


def test_every_frame_the_channel_layer_carries_reaches_the_socket_which_stays_open(make_user, session_cookie):
    """Each server frame but the two the consumer writes itself (error, subscribed) comes through the channel
    layer, and the consumer needs a handler per type: without one Channels raises and the socket drops (the
    compared frame of Compare once did, so the page reconnected and reloaded after every Compare)."""
    from chat import events
    from chat.frames import FRAMES

    user = make_user()
    cookie = session_cookie(user)
    samples = {
        "compared": {
            "type": "compared",
            "comparison": {"id": 1, "prompt": 2, "first": 3, "second": 4, "blind": True, "chosen": None},
        },
        "thread": {"type": "thread", "conversation": 5},
        "feedback": {"type": "feedback", "message": 3, "rating": 1, "comment": ""},
        "settings": {"type": "settings", "conversation": None, "system_prompt": "", "params": {}, "model": "m"},
        "deleted": {"type": "deleted", "conversation": 5},
        "conversation": {"type": "conversation", "conversation": {"id": 5, "title": "t"}},
        "organised": {"type": "organised", "conversations": [5, 6]},
        "queued": {"type": "queued", "message": 3, "conversation": 5, "ahead": 2},
        "activity": {"type": "activity", "conversation": 5, "message": 3, "state": "ended"},
    }
    # message, delta and done go through the reply's delivery; the consumer tests above and below cover them.
    assert set(samples) == set(FRAMES) - {"error", "subscribed", "message", "delta", "done"}

    async def go():
        comm, _, _ = await connect(cookie)
        got = []
        for frame in samples.values():
            await events.send_to_user(user.id, frame)
            got.append(await comm.receive_json_from(timeout=10))
        await comm.send_json_to({"type": "subscribe", "conversation": 99999})  # still open: answered
        refused = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return got, refused

    got, refused = run(go())
    assert got == list(samples.values())
    assert refused["code"] == "not_found"


def test_another_users_conversation_is_refused_over_the_socket(make_user, session_cookie):
    alice, bob = make_user("alice"), make_user("bob")
    from chat.conversations import services as conversation_services

    sent = conversation_services.message_send(user=alice, conversation_id=None, content="private")
    cookie = session_cookie(bob)

    async def go():
        comm, _, _ = await connect(cookie)
        out = []
        for frame in (
            {"type": "send", "conversation": sent.conversation.id, "content": "let me in"},
            {"type": "subscribe", "conversation": sent.conversation.id},
            {"type": "stop", "message": sent.assistant_message.id},
            {"type": "regenerate", "message": sent.assistant_message.id},
        ):
            await comm.send_json_to(frame)
            out.append(await comm.receive_json_from(timeout=10))
        await comm.disconnect()
        return out

    assert [f["code"] for f in run(go())] == ["not_found"] * 4
    assert Message.objects.count() == 2


def test_stop_of_a_queued_reply_sends_done_stopped(make_user, session_cookie):
    cookie = session_cookie(make_user())

    async def go():
        comm, _, _ = await connect(cookie)
        await comm.send_json_to({"type": "send", "conversation": None, "content": "Hi"})
        reply = (await frames_until(comm, "message", 3))[-1]
        reply = reply if reply["message"]["role"] == "assistant" else await comm.receive_json_from(timeout=10)
        await comm.send_json_to({"type": "stop", "message": reply["message"]["id"]})
        done = (await frames_until(comm, "done"))[-1]
        await comm.send_json_to(
            {"type": "send", "conversation": reply["message"]["conversation"], "content": "next"}
        )  # the conversation is free again
        user_msg = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return done, user_msg

    done, user_msg = run(go())
    assert (done["status"], done["finish_reason"], done["content"]) == ("stopped", "cancelled", "")
    assert user_msg["type"] == "message" and user_msg["message"]["content"] == "next"


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


def test_a_crashing_handler_still_frees_the_sockets_place(make_user, session_cookie, settings):
    """A handler that raises (here: a malformed event from a buggy publisher) ends the consumer; its socket
    must stop counting toward the per-user cap at once, not after the stale window."""
    from channels.layers import get_channel_layer

    from chat import events
    from chat.names import sockets_key
    from chat.store import client

    settings.CHAT_MAX_SOCKETS_PER_USER = 1
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, connected, _ = await connect(cookie)
        assert connected and await asyncio.to_thread(client().zcard, sockets_key(user.id)) == 1
        await get_channel_layer().group_send(events.user_group(user.id), {"type": "chat.delta"})  # no fields
        with pytest.raises(KeyError):
            await comm.wait(timeout=5)
        count = await asyncio.to_thread(client().zcard, sockets_key(user.id))
        again, connected_again, _ = await connect(cookie)
        await again.disconnect()
        return count, connected_again

    count, connected_again = run(go())
    assert count == 0 and connected_again


def test_socket_counts_are_refreshed_by_live_sockets_and_forgotten_when_stale(make_user, session_cookie, settings):
    from chat.limits import sockets
    from chat.names import sockets_key
    from chat.store import client

    settings.CHAT_SOCKET_REFRESH_S = 0.2
    settings.CHAT_MAX_SOCKETS_PER_USER = 2
    user = make_user()
    cookie = session_cookie(user)

    async def go():
        comm, _, _ = await connect(cookie)
        await asyncio.sleep(1.0)  # five refresh intervals: older than the stale window, but refreshed
        crashed = "a-socket-of-a-daphne-that-crashed"
        await asyncio.to_thread(client().zadd, sockets_key(user.id), {crashed: 1.0})
        second = await asyncio.to_thread(sockets.socket_open, user.id, "second")  # the crashed one is pruned
        third = await asyncio.to_thread(sockets.socket_open, user.id, "third")  # the live one still counts
        members = await asyncio.to_thread(client().zrange, sockets_key(user.id), 0, -1)
        await comm.disconnect()
        return second, third, members

    second, third, members = run(go())
    assert second and not third
    assert "a-socket-of-a-daphne-that-crashed" not in members and len(members) == 2


def test_frames_over_the_rate_limit_and_frames_that_need_no_data_cost_no_queries(
    make_user, session_cookie, settings, monkeypatch
):
    """One Daphne process runs every database call in one thread: a flood must never reach it."""
    from django.db.backends import utils

    settings.CHAT_FRAME_RATE = "5/second"
    cookie = session_cookie(make_user())
    queries = []
    execute = utils.CursorWrapper.execute

    def counted(self, sql, params=None):
        queries.append(sql)
        return execute(self, sql, params)

    async def go():
        comm, _, _ = await connect(cookie)
        monkeypatch.setattr(utils.CursorWrapper, "execute", counted)
        for _ in range(100):
            await comm.send_to(text_data='{"type": "stop", "message": 1}')
        codes = [(await comm.receive_json_from(timeout=10))["code"] for _ in range(100)]
        monkeypatch.setattr(utils.CursorWrapper, "execute", execute)
        await comm.disconnect()
        return codes

    codes = run(go())
    assert codes.count("not_found") == 5 and codes.count("too_many_frames") == 95
    assert len(queries) <= 5 * 2  # the five allowed stops (a lookup each); nothing for the 95 refused


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
