"""Redis in one place: the clients and every key name the app uses.

Django-free at import, so the launcher (``chatsite/stack.py``) can read the same key names before settings
exist. The clients read ``REDIS_URL`` from Django's settings when first asked for.

Keys (``chat:`` prefix; the channel layer and Celery keep their own):

| key | type | what |
|---|---|---|
| ``chat:workers`` | sorted set | live workers, score = when their heartbeat expires |
| ``chat:lease:<message>`` | string | the worker holding a streaming reply; expires with its heartbeat |
| ``chat:progress:<message>`` | string | reply tokens generated so far, written with the lease by the heartbeat (not per token) |
| ``chat:stream:<message>`` | list | a reply's delta texts, index = seq (the stream log) |
| ``chat:sockets:<user>`` | sorted set | a user's open sockets, score = last refresh |
| ``chat:sessions:<user>`` | sorted set | a person's session keys, score = login time (``chat/session_index.py``) |
| ``chat:tokens:<user>:<day>`` | string | tokens a person's replies used that day (``chat/quotas.py``) |
| ``chat:limits/...`` | (``limits``) | the moving window of a person's messages per minute |
| ``chat:wstats:<worker>`` | string | the worker's engine figures (JSON), written by its heartbeat, expiring with it |
| ``chat:load`` | hash | replies each worker has taken and not yet ended, field = worker (``chat/balance.py``) |
| ``chat:handed:<message>`` | string | the worker a queued reply was handed to (``chat/balance.py``), for the sweep |
| ``chat:metrics:counters`` | hash | Prometheus counters of every process (``chat/metrics.py``) |
| ``chat:metrics:hist:<name>`` | hash | a histogram's bucket counts and sum |
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref

import redis
import redis.asyncio as aioredis

log = logging.getLogger(__name__)

WORKERS_KEY = "chat:workers"
LOAD_KEY = "chat:load"


def lease_key(message_id: int) -> str:
    return f"chat:lease:{int(message_id)}"


def progress_key(message_id: int) -> str:
    return f"chat:progress:{int(message_id)}"


def worker_stats_key(worker: str) -> str:
    return f"chat:wstats:{worker}"


def handed_key(message_id: int) -> str:
    return f"chat:handed:{int(message_id)}"


def stream_key(message_id: int) -> str:
    return f"chat:stream:{int(message_id)}"


def sockets_key(user_id: int) -> str:
    return f"chat:sockets:{int(user_id)}"


def sessions_key(user_id: int) -> str:
    return f"chat:sessions:{int(user_id)}"


def tokens_key(user_id: int, day) -> str:
    return f"chat:tokens:{int(user_id)}:{day.isoformat()}"


def live_workers(client: redis.Redis) -> list[str]:
    """Names of workers whose heartbeat has not expired."""
    return client.zrangebyscore(WORKERS_KEY, time.time(), "+inf")


def wait_until_loaded(client: redis.Redis, timeout: float = 120.0, say=log.warning) -> None:
    """Block while Redis is still loading its append-only file (it answers LOADING until done), bounded.

    A large file takes seconds to load; every process that talks to Redis at start-up waits it out instead of
    dying with ``BusyLoadingError``.
    """
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            client.ping()
            return
        except redis.exceptions.BusyLoadingError:
            if time.monotonic() > deadline:
                raise
            if not told:
                say("Redis is loading its data from disk; waiting")
                told = True
            time.sleep(0.2)


def _url() -> str:
    from django.conf import settings

    return settings.REDIS_URL


_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The process-wide synchronous client (a thread-safe pool)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(_url(), socket_timeout=5, socket_connect_timeout=2, decode_responses=True)
    return _client


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = weakref.WeakKeyDictionary()


def async_client() -> aioredis.Redis:
    """An asyncio client for the running loop (asyncio clients are bound to the loop that made them)."""
    loop = asyncio.get_running_loop()
    found = _async_clients.get(loop)
    if found is None:
        found = aioredis.Redis.from_url(_url(), socket_timeout=10, decode_responses=True)
        _async_clients[loop] = found
    return found
