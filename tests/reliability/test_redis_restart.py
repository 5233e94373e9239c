"""Redis restarts under a live reply."""

import asyncio
import json
import subprocess
import time
import urllib.request
from urllib.parse import urlsplit

import pytest
import redis
import websockets

from chat.models import Conversation, Message
from chat.realtime.consumers import CLOSE_UNAVAILABLE, UNAVAILABLE
from chatsite import stack
from tests.helpers.live import recv, recv_snapshot, recv_until, send

pytestmark = pytest.mark.e2e
# The worker rides out the outage for this long (the lease then lasts this + 2 heartbeats, by construction).
# Replies run to max_new_tokens (no early end of turn), so the reply is certainly still streaming when the
# client comes back and the resume is always checked.
FAULT_ENV = {"CHAT_REDIS_GRACE_S": "10", "CHAT_BENCH_IGNORE_EOS": "true"}
TOKENS = 300


def stop_redis(s):
    stack.stop(s.redis_proc)


def start_redis_again(s):
    port = urlsplit(s.env["REDIS_URL"]).port
    s.redis_proc, _ = stack.start_redis(s.logs / "redis", persist=False, port=port, stdout=subprocess.DEVNULL)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_a_reply_survives_a_redis_restart_and_the_client_resumes(fault_chat, fault_stack):
    """Fault: Redis (no persistence) stops for 2 s mid-reply. Outcome: pages answer errors, not tracebacks,
    while it is away; the worker keeps generating and reconnects; the dropped socket reconnects and resumes
    with no gap; the reply completes and the stored text equals what was streamed."""
    _, client = fault_chat()

    async def go():
        ws = await client.connect()
        await send(
            ws,
            {
                "type": "send",
                "conversation": None,
                "params": {"max_new_tokens": TOKENS},
                "content": "Write a long story about a lighthouse keeper.",
            },
        )
        frames = await recv_until(ws, "delta")
        reply = frames[-1]["message"]
        conversation = next(f for f in frames if f["type"] == "conversation")["conversation"]["id"]
        await asyncio.to_thread(stop_redis, fault_stack)
        ready = await asyncio.to_thread(get, f"{fault_stack.origin}/readyz")
        with pytest.raises((websockets.ConnectionClosed, asyncio.TimeoutError)):
            while True:  # the socket's channel-layer link breaks: Daphne closes it, the browser reconnects
                await recv(ws, 30)
        await asyncio.sleep(1)
        # From this thread, not a worker thread: a child of the stack is told to die with the thread that
        # started it (PR_SET_PDEATHSIG), and asyncio.run's executor threads end when the run does.
        start_redis_again(fault_stack)
        for _ in range(50):  # reconnect with backoff, as the page does
            try:
                ws = await client.connect()
                break
            except (OSError, websockets.InvalidStatus, websockets.ConnectionClosed):
                await asyncio.sleep(0.2)
        await send(ws, {"type": "subscribe", "conversation": conversation})
        snapshot = await recv_snapshot(ws, reply)
        rest = await recv_until(ws, "done", message=reply)
        await ws.close()
        return reply, ready, snapshot, rest

    reply, ready, snapshot, rest = asyncio.run(go())
    assert ready[0] == 503 and json.loads(ready[1])["redis"].startswith("unreachable")
    done = rest[-1]
    later = [f for f in rest if f["type"] == "delta"]
    assert snapshot["type"] == "message" and snapshot["message"]["status"] == "streaming"
    assert [d["seq"] for d in later] == list(range(snapshot["seq"] + 1, snapshot["seq"] + 1 + len(later)))
    assert snapshot["message"]["content"] + "".join(d["text"] for d in later) == done["content"]
    assert (done["status"], done["finish_reason"]) == ("complete", "length")
    assert done["usage"]["completion_tokens"] == TOKENS
    stored = Message.objects.get(pk=reply)
    assert (stored.status, stored.content) == ("complete", done["content"])
    # The worker beat again as soon as Redis answered its publishing (not only at its next heartbeat).
    assert get(f"{fault_stack.origin}/readyz")[0] == 200


async def handshake(client):
    """A socket, or the HTTP status its handshake was refused with."""
    try:
        return await client.connect()
    except websockets.InvalidStatus as refused:
        return refused.response.status_code


async def told_and_closed(ws) -> tuple[dict, int]:
    """The last frame a socket is sent, and the code it is then closed with."""
    frame = await recv(ws, 30)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            frame = await recv(ws, 30)
    return frame, closed.value.rcvd.code


def test_handshakes_while_redis_is_away_and_right_after_it_is_back_are_answered_never_500(fault_chat, fault_stack):
    """Fault: Redis stops under an open socket, then starts again. Outcome: the open socket and a handshake made
    while Redis is away are told `unavailable` and closed with 4503 (never an HTTP 500 or a bare 1011); the
    handshakes made as soon as Redis answers again are accepted and work: a connection Daphne's pools kept
    from before the restart is retried, not failed (it used to answer HTTP 500 and close new sockets with
    1011 for minutes)."""
    user, client = fault_chat()
    conversation = Conversation.objects.create(owner=user, title="Before").pk
    unavailable = {"type": "error", "code": "unavailable", "detail": UNAVAILABLE}

    async def go():
        live = await client.connect()
        await send(live, {"type": "rename", "conversation": conversation, "title": "Before the restart"})
        assert (await recv(live))["conversation"]["title"] == "Before the restart"  # its pools are in use
        await asyncio.to_thread(stop_redis, fault_stack)
        live_end = await told_and_closed(live)
        away = await handshake(client)
        away_end = await told_and_closed(away) if not isinstance(away, int) else away
        start_redis_again(fault_stack)  # from this thread: see the test above
        deadline = time.monotonic() + 30
        while True:  # Redis answers again: from now on every handshake must be served
            try:
                redis.Redis.from_url(fault_stack.env["REDIS_URL"], socket_timeout=2).ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "Redis did not come back"
                await asyncio.sleep(0.05)
        after = []
        for n in range(6):
            ws = await handshake(client)
            if isinstance(ws, int):
                after.append(ws)
                continue
            await send(ws, {"type": "rename", "conversation": conversation, "title": f"After the restart {n}"})
            after.append((await recv(ws))["conversation"]["title"])  # through its group, just joined
            await ws.close()
        return live_end, away_end, after

    live_end, away_end, after = asyncio.run(go())
    assert live_end == (unavailable, CLOSE_UNAVAILABLE)
    assert away_end == (unavailable, CLOSE_UNAVAILABLE)
    assert after == [f"After the restart {n}" for n in range(6)]
    assert "Exception inside application" not in (fault_stack.logs / "daphne.log").read_text(errors="replace")
