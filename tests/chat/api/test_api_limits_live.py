"""The API's limits and endings on the live stack, through the official ``openai`` client (and a raw socket where
a client must vanish mid-request): the per-person cap, today's tokens and messages a minute (429 with
Retry-After), no worker (503), a client that goes away (its reply stops and the engine's row is freed, streamed
or not, before its first chunk or after), and eight API streams in one engine batch with a browser chat."""

import asyncio
import json
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from chat import events, names
from chat.limits import quotas
from chat.models import Conversation, Message, QuotaOverride
from chat.names import WORKERS_KEY, lease_key, model_workers_key, stream_key, worker_stats_key
from chat.replies import streamlog
from chat.store import live_workers
from tests.helpers.live import LIVE_BATCH, recv_until, send

pytestmark = pytest.mark.e2e
MODEL = settings.CHAT_MODEL
LONG = [{"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}]
# Tokens a reply may gain past the count read at its client's close. The worker is paused from before the
# close until the stop is stored and broadcast, so the whole chain (Daphne sees the close, Django cancels the
# view, the stop is stored and broadcast) costs no tokens; what is left: the step or two the engine runs after
# the resume before the cancel reaches it, the text the worker had generated but not yet published when it was
# paused (its 40 ms flush window: a token or two of this model on these cores), and a token the re-encoding
# of the text may count differently.
SLACK_TOKENS = 6
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


def _worker_name(live_stack) -> str:
    return f"{socket.gethostname()}-{live_stack.worker.pid}"  # the name chat.worker.runtime.Runtime gives itself


def _worker_stats(live_stack, r) -> dict:
    """The live stack's worker's last heartbeat figures (its engine's, and the replies it holds); {} while it
    is not live (just resumed, say, before its next heartbeat), so that a wait on them tries again."""
    worker = _worker_name(live_stack)
    if worker not in live_workers(r):
        return {}
    return json.loads(r.get(worker_stats_key(worker)) or "{}")


def _live_stats(live_stack, r) -> dict:
    """The worker's heartbeat figures, once it has some."""
    stats = {}

    def have():
        stats.update(_worker_stats(live_stack, r))
        return bool(stats)

    _wait_for(have, timeout=4 * settings.CHAT_HEARTBEAT_S + 5, what="the worker's heartbeat figures")
    return stats


def _assert_the_worker_let_go(live_stack, r, reply_id: int) -> None:
    """The lease of the reply is gone and the worker's next heartbeats show no reply held and no batch row."""
    assert r.get(lease_key(reply_id)) is None
    _wait_for(
        lambda: (lambda s: s.get("in_flight") == 0 and s.get("batch_size") == 0)(_worker_stats(live_stack, r)),
        timeout=4 * settings.CHAT_HEARTBEAT_S + 5,
        what="a heartbeat with no reply in flight",
    )


class _WorkerPaused:
    """``with _WorkerPaused(live_stack):`` SIGSTOP the worker; SIGCONT it on the way out or at ``resume()``.
    Meanwhile its heartbeat is kept as its own heartbeat thread would keep it (its place among the live
    workers, its figures, the leases it holds, every CHAT_HEARTBEAT_S): here a paused worker stands for a slow
    one, not a dead one. Otherwise sends would be refused no_worker once its last beat's CHAT_LEASE_TTL_S ran
    out, and the sweep would fail a reply it holds: a race against the clock on a loaded machine."""

    def __init__(self, live_stack):
        self.pid, self.worker, self.r = live_stack.worker.pid, _worker_name(live_stack), _redis(live_stack)
        self.done = threading.Event()
        self.beats = threading.Thread(target=self._beat, name="paused-worker-heartbeat", daemon=True)
        self.held: list[str] = []

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        try:  # what it holds cannot change while it is stopped
            self.held = [
                key
                for key in self.r.scan_iter(match=lease_key(0).removesuffix("0") + "*")
                if self.r.get(key) == self.worker
            ]
            self.beats.start()
        except BaseException:
            self.resume()
            raise
        return self

    def _beat(self) -> None:
        ttl = settings.CHAT_LEASE_TTL_S
        while True:
            pipe = self.r.pipeline(transaction=False)
            pipe.zadd(WORKERS_KEY, {self.worker: time.time() + ttl})
            pipe.zadd(model_workers_key(MODEL), {self.worker: time.time() + ttl})  # admission asks its model's
            pipe.expire(worker_stats_key(self.worker), ttl)
            for key in self.held:
                pipe.expire(key, ttl)
            pipe.execute()
            if self.done.wait(settings.CHAT_HEARTBEAT_S):
                return

    def resume(self) -> None:
        """SIGCONT, once; its own heartbeat takes over."""
        if not self.done.is_set():
            self.done.set()
            if self.beats.is_alive():
                self.beats.join()
            os.kill(self.pid, signal.SIGCONT)

    def __exit__(self, *exc) -> None:
        self.resume()


@contextmanager
def _stops_heard():
    """A channel of the test's own in the workers' group, where every stop is broadcast: ``heard(reply_id)``
    waits until that reply's stop has gone out, i.e. it is waiting for the worker too (one group send reaches
    every member)."""
    from channels import DEFAULT_CHANNEL_LAYER
    from channels.layers import channel_layers

    channel = f"inference.test-{uuid.uuid4().hex}"  # no "!": any layer instance may receive on it

    def on_layer(use):
        async def go():
            layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
            try:
                return await use(layer)
            finally:
                await layer.close_pools()

        return asyncio.run(go())

    async def heard_stop_of(layer, reply_id):
        wanted = events.cancel_event(reply_id)
        while True:
            event = await asyncio.wait_for(layer.receive(channel), 30)
            if all(event.get(k) == v for k, v in wanted.items()):
                return

    on_layer(lambda layer: layer.group_add(names.WORKERS_GROUP, channel))
    try:
        yield lambda reply_id: on_layer(lambda layer: heard_stop_of(layer, reply_id))
    finally:
        on_layer(lambda layer: layer.group_discard(names.WORKERS_GROUP, channel))


def _stop_stored(reply_id: int) -> bool:
    return Message.objects.filter(pk=reply_id, stop_requested=True).exists()


def _tokens(tokenizer, text: str | None) -> int:
    return len(tokenizer.encode(text or "", add_special_tokens=False))


def _raw_post(port: int, key: str, body: dict) -> socket.socket:
    """Send a completion request over a bare socket and return it unread: closing it is the client leaving."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer "
        + key.encode()
        + b"\r\nContent-Length: "
        + str(len(data)).encode()
        + b"\r\n\r\n"
        + data
    )
    return sock


def _the_reply_of(user) -> Message | None:
    return Message.objects.filter(conversation__owner=user, role="assistant").first()


def test_a_client_that_goes_away_mid_stream_stops_its_reply_within_a_few_tokens(api, live_stack, tokenizer):
    """The worker is paused across the close, so the count read at the close is where the reply stood: it may
    go on only for the steps between its resume and the cancel reaching its engine."""
    _, _, client = api()
    r = _redis(live_stack)
    stream = client.chat.completions.create(model=MODEL, max_tokens=300, stream=True, messages=LONG)
    chunks, received = [], ""
    while _tokens(tokenizer, received) < 8:
        chunks.append(next(stream))
        received += "".join(c.delta.content or "" for c in chunks[-1].choices)
    reply = _reply(chunks[0].id)
    with _stops_heard() as heard, _WorkerPaused(live_stack):
        published = streamlog.read_text_sync(reply.pk)  # all the worker has sent, the client's and beyond
        at_close = _tokens(tokenizer, published)
        stream.close()  # the connection goes: Daphne tells Django, which cancels the view
        _wait_for(lambda: _stop_stored(reply.pk), what="the stop stored")
        heard(reply.pk)
    _wait_for(lambda: not Message.objects.get(pk=reply.pk).is_active, what="the reply's end")
    reply.refresh_from_db()
    assert (reply.status, reply.finish_reason) == ("stopped", "cancelled")
    assert reply.content.startswith(published) and published.startswith(received)
    print(f"tokens at the close: {at_close}, at the end: {reply.completion_tokens}")
    assert at_close <= reply.completion_tokens <= at_close + SLACK_TOKENS, (at_close, reply.completion_tokens)
    _assert_the_worker_let_go(live_stack, r, reply.pk)


def test_a_whole_request_whose_client_goes_away_stops_and_a_no_store_reply_leaves_no_log(api, live_stack, tokenizer):
    """Not streamed: the view itself waits for the reply's end, through the sync middlewares; the client's
    close cancels it there. The key keeps no text: once the reply has ended its stream log goes too."""
    user, new, _ = api(store_conversations=False)
    r = _redis(live_stack)
    sock = _raw_post(live_stack.port, new.plaintext, {"model": MODEL, "max_tokens": 300, "messages": LONG})
    try:

        def streamed_some():
            reply = _the_reply_of(user)
            return reply is not None and _tokens(tokenizer, streamlog.read_text_sync(reply.pk)) >= 8

        _wait_for(streamed_some, what="the reply's first tokens")
        reply = _the_reply_of(user)
        with _stops_heard() as heard, _WorkerPaused(live_stack):
            at_close = _tokens(tokenizer, streamlog.read_text_sync(reply.pk))  # where the paused reply stands
            sock.close()
            _wait_for(lambda: _stop_stored(reply.pk), what="the stop stored")
            heard(reply.pk)
    finally:
        sock.close()
    _wait_for(lambda: not Message.objects.get(pk=reply.pk).is_active, what="the reply's end")
    reply.refresh_from_db()
    assert (reply.status, reply.finish_reason) == ("stopped", "cancelled")
    print(f"tokens at the close: {at_close}, at the end: {reply.completion_tokens}")
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
    with _WorkerPaused(live_stack):
        sock = _raw_post(
            live_stack.port, new.plaintext, {"model": MODEL, "max_tokens": 300, "stream": True, "messages": LONG}
        )
        _wait_for(lambda: _the_reply_of(user) is not None, what="the queued reply")
        sock.close()
        _wait_for(lambda: not _the_reply_of(user).is_active, what="the reply's end")
    reply = _the_reply_of(user)
    assert (reply.status, reply.finish_reason, reply.content, reply.completion_tokens) == (
        "stopped",
        "cancelled",
        "",
        None,
    )
    _assert_the_worker_let_go(live_stack, r, reply.pk)


def test_the_active_reply_cap_answers_429_with_retry_after(api):
    import openai

    user, _, client = api()
    cap = settings.CHAT_MAX_ACTIVE_PER_USER
    streams = [
        client.chat.completions.create(model=MODEL, max_tokens=300, stream=True, messages=LONG) for _ in range(cap)
    ]
    try:
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model=MODEL, max_tokens=5, messages=LONG)
        assert limited.value.status_code == 429 and limited.value.response.headers["Retry-After"] == "2"
        assert limited.value.body["code"] == "rate_limit_exceeded"
    finally:
        for stream in streams:
            stream.close()
    _wait_for(lambda: not Message.objects.filter(conversation__owner=user, status__in=Message.ACTIVE_STATUSES).exists())
    assert Message.objects.filter(conversation__owner=user, role="assistant").count() == cap


def test_todays_tokens_used_and_messages_a_minute_answer_429_with_retry_after(api):
    """The person's own allowance (a QuotaOverride, as staff set it), counted in the Redis the browser's
    limits use: today's tokens used up → insufficient_quota until midnight; two messages a minute → the
    third waits for the window."""
    import openai

    user, _, client = api()
    QuotaOverride.objects.create(user=user, tokens_per_day=40, messages_per_minute=2)
    quotas.tokens_count(user.pk, 40)  # as reply_finish charges a reply: today's tokens are used up
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
    assert f"2 messages in the last minute, the most this site allows; try again in {wait} s." in limited.value.message
    assert Conversation.objects.filter(owner=user).count() == 2


def test_no_worker_answers_503(api, live_stack):
    """The worker frozen (SIGSTOP) and its heartbeat gone: nobody could write a reply, and nothing is stored."""
    import openai

    user, _, client = api()
    r = redis.Redis.from_url(live_stack.env["REDIS_URL"])
    os.kill(live_stack.worker.pid, signal.SIGSTOP)
    try:
        r.delete(WORKERS_KEY, model_workers_key(MODEL))
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
    users, clients = zip(*((user, client) for user, _, client in (api(f"api{i}") for i in range(8))))
    browser_user, browser = chat("browser")
    ours = [*users, browser_user]
    r = _redis(live_stack)
    before = _live_stats(live_stack, r)["decode_steps_at_batch_size"][9]
    pool = ThreadPoolExecutor(9)  # asyncio's default pool has min(32, cores + 4) threads: 6 here

    async def via_api(client):
        def run():
            stream = client.chat.completions.create(model=MODEL, max_tokens=BATCHED_TOKENS, stream=True, messages=LONG)
            chunks = list(stream)
            return chunks[0].id, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        return await asyncio.get_running_loop().run_in_executor(pool, run)

    async def via_socket():
        async with browser.connect() as ws:
            await send(
                ws,
                {
                    "type": "send",
                    "conversation": None,
                    "content": LONG[0]["content"],
                    "params": {"max_new_tokens": BATCHED_TOKENS},
                },
            )
            frames = await recv_until(ws, "done", timeout=300)  # nine replies on two shared cores
            return frames[-1]["message"]

    async def resume_when_all_are_queued():
        def wait():
            try:
                _wait_for(
                    lambda: Message.objects.filter(status="queued", conversation__owner__in=ours).count() >= 9,
                    what="nine queued replies",
                )
            finally:
                connection.close()  # this thread's own connection

        try:
            await asyncio.get_running_loop().run_in_executor(pool, wait)
        finally:
            paused.resume()  # all nine are there for it to take at once

    async def go():
        return await asyncio.gather(via_socket(), *(via_api(c) for c in clients), resume_when_all_are_queued())

    with _WorkerPaused(live_stack) as paused, pool:
        socket_reply, *api_results, _ = asyncio.run(go())
    replies = [Message.objects.get(pk=socket_reply)] + [_reply(cid) for cid, _ in api_results]
    for (cid, text), reply in zip(api_results, replies[1:]):
        assert reply.status == "complete" and reply.content == text and reply.conversation.source == "api"
    assert replies[0].conversation.source == "chat" and replies[0].status == "complete"
    _wait_for(
        lambda: _worker_stats(live_stack, r)["decode_steps_at_batch_size"][9] > before,
        timeout=15,
        what="a heartbeat counting decode steps of nine rows",
    )
