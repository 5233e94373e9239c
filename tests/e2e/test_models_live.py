"""Two models served at once by real worker processes: the bundled model (the default) and a tiny random one
(tests/helpers/live.py). Each reply is written by a worker of its own model, a model without a worker is refused
by name, and a killed worker of one model leaves the other's chats untouched."""

import asyncio
import signal

import pytest

from chat.models import Message
from chat.replies import liveness
from tests.helpers.live import DEFAULT_MODEL, TINY, recv, recv_until, send

pytestmark = pytest.mark.e2e


def run(coro):
    return asyncio.run(coro)


async def ask(ws, content, conversation=None, **fields):
    """Send; return (assistant message frame, frames through its done) or the error frame."""
    await send(ws, {"type": "send", "conversation": conversation, "content": content, "client_id": "m", **fields})
    while True:
        frame = await recv(ws)
        if frame["type"] == "error":
            return frame, []
        if frame["type"] == "message" and frame["message"]["role"] == "assistant":
            reply = frame["message"]
            break
    return reply, await recv_until(ws, "done", message=reply["id"])


def test_each_reply_is_written_by_a_worker_of_its_own_model(chat, live_stack, tiny_worker):
    user, client = chat()

    async def go():
        async with client.connect() as ws:
            small, _ = await ask(ws, "Hi", model=TINY, params={"max_new_tokens": 4})
            default, _ = await ask(ws, "Hi", params={"max_new_tokens": 4})
            return small, default

    small, default = run(go())
    assert (small["model"], default["model"]) == (TINY, DEFAULT_MODEL)
    stored = {m.pk: m for m in Message.objects.filter(pk__in=[small["id"], default["id"]])}
    assert stored[small["id"]].worker.endswith(f"-{tiny_worker.pid}")
    assert stored[default["id"]].worker.endswith(f"-{live_stack.worker.pid}")
    assert {m.status for m in stored.values()} == {"complete"}
    assert stored[small["id"]].conversation.model_name == TINY


def test_a_killed_worker_of_one_model_leaves_the_other_models_chats_untouched(chat, live_stack, tiny_worker):
    user, client = chat()

    async def go():
        async with client.connect() as ws:
            tiny_worker.send_signal(signal.SIGKILL)  # no goodbye: its heartbeat lapses within the lease
            tiny_worker.wait(10)
            default, frames = await ask(ws, "Say hello.", params={"max_new_tokens": 6})
            assert frames[-1]["status"] == "complete"  # the other model's worker goes on as if nothing happened
            for _ in range(100):  # its heartbeat lapses (CHAT_LEASE_TTL_S)
                if not liveness.workers_alive(TINY):
                    break
                await asyncio.sleep(0.3)
            refused, _ = await ask(ws, "Hi", model=TINY)
            again, frames = await ask(ws, "Say hello again.", params={"max_new_tokens": 6})
            assert frames[-1]["status"] == "complete"
            return refused

    refused = run(go())
    assert refused["type"] == "error" and refused["code"] == "no_worker" and TINY in refused["detail"]
