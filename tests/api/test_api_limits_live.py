"""The API's limits and endings on the live stack, through the official ``openai`` client (and a raw socket where
a client must vanish mid-request): the per-person cap, today's tokens and messages a minute (429 with
Retry-After), no worker (503), a client that goes away (its reply stops and the engine's row is freed, streamed
or not, before its first chunk or after), and eight API streams in one engine batch with a browser chat."""
import asyncio
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from chat import quotas, streamlog
from chat.models import Conversation, Message, QuotaOverride
from chat.redis import WORKERS_KEY, lease_key, live_workers, stream_key, worker_stats_key

from tests.live import LIVE_BATCH, recv_until, send

pytestmark = pytest.mark.e2e
MODEL = settings.CHAT_MODEL
LONG = [{"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}]
# Tokens a reply may still gain between its client's close and the engine's cancel: Daphne sees the close,
# Django cancels the view, the stop is stored and broadcast, the worker cancels at its next step — a few
# decode steps of one row on a shared 2-core machine — plus the text still in the worker's 40 ms flush window
# and a token or two the re-encoding of the text may count differently.
SLACK_TOKENS = 12
# Nine replies that all start within a few decode steps of each other (the worker takes them at once) need few
# tokens each to share steps; every token is a nine-row forward pass on the test machine's shared cores.
BATCHED_TOKENS = 24


def _reply(completion_id: str) -> Message:
    return Message.objects.get(pk=int(completion_id.removeprefix("chatcmpl-")))


def _wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met in {timeout} s")


def _redis(live_stack):
    return redis.Redis.from_url(live_stack.env["REDIS_URL"], decode_responses=True)


def _worker_stats(live_stack, r) -> dict:
    """The live stack's worker's last heartbeat figures (its engine's, and the replies it holds)."""
    worker = f"{socket.gethostname()}-{live_stack.worker.pid}"  # the name chat.worker.Runtime gives itself
    assert worker in live_workers(r)
    return json.loads(r.get(worker_stats_key(worker)) or "{}")


def _assert_the_worker_let_go(live_stack, r, reply_id: int) -> None:
    """The lease of the reply is gone and the worker's next heartbeats show no reply held and no batch row."""
    assert r.get(lease_key(reply_id)) is None
    _wait_for(lambda: (lambda s: s.get("in_flight") == 0 and s.get("batch_size") == 0)(_worker_stats(live_stack, r)),
              timeout=4 * settings.CHAT_HEARTBEAT_S + 5, what="a heartbeat with no reply in flight")


def _raw_post(port: int, key: str, body: dict) -> socket.socket:
    """Send a completion request over a bare socket and return it unread: closing it is the client leaving."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: " + str(len(data)).encode()
                 + b"\r\n\r\n" + data)
    return sock


def _the_reply_of(user) -> Message | None:
    return Message.objects.filter(conversation__owner=user, role="assistant").first()


def test_a_client_that_goes_away_mid_stream_stops_its_reply_within_a_few_tokens(api, live_stack, tokenizer):
    _, _, client = api()
    r = _redis(live_stack)
    stream = client.chat.completions.create(model=MODEL, max_tokens=300, stream=True, messages=LONG)
    chunks, received = [], ""
    while len(tokenizer.encode(received, add_special_tokens=False)) < 8:
        chunks.append(next(stream))
        received += "".join(c.delta.content or "" for c in chunks[-1].choices)
    at_close = len(tokenizer.encode(received, add_special_tokens=False))
    stream.close()  # the connection goes: Daphne tells Django, which cancels the view
    reply = _reply(chunks[0].id)
    _wait_for(lambda: not Message.objects.get(pk=reply.pk).is_active, what="the reply's end")
    reply.refresh_from_db()
    assert (reply.status, reply.finish_reason) == ("stopped", "cancelled")
    assert reply.content.startswith(received)
    assert at_close <= reply.completion_tokens <= at_close + SLACK_TOKENS, (at_close, reply.completion_tokens)
    _assert_the_worker_let_go(live_stack, r, reply.pk)


def test_a_whole_request_whose_client_goes_away_stops_and_a_no_store_reply_leaves_no_log(api, live_stack,
                                                                                          tokenizer):
    """Not streamed: the view itself waits for the reply's end, through the sync middlewares; the client's
    close cancels it there. The key keeps no text: once the reply has ended its stream log goes too."""
    user, new, _ = api(store_conversations=False)
    r = _redis(live_stack)
    sock = _raw_post(live_stack.port, new.plaintext, {"model": MODEL, "max_tokens": 300, "messages": LONG})
    try:
        def streamed_some():
            reply = _the_reply_of(user)
            text = streamlog.read_text_sync(reply.pk) if reply else None
            return text is not None and len(tokenizer.encode(text, add_special_tokens=False)) >= 8
        _wait_for(streamed_some, what="the reply's first tokens")
        reply = _the_reply_of(user)
        at_close = len(tokenizer.encode(streamlog.read_text_sync(reply.pk), add_special_tokens=False))
    finally:
        sock.close()
    _wait_for(lambda: not Message.objects.get(pk=reply.pk).is_active, what="the reply's end")
    reply.refresh_from_db()
    assert (reply.status, reply.finish_reason) == ("stopped", "cancelled")
    assert at_close <= reply.completion_tokens <= at_close + SLACK_TOKENS, (at_close, reply.completion_tokens)
    assert reply.prompt_tokens > 10  # the counts stay ...
    assert set(Message.objects.filter(conversation__owner=user).values_list("content", flat=True)) == {""}
    _wait_for(lambda: not r.exists(stream_key(reply.pk)), timeout=10, what="the stream log's deletion")
    _assert_the_worker_let_go(live_stack, r, reply.pk)


def test_a_stream_whose_client_goes_before_its_first_chunk_stops_its_reply(api, live_stack):
    """The view waits for the reply's first frame before it answers (a failure gets a real status): a client
    that leaves then is the view's own task cancelled, before any response. The worker is paused, so the
    reply is surely still queued; it ends at once, and the worker, resumed, never starts it."""
    user, new, _ = api()
    r = _redis(live_stack)
    os.kill(live_stack.worker.pid, signal.SIGSTOP)
    try:
        sock = _raw_post(live_stack.port, new.plaintext, {"model": MODEL, "max_tokens": 300, "stream": True,
                                                          "messages": LONG})
        _wait_for(lambda: _the_reply_of(user) is not None, what="the queued reply")
        sock.close()
        _wait_for(lambda: not _the_reply_of(user).is_active, what="the reply's end")
    finally:
        os.kill(live_stack.worker.pid, signal.SIGCONT)
    reply = _the_reply_of(user)
    assert (reply.status, reply.finish_reason, reply.content, reply.completion_tokens) == \
        ("stopped", "cancelled", "", None)
    _assert_the_worker_let_go(live_stack, r, reply.pk)


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


def test_todays_tokens_used_and_messages_a_minute_answer_429_with_retry_after(api):
    """The person's own allowance (a QuotaOverride, as staff set it), counted in the Redis the browser's
    limits use: today's tokens used up → insufficient_quota until midnight; two messages a minute → the
    third waits for the window."""
    import openai

    user, _, client = api()
    QuotaOverride.objects.create(user=user, tokens_per_day=40, messages_per_minute=2)
    quotas.tokens_count(user.pk, 40)  # as message_finish charges a reply: today's tokens are used up
    with pytest.raises(openai.RateLimitError) as exhausted:
        client.chat.completions.create(model=MODEL, max_tokens=1, messages=LONG)
    to_midnight = (quotas.resets_at() - timezone.now()).total_seconds()
    assert exhausted.value.body["code"] == exhausted.value.body["type"] == "insufficient_quota"
    assert abs(int(exhausted.value.response.headers["Retry-After"]) - to_midnight) < 30
    assert "today's 40 tokens" in exhausted.value.message  # the browser's sentence
    assert not Conversation.objects.filter(owner=user).exists()

    QuotaOverride.objects.filter(user=user).update(tokens_per_day=0)  # 0: no daily limit
    for _ in range(2):
        client.chat.completions.create(model=MODEL, max_tokens=1, messages=LONG)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model=MODEL, max_tokens=1, messages=LONG)
    wait = int(limited.value.response.headers["Retry-After"])
    assert limited.value.body["code"] == "rate_limit_exceeded" and 1 <= wait <= 60
    assert f"2 messages in the last minute, the most this site allows; try again in {wait} s." in \
        limited.value.message
    assert Conversation.objects.filter(owner=user).count() == 2


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


def test_eight_api_streams_and_a_browser_chat_share_one_engine_batch(api, chat, live_stack):
    """Eight API streams and a websocket chat are sent while the worker is paused, so all nine are queued when
    it resumes and takes them at once (9 threads, CHAT_MAX_BATCH=9): its engine's own count of decode steps by
    batch size, from its heartbeat, shows steps that ran all nine rows in one forward pass."""
    assert LIVE_BATCH >= 9
    clients = [api(f"api{i}")[2] for i in range(8)]
    _, browser = chat("browser")
    r = _redis(live_stack)
    before = _worker_stats(live_stack, r)["decode_steps_at_batch_size"][9]
    pool = ThreadPoolExecutor(9)  # asyncio's default pool has min(32, cores + 4) threads: 6 here

    async def via_api(client):
        def run():
            stream = client.chat.completions.create(model=MODEL, max_tokens=BATCHED_TOKENS, stream=True,
                                                    messages=LONG)
            chunks = list(stream)
            return chunks[0].id, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return await asyncio.get_running_loop().run_in_executor(pool, run)

    async def via_socket():
        async with browser.connect() as ws:
            await send(ws, {"type": "send", "conversation": None, "content": LONG[0]["content"],
                            "params": {"max_new_tokens": BATCHED_TOKENS}})
            frames = await recv_until(ws, "done", timeout=300)  # nine replies on two shared cores
            return frames[-1]["message"]

    async def resume_when_all_are_queued():
        def wait():
            try:
                _wait_for(lambda: Message.objects.filter(status="queued").count() == 9, what="nine queued replies")
            finally:
                connection.close()  # this thread's own connection
        try:
            await asyncio.get_running_loop().run_in_executor(pool, wait)
        finally:
            os.kill(live_stack.worker.pid, signal.SIGCONT)

    async def go():
        return await asyncio.gather(via_socket(), *(via_api(c) for c in clients), resume_when_all_are_queued())

    os.kill(live_stack.worker.pid, signal.SIGSTOP)
    try:
        with pool:
            socket_reply, *api_results, _ = asyncio.run(go())
    finally:
        os.kill(live_stack.worker.pid, signal.SIGCONT)
    replies = [Message.objects.get(pk=socket_reply)] + [_reply(cid) for cid, _ in api_results]
    for (cid, text), reply in zip(api_results, replies[1:]):
        assert reply.status == "complete" and reply.content == text and reply.conversation.source == "api"
    assert replies[0].conversation.source == "chat" and replies[0].status == "complete"
    _wait_for(lambda: _worker_stats(live_stack, r)["decode_steps_at_batch_size"][9] > before, timeout=15,
              what="a heartbeat counting decode steps of nine rows")
