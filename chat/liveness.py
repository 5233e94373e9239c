"""Who is alive: worker heartbeats and per-reply leases in Redis, and the sweep that ends orphaned replies.

A worker refreshes its entry in ``chat:workers`` and a lease ``chat:lease:<message>`` for every reply it is
generating, every ``CHAT_HEARTBEAT_S``; both expire after ``CHAT_LEASE_TTL_S``. A reply that is ``streaming``
without a lease belonged to a worker that died (SIGKILL, OOM, machine lost): the sweep marks it ``failed``,
keeping the text streamed so far. Lost tasks are not retried — a retry could race a reply already shown — so
the person sees the failure and can regenerate. Sweeps run in every Daphne process and every worker; the
conditional update in ``message_finish`` makes exactly one of them win.
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from datetime import timedelta

import redis
from django.conf import settings
from django.utils import timezone

log = logging.getLogger(__name__)
# Live workers: a sorted set, member = worker name, score = when its heartbeat expires. One key, so asking
# "is any worker alive?" on every send is one ZCOUNT, not a scan of the keyspace.
WORKERS_KEY = "chat:workers"
LEASE_PREFIX = "chat:lease:"
_client = None


def client() -> redis.Redis:
    """A process-wide synchronous Redis client (thread-safe pool)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2,
                                       decode_responses=True)
    return _client


def lease_key(message_id: int) -> str:
    return f"{LEASE_PREFIX}{int(message_id)}"


def heartbeat(worker: str, message_ids) -> None:
    """Worker side: say this worker is alive and still holds these replies."""
    ttl = settings.CHAT_LEASE_TTL_S
    pipe = client().pipeline(transaction=False)
    pipe.zadd(WORKERS_KEY, {worker: time.time() + ttl})
    for message_id in message_ids:
        pipe.set(lease_key(message_id), worker, ex=ttl)
    pipe.execute()


def release(message_id: int) -> None:
    """Worker side: the reply is finished; its lease goes."""
    client().delete(lease_key(message_id))


def worker_gone(worker: str) -> None:
    """Worker side, at a clean shutdown: stop counting as alive at once."""
    client().zrem(WORKERS_KEY, worker)


def workers_alive() -> list[str]:
    """Names of workers whose heartbeat has not expired."""
    return client().zrangebyscore(WORKERS_KEY, time.time(), "+inf")


def orphaned_reply_ids(candidates: list[int]) -> list[int]:
    """Of these streaming replies, the ones no live worker holds a lease on."""
    if not candidates:
        return []
    held = client().mget([lease_key(m) for m in candidates])
    return [m for m, owner in zip(candidates, held) if owner is None]


def sweep() -> list:
    """End replies whose worker died, and queued ones nobody took in time. Returns the messages ended."""
    from . import events, services
    from .models import Message

    if client().info("server").get("uptime_in_seconds", 0) < settings.CHAT_LEASE_TTL_S:
        return []  # Redis just (re)started: leases are not back yet, their absence proves nothing
    now = timezone.now()
    ended = []
    streaming = list(Message.objects.filter(
        status=Message.Status.STREAMING, started_at__lt=now - timedelta(seconds=settings.CHAT_LEASE_TTL_S))
        .values_list("id", flat=True)[:500])
    for message_id in orphaned_reply_ids(streaming):
        text = events.stream_text_sync(message_id)
        final = services.message_finish(
            message_id=message_id, content=text if text is not None else
            Message.objects.values_list("content", flat=True).get(pk=message_id),
            status=Message.Status.FAILED, finish_reason=Message.FinishReason.ERROR,
            error="The worker writing this reply stopped. The text so far is kept; regenerate to try again.")
        if final:
            ended.append(final)
    stale = Message.objects.filter(status=Message.Status.QUEUED,
                                   created_at__lt=now - timedelta(seconds=settings.CHAT_QUEUE_TIMEOUT_S))
    for message_id in stale.values_list("id", flat=True)[:500]:
        final = services.message_finish(
            message_id=message_id, content="", status=Message.Status.FAILED,
            finish_reason=Message.FinishReason.ERROR, only_from=(Message.Status.QUEUED,),
            error="No worker picked this reply up in time; regenerate to try again.")
        if final:
            ended.append(final)
    for message in ended:
        log.warning("swept reply %s: %s", message.id, message.error)
        services.notify(message.conversation.owner_id, events.done_event(message))
    return ended


_sweepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def ensure_sweeper() -> None:
    """Start this web process's periodic sweep (once per event loop), so replies of a dead worker end even
    when no worker is left to sweep."""
    if not settings.CHAT_SWEEP_IN_WEB:
        return
    loop = asyncio.get_running_loop()
    if loop not in _sweepers:
        _sweepers[loop] = loop.create_task(_sweep_forever())


async def _sweep_forever() -> None:
    from channels.db import database_sync_to_async

    while True:
        await asyncio.sleep(settings.CHAT_SWEEP_INTERVAL_S)
        try:
            await database_sync_to_async(sweep)()
        except Exception:  # Redis or the database away: try again next round
            log.warning("sweep failed", exc_info=True)
