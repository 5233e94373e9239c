"""The one funnel for channel-layer traffic: group names, event builders and send helpers.

Every event is plain JSON with a dotted ``type`` (``chat.delta`` is handled by ``ChatConsumer.chat_delta``).
Deltas are also appended to a Redis list per message (the *stream log*): its index is the delta's ``seq``,
so a client that subscribes late reads the text so far from the log and the rest from the group, with no
gap and no duplicate.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from concurrent.futures import Future

from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

WORKERS_GROUP = "inference.workers"


# --- names, built only from ids the app issued ------------------------------------------------------------
def user_group(user_id: int) -> str:
    """Group of every socket of one user. Each conversation has one owner, so a conversation's events go
    to its owner's group and every tab of that user sees them; the client keeps those it shows."""
    return f"chat.user.{int(user_id)}"


def stream_key(message_id: int) -> str:
    """Redis list holding one message's delta texts, index = seq."""
    return f"chat:stream:{int(message_id)}"


# --- event builders --------------------------------------------------------------------------------------
def message_payload(message) -> dict:
    """A message as the protocol shows it."""
    return {"id": message.id, "conversation": message.conversation_id, "role": message.role,
            "content": message.content, "status": message.status}


def conversation_event(conversation) -> dict:
    return {"type": "chat.conversation", "conversation": {"id": conversation.id, "title": conversation.title}}


def message_event(message, client_id: str | None = None) -> dict:
    event = {"type": "chat.message", "message": message_payload(message)}
    if client_id:
        event["client_id"] = client_id
    return event


def delta_event(message_id: int, seq: int, text: str) -> dict:
    return {"type": "chat.delta", "message": message_id, "seq": seq, "text": text}


def done_event(message) -> dict:
    """The end of a reply, with the stored text, counts and timings."""
    return {
        "type": "chat.done", "message": message.id, "status": message.status,
        "finish_reason": message.finish_reason, "content": message.content,
        "usage": {"prompt_tokens": message.prompt_tokens or 0, "completion_tokens": message.completion_tokens or 0},
        "timing": {"ttft_ms": message.ttft_ms, "tokens_per_s": message.tokens_per_s},
    }


def cancel_event(message_id: int) -> dict:
    return {"type": "inference.cancel", "message": int(message_id)}


# --- sending from async code (consumers) and from sync code (services) ------------------------------------
async def send_to_user(user_id: int, event: dict, layer=None) -> None:
    """Publish an event to all of a user's sockets."""
    await (layer or get_channel_layer()).group_send(user_group(user_id), event)


async def broadcast_cancel(message_id: int) -> None:
    """Tell every worker to stop generating ``message_id`` (whichever holds it acts)."""
    await get_channel_layer().group_send(WORKERS_GROUP, cancel_event(message_id))


def send_to_user_sync(user_id: int, event: dict) -> None:
    """For services running in sync code (``transaction.on_commit``) in Daphne or a view."""
    from asgiref.sync import async_to_sync

    async_to_sync(send_to_user)(user_id, event)


def broadcast_cancel_sync(message_id: int) -> None:
    from asgiref.sync import async_to_sync

    async_to_sync(broadcast_cancel)(message_id)


# --- the stream log ----------------------------------------------------------------------------------------
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()


def _redis():
    """An asyncio Redis client for the running loop (clients are bound to the loop that made them)."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, decode_responses=True)
        _clients[loop] = client
    return client


async def stream_snapshot(message_id: int) -> tuple[str, int]:
    """The text streamed so far for a message and the seq of its last delta (-1 when none)."""
    pieces = await stream_range(message_id, 0, -1)
    return "".join(pieces), len(pieces) - 1


async def stream_range(message_id: int, first: int, last: int) -> list[str]:
    """Delta texts ``first``..``last`` (inclusive) from the stream log."""
    return await _redis().lrange(stream_key(message_id), first, last)


def stream_text_sync(message_id: int) -> str | None:
    """The text streamed so far, from sync code (the sweep); None when the log is gone."""
    from .liveness import client

    pieces = client().lrange(stream_key(message_id), 0, -1)
    return "".join(pieces) if pieces else None


# --- the worker's side: one event loop for the whole process -------------------------------------------------
class WorkerLink:
    """A worker process's link to the channel layer and the stream log.

    Worker threads are plain threads; opening an event loop per call (what ``async_to_sync`` does outside
    a loop) would open a Redis connection per token. This keeps one loop in a daemon thread and hands it
    coroutines. It also listens on the workers' group for cancel events.
    """

    def __init__(self, on_cancel=None):
        self.on_cancel = on_cancel
        # Its own layer instance: channels_redis allows one receiving loop per instance, and this loop
        # receives cancels while other code in the process (tests, a shell) may use the default one.
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="worker-link", daemon=True)
        self._thread.start()
        self._listener = self._submit(self._listen())

    def close(self) -> None:
        """Stop listening and stop the loop (tests; a worker keeps its link for life)."""
        self._listener.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def _submit(self, coro) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro, timeout: float = 30.0):
        """Run a coroutine on the link's loop and wait for its result."""
        return self._submit(coro).result(timeout)

    def call_patiently(self, make_coro):
        """Like ``call``, riding out a Redis restart: retried for up to CHAT_REDIS_GRACE_S. The engine keeps
        generating meanwhile; what it produced is sent in one piece when Redis is back."""
        deadline = time.monotonic() + settings.CHAT_REDIS_GRACE_S
        while True:
            try:
                return self.call(make_coro())
            except (RedisError, OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                log.warning("Redis unreachable; retrying")
                time.sleep(0.5)

    async def _listen(self) -> None:
        layer = self.layer
        channel = await layer.new_channel("inference.worker.")
        last_join = None
        while True:
            try:
                now = self.loop.time()
                # Renew membership often: it expires after a day, and a Redis restart without persistence
                # forgets it at once.
                if last_join is None or now - last_join > 50:
                    await layer.group_add(WORKERS_GROUP, channel)
                    last_join = now
                event = await asyncio.wait_for(layer.receive(channel), timeout=60)
                if event.get("type") == "inference.cancel" and self.on_cancel:
                    self.on_cancel(int(event["message"]))
            except asyncio.TimeoutError:
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis away: keep trying, a worker must not lose its ears
                log.warning("worker link: channel layer receive failed; retrying", exc_info=True)
                last_join = None
                await asyncio.sleep(1)

    async def _delta(self, user_id: int, message_id: int, seq: int, pieces: list[str]) -> None:
        key = stream_key(message_id)
        client = _redis()
        async with client.pipeline(transaction=False) as pipe:
            pipe.rpush(key, pieces[seq])
            pipe.expire(key, settings.CHAT_STREAM_TTL_S)
            length, _ = await pipe.execute()
        if length != seq + 1:  # Redis lost the log (restart without persistence): write it again, whole
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.rpush(key, *pieces[:seq + 1])
                pipe.expire(key, settings.CHAT_STREAM_TTL_S)
                await pipe.execute()
        await send_to_user(user_id, delta_event(message_id, seq, pieces[seq]), self.layer)

    def delta(self, user_id: int, message_id: int, seq: int, pieces: list[str]) -> None:
        """Log and publish delta ``seq`` (``pieces[seq]``; earlier pieces repair a lost log). Waits, so deltas
        stay in order."""
        self.call_patiently(lambda: self._delta(user_id, message_id, seq, pieces))

    def send(self, user_id: int, event: dict) -> None:
        """Publish an event to a user's sockets."""
        self.call_patiently(lambda: send_to_user(user_id, event, self.layer))

    def clear_stream(self, message_id: int) -> None:
        """Forget a message's stream log (a regenerated reply starts a new one)."""
        async def _clear():
            await _redis().delete(stream_key(message_id))

        self.call_patiently(_clear)
