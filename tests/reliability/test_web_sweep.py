"""The web process's own sweep, the one left when no worker is: it must keep running after Daphne has served
an API request (the request's context once went with it, and every round failed)."""

import asyncio
import json
import signal
import urllib.request

import pytest
from django.conf import settings

from chat.models import Message
from chat.replies.sweep import WORKER_DIED
from tests.helpers.live import recv_until, send

pytestmark = pytest.mark.e2e
# Replies run to max_new_tokens, so the reply is certainly still streaming when its worker is killed.
FAULT_ENV = {"CHAT_BENCH_IGNORE_EOS": "true"}


def complete(stack_, key: str) -> dict:
    """One whole completion through the API (``/v1/chat/completions``)."""
    body = {"model": settings.CHAT_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Say hi."}]}
    request = urllib.request.Request(
        f"{stack_.origin}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_after_an_api_request_the_web_sweep_alone_ends_a_dead_workers_reply(fault_chat, fault_stack):
    """Fault: the only worker is SIGKILLed mid-reply, after Daphne served an API request (the first thing it
    served, so its sweep was started from inside that request). Outcome: Daphne's sweep, with no worker left,
    ends the reply `failed` with the worker's-death sentence and the text streamed so far; its log has no
    `sweep failed`."""
    from chat.api import services

    user, client = fault_chat()
    key = services.api_key_create(owner=user, name="sweep").plaintext
    answer = complete(fault_stack, key)
    assert answer["choices"][0]["finish_reason"] == "length"

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
            reply = frames[-1]["message"]
            fault_stack.worker.send_signal(signal.SIGKILL)
            fault_stack.worker.wait(30)
            frames += await recv_until(ws, "done", timeout=90, message=reply)
            return reply, frames

    reply, frames = asyncio.run(go())
    done = frames[-1]
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert (done["status"], done["error"]) == ("failed", WORKER_DIED)
    assert done["content"] == streamed and streamed
    stored = Message.objects.get(pk=reply)
    assert (stored.status, stored.error, stored.content) == ("failed", WORKER_DIED, streamed)
    assert "sweep failed" not in (fault_stack.logs / "daphne.log").read_text(errors="replace")
