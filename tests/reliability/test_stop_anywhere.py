"""Stop reaches the engine whichever Daphne process receives it."""
import asyncio
import subprocess

import pytest
import websockets

from chat.models import Message
from chatsite import stack
from tests.live import recv_until, send

pytestmark = pytest.mark.e2e


def test_stop_sent_through_another_daphne_process_stops_the_reply(fault_chat, fault_stack):
    """Fault: the tab that sends Stop is served by a second Daphne process. Outcome: the worker ends the
    reply within a step; it is stored `stopped` with the text so far, and both tabs get `done`."""
    port = stack.free_port()
    other = stack.start_daphne(port, fault_stack.env, stdout=open(fault_stack.logs / "daphne2.log", "w"),
                               stderr=subprocess.STDOUT)
    _, client = fault_chat()
    try:
        async def go():
            async with client.connect() as a:
                await send(a, {"type": "send", "conversation": None, "params": {"max_new_tokens": 400},
                               "content": "Write a very long story about a mountain village."})
                frames = await recv_until(a, "delta")
                reply = frames[-1]["message"]
                async with websockets.connect(f"ws://127.0.0.1:{port}/ws/chat/", additional_headers={
                        "Cookie": client.cookie, "Origin": f"http://127.0.0.1:{port}"}) as b:
                    await send(b, {"type": "stop", "message": reply})
                    done_b = (await recv_until(b, "done", message=reply))[-1]
                frames += await recv_until(a, "done", message=reply)
                return reply, frames, done_b
        reply, frames, done_b = asyncio.run(go())
    finally:
        stack.stop(other)
    done = frames[-1]
    streamed = "".join(f["text"] for f in frames if f["type"] == "delta")
    assert (done["status"], done["finish_reason"]) == ("stopped", "cancelled") and done == done_b
    assert done["content"] == streamed and done["usage"]["completion_tokens"] < 400
    assert Message.objects.get(pk=reply).status == "stopped"
