"""The websocket consumer through the real ASGI app (session auth, origin check) and the real Redis layer."""

import asyncio
import json

import pytest

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
