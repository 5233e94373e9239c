"""Stop reaches the engine whichever Daphne process receives it."""

import asyncio
import subprocess

import pytest
import websockets

from chat.models import Message
from chatsite import stack
from tests.helpers.live import recv_extra, recv_until, send

pytestmark = pytest.mark.e2e


def test_stop_sent_through_another_daphne_process_stops_the_reply(fault_chat, fault_stack):
    """Fault: the tab that sends Stop is served by a second Daphne process. Outcome: the worker ends the
    reply within a step; it is stored `stopped` with the text so far, and both tabs get `done`."""
    port = stack.free_port()
    other = stack.start_daphne(
        port, fault_stack.env, stdout=open(fault_stack.logs / "daphne2.log", "w"), stderr=subprocess.STDOUT
    )
    _, client = fault_chat()
    try:

        async def go():
            async with client.connect() as a:
                await send(
                    a,
                    {
                        "type": "send",
                        "conversation": None,
                        "params": {"max_new_tokens": 400},
                        "content": "Write a very long story about a mountain village.",
                    },
                )
                frames = await recv_until(a, "delta")
                reply = frames[-1]["message"]
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws/chat/",
                    additional_headers={"Cookie": client.cookie, "Origin": f"http://127.0.0.1:{port}"},
                ) as b:
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


def test_stop_reaches_the_worker_holding_the_reply_with_two_workers_and_two_daphnes(fault_chat, fault_stack):
    """Fault: two workers and two Daphne processes; the reply is held by the worker started second, and
    Stop arrives through the other Daphne. Outcome: every worker hears the cancel, the holder ends the reply
    within a step, the other ignores it; stored `stopped` with the text so far."""
    stack.stop(fault_stack.worker)
    holder = fault_stack.start_worker("holder")  # alone, so it takes the reply
    port = stack.free_port()
    other_daphne = stack.start_daphne(
        port, fault_stack.env, stdout=open(fault_stack.logs / "daphne3.log", "w"), stderr=subprocess.STDOUT
    )
    _, client = fault_chat()
    bystander = None
    try:

        async def go():
            nonlocal bystander
            async with client.connect() as a:
                await send(
                    a,
                    {
                        "type": "send",
                        "conversation": None,
                        "params": {"max_new_tokens": 400},
                        "content": "Write a very long story about two lighthouses.",
                    },
                )
                frames = await recv_until(a, "delta")
                reply = frames[-1]["message"]
                bystander = await asyncio.to_thread(fault_stack.start_worker, "bystander")
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws/chat/",
                    additional_headers={"Cookie": client.cookie, "Origin": f"http://127.0.0.1:{port}"},
                ) as b:
                    await send(b, {"type": "stop", "message": reply})
                    await recv_until(b, "done", message=reply)
                frames += await recv_until(a, "done", message=reply)
                return reply, frames

        reply, frames = asyncio.run(go())
    finally:
        stack.stop(other_daphne, bystander, holder)
        fault_stack.start_worker()
    done = frames[-1]
    assert (done["status"], done["finish_reason"]) == ("stopped", "cancelled")
    assert done["content"] == "".join(f["text"] for f in frames if f["type"] == "delta")
    assert done["usage"]["completion_tokens"] < 400
    assert Message.objects.get(pk=reply).status == "stopped"


def test_a_stop_racing_the_end_of_a_reply_leaves_one_consistent_ending(fault_chat, fault_stack):
    """Fault: Stop sent as the reply finishes (after its first delta of a 3-token reply, and again after
    `done`). Outcome: exactly one `done`; whichever won, the stored status and text match what streamed."""
    _, client = fault_chat()

    async def go():
        async with client.connect() as ws:
            await send(ws, {"type": "send", "conversation": None, "content": "Hi!", "params": {"max_new_tokens": 3}})
            frames = await recv_until(ws, "delta")
            reply = frames[-1]["message"]
            await send(ws, {"type": "stop", "message": reply})
            frames += await recv_until(ws, "done", message=reply)
            await send(ws, {"type": "stop", "message": reply})  # after the end: nothing happens
            extra = await recv_extra(ws, 3)
            return reply, frames, extra

    reply, frames, extra = asyncio.run(go())
    done = frames[-1]
    assert extra is None and [f["type"] for f in frames].count("done") == 1
    assert done["status"] in ("complete", "stopped")
    stored = Message.objects.get(pk=reply)
    assert (stored.status, stored.content) == (done["status"], done["content"])
    assert done["content"] == "".join(f["text"] for f in frames if f["type"] == "delta")
