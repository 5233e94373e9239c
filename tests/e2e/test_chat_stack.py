"""End to end over real processes: websocket → Daphne → Celery worker → bundled model → Redis → websocket."""

import asyncio

import pytest
import websockets

from chat.models import Message
from tests.helpers.live import recv, recv_snapshot, recv_until, send

pytestmark = pytest.mark.e2e


def run(coro):
    return asyncio.run(coro)


def deltas_of(frames, message_id):
    return [f for f in frames if f["type"] == "delta" and f["message"] == message_id]


async def ask(ws, content, conversation=None, **params):
    """Send a message; return (conversation id, assistant message id, every frame through its done)."""
    await send(
        ws,
        {"type": "send", "conversation": conversation, "content": content, "client_id": "t", "params": params or None},
    )
    frames = []
    while True:
        frame = await recv(ws)
        frames.append(frame)
        if frame["type"] == "error":
            raise AssertionError(frame)
        if frame["type"] == "message" and frame["message"]["role"] == "assistant":
            reply = frame["message"]
            break
    frames += await recv_until(ws, "done", message=reply["id"])
    return reply["conversation"], reply["id"], frames


def test_reply_streams_token_by_token_and_is_stored(chat):
    user, client = chat()

    async def go():
        async with client.connect() as ws:
            return await ask(ws, "What is the capital of France?", max_new_tokens=40)

    conversation, reply_id, frames = run(go())
    kinds = [f["type"] for f in frames]
    assert kinds[:3] == ["conversation", "message", "message"] and kinds[-1] == "done"
    deltas = deltas_of(frames, reply_id)
    done = frames[-1]
    assert [d["seq"] for d in deltas] == list(range(len(deltas))) and len(deltas) > 1
    assert "".join(d["text"] for d in deltas) == done["content"] and done["content"].strip()
    assert (done["status"], done["finish_reason"]) in {("complete", "stop"), ("complete", "length")}
    assert done["usage"]["prompt_tokens"] > 10 and 0 < done["usage"]["completion_tokens"] <= 40
    assert done["timing"]["ttft_ms"] is not None and done["timing"]["tokens_per_s"] > 0
    stored = Message.objects.get(pk=reply_id)
    assert stored.content == done["content"] and stored.status == "complete"
    assert stored.conversation.owner == user and stored.conversation_id == conversation
    # A chat samples by default (CHAT_DEFAULT_TEMPERATURE, CHAT_DEFAULT_TOP_P), so Regenerate gives another reply.
    assert stored.params == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 40}
    assert stored.completion_tokens == done["usage"]["completion_tokens"] and stored.ttft_ms is not None


def test_stop_ends_the_reply_and_keeps_the_partial_text(chat):
    _, client = chat()

    async def go():
        async with client.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "max_new_tokens": 300,
                    "content": "Write a very long story about a dragon who learns to bake bread.",
                    "params": {"max_new_tokens": 300},
                },
            )
            frames = await recv_until(ws, "delta")
            reply_id = frames[-1]["message"]
            frames += await recv_until(ws, "delta")
            await send(ws, {"type": "stop", "message": reply_id})
            frames += await recv_until(ws, "done", message=reply_id)
            return reply_id, frames

    reply_id, frames = run(go())
    done = frames[-1]
    assert (done["status"], done["finish_reason"]) == ("stopped", "cancelled")
    assert done["content"] and done["content"] == "".join(d["text"] for d in deltas_of(frames, reply_id))
    assert done["usage"]["completion_tokens"] < 300
    stored = Message.objects.get(pk=reply_id)
    assert (stored.status, stored.content) == ("stopped", done["content"])


def test_second_message_sees_the_history(chat):
    _, client = chat()

    async def go():
        async with client.connect() as ws:
            conversation, first_id, first = await ask(ws, "My name is Zork and I like green apples.", max_new_tokens=24)
            _, second_id, second = await ask(ws, "What is my name?", conversation, max_new_tokens=24)
            return conversation, first[-1], second[-1], first_id, second_id

    conversation, first, second, first_id, second_id = run(go())
    # The second prompt holds the first exchange: its own words plus everything before.
    assert second["usage"]["prompt_tokens"] > first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    roles = list(Message.objects.filter(conversation_id=conversation).values_list("role", flat=True))
    assert roles == ["user", "assistant", "user", "assistant"]
    assert Message.objects.get(pk=second_id).parent.parent_id == first_id


def test_bad_frames_get_errors_and_the_socket_stays_usable(chat):
    _, client = chat()

    async def go():
        async with client.connect() as ws:
            replies = []
            for raw in (
                "not json",
                '{"type": "fly"}',
                '{"type": "send", "conversation": "x", "content": "a"}',
                '{"type": "send", "conversation": null, "content": "a", "params": {"temperature": -1}}',
            ):
                await ws.send(raw)
                replies.append(await recv(ws))
            _, _, frames = await ask(ws, "Say hi.", max_new_tokens=8)
            return replies, frames[-1]

    replies, done = run(go())
    assert [r["code"] for r in replies] == ["bad_json", "unknown_type", "bad_id", "invalid_params"]
    assert done["status"] == "complete"


def test_other_users_anonymous_and_foreign_origins_are_refused(chat, live_stack):
    _, alice = chat("alice")
    _, bob = chat("bob")

    async def go():
        async with alice.connect() as ws:
            conversation, reply_id, _ = await ask(ws, "Hello", max_new_tokens=4)
        async with bob.connect() as ws:
            out = []
            for frame in (
                {"type": "send", "conversation": conversation, "content": "mine now"},
                {"type": "subscribe", "conversation": conversation},
                {"type": "regenerate", "message": reply_id},
            ):
                await send(ws, frame)
                out.append((await recv(ws))["code"])
        async with websockets.connect(live_stack.url, additional_headers={"Origin": live_stack.origin}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await recv(ws)
        with pytest.raises(websockets.InvalidStatus):
            async with alice.connect(origin="http://evil.example"):
                pass
        return out, closed.value.rcvd.code

    codes, anonymous_close = run(go())
    assert codes == ["not_found"] * 3 and anonymous_close == 4401
    assert Message.objects.filter(conversation__owner__username="bob").count() == 0


def test_a_reloaded_tab_resumes_mid_reply_and_a_dropped_one_loses_nothing(chat):
    """Tab A sends then vanishes mid-reply; tab B subscribes: text so far + later deltas = the stored reply."""
    _, client = chat()

    async def go():
        a = await client.connect()
        await send(
            a,
            {
                "type": "send",
                "conversation": None,
                "content": "Count slowly from one to thirty in words.",
                "params": {"max_new_tokens": 80},
            },
        )
        frames = await recv_until(a, "delta")
        reply = frames[-1]["message"]
        conversation = next(f for f in frames if f["type"] == "conversation")["conversation"]["id"]
        await recv_until(a, "delta")
        await a.close()  # the tab goes away mid-reply
        async with client.connect() as b:
            await send(b, {"type": "subscribe", "conversation": conversation})
            snapshot = await recv_snapshot(b, reply)
            ack = await recv(b)
            rest = await recv_until(b, "done", message=reply)
        return reply, snapshot, ack, rest

    reply, snapshot, ack, rest = run(go())
    assert snapshot["type"] == "message" and snapshot["message"]["id"] == reply and snapshot["seq"] >= 1
    assert ack["active"] == reply
    later = deltas_of(rest, reply)
    assert [d["seq"] for d in later] == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(later)))
    done = rest[-1]
    assert snapshot["message"]["content"] + "".join(d["text"] for d in later) == done["content"]
    assert Message.objects.get(pk=reply).content == done["content"] and done["status"] == "complete"


def test_concurrent_users_are_served_together_and_regenerate_makes_an_alternative(chat):
    clients = [chat(f"user{i}")[1] for i in range(4)]

    async def one(client, question):
        async with client.connect() as ws:
            return await ask(ws, question, max_new_tokens=24)

    async def go():
        return await asyncio.gather(
            *(
                one(c, q)
                for c, q in zip(clients, ["Name a fruit.", "Name a color.", "Name an animal.", "Name a country."])
            )
        )

    results = run(go())
    for conversation, reply_id, frames in results:
        done = frames[-1]
        assert done["status"] == "complete" and done["content"]
        assert Message.objects.get(pk=reply_id).content == done["content"]

    conversation, old_id, _ = results[0]

    async def regen():
        async with clients[0].connect() as ws:
            await send(ws, {"type": "regenerate", "message": old_id, "params": {"temperature": 0.9}})
            new = await recv(ws)
            frames = await recv_until(ws, "done", message=new["message"]["id"])
            return new, frames[-1]

    new, done = run(regen())
    assert new["type"] == "message" and new["replaces"] == old_id and done["status"] == "complete"
    old = Message.objects.get(pk=old_id)
    fresh = Message.objects.get(pk=new["message"]["id"])
    assert not old.is_current and fresh.is_current and fresh.parent_id == old.parent_id
    assert fresh.params["temperature"] == 0.9


def test_one_person_firing_fifty_sends_cannot_hold_up_another(chat):
    """Fifty new conversations at once, from ten sockets of one account: at most CHAT_MAX_ACTIVE_PER_USER (3)
    replies are stored and queued, the rest are refused with too_many_active; another person's reply is then
    generated at once instead of waiting behind a queue of fifty long replies."""
    alice, alice_client = chat("alice")
    _, bob_client = chat("bob")

    async def flood(ws, tag, n):
        """Send n messages; each gets an error (only this socket sees it) or its reply's message frame (every
        tab of the account sees those: this socket's own carry its client_id)."""
        for i in range(n):
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "content": f"Essay {i}, please.",
                    "params": {"max_new_tokens": 300},
                    "client_id": tag,
                },
            )
        codes = []
        while len(codes) < n:
            frame = await recv(ws)
            if frame["type"] == "error":
                codes.append(frame["code"])
            elif (
                frame["type"] == "message" and frame["message"]["role"] == "assistant" and frame.get("client_id") == tag
            ):
                codes.append(frame["message"]["id"])
        return codes

    async def go():
        sockets = [await alice_client.connect() for _ in range(10)]
        codes = sum(await asyncio.gather(*(flood(ws, f"tab{i}", 5) for i, ws in enumerate(sockets))), [])
        async with bob_client.connect() as ws:
            _, reply_id, frames = await ask(ws, "Name a fruit.", max_new_tokens=8)
        for reply in [c for c in codes if isinstance(c, int)]:  # stop the long essays: later tests share the worker
            await send(sockets[0], {"type": "stop", "message": reply})
            await recv_until(sockets[0], "done", message=reply)
        for ws in sockets:
            await ws.close()
        return codes, frames[-1]

    codes, bob_done = run(go())
    assert len([c for c in codes if isinstance(c, int)]) == 3 and codes.count("too_many_active") == 47
    assert Message.objects.filter(conversation__owner=alice).count() == 6
    assert bob_done["status"] == "complete"
