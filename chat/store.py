"""The Redis clients every Django process shares, and the two reads of Redis's own state everyone needs.

Django-free at import (the launcher reads ``wait_until_loaded`` before settings exist); the clients read
``REDIS_URL`` from Django's settings when first asked for. Key names live in ``chat/names.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref

import redis
import redis.asyncio as aioredis
import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialBackoff

from chat.names import WORKERS_KEY, model_workers_key

log = logging.getLogger(__name__)

# After Redis restarts, every connection a pool kept is stale, and redis-py retries nothing by default on a
# client made from a URL: the next command on each failed ("Connection closed by server"), so a websocket
# handshake that met one was answered with HTTP 500, and sockets opened after the restart were closed with 1011.
# So every client of the house retries a broken connection: it reconnects, and if Redis is still away tries
# again after 0.1, 0.2 and 0.4 s, then raises as before (under a second: a Redis that is really away is said at
# once, and a socket is not kept open on a server that lost its groups). Connection errors only: a timeout can
# come after the command ran, and a retry would run it twice. A connection idle for HEALTH_CHECK_S is pinged
# first, so a stale one is mostly replaced before the command is sent rather than after it failed.
RETRIES = 3
HEALTH_CHECK_S = 10


def connection_options(*, for_asyncio: bool) -> dict:
    """The retry and health check every Redis client here is made with (``client``, ``async_client``, the
    channel layer in settings, the fair-use windows): keyword arguments for ``from_url`` or a connection pool."""
    retry = redis.asyncio.retry.Retry if for_asyncio else redis.retry.Retry
    return {
        "retry": retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES, (redis.exceptions.ConnectionError,)),
        "health_check_interval": HEALTH_CHECK_S,
    }


def live_workers(client: redis.Redis, model: str | None = None) -> list[str]:
    """Names of workers whose heartbeat has not expired: every model's, or ``model``'s only."""
    return client.zrangebyscore(WORKERS_KEY if model is None else model_workers_key(model), time.time(), "+inf")


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


# How long a deletion's rewrite waits for one already running to end before it starts its own.
AOF_REWRITE_WAIT_S = 300.0


def aof_rewrite(wait_s: float = AOF_REWRITE_WAIT_S) -> None:
    """Have Redis rewrite its append-only file from the data it holds now, so commands that wrote deleted data
    leave the file (the embedded Redis, after an account deletion). A rewrite already running started from
    data before the deletion: then a thread waits for it to end (up to ``wait_s``) and starts another. Never
    raises; failures are logged (the next automatic rewrite, or the next start, does the same)."""
    try:
        client().bgrewriteaof()
        return
    except redis.exceptions.ResponseError:  # one is running: start another once it ends
        pass
    except redis.exceptions.RedisError:
        log.warning("could not ask Redis to rewrite its append-only file", exc_info=True)
        return
    threading.Thread(target=_aof_rewrite_after, args=(wait_s,), name="aof-rewrite", daemon=True).start()


def _aof_rewrite_after(wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            client().bgrewriteaof()
            return
        except redis.exceptions.ResponseError:
            time.sleep(0.5)
        except redis.exceptions.RedisError:
            break
    log.warning("Redis did not rewrite its append-only file after a deletion; its next rewrite will")


def _url() -> str:
    from django.conf import settings

    return settings.REDIS_URL


_client: redis.Redis | None = None


def client() -> redis.Redis:
    """The process-wide synchronous client (a thread-safe pool)."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            _url(),
            socket_timeout=5,
            socket_connect_timeout=2,
            decode_responses=True,
            **connection_options(for_asyncio=False),
        )
    return _client


_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = weakref.WeakKeyDictionary()


def async_client() -> aioredis.Redis:
    """An asyncio client for the running loop (asyncio clients are bound to the loop that made them)."""
    loop = asyncio.get_running_loop()
    found = _async_clients.get(loop)
    if found is None:
        found = aioredis.Redis.from_url(
            _url(), socket_timeout=10, decode_responses=True, **connection_options(for_asyncio=True)
        )
        _async_clients[loop] = found
    return found
