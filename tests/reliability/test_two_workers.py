"""Two workers, one killed: only its replies fail; the other worker's replies complete. Checkpoints."""

import asyncio
import signal
import socket
import time

import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from chat.names import lease_key
from chatsite import stack
from tests.helpers.live import recv_until, send

pytestmark = pytest.mark.e2e


def test_killing_one_of_two_workers_fails_only_its_replies(fault_chat, fault_stack):
    first = fault_stack.worker
    second = fault_stack.start_worker("second")
    clients = [fault_chat(f"user{i}")[1] for i in range(4)]
    holders = {}

    async def one(client, i, started):
        async with client.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    # Greedy (a chat samples by default): the survivor's replies run their 200 tokens, no early end.
                    "params": {"max_new_tokens": 200, "temperature": 0},
                    "content": f"Write a long story number {i} about a river.",
                },
            )
            frames = await recv_until(ws, "delta")
            started.append(frames[-1]["message"])
            frames += await recv_until(ws, "done", timeout=120, message=frames[-1]["message"])
            return frames[-1]

    async def go():
        started = []
        tasks = [asyncio.create_task(one(c, i, started)) for i, c in enumerate(clients)]
        while len(started) < 4:
            await asyncio.sleep(0.1)
        # the partial text is checkpointed to the database while streaming, not only at the end
        checkpoints = {}
        deadline = time.monotonic() + 60
        while len(checkpoints) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            checkpoints = await database_sync_to_async(
                lambda: {
                    m.id: m.content for m in Message.objects.filter(pk__in=started, status="streaming") if m.content
                }
            )()
        leases = fault_stack.redis.mget([lease_key(m) for m in started])
        holders.update({m: (v.decode() if v else None) for m, v in zip(started, leases)})
        first.send_signal(signal.SIGKILL)
        return checkpoints, await asyncio.gather(*tasks)

    try:
        checkpoints, dones = asyncio.run(go())
        killed = f"{socket.gethostname()}-{first.pid}"
        survivor = f"{socket.gethostname()}-{second.pid}"
        assert set(holders.values()) == {killed, survivor}, holders  # both workers were generating
        assert len(checkpoints) == 4
        for done in dones:
            stored = Message.objects.get(pk=done["message"])
            assert stored.content == done["content"]
            if holders[done["message"]] == killed:
                assert (done["status"], stored.status) == ("failed", "failed") and done["content"]
            else:
                assert (done["status"], done["usage"]["completion_tokens"]) == ("complete", 200)
            assert done["content"].startswith(checkpoints[done["message"]])
    finally:  # the module's next test starts from one worker, whatever happened here
        stack.stop(second)
        if first.poll() is None:
            stack.stop(first)
        fault_stack.start_worker()


def test_a_reply_handed_to_a_worker_that_dies_before_taking_it_is_written_by_the_other(fault_chat, fault_stack):
    """A busy worker hands a new reply to the other worker's own queue (chat/replies/balance.py); that worker dies
    before reading it. The sweep sees the reply still queued, its worker gone, and queues it again: the busy
    worker writes it after all."""
    from chat.names import LOAD_KEY, handed_key

    first = fault_stack.worker
    second = fault_stack.start_worker("handed")
    busy = f"{socket.gethostname()}-{first.pid}"
    doomed = f"{socket.gethostname()}-{second.pid}"
    client = fault_chat("hanna")[1]
    # The second stays alive but reads no queue (Celery's remote control, as an operator would): what is handed
    # to it waits in its own queue. (A SIGSTOP would not do: a worker stopped inside its blocking read of the
    # shared queue still receives the next task there, and takes it with it.)
    from celery import Celery
    from django.conf import settings

    from chat.names import SHARED_QUEUE, model_queue
    from chat.names import worker_queue as own_queue

    control = Celery(broker=fault_stack.env["REDIS_URL"]).control
    node = [f"handed-0@{socket.gethostname()}"]
    for queue in (model_queue(settings.CHAT_DEFAULT_MODEL), SHARED_QUEUE, own_queue(doomed)):
        assert control.cancel_consumer(queue, destination=node, reply=True, timeout=10), queue
    fault_stack.redis.hset(LOAD_KEY, busy, 3)  # as if the first were writing three replies

    async def go():
        async with client.connect() as ws:
            await send(
                ws, {"type": "send", "conversation": None, "params": {"max_new_tokens": 8}, "content": "Say hello."}
            )
            frames = []
            while not any(f["type"] == "message" and f["message"]["role"] == "assistant" for f in frames):
                frames += await recv_until(ws, "message")
            reply = frames[-1]["message"]["id"]
            deadline = time.monotonic() + 30
            while fault_stack.redis.get(handed_key(reply)) is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            handed_to = fault_stack.redis.get(handed_key(reply))
            second.send_signal(signal.SIGKILL)
            frames += await recv_until(ws, "done", timeout=60, message=reply)
            return handed_to, frames[-1]

    try:
        handed_to, done = asyncio.run(go())
        assert handed_to == doomed.encode()
        assert done["status"] == "complete" and done["content"]
        assert "was handed to a worker that died; queued again" in (
            fault_stack.log_tail("inference", 20000) + (fault_stack.logs / "daphne.log").read_text()
        )
    finally:
        second.wait(30)
        fault_stack.redis.hset(LOAD_KEY, busy, 0)
        fault_stack.worker = first
