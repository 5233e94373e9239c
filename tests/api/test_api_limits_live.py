"""The API's limits and endings on the live stack, through the official ``openai`` client: the per-person cap
(429), no worker (503), a client that goes away (its reply stops), and API streams batched with a browser chat."""
import asyncio
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings

from chat.models import Message
from chat.redis import WORKERS_KEY, lease_key

from tests.live import recv_until, send

pytestmark = pytest.mark.e2e
MODEL = settings.CHAT_MODEL
LONG = [{"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}]


def _reply(completion_id: str) -> Message:
    return Message.objects.get(pk=int(completion_id.removeprefix("chatcmpl-")))


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_client_that_goes_away_mid_stream_stops_its_reply(api, live_stack):
    _, _, client = api()
    stream = client.chat.completions.create(model=MODEL, max_tokens=300, stream=True, messages=LONG)
    chunks = [next(stream) for _ in range(4)]
    stream.close()  # the connection goes: Daphne tells Django, which cancels the view
    reply = _reply(chunks[0].id)
    _wait_for(lambda: not Message.objects.get(pk=reply.pk).is_active)
    reply.refresh_from_db()
    assert (reply.status, reply.finish_reason) == ("stopped", "cancelled")
    assert 3 <= reply.completion_tokens < 300
    assert redis.Redis.from_url(live_stack.env["REDIS_URL"]).get(lease_key(reply.pk)) is None  # worker let go


def test_the_active_reply_cap_answers_429_with_retry_after(api):
    import openai

    user, _, client = api()
    cap = settings.CHAT_MAX_ACTIVE_PER_USER
    streams = [client.chat.completions.create(model=MODEL, max_tokens=300, stream=True, messages=LONG)
               for _ in range(cap)]
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model=MODEL, max_tokens=5, messages=LONG)
        assert limited.value.status_code == 429 and limited.value.response.headers["Retry-After"] == "2"
        assert limited.value.body["code"] == "rate_limit_exceeded"
    finally:
        for stream in streams:
            stream.close()
    _wait_for(lambda: not Message.objects.filter(conversation__owner=user, status__in=Message.ACTIVE_STATUSES)
              .exists())
    assert Message.objects.filter(conversation__owner=user, role="assistant").count() == cap


def test_no_worker_answers_503(api, live_stack):
    """The worker frozen (SIGSTOP) and its heartbeat gone: nobody could write a reply, and nothing is stored."""
    import openai

    user, _, client = api()
    r = redis.Redis.from_url(live_stack.env["REDIS_URL"])
    os.kill(live_stack.worker.pid, signal.SIGSTOP)
    try:
        r.delete(WORKERS_KEY)
        with pytest.raises(openai.InternalServerError) as unavailable:
            client.chat.completions.create(model=MODEL, max_tokens=5, messages=LONG)
    finally:
        os.kill(live_stack.worker.pid, signal.SIGCONT)
    assert unavailable.value.status_code == 503 and unavailable.value.body["code"] == "no_worker"
    assert not Message.objects.filter(conversation__owner=user).exists()
    _wait_for(lambda: r.zcard(WORKERS_KEY) > 0)  # its heartbeat is back for the next tests


def test_api_streams_and_a_browser_chat_share_the_worker(api, chat):
    """Seven API streams and a websocket chat at once fill the live stack's worker (CHAT_MAX_BATCH=8, 8
    threads): all eight replies were being generated at the same moment, by the one engine."""
    clients = [api(f"api{i}")[2] for i in range(7)]
    for client in clients:
        client.models.list()  # connected and warm: the eight requests leave together
    _, browser = chat("browser")
    together = threading.Barrier(8)
    pool = ThreadPoolExecutor(8)  # asyncio's default pool has min(32, cores + 4) threads: 6 here

    async def via_api(client):
        def run():
            together.wait()
            stream = client.chat.completions.create(model=MODEL, max_tokens=48, stream=True, messages=LONG)
            chunks = list(stream)
            return chunks[0].id, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return await asyncio.get_running_loop().run_in_executor(pool, run)

    async def via_socket():
        async with browser.connect() as ws:
            await asyncio.get_running_loop().run_in_executor(pool, together.wait)
            await send(ws, {"type": "send", "conversation": None, "content": LONG[0]["content"],
                            "params": {"max_new_tokens": 48}})
            frames = await recv_until(ws, "done", timeout=300)  # eight replies on two shared cores
            return frames[-1]["message"]

    async def go():
        return await asyncio.gather(via_socket(), *(via_api(c) for c in clients))
    with pool:
        socket_reply, *api_results = asyncio.run(go())
    replies = [Message.objects.get(pk=socket_reply)] + [_reply(cid) for cid, _ in api_results]
    for (cid, text), reply in zip(api_results, replies[1:]):
        assert reply.status == "complete" and reply.content == text and reply.conversation.source == "api"
    assert replies[0].conversation.source == "chat"
    assert max(r.started_at for r in replies) < min(r.finished_at for r in replies)
