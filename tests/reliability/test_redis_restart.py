"""Redis restarts under a live reply."""

import asyncio
import json
import subprocess
import urllib.request

import pytest
import websockets

from chat.models import Message
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
    port = int(s.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
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
