"""Two workers, one killed: only its replies fail; the other worker's replies complete. Checkpoints."""
import asyncio
import signal
import socket
import time

import pytest
from channels.db import database_sync_to_async

from chat.redis import lease_key
from chat.models import Message
from chatsite import stack
from tests.live import recv_until, send

pytestmark = pytest.mark.e2e


def test_killing_one_of_two_workers_fails_only_its_replies(fault_chat, fault_stack):
    first = fault_stack.worker
    second = fault_stack.start_worker("second")
    clients = [fault_chat(f"user{i}")[1] for i in range(4)]
    holders = {}

    async def one(client, i, started):
        async with client.connect() as ws:
            await send(ws, {"type": "send", "conversation": None, "params": {"max_new_tokens": 200},
                            "content": f"Write a long story number {i} about a river."})
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
            checkpoints = await database_sync_to_async(lambda: {
                m.id: m.content for m in Message.objects.filter(pk__in=started, status="streaming") if m.content})()
        leases = fault_stack.redis.mget([lease_key(m) for m in started])
        holders.update({m: (v.decode() if v else None) for m, v in zip(started, leases)})
        first.send_signal(signal.SIGKILL)
        return checkpoints, await asyncio.gather(*tasks)
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
    stack.stop(second)
    fault_stack.start_worker()
