"""A worker's memory stays flat over thousands of generations."""

import asyncio

import psutil
import pytest

from chat.models import Message
from tests.helpers.live import recv, send

pytestmark = pytest.mark.e2e
SOCKETS, ROUNDS, PER_ROUND = 16, 5, 25  # 2,000 replies
# 125 replies per person in a few minutes: far past a person's fair use, which this test is not about. Each
# reply opens a conversation: without CHAT_AUTO_TITLE off, 2,000 titles of 16 tokens would quadruple the work
# of replies of 4 (titles have their own tests).
FAULT_ENV = {"CHAT_MESSAGES_PER_MINUTE": "0", "CHAT_TOKENS_PER_DAY": "0", "CHAT_AUTO_TITLE": "false"}


@pytest.mark.timeout(900)
def test_worker_memory_is_flat_over_two_thousand_generations(fault_chat, fault_stack):
    """Load: 16 users, 2,000 short replies through the whole stack. Outcome: after a warm-up round the
    worker's resident memory grows by less than 60 MiB (no growth of caches, streamers, leases or groups;
    the prefix cache, 256 MiB by default, is full within the warm-up round — 400 replies of ~2 MiB of states —
    and from then on evicts), and every reply ended complete."""
    clients = [fault_chat(f"mem{i}")[1] for i in range(SOCKETS)]
    worker = psutil.Process(fault_stack.worker.pid)

    async def one(client, n):
        async with client.connect() as ws:
            for k in range(n):
                await send(
                    ws,
                    {
                        "type": "send",
                        "conversation": None,
                        "content": f"One word, please ({k}).",
                        "params": {"max_new_tokens": 4},
                    },
                )
                while (frame := await recv(ws, 120))["type"] not in ("done", "error"):
                    pass
                assert frame["type"] == "done" and frame["status"] == "complete", frame

    async def rounds():
        samples = []
        for _ in range(ROUNDS):
            await asyncio.gather(*(one(c, PER_ROUND) for c in clients))
            samples.append(worker.memory_info().rss)
        return samples

    samples = asyncio.run(rounds())
    growth = max(samples[1:]) - samples[0]
    print("\nworker RSS MiB per 400 replies:", [round(s / 2**20) for s in samples])
    assert Message.objects.filter(role="assistant", status="complete").count() == SOCKETS * ROUNDS * PER_ROUND
    assert growth < 60 * 2**20, f"worker grew {growth / 2**20:.0f} MiB after warm-up"
    assert not fault_stack.redis.keys("chat:lease:*")  # every lease released
