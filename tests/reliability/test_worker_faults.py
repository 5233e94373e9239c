"""Faults on the worker side, each with its defined outcome (docs/reliability.md)."""

import asyncio
import json
import signal
import time
import urllib.request

import pytest

from chat.models import Message
from tests.helpers.live import recv, recv_until, send

pytestmark = pytest.mark.e2e


def readyz(stack_):
    try:
        with urllib.request.urlopen(f"{stack_.origin}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_killed_worker_fails_the_reply_keeps_its_text_and_a_new_worker_can_regenerate(fault_chat, fault_stack):
    """Fault: SIGKILL of the only worker mid-reply. Outcome: within the lease time the reply is `failed` with
    the text streamed so far and a reason, the client gets `done`; no worker → `no_worker` and /readyz 503;
    a new worker answers a regenerate."""
    _, client = fault_chat()
    assert readyz(fault_stack)[0] == 200

    async def go():
        async with client.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "params": {"max_new_tokens": 400},
                    "content": "Write a very long story about a clockmaker and a talking cat.",
                },
            )
            frames = await recv_until(ws, "delta")
            frames += await recv_until(ws, "delta")
            reply = frames[-1]["message"]
            fault_stack.worker.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            frames += await recv_until(ws, "done", timeout=60, message=reply)
            return reply, frames, time.monotonic() - killed_at

    reply, frames, waited = asyncio.run(go())
    done = frames[-1]
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert (done["status"], done["finish_reason"]) == ("failed", "error")
    assert done["content"] == streamed and streamed  # nothing streamed is lost
    assert waited < 30  # bounded: lease (3 s) + sweep interval (1 s), with room for a busy machine
    stored = Message.objects.get(pk=reply)
    assert (stored.status, stored.content) == ("failed", streamed) and "worker" in stored.error

    assert wait_until(lambda: readyz(fault_stack)[1]["workers"] == 0)
    status, body = readyz(fault_stack)
    assert status == 503 and body["detail"] == "no model worker is running"

    async def refused():
        async with client.connect() as ws:
            await send(ws, {"type": "regenerate", "message": reply})
            return await recv(ws)

    error = asyncio.run(refused())
    assert error["type"] == "error" and error["code"] == "no_worker"

    fault_stack.start_worker()
    assert wait_until(lambda: readyz(fault_stack)[0] == 200)

    async def again():
        async with client.connect() as ws:
            await send(ws, {"type": "regenerate", "message": reply, "params": {"max_new_tokens": 12}})
            new = await recv(ws)
            return new, (await recv_until(ws, "done", message=new["message"]["id"]))[-1]

    new, done = asyncio.run(again())
    assert new["replaces"] == reply and done["status"] == "complete" and done["content"]
