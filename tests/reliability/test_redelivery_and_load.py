"""Redelivery never makes two replies; a bounded load run ends every message in a final state."""

import asyncio
import json
import statistics
import time
from pathlib import Path

import psutil
import pytest
from channels.db import database_sync_to_async

from chat.models import Message
from tests.helpers.live import recv, recv_extra, recv_until, send

pytestmark = pytest.mark.e2e
REPORT = Path(__file__).resolve().parents[2] / "var" / "reliability.json"


def test_a_task_delivered_twice_generates_one_reply(fault_chat, fault_stack):
    """Fault: the broker delivers the same task twice (what a visibility timeout shorter than a queue wait
    does). Outcome: one generation, contiguous seqs, text not doubled."""
    from celery import Celery

    _, client = fault_chat()
    broker = Celery(broker=fault_stack.env["REDIS_URL"])

    async def go():
        async with client.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "content": "Name three rivers.",
                    "params": {"max_new_tokens": 30},
                },
            )
            frames = []
            while not (frames and frames[-1]["type"] == "message" and frames[-1]["message"]["role"] == "assistant"):
                frames.append(await recv(ws))
            reply = frames[-1]["message"]["id"]
            for _ in range(2):  # the same task again, twice, as a redelivery would
                await asyncio.to_thread(
                    broker.send_task, "inference.tasks.generate_reply", args=[reply], queue="inference"
                )
            frames += await recv_until(ws, "done", message=reply)
            await asyncio.sleep(2)  # room for a duplicate to show itself
            extra = await recv_extra(ws, 1)
            return reply, frames, extra

    reply, frames, extra = asyncio.run(go())
    deltas = [f for f in frames if f["type"] == "delta" and f["message"] == reply]
    assert [d["seq"] for d in deltas] == list(range(len(deltas)))
    assert "".join(d["text"] for d in deltas) == frames[-1]["content"] == Message.objects.get(pk=reply).content
    assert extra is None
    assert Message.objects.filter(role="assistant").count() == 1


def test_bounded_load_run_every_message_final_and_intact(fault_chat, fault_stack):
    """Load: 50 sockets (50 users) × 5 messages with short replies, a few minutes at most."""
    sockets, per_socket = 50, 5
    clients = [fault_chat(f"load{i}")[1] for i in range(sockets)]
    worker = psutil.Process(fault_stack.worker.pid)
    rss_before = worker.memory_info().rss

    async def one(client, i):
        results = []
        async with client.connect() as ws:
            conversation = None
            for n in range(per_socket):
                sent = time.perf_counter()
                await send(
                    ws,
                    {
                        "type": "send",
                        "conversation": conversation,
                        "content": f"Say a word ({i}.{n}).",
                        "params": {"max_new_tokens": 8},
                    },
                )
                frames, first = [], None
                while True:
                    frame = await recv(ws, 300)
                    frames.append(frame)
                    if frame["type"] == "delta" and first is None:
                        first = time.perf_counter()
                    if frame["type"] == "conversation":
                        conversation = frame["conversation"]["id"]
                    if frame["type"] in ("done", "error"):
                        break
                deltas = "".join(f["text"] for f in frames if f["type"] == "delta")
                results.append(
                    {"frame": frame, "streamed": deltas, "ttft_ms": (first - sent) * 1000 if first else None}
                )
        return results

    connections = []

    async def count_connections():
        """Sample the database's sessions while the load runs (PostgreSQL only)."""
        from django.db import connection

        if connection.vendor != "postgresql":
            return

        def count():
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
                return cursor.fetchone()[0]

        while True:
            connections.append(await database_sync_to_async(count)())
            await asyncio.sleep(1)

    async def go():
        sampler = asyncio.create_task(count_connections())
        try:
            return await asyncio.gather(*(one(c, i) for i, c in enumerate(clients)))
        finally:
            sampler.cancel()

    started = time.perf_counter()
    runs = [r for rs in asyncio.run(go()) for r in rs]
    wall = time.perf_counter() - started
    errors = [r["frame"] for r in runs if r["frame"]["type"] == "error"]
    dones = [r for r in runs if r["frame"]["type"] == "done"]
    assert not errors and len(dones) == sockets * per_socket
    for r in dones:
        assert r["frame"]["status"] == "complete" and r["streamed"] == r["frame"]["content"]
    stored = dict(Message.objects.filter(role="assistant").values_list("id", "content"))
    assert all(stored[r["frame"]["message"]] == r["streamed"] for r in dones)
    assert not Message.objects.filter(status__in=["queued", "streaming"]).exists()
    ttfts = sorted(r["ttft_ms"] for r in dones if r["ttft_ms"] is not None)
    # Bounded: Daphne's sync thread pool, the worker's Celery threads and keepalive, this test; not per socket
    assert not connections or max(connections) < sockets
    report = {
        "db_connections_max": max(connections) if connections else None,
        "sockets": sockets,
        "messages": len(runs),
        "errors": len(errors),
        "wall_s": round(wall, 1),
        "ttft_p50_ms": round(statistics.median(ttfts)),
        "ttft_p95_ms": round(ttfts[int(0.95 * (len(ttfts) - 1))]),
        "worker_rss_mb_before": round(rss_before / 2**20),
        "worker_rss_mb_after": round(worker.memory_info().rss / 2**20),
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2))
    print("\nload run:", report)


def test_a_short_visibility_timeout_never_makes_two_replies(fault_chat, fault_stack):
    """Fault: a visibility timeout (1 s) far shorter than each generation and than the queue wait (one worker
    thread, three replies), with restores of unacknowledged tasks every second. Outcome: tasks are
    acknowledged when the worker accepts them, so none is handed out again and every reply is generated once
    (a delivery twice is covered by the test above)."""
    from chatsite import stack as stack_module

    stack_module.stop(fault_stack.worker)
    env = dict(
        fault_stack.env,
        WORKER_CONCURRENCY="1",
        CELERY_VISIBILITY_TIMEOUT_S="1",
        CELERY_TRANSPORT_OPTIONS=json.dumps({"unacked_restore_interval": 1, "unacked_restore_throttle": 1}),
    )
    normal_env, fault_stack.env = fault_stack.env, env
    try:
        fault_stack.start_worker("redelivery")
        clients = [fault_chat(f"r{i}")[1] for i in range(3)]

        async def one(client, i):
            async with client.connect() as ws:
                await send(
                    ws,
                    {
                        "type": "send",
                        "conversation": None,
                        "content": f"Tell me about rivers ({i}).",
                        "params": {"max_new_tokens": 40},
                    },
                )
                frames = [await recv(ws)]
                while not (frames[-1]["type"] == "message" and frames[-1]["message"]["role"] == "assistant"):
                    frames.append(await recv(ws))
                reply = frames[-1]["message"]["id"]
                frames += await recv_until(ws, "done", timeout=180, message=reply)
                return reply, frames

        async def go():
            return await asyncio.gather(*(one(c, i) for i, c in enumerate(clients)))

        results = asyncio.run(go())
    finally:
        stack_module.stop(fault_stack.worker)
        fault_stack.env = normal_env
        fault_stack.start_worker()
    assert fault_stack.log_tail("redelivery", 10**7).count("] received") == 3
    for reply, frames in results:
        deltas = [f for f in frames if f["type"] == "delta"]
        assert [d["seq"] for d in deltas] == list(range(len(deltas)))
        assert "".join(d["text"] for d in deltas) == frames[-1]["content"] == Message.objects.get(pk=reply).content
        assert frames[-1]["status"] == "complete"
    assert Message.objects.filter(role="assistant").count() == 3
